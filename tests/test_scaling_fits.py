"""Tests of course_lib.scaling.fits: laws with known constants are recovered, the compute-optimal split agrees
with a brute-force search, and every bad input fails with a message that names the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.scaling.fits import (
    CHINCHILLA_2022,
    KAPLAN_2020,
    FitError,
    JointFit,
    PowerLaw,
    bootstrap_joint,
    chinchilla_tokens_per_parameter,
    compute_optimal,
    fit_joint,
    fit_power_law,
    isoflop_curve,
)

# A grid like the sweep's: 5 model sizes x 5 token counts.
SWEEP_N = np.geomspace(2e4, 1e6, 5)
SWEEP_D = np.geomspace(5e5, 2e7, 5)
GRID_N, GRID_D = (g.ravel() for g in np.meshgrid(SWEEP_N, SWEEP_D))  # (25,) each
TRUE = JointFit(E=1.8, A=300.0, alpha=0.4, B=600.0, beta=0.35)


def _brute_force_optimum(fit: JointFit, flops: float, k: float = 6.0) -> tuple[float, float]:
    """Minimise fit(N, flops / (k N)) over a log grid of N with steps of 0.05%."""
    budget = flops / k
    n = np.geomspace(1.0, budget, int(np.log(budget) / np.log(1.0005)))
    best = n[np.argmin(fit(n, budget / n))]
    return float(best), budget / float(best)


# ---- one variable ----------------------------------------------------------------------------


def test_power_law_without_offset_recovers_a_and_alpha_exactly():
    x = np.geomspace(1e3, 1e6, 7)
    fit = fit_power_law(x, 12.5 * x**-0.37)
    assert fit.a == pytest.approx(12.5, rel=1e-9)
    assert fit.alpha == pytest.approx(0.37, rel=1e-9)
    assert fit.e == 0.0 and fit.n_points == 7
    assert fit.residual < 1e-12


def test_power_law_without_offset_is_the_least_squares_line_in_log_space():
    rng = np.random.default_rng(1)
    x = np.geomspace(10, 1e4, 9)
    y = 3.0 * x**-0.5 * np.exp(0.05 * rng.standard_normal(9))
    fit = fit_power_law(x, y)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)  # the oracle: numpy's own least-squares line
    assert fit.alpha == pytest.approx(-slope, rel=1e-10)
    assert math.log(fit.a) == pytest.approx(intercept, rel=1e-10)
    rms = np.sqrt(np.mean((np.log(y) - (intercept + slope * np.log(x))) ** 2))
    assert fit.residual == pytest.approx(rms, rel=1e-10)


def test_power_law_with_offset_recovers_e_a_alpha_on_noiseless_data():
    x = np.geomspace(100, 1e4, 8)  # two decades
    truth = PowerLaw(a=34.0, alpha=0.31, e=1.2)
    fit = fit_power_law(x, truth(x), offset=True)
    assert fit.e == pytest.approx(1.2, rel=1e-3)
    assert fit.a == pytest.approx(34.0, rel=1e-3)
    assert fit.alpha == pytest.approx(0.31, rel=1e-3)
    assert fit.residual < 1e-6


def test_power_law_with_offset_finds_no_offset_when_there_is_none():
    x = np.geomspace(100, 1e4, 8)
    fit = fit_power_law(x, 5.0 * x**-0.2, offset=True)
    assert fit.e < 1e-6 * 5.0 * 1e4**-0.2
    assert fit.alpha == pytest.approx(0.2, rel=1e-6)


def test_power_law_with_offset_under_one_percent_noise():
    # 1% multiplicative noise, 12 points over two decades. The offset is poorly pinned down by such data:
    # over seeds 0-29 the worst errors were e 29%, a 10%, alpha 8.7%, and the curve 1.9% at a data point.
    x = np.geomspace(100, 1e4, 12)
    truth = PowerLaw(a=34.0, alpha=0.31, e=1.2)
    rng = np.random.default_rng(0)
    y = truth(x) * np.exp(0.01 * rng.standard_normal(12))
    fit = fit_power_law(x, y, offset=True)
    assert fit.e == pytest.approx(1.2, rel=0.3)
    assert fit.a == pytest.approx(34.0, rel=0.12)
    assert fit.alpha == pytest.approx(0.31, rel=0.1)
    assert np.max(np.abs(fit(x) / truth(x) - 1)) < 0.02
    assert 0.005 < fit.residual < 0.015  # about the noise level
    assert fit_power_law(x, y).residual > 2 * fit.residual  # without the offset, the line fits worse


def test_power_law_call_and_str():
    law = PowerLaw(a=10.0, alpha=0.5, e=2.0, residual=0.004, n_points=6)
    assert law(100.0) == pytest.approx(3.0)
    assert law(np.array([[1.0, 100.0]])).shape == (1, 2)
    np.testing.assert_allclose(law(np.array([1.0, 100.0])), [12.0, 3.0])
    assert str(law) == "L = 2 + 10 · x^-0.5 (rms log residual 0.004, 6 points)"
    assert str(PowerLaw(a=10.0, alpha=0.5)).startswith("L = 10 · x^-0.5")


# ---- two variables -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "truth",
    [TRUE, JointFit(E=2.5, A=50.0, alpha=0.3, B=2000.0, beta=0.45)],
    ids=["size-and-data", "data-heavy"],
)
def test_fit_joint_recovers_the_parameters_on_noiseless_data(truth):
    n, d = np.meshgrid(SWEEP_N, np.geomspace(5e5, 2e7, 4))  # 20 points
    fit = fit_joint(n.ravel(), d.ravel(), truth(n.ravel(), d.ravel()))
    for name in ("E", "A", "alpha", "B", "beta"):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), rel=1e-6), name
    assert fit.residual < 1e-9
    assert fit.n_points == 20


def test_fit_joint_with_noise_predicts_a_bigger_held_out_point_within_one_percent():
    # 0.3% multiplicative noise on 25 points; held out: 2x the largest N and D of the grid.
    # Over seeds 0-29 the worst error there was 0.95% (with 0.5% noise it reaches 1.6%: the bound is not loose).
    rng = np.random.default_rng(0)
    losses = TRUE(GRID_N, GRID_D) * np.exp(0.003 * rng.standard_normal(25))
    fit = fit_joint(GRID_N, GRID_D, losses)
    assert fit(2e6, 4e7) == pytest.approx(TRUE(2e6, 4e7), rel=0.01)
    assert 0.0015 < fit.residual < 0.0045  # about the noise level
    assert 0.3 < fit.alpha < 0.5 and 0.25 < fit.beta < 0.45


def test_joint_fit_call_and_str():
    fit = JointFit(**CHINCHILLA_2022)
    assert fit(70e9, 1.4e12) == pytest.approx(1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28)
    assert fit(70e9, 1.4e12) == pytest.approx(1.94, abs=0.005)  # the value in JointFit's docstring
    assert fit(np.array([1e9, 1e10]), 1e12).shape == (2,)
    assert str(JointFit(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28, residual=0.01, n_points=20)) == (
        "L(N, D) = 1.69 + 406 / N^0.34 + 411 / D^0.28 (rms log residual 0.01, 20 points)")


def test_fit_joint_that_runs_out_of_iterations_raises_fit_error_with_the_residual():
    losses = TRUE(GRID_N, GRID_D)
    with pytest.raises(FitError, match=r"did not converge.*max_iter = 1.*rms log residual") as info:
        fit_joint(GRID_N, GRID_D, losses, max_iter=1)
    unfinished = info.value.fit
    assert isinstance(info.value, RuntimeError)
    assert f"rms log residual {unfinished.residual:.3g}" in str(info.value)
    recomputed = np.sqrt(np.mean((np.log(unfinished(GRID_N, GRID_D)) - np.log(losses)) ** 2))
    assert unfinished.residual == pytest.approx(recomputed, rel=1e-9)
    assert unfinished.residual > 1e-3  # one step is far from the answer


def test_fit_joint_on_data_without_power_law_shape_raises_fit_error():
    growing = np.exp(GRID_N / 1e5)  # a loss that grows exponentially with N
    with pytest.raises(FitError, match=r"did not converge.*rms log residual \d"):
        fit_joint(GRID_N, GRID_D, growing)
    flat = np.full(25, 2.0)  # no fall at all: A and B run off to 0
    with pytest.raises(FitError, match=r"did not converge: its parameters ran off.*rms log residual"):
        fit_joint(GRID_N, GRID_D, flat)


# ---- compute ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fit", [TRUE, JointFit(**CHINCHILLA_2022)], ids=["synthetic", "chinchilla"])
@pytest.mark.parametrize("flops", [1e14, 1e18, 1e23])
def test_compute_optimal_matches_brute_force(fit, flops):
    n_opt, d_opt = compute_optimal(fit, flops)
    n_bf, d_bf = _brute_force_optimum(fit, flops)
    assert n_opt == pytest.approx(n_bf, rel=5e-3)
    assert d_opt == pytest.approx(d_bf, rel=5e-3)
    assert 6.0 * n_opt * d_opt == pytest.approx(flops, rel=1e-12)
    assert fit(n_opt, d_opt) <= fit(n_bf, d_bf) + 1e-12  # the closed form is at least as good as the grid


def test_compute_optimal_takes_arrays_and_k():
    flops = np.array([1e15, 1e18, 1e21])
    n_opt, d_opt = compute_optimal(TRUE, flops, k=8.0)
    assert n_opt.shape == d_opt.shape == (3,)
    np.testing.assert_allclose(8.0 * n_opt * d_opt, flops, rtol=1e-12)
    for i, c in enumerate(flops):
        assert compute_optimal(TRUE, float(c), k=8.0) == pytest.approx((n_opt[i], d_opt[i]), rel=1e-12)
        assert n_opt[i] == pytest.approx(_brute_force_optimum(TRUE, c, k=8.0)[0], rel=5e-3)


def test_isoflop_curve_is_the_fit_along_one_budget_and_bottoms_at_compute_optimal():
    n = np.geomspace(1e3, 1e8, 2001)
    curve = isoflop_curve(TRUE, 1e16, n)
    np.testing.assert_allclose(curve, TRUE(n, 1e16 / (6.0 * n)), rtol=1e-12)
    n_opt, _ = compute_optimal(TRUE, 1e16)
    assert n[np.argmin(curve)] == pytest.approx(n_opt, rel=0.01)  # grid step is 0.58%


def test_chinchilla_tokens_per_parameter_is_not_20_and_grows_with_compute():
    c = 5.76e23  # Chinchilla's training compute
    n_bf, d_bf = _brute_force_optimum(JointFit(**CHINCHILLA_2022), c)
    ratio = chinchilla_tokens_per_parameter(c)
    assert ratio == pytest.approx(d_bf / n_bf, rel=1e-2)
    assert round(ratio) == 93 and round(chinchilla_tokens_per_parameter(1e20)) == 40  # the docstring's numbers
    assert ratio == chinchilla_tokens_per_parameter()  # the default is Chinchilla's compute
    ratios = chinchilla_tokens_per_parameter(np.array([1e18, 1e21, 1e24]))
    assert np.all(np.diff(ratios) > 0)
    # D/N grows as C^((alpha - beta) / (alpha + beta)) = C^(0.06 / 0.62)
    assert ratios[2] / ratios[1] == pytest.approx(1e3 ** (0.06 / 0.62), rel=1e-9)


def test_published_constants():
    # Kaplan et al. 2020, section 1.2 / Table 5; Hoffmann et al. 2022, equation 10 (approach 3)
    assert (KAPLAN_2020["alpha_N"], KAPLAN_2020["alpha_D"], KAPLAN_2020["alpha_C_min"]) == (0.076, 0.095, 0.050)
    assert (KAPLAN_2020["N_c"], KAPLAN_2020["D_c"], KAPLAN_2020["C_c_min"]) == (8.8e13, 5.4e13, 3.1e8)
    assert CHINCHILLA_2022 == {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


# ---- bad input ----------------------------------------------------------------------------------

X5 = [1.0, 10.0, 100.0, 1000.0, 1e4]
Y5 = [5.0, 4.0, 3.0, 2.5, 2.2]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: fit_power_law([1, 2, 3], [1, 2]), ValueError, r"different lengths: x has 3, y has 2"),
        (lambda: fit_power_law([1, -2, 3], [3, 2, 1]), ValueError, r"x must be > 0.*-2"),
        (lambda: fit_power_law([1, 2, 3], [3, 0, 1]), ValueError, r"y must be > 0"),
        (lambda: fit_power_law([1, 2, 3], [3, np.nan, 1]), ValueError, r"y must be finite.*positions \[1\]"),
        (lambda: fit_power_law([1, np.inf, 3], [3, 2, 1]), ValueError, r"x must be finite"),
        (lambda: fit_power_law([[1, 2], [3, 4]], [[1, 2], [3, 4]]), ValueError, r"x must be 1-D.*\(2, 2\)"),
        (lambda: fit_power_law("abc", [1, 2, 3]), TypeError, r"x must be numbers.*str"),
        (lambda: fit_power_law([None, 1, 2], [1, 2, 3]), ValueError, r"x must be finite"),
        (lambda: fit_power_law([10.0], [1.0]), ValueError, r"at least 2 points, got 1"),
        (lambda: fit_power_law([1, 10], [2, 1], offset=True), ValueError, r"3 parameters.*at least 3 points, got 2"),
        (lambda: fit_power_law([1, 10, 100], [2, 2, 2], offset=True), ValueError, r"offset fit needs y that change.*all y equal"),
        (lambda: fit_power_law([5, 5, 5], [3, 2, 1]), ValueError, r"x must take at least 2 different values"),
        (lambda: fit_joint(X5, X5, Y5), ValueError, r"more points than that \(at least 6\), got 5"),
        (lambda: fit_joint(GRID_N, GRID_D, np.ones(24)), ValueError, r"different lengths: N has 25, D has 25, L has 24"),
        (lambda: fit_joint(GRID_N, -GRID_D, np.ones(25)), ValueError, r"D must be > 0"),
        (lambda: fit_joint(GRID_N, GRID_D, np.r_[np.ones(24), np.inf]), ValueError, r"L must be finite"),
        (lambda: fit_joint(np.full(25, 1e5), GRID_D, np.ones(25)), ValueError, r"N must take at least 2 different"),
        (lambda: fit_joint(GRID_N, GRID_D, np.ones(25), max_iter=0), ValueError, r"max_iter must be an int >= 1"),
        (lambda: fit_joint(GRID_N, GRID_D, np.ones(25), delta=0.0), ValueError, r"delta must be a finite number > 0"),
        (lambda: compute_optimal(TRUE, 0.0), ValueError, r"flops must be finite and > 0"),
        (lambda: compute_optimal(TRUE, np.array([1e18, -1.0])), ValueError, r"flops must be finite and > 0"),
        (lambda: compute_optimal(TRUE, 1e18, k=0.0), ValueError, r"k must be a finite number > 0, got 0.0"),
        (lambda: compute_optimal(TRUE, 1e18, k=-6), ValueError, r"k must be a finite number > 0, got -6"),
        (lambda: compute_optimal(CHINCHILLA_2022, 1e18), TypeError, r"fit must be a JointFit, got dict"),
        (lambda: compute_optimal(JointFit(E=1, A=1, alpha=-0.1, B=1, beta=0.3), 1e18), ValueError, r"needs alpha, beta"),
        (lambda: isoflop_curve(TRUE, -1e18, [1e5, 1e6]), ValueError, r"flops must be finite and > 0"),
        (lambda: isoflop_curve(TRUE, 1e18, [1e5, 1e6], k=0), ValueError, r"k must be a finite number > 0"),
        (lambda: isoflop_curve(TRUE, 1e18, [1e5, 0.0]), ValueError, r"n_values must be > 0"),
        (lambda: chinchilla_tokens_per_parameter(0.0), ValueError, r"flops must be finite and > 0"),
    ],
)
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_bootstrap_joint_spreads_around_the_fit_and_is_seeded():
    rng = np.random.default_rng(3)
    losses = TRUE(GRID_N, GRID_D) * np.exp(rng.normal(0, 0.003, len(GRID_N)))
    fits, failed = bootstrap_joint(GRID_N, GRID_D, losses, n_resamples=12, seed=1)
    again, _ = bootstrap_joint(GRID_N, GRID_D, losses, n_resamples=12, seed=1)
    assert len(fits) + failed == 12 and len(fits) >= 10
    assert [f.alpha for f in fits] == [f.alpha for f in again]  # seeded: the same resamples
    predictions = np.array([f(2e6, 4e7) for f in fits])
    truth = TRUE(2e6, 4e7)
    assert predictions.std() > 0  # the resamples differ
    assert np.quantile(predictions, 0.05) * 0.98 < truth < np.quantile(predictions, 0.95) * 1.02
    with pytest.raises(ValueError, match="n_resamples must be an int >= 1"):
        bootstrap_joint(GRID_N, GRID_D, losses, n_resamples=0)
