"""Notebook 12's exercise checkers: the reference solutions pass, the classic slips raise ExerciseError,
an untouched stub prints only the first hint and returns None."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.exercises import ExerciseError, ch12
from course_lib.scaling import counted_flops, gpt_config


def _untouched(*args):
    raise NotImplementedError


def _untouched_prints_first_hint_only(checker, exercise: int, capsys) -> None:
    assert checker(_untouched) is None
    out = capsys.readouterr().out
    first, second = ch12.HINTS[exercise]
    assert "not attempted yet" in out and first in out and f"ch12.hint({exercise})" in out
    assert second not in out and "False" not in out and "Hint 2" not in out


# ----------------------------------------------------------------------------- exercise 1
def _loglog(x, y):
    """The solutions notebook's answer: a least-squares line through (log x, log y)."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return math.exp(intercept), -slope


def _linear_space(x, y):
    """A least-squares fit of y itself (not log y): Gauss-Newton on sum (y - a x^-alpha)^2 from the log-log answer.
    On noiseless points it is the same answer; on noisy points the largest y weigh most and the answer moves."""
    a, alpha = _loglog(x, y)
    for _ in range(50):
        pred = a * x ** (-alpha)
        jac = np.stack([x ** (-alpha), -pred * np.log(x)], axis=1)
        step = np.linalg.lstsq(jac, y - pred, rcond=None)[0]
        a, alpha = a + step[0], alpha + step[1]
    return a, alpha


def test_power_law_fit_checker_accepts_the_solution(capsys):
    assert ch12.check_power_law_fit(_loglog) is True
    assert ch12.check_power_law_fit(lambda x, y: np.array(_loglog(x, y))) is True  # an array of two is fine too
    assert ch12.check_power_law_fit(lambda x, y: list(ch12.reference_power_law_fit(x, y))) is True
    assert "all 5 cases match" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [
    lambda x, y: (_loglog(x, y)[0], -_loglog(x, y)[1]),  # returns +slope: alpha with the wrong sign
    lambda x, y: (math.log(_loglog(x, y)[0]), _loglog(x, y)[1]),  # forgot to undo the log: log a instead of a
    lambda x, y: _loglog(x, y)[::-1],  # (alpha, a): the wrong order
    lambda x, y: tuple(np.polyfit(x, y, 1)[::-1]),  # a straight line through (x, y): not a power law at all
    _linear_space,  # least squares on y, not log y: right on noiseless points, wrong on the noisy case
], ids=["plus-alpha", "log-a", "swapped", "linear-line", "linear-space-fit"])
def test_power_law_fit_checker_rejects_wrong_answers(wrong):
    with pytest.raises(ExerciseError):
        ch12.check_power_law_fit(wrong)


def test_linear_space_fit_fails_only_on_the_noisy_case():
    with pytest.raises(ExerciseError, match="case 4 of 5"):  # cases 1-3 are noiseless: there it agrees
        ch12.check_power_law_fit(_linear_space)


def test_power_law_fit_untouched_prints_first_hint_only(capsys):
    _untouched_prints_first_hint_only(ch12.check_power_law_fit, 1, capsys)


# ----------------------------------------------------------------------------- exercise 2
def _step_flops(n_layer, d_model, vocab_size, block_size, batch_size, backward=True, attention=True, output=True,
                flops_per_mac=2, causal_half=False):
    """The solutions notebook's count, with switches for the classic slips."""
    d, T = d_model, block_size
    per_layer = 4 * d * d + 2 * d * 4 * d  # Q, K, V, output projection; the two feed-forward matrices
    if attention:
        per_layer += (T * d if causal_half else 2 * T * d)  # scores Q K^T and the weighted sum of V
    per_token = n_layer * per_layer + (d * vocab_size if output else 0)  # multiply-adds
    passes = 3 if backward else 1
    return passes * flops_per_mac * per_token * batch_size * block_size


def test_training_step_flops_checker_accepts_the_solution(capsys):
    assert ch12.check_training_step_flops(_step_flops) is True
    assert ch12.check_training_step_flops(lambda *a: float(_step_flops(*a))) is True  # a float equal to the int is fine
    assert "all 5 cases match" in capsys.readouterr().out


@pytest.mark.parametrize("slip,why", [
    (dict(backward=False), "forward pass only"),
    (dict(attention=False), "attention term"),  # 6 N D: no attention term
    (dict(output=False), "output layer"),
    (dict(flops_per_mac=1), "multiply-adds, not FLOPs"),
    (dict(causal_half=True), "half of the attention term"),  # only the lower triangle of the T x T scores
    (dict(backward=False, flops_per_mac=1), "a sixth"),
], ids=["forward-only", "no-attention", "no-output-layer", "macs-not-flops", "causal-half", "forward-macs"])
def test_training_step_flops_checker_rejects_classic_slips_and_names_them(slip, why):
    with pytest.raises(ExerciseError, match="case 1 of 5 is wrong") as err:
        ch12.check_training_step_flops(lambda *a: _step_flops(*a, **slip))
    assert why in str(err.value)


def test_training_step_flops_unknown_slip_gets_the_plain_message():
    with pytest.raises(ExerciseError) as err:
        ch12.check_training_step_flops(lambda *a: _step_flops(*a) + 1)
    assert "case 1 of 5 is wrong" in str(err.value) and "likely:" not in str(err.value)
    with pytest.raises(ExerciseError, match="raised ZeroDivisionError"):  # a crash: check_function's message
        ch12.check_training_step_flops(lambda *a: 1 / 0)


def test_training_step_flops_reference_equals_pytorchs_flop_counter():
    n_layer, d_model, vocab_size, block_size, batch_size = 2, 32, 65, 16, 2
    counted = counted_flops(gpt_config(n_layer, d_model, vocab_size, block_size), batch_size=batch_size)
    assert ch12.reference_training_step_flops(n_layer, d_model, vocab_size, block_size, batch_size) == counted
    assert _step_flops(n_layer, d_model, vocab_size, block_size, batch_size) == counted


def test_training_step_flops_untouched_prints_first_hint_only(capsys):
    _untouched_prints_first_hint_only(ch12.check_training_step_flops, 2, capsys)


# ----------------------------------------------------------------------------- exercise 3
def _allocation(E, A, alpha, B, beta, flops, exponent="right", k=6.0, constant=True, swap_ab=False):
    """The solutions notebook's closed form, with switches for the classic slips."""
    if swap_ab:
        A, B = B, A
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta)) if constant else 1.0
    power = beta / (alpha + beta) if exponent == "right" else alpha / (alpha + beta)
    n = g * (flops / k) ** power
    return n, flops / (k * n)


def test_compute_optimal_checker_accepts_the_solution(capsys):
    assert ch12.check_compute_optimal(_allocation) is True
    assert "all 5 cases match" in capsys.readouterr().out


def test_compute_optimal_solution_is_the_minimum_on_the_budget():
    """Independent of compute_optimal: on the budget line, moving N either way raises the loss."""
    E, A, alpha, B, beta, flops = 1.69, 406.4, 0.34, 410.7, 0.28, 1e21
    n, d = _allocation(E, A, alpha, B, beta, flops)
    assert math.isclose(6 * n * d, flops, rel_tol=1e-12)
    loss = lambda n: E + A / n**alpha + B / (flops / (6 * n)) ** beta  # noqa: E731
    assert all(loss(n * f) > loss(n) for f in (0.9, 0.99, 1.01, 1.1))


@pytest.mark.parametrize("slip", [
    dict(exponent="swapped"),  # N grows as C^(alpha / (alpha + beta)): the exponents' ratio upside down
    dict(k=1.0),  # forgot the 6: N D = C
    dict(constant=False),  # dropped the constant G in front of the power
    dict(swap_ab=True),  # A and B swapped in the constant
])
def test_compute_optimal_checker_rejects_classic_slips(slip):
    with pytest.raises(ExerciseError):
        ch12.check_compute_optimal(lambda *a: _allocation(*a, **slip))


def test_compute_optimal_checker_rejects_swapped_n_and_d():
    with pytest.raises(ExerciseError):
        ch12.check_compute_optimal(lambda *a: _allocation(*a)[::-1])


def test_compute_optimal_untouched_prints_first_hint_only(capsys):
    _untouched_prints_first_hint_only(ch12.check_compute_optimal, 3, capsys)


# ----------------------------------------------------------------------------- hints, input checks
def test_hints_come_in_two_tiers_and_point_to_the_solutions(capsys):
    for n in (1, 2, 3):
        first, both = ch12.hint(n, level=1), ch12.hint(n)
        assert first == f"Hint 1: {ch12.HINTS[n][0]}" and ch12.HINTS[n][1] in both
        assert "notebooks/solutions/12_scaling_laws_solutions.ipynb" in both
    with pytest.raises(ValueError, match=r"\[1, 2, 3\]"):
        ch12.hint(4)


@pytest.mark.parametrize("checker", [ch12.check_power_law_fit, ch12.check_training_step_flops, ch12.check_compute_optimal])
def test_checkers_reject_a_non_function(checker):
    with pytest.raises(TypeError, match="expected a function"):
        checker(42)
