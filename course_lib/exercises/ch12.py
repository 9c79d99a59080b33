"""Checkers for notebook 12 (scaling laws: a sweep of small GPTs, the laws fitted to it, what they predict).

Each `check_*` takes the learner's function, runs it against the course's reference on a few cases,
and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. References: `course_lib.scaling.fits.fit_power_law` (no offset),
`course_lib.scaling.flops_per_token` of `gpt_config` (equal to PyTorch's FLOP counter, `counted_flops`)
and `course_lib.scaling.fits.compute_optimal` with k = 6.
Hints come in two tiers: the checker prints the first (what to think about); `hint(n)` prints the next.
The cases are synthetic, so the checkers need neither the sweep's results nor any training.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from course_lib.exercises import ExerciseError, check_function, checker_hint, show_hint
from course_lib.scaling.fits import CHINCHILLA_2022, JointFit, compute_optimal, fit_power_law
from course_lib.scaling.sweep import flops_per_token, gpt_config

__all__ = ["check_power_law_fit", "check_training_step_flops", "check_compute_optimal", "hint", "HINTS",
           "reference_power_law_fit", "reference_training_step_flops", "reference_compute_optimal"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "a power law is a straight line on log-log axes: take the log of both sides of y equals a times x to the "
        "power minus alpha, and you get a line in log x whose slope and intercept carry alpha and a.",
        "fit a straight line to the points (log x, log y) by ordinary least squares (numpy can fit a polynomial of "
        "degree 1, or use slope equals covariance over variance); alpha is MINUS the slope, and the intercept is "
        "log a, so undo the log to get a.",
    ),
    2: (
        "one step trains on batch_size times block_size tokens. Per token, multiplying by a weight matrix of "
        "d_in by d_out costs d_in times d_out multiply-adds, 2 FLOPs each; the backward pass costs twice the forward.",
        "per token and layer: Q, K, V and the output projection (four d_model by d_model matrices), the two "
        "feed-forward matrices (d_model by 4 d_model and back), and attention itself: the scores against all "
        "block_size keys and the weighted sum of block_size values, each block_size times d_model multiply-adds. "
        "Add the output layer (d_model by vocab_size) once per token. Multiply the forward FLOPs by 3.",
    ),
    3: (
        "use the budget to remove one variable: with D written in terms of N and the FLOPs, the loss depends on N "
        "alone, and its minimum is where its derivative in N is zero. The constant E does not move the minimum.",
        "substitute D by flops / (6 N), differentiate the loss in N and set that to zero: at the optimum alpha A / "
        "N^alpha equals beta B / D^beta. Solve it for N, a constant times (flops / 6) to the power beta / "
        "(alpha + beta); then D is flops / (6 N).",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1, 2 or 3 up to `level` (1: what to think about, 2: closer to the method); printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch12")


def _pairs(fn: Callable, name: str) -> Callable:
    """`fn` whose answer becomes a tuple when it is a 2-element array or tensor (any other answer is left as it is)."""
    if not callable(fn):
        raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")

    def wrapped(*args: Any) -> Any:
        value = fn(*args)
        if isinstance(value, (np.ndarray, torch.Tensor)) and tuple(value.shape) == (2,):
            return tuple(value.tolist())
        return value

    return wrapped


# ----------------------------------------------------------------------------- exercise 1
def reference_power_law_fit(x: Any, y: Any) -> tuple[float, float]:
    """(a, alpha) of y = a * x^-alpha, least squares on (log x, log y): `fit_power_law(x, y)` without offset."""
    law = fit_power_law(x, y)
    return law.a, law.alpha


def _power_law_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(12)
    x = np.logspace(5, 8, 7)  # parameter counts, 100k to 100M
    cases = [(x, a * x ** (-alpha)) for a, alpha in ((10.0, 0.5), (8.8e13 ** 0.076, 0.076), (406.4, 0.34))]
    x_noisy = np.logspace(4, 7, 9)  # noisy points: a fit in linear space gives another answer here
    cases.append((x_noisy, 25.0 * x_noisy ** (-0.3) * np.exp(rng.normal(0.0, 0.05, x_noisy.size))))
    cases.append((np.array([1e3, 1e6]), np.array([4.0, 1.0])))  # two points: the line through them, alpha = log10(4) / 3
    return cases


def check_power_law_fit(fn: Callable) -> bool | None:
    """Exercise 1: fn(x, y) (1-D float arrays, all > 0) -> (a, alpha) of y = a * x^-alpha, fitted on log-log axes."""
    cases = _power_law_cases()
    return check_function(_pairs(fn, "power-law fit"), reference_power_law_fit, cases, name="power-law fit", rtol=1e-6,
                          hint=checker_hint(HINTS, 1, "ch12"))


# ----------------------------------------------------------------------------- exercise 2
def reference_training_step_flops(n_layer: int, d_model: int, vocab_size: int, block_size: int, batch_size: int) -> int:
    """FLOPs of one training step (forward + backward) of `gpt_config(n_layer, d_model, vocab_size, block_size)` on a
    batch of `batch_size` windows: `flops_per_token` times the step's batch_size * block_size tokens."""
    return flops_per_token(gpt_config(n_layer, d_model, vocab_size, block_size)) * batch_size * block_size


#: (n_layer, d_model, vocab_size, block_size, batch_size): the sweep's smallest and largest shapes, others, GPT-2 small
_FLOP_CASES = [
    (1, 32, 65, 64, 32),
    (4, 128, 65, 64, 32),
    (2, 48, 65, 64, 1),
    (3, 96, 100, 256, 8),
    (12, 768, 50257, 1024, 1),  # GPT-2 small's shape (its 12 heads of 64 cost the same FLOPs as 48 heads of 16)
]


def _flops_slip(fn: Callable) -> str | None:
    """What a wrong FLOP count most likely left out, read from how far it is from the reference on the first
    case it gets wrong: a third, a half, or exactly one missing term. None when it matches no known slip."""
    for case in _FLOP_CASES:
        n_layer, d, vocab, T, batch = case
        expected = reference_training_step_flops(*case)
        try:
            got = float(fn(*case))
        except Exception:  # a crash or an answer that is not a number: check_function's message says it all
            return None
        if got == expected:
            continue
        tokens = batch * T
        slips = {
            expected / 3: "a third of the answer: the forward pass only? The backward pass costs about twice the forward.",
            expected / 2: "half of the answer: multiply-adds, not FLOPs? Each multiply-add is 2 FLOPs.",
            expected / 6: "a sixth of the answer: multiply-adds of the forward pass only?",
            expected - 6 * d * vocab * tokens: "the output layer (d_model by vocab_size, once per token) is missing.",
            expected - 12 * n_layer * T * d * tokens: "the attention term (scores and weighted sum, in every layer) is missing.",
            expected - 6 * n_layer * T * d * tokens: "half of the attention term: the kernel computes the full block_size "
                                                      "by block_size scores, the causal mask does not save work here.",
        }
        return next((why for value, why in slips.items() if got == value), None)
    return None


def check_training_step_flops(fn: Callable) -> bool | None:
    """Exercise 2: fn(n_layer, d_model, vocab_size, block_size, batch_size) -> FLOPs of one training step (an int)."""
    try:
        return check_function(fn, reference_training_step_flops, _FLOP_CASES, name="training-step FLOPs",
                              hint=checker_hint(HINTS, 2, "ch12"))
    except ExerciseError as err:
        why = _flops_slip(fn)
        if why is None:
            raise
        raise ExerciseError(f"{err}\n  likely:   {why}") from err


# ----------------------------------------------------------------------------- exercise 3
def reference_compute_optimal(E: float, A: float, alpha: float, B: float, beta: float, flops: float) -> tuple[float, float]:
    """(N, D) minimising E + A / N^alpha + B / D^beta under 6 N D = flops: `compute_optimal` of that law, k = 6."""
    return compute_optimal(JointFit(E=E, A=A, alpha=alpha, B=B, beta=beta, residual=0.0, n_points=0), flops, k=6.0)


def _compute_optimal_cases() -> list[tuple[float, ...]]:
    chinchilla = tuple(CHINCHILLA_2022[k] for k in ("E", "A", "alpha", "B", "beta"))
    cases = [chinchilla + (flops,) for flops in (1e18, 1e21, 5.76e23)]  # 5.76e23: Chinchilla's own budget
    cases.append((1.2, 50.0, 0.5, 200.0, 0.3, 1e15))  # made-up laws: data matters more ...
    cases.append((0.8, 1500.0, 0.25, 30.0, 0.45, 3e13))  # ... or less than size
    return cases


def check_compute_optimal(fn: Callable) -> bool | None:
    """Exercise 3: fn(E, A, alpha, B, beta, flops) -> (N, D) minimising E + A/N^alpha + B/D^beta with 6 N D = flops."""
    return check_function(_pairs(fn, "compute-optimal (N, D)"), reference_compute_optimal, _compute_optimal_cases(),
                          name="compute-optimal (N, D)", rtol=1e-6, hint=checker_hint(HINTS, 3, "ch12"))

