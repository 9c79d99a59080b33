"""Fits of scaling laws: how the loss falls with model size N, data D and compute C, in numpy alone.

What is here:
- `PowerLaw` / `fit_power_law`: y = e + a * x^-alpha. Without an offset (e = 0) a straight line in
  log-log space, solved in closed form; with an offset, a search over e around that closed form.
- `JointFit` / `fit_joint`: L(N, D) = E + A / N^alpha + B / D^beta, fitted like Hoffmann et al.
  (2022, "Chinchilla", approach 3): Huber loss on log L, a grid of starts, Levenberg-Marquardt.
- `compute_optimal`: the (N, D) that a fitted law says to pick for a compute budget C = k * N * D.
- `isoflop_curve`: the predicted loss along one compute budget as N varies.
- `KAPLAN_2020`, `CHINCHILLA_2022`: published constants; `chinchilla_tokens_per_parameter`.
- `FitError`: a fit that did not converge.

Leaves out: error bars on the fitted parameters (bootstrap the points for those), Kaplan's L(N, D) form,
learning-rate schedules and anything about how the points were trained. No scipy. See notebook 12.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PowerLaw",
    "JointFit",
    "FitError",
    "fit_power_law",
    "fit_joint",
    "compute_optimal",
    "isoflop_curve",
    "chinchilla_tokens_per_parameter",
    "bootstrap_joint",
    "KAPLAN_2020",
    "CHINCHILLA_2022",
]

# Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361), section 1.2 and Table 5:
# L(N) = (N_c / N)^alpha_N for N non-embedding parameters, L(D) = (D_c / D)^alpha_D for D tokens,
# L(C_min) = (C_c_min / C_min)^alpha_C_min for compute in PF-days (loss in nats per token on WebText2).
KAPLAN_2020: dict[str, float] = {
    "alpha_N": 0.076,
    "N_c": 8.8e13,  # non-embedding parameters
    "alpha_D": 0.095,
    "D_c": 5.4e13,  # tokens
    "alpha_C_min": 0.050,
    "C_c_min": 3.1e8,  # PF-days (1 PF-day = 8.64e19 FLOPs)
}

# Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (arXiv:2203.15556), section 3.3
# (approach 3, equation 10): L(N, D) = E + A / N^alpha + B / D^beta, fitted with a Huber loss (delta = 1e-3)
# on log L. The rounded published values; keys match `JointFit`, so `JointFit(**CHINCHILLA_2022)` works.
CHINCHILLA_2022: dict[str, float] = {
    "E": 1.69,
    "A": 406.4,
    "alpha": 0.34,
    "B": 410.7,
    "beta": 0.28,
}


class FitError(RuntimeError):
    """A fit that did not converge (iteration limit hit, or the parameters ran off to inf/nan).

    `.fit` holds the unconverged best guess (a `JointFit`, its `.residual` the one in the message), or None.
    """

    def __init__(self, message: str, fit: JointFit | None = None) -> None:
        super().__init__(message)
        self.fit = fit


# ---------------------------------------------------------------------------------------------
# Input checks


def _positive_1d(name: str, values: Any) -> np.ndarray:
    """`values` as a 1-D float array of finite numbers > 0, or a clear TypeError/ValueError."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be numbers (a list or an array), got {type(values).__name__}: {values!r}")
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers (a list or an array), got {type(values).__name__}: {values!r}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per point), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers, got NaN or inf at positions {np.flatnonzero(~np.isfinite(array)).tolist()}")
    if np.any(array <= 0):
        raise ValueError(f"{name} must be > 0 (the fit works in log space), got {array[array <= 0][:5].tolist()}")
    return array


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"expected one value per point in each of {', '.join(lengths)}, got different lengths: {listed}")
    return next(iter(lengths.values()))


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _positive_flops(flops: Any) -> np.ndarray:
    """`flops` (a number or an array) as a float array of finite values > 0."""
    try:
        array = np.asarray(flops, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"flops must be a number or an array of numbers, got {type(flops).__name__}: {flops!r}") from None
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"flops must be finite and > 0, got {flops!r}")
    return array


# ---------------------------------------------------------------------------------------------
# One variable: y = e + a * x^-alpha


@dataclass(frozen=True)
class PowerLaw:
    """y = e + a * x^-alpha, with the quality of its fit. See notebook 12.

    PowerLaw(a=10.0, alpha=0.5)(100.0) -> 1.0; PowerLaw(a=10.0, alpha=0.5, e=2.0)(100.0) -> 3.0
    """

    a: float  # scale: the value of y - e at x = 1
    alpha: float  # exponent: y - e falls by 10^alpha each time x grows 10 times
    e: float = 0.0  # irreducible offset: the value y approaches as x -> inf
    residual: float = float("nan")  # root-mean-square of log(y) - log(fit) over the points; NaN = not fitted here
    n_points: int = 0  # number of points fitted; 0 = not fitted here (e.g. published constants)

    def __call__(self, x: Any) -> Any:
        """The law at x (a float or an array of any shape)."""
        x = np.asarray(x, dtype=float) if not isinstance(x, numbers.Real) else float(x)
        return self.e + self.a * x ** (-self.alpha)

    def __str__(self) -> str:
        offset = f"{self.e:.3g} + " if self.e != 0 else ""
        return (f"L = {offset}{self.a:.2g} · x^{-self.alpha:.3g} "
                f"(rms log residual {self.residual:.2g}, {self.n_points} points)")


def _line_fit(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """Least squares ly ≈ c + s * lx via the normal equations (centred): returns (c, s).

    lx=[0, 1, 2], ly=[1, 3, 5] -> (1.0, 2.0)
    """
    mx, my = lx.mean(), ly.mean()
    dx = lx - mx
    s = float(np.dot(dx, ly - my) / np.dot(dx, dx))  # slope = cov(lx, ly) / var(lx)
    return float(my - s * mx), s


def _rms_log_residual(x: np.ndarray, y: np.ndarray, a: float, alpha: float, e: float) -> float:
    predicted = e + a * x ** (-alpha)
    if np.any(predicted <= 0):
        return float("inf")
    return float(np.sqrt(np.mean((np.log(y) - np.log(predicted)) ** 2)))


def _fit_given_offset(x: np.ndarray, y: np.ndarray, e: float) -> tuple[float, float, float]:
    """For a fixed offset e: the closed-form line fit of log(y - e) on log x -> (a, alpha, rms log y residual)."""
    c, s = _line_fit(np.log(x), np.log(y - e))
    a, alpha = math.exp(c), -s
    return a, alpha, _rms_log_residual(x, y, a, alpha, e)


def fit_power_law(x: Any, y: Any, offset: bool = False) -> PowerLaw:
    """Fit y = e + a * x^-alpha to points (x, y), all > 0. See notebook 12.

    offset=False (e = 0): least squares of log y = log a - alpha * log x, in closed form; >= 2 points.
    offset=True: 0 <= e < min(y). For one candidate e the rest is that closed-form fit on log(y - e);
    e is chosen on a coarse grid, then refined by golden-section search, to minimise the rms residual
    in log y; >= 3 points.

    x=[1, 10, 100], y=[10, 1, 0.1] -> PowerLaw(a=10.0, alpha=1.0, e=0.0, residual=0.0, n_points=3)
    """
    x, y = _positive_1d("x", x), _positive_1d("y", y)
    n = _same_length(x=x, y=y)
    needed = 3 if offset else 2
    if n < needed:
        kind = "with an offset fits 3 parameters (e, a, alpha)" if offset else "fits 2 parameters (a, alpha)"
        raise ValueError(f"fit_power_law {kind}: it needs at least {needed} points, got {n}")
    if np.ptp(np.log(x)) == 0:
        raise ValueError(f"x must take at least 2 different values to fit an exponent, got all x = {float(x[0])}")
    if not offset:
        a, alpha, residual = _fit_given_offset(x, y, 0.0)
        return PowerLaw(a=a, alpha=alpha, e=0.0, residual=residual, n_points=n)

    y_min = float(y.min())
    if np.ptp(y) == 0:
        raise ValueError(f"an offset fit needs y that change with x, got all y equal to {y_min!r}")

    def score(u: float) -> float:  # u = e / min(y), in [0, 1)
        return _fit_given_offset(x, y, u * y_min)[2]

    # Coarse grid of u = e / min(y): even steps, then steps that crowd towards 1 (a law that flattens out).
    grid = np.unique(np.concatenate([np.linspace(0.0, 0.99, 100), 1.0 - np.logspace(-2, -9, 71)]))
    scores = np.array([score(u) for u in grid])
    best = int(np.argmin(scores))
    lo = grid[max(best - 1, 0)]
    hi = grid[best + 1] if best + 1 < len(grid) else 1.0 - 1e-12

    # Golden-section refinement of the bracket [lo, hi] around the best grid point.
    ratio = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
    u1, u2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    s1, s2 = score(u1), score(u2)
    for _ in range(200):
        if hi - lo <= 1e-14:
            break
        if s1 <= s2:
            hi, u2, s2 = u2, u1, s1
            u1 = hi - ratio * (hi - lo)
            s1 = score(u1)
        else:
            lo, u1, s1 = u1, u2, s2
            u2 = lo + ratio * (hi - lo)
            s2 = score(u2)
    candidates = [(scores[best], grid[best]), (s1, u1), (s2, u2)]
    u = min(candidates)[1]
    a, alpha, residual = _fit_given_offset(x, y, u * y_min)
    return PowerLaw(a=a, alpha=alpha, e=float(u * y_min), residual=residual, n_points=n)


# ---------------------------------------------------------------------------------------------
# Two variables: L(N, D) = E + A / N^alpha + B / D^beta


@dataclass(frozen=True)
class JointFit:
    """L(N, D) = E + A / N^alpha + B / D^beta, with the quality of its fit. See notebook 12.

    JointFit(**CHINCHILLA_2022)(70e9, 1.4e12) -> 1.94 (the loss that fit predicts for Chinchilla itself)
    """

    E: float  # irreducible loss: what an infinite model trained on infinite data would reach
    A: float  # size term: a model of N parameters adds A / N^alpha
    alpha: float
    B: float  # data term: training on D tokens adds B / D^beta
    beta: float
    residual: float = float("nan")  # root-mean-square of log(L) - log(fit) over the points; NaN = not fitted here
    n_points: int = 0  # number of points fitted; 0 = not fitted here (e.g. published constants)

    def __call__(self, N: Any, D: Any) -> Any:
        """The predicted loss at N parameters and D tokens (floats or arrays that broadcast)."""
        N = np.asarray(N, dtype=float) if not isinstance(N, numbers.Real) else float(N)
        D = np.asarray(D, dtype=float) if not isinstance(D, numbers.Real) else float(D)
        return self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)

    def __str__(self) -> str:
        return (f"L(N, D) = {self.E:.3g} + {self.A:.3g} / N^{self.alpha:.3g} + {self.B:.3g} / D^{self.beta:.3g} "
                f"(rms log residual {self.residual:.2g}, {self.n_points} points)")


def _joint_log_prediction(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log L-hat and its Jacobian for parameters theta = (e, a, alpha, b, beta) of S starts.

    theta (S, 5), log_n and log_d (n,) -> log L-hat (S, n), Jacobian (S, n, 5).
    log L-hat = logsumexp(e, a - alpha log N, b - beta log D), i.e. L-hat = E + A / N^alpha + B / D^beta.
    """
    e, a, alpha, b, beta = (theta[:, i : i + 1] for i in range(5))  # each (S, 1)
    z = np.stack([np.broadcast_to(e, (len(theta), len(log_n))), a - alpha * log_n, b - beta * log_d], axis=-1)  # (S, n, 3)
    top = z.max(axis=-1, keepdims=True)
    weights = np.exp(z - top)  # (S, n, 3)
    total = weights.sum(axis=-1, keepdims=True)
    log_pred = (top + np.log(total))[..., 0]  # (S, n)
    p = weights / total  # softmax: d log L-hat / d z
    jac = np.stack([p[..., 0], p[..., 1], -p[..., 1] * log_n, p[..., 2], -p[..., 2] * log_d], axis=-1)  # (S, n, 5)
    return log_pred, jac


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Mean Huber loss over the last axis, divided by delta: ~ mean r^2 / (2 delta) small, ~ mean |r| large."""
    small = np.abs(r) <= delta
    rho = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return rho.mean(axis=-1) / delta


# A small grid of starts like the paper's (which used e in {-1, -.5, ..., 1}, alpha and beta in {0, .5, ..., 2},
# a and b in {0, 5, ..., 25}): every start runs, the lowest loss wins.
_JOINT_STARTS = np.array(
    [
        (e, a, alpha, b, beta)
        for e in (-1.0, 0.0, 1.0)
        for alpha in (0.25, 0.5, 1.0)
        for beta in (0.25, 0.5, 1.0)
        for a in (0.0, 5.0, 10.0, 15.0, 20.0)
        for b in (0.0, 5.0, 10.0, 15.0, 20.0)
    ]
)  # (675, 5)
_PRUNE_AFTER, _KEEP_STARTS = 20, 16  # after 20 steps, only the 16 starts with the lowest loss go on
_STALL_STEPS = 30  # a loss that has not fallen over this many steps has converged (see fit_joint)


def fit_joint(
    N: Any,
    D: Any,
    L: Any,
    *,
    delta: float = 1e-3,
    max_iter: int = 1000,
    gtol: float = 1e-7,
) -> JointFit:
    """Fit L(N, D) = E + A / N^alpha + B / D^beta to points (N, D, L), like Chinchilla's approach 3. See notebook 12.

    Minimises the mean Huber loss (threshold `delta`, in log units) of log L-hat - log L over the parameters
    (e, a, alpha, b, beta) with E = exp(e), A = exp(a), B = exp(b), by Levenberg-Marquardt with an analytic
    Jacobian (Huber handled by reweighting), from each start of a small grid (675 starts; after 20 steps the
    16 lowest go on); the lowest loss wins. Needs more points than the 5 parameters (at least 6).
    Raises FitError when the winning start did not converge: the largest gradient component of the mean
    Huber loss / delta still above `gtol` and the loss still falling after `max_iter` steps, parameters that
    ran off (|.| > 700), or exponents alpha or beta <= 0 (a loss that does not fall with N or D).
    """
    N, D, L = _positive_1d("N", N), _positive_1d("D", D), _positive_1d("L", L)
    n = _same_length(N=N, D=D, L=L)
    if n < 6:
        raise ValueError(f"fit_joint fits 5 parameters (E, A, alpha, B, beta): it needs more points than that "
                         f"(at least 6), got {n}")
    for name, values in (("N", N), ("D", D)):
        if np.ptp(values) == 0:
            raise ValueError(f"{name} must take at least 2 different values to fit its exponent, got all {name} = {float(values[0])}")
    delta = _positive_number("delta", delta)
    gtol = _positive_number("gtol", gtol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")

    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)
    theta = _JOINT_STARTS.copy()  # (S, 5)
    starts = len(theta)
    damping = np.full(starts, 1e-3)  # Levenberg-Marquardt lambda, one per start
    loss = _huber(_joint_log_prediction(theta, log_n, log_d)[0] - log_l, delta)  # (S,)
    active = np.ones(starts, dtype=bool)  # still iterating
    converged = np.zeros(starts, dtype=bool)
    grad_norm = np.full(starts, np.inf)
    eye = np.eye(5)

    history = [loss.copy()]  # the loss of every start after each step, to see whether the best one stalled
    for step_number in range(max_iter):
        if step_number:
            history.append(loss.copy())
        if step_number == _PRUNE_AFTER:  # keep only the most promising starts (their losses only go down)
            active[np.argsort(loss)[_KEEP_STARTS:]] = False
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        log_pred, jac = _joint_log_prediction(theta[idx], log_n, log_d)
        r = log_pred - log_l  # (s, n)
        w = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))  # Huber as reweighted least squares
        grad = np.einsum("sni,sn->si", jac, w * r) / (n * delta)  # exact gradient of the mean Huber / delta
        # Curvature: Gauss-Newton on the points inside the quadratic zone of Huber (|r| <= delta; the points
        # outside add none), and the reweighted least-squares curvature (weight delta / |r|) to scale the damping.
        inside = (w >= 1.0).astype(float)
        hess = np.einsum("sni,sn,snj->sij", jac, inside, jac) / (n * delta)
        hess_irls = np.einsum("sni,sn,snj->sij", jac, w, jac) / (n * delta)
        grad_norm[idx] = np.abs(grad).max(axis=1)
        done = grad_norm[idx] <= gtol
        converged[idx[done]] = True
        active[idx[done]] = False
        keep = ~done
        idx, grad, hess, hess_irls = idx[keep], grad[keep], hess[keep], hess_irls[keep]
        if len(idx) == 0:
            break

        # Marquardt step: (H + lambda * diag(H_irls)) step = -g; the floor keeps it solvable when a term vanishes.
        scale = np.maximum(np.einsum("sii->si", hess_irls), 1e-12 * np.einsum("sii->s", hess_irls)[:, None] + 1e-30)
        system = hess + damping[idx, None, None] * scale[:, :, None] * eye
        step = np.linalg.solve(system, -grad[:, :, None])[..., 0]  # (s, 5)
        trial = theta[idx] + step
        trial_loss = _huber(_joint_log_prediction(trial, log_n, log_d)[0] - log_l, delta)
        better = np.isfinite(trial_loss) & (trial_loss < loss[idx])

        good = idx[better]
        # A step that no longer changes the parameters or the loss: stop there (judged on the gradient below).
        tiny = (np.abs(step[better]).max(axis=1) <= 1e-12 * (1.0 + np.abs(theta[good]).max(axis=1))) | (
            loss[good] - trial_loss[better] <= 1e-15 * loss[good]
        )
        theta[good], loss[good] = trial[better], trial_loss[better]
        damping[good] = np.maximum(damping[good] / 3.0, 1e-12)
        active[good[tiny]] = False
        bad = idx[~better]
        damping[bad] *= 4.0
        active[bad[damping[bad] > 1e12]] = False  # no step helps any more: stop there

    # Starts that stopped on a tiny step or a huge damping (among the kept ones): converged if their gradient
    # is small at the end, with 1000x slack since no step could reduce the loss any further.
    stopped = ~active & ~converged & (loss <= np.sort(loss)[min(_KEEP_STARTS, starts) - 1])
    if stopped.any():
        log_pred, jac = _joint_log_prediction(theta[stopped], log_n, log_d)
        r = log_pred - log_l
        w = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        grad_norm[stopped] = np.abs(np.einsum("sni,sn->si", jac, w * r) / (n * delta)).max(axis=1)
        converged[stopped] = grad_norm[stopped] <= 1e3 * gtol

    loss = np.where(np.isfinite(loss), loss, np.inf)
    best = int(np.argmin(loss))
    # Huber with a small delta is nearly an absolute-value loss: close to its minimum the gradient can stay
    # well above gtol while no step lowers the loss any more. A best start whose loss has stopped falling
    # over the last _STALL_STEPS steps (by less than 1e-10 of itself) is at its minimum too.
    history.append(loss.copy())
    if not converged[best] and len(history) > _STALL_STEPS:
        converged[best] = history[-1 - _STALL_STEPS][best] - loss[best] <= 1e-10 * loss[best]
    e, a, alpha, b, beta = theta[best]
    log_pred = _joint_log_prediction(theta[best : best + 1], log_n, log_d)[0][0]
    residual = float(np.sqrt(np.mean((log_pred - log_l) ** 2)))
    ran_off = not np.all(np.isfinite(theta[best])) or np.abs(theta[best]).max() > 700.0  # exp(709) is float's limit
    with np.errstate(over="ignore"):  # a parameter that ran off gives inf here, reported below
        fit = JointFit(E=float(np.exp(e)), A=float(np.exp(a)), alpha=float(alpha), B=float(np.exp(b)),
                       beta=float(beta), residual=residual, n_points=n)
    falls = alpha > 0 and beta > 0  # a scaling law: the loss falls as N and D grow
    if ran_off or not converged[best] or not falls:
        why = ": its parameters ran off" if ran_off else (
            f": the gradient is still {grad_norm[best]:.2g} > gtol = {gtol:.2g} after max_iter = {max_iter} steps"
            if not converged[best] else
            f" to a law that falls: the best fit has alpha = {alpha:.3g} and beta = {beta:.3g}, and both must be > 0")
        raise FitError(f"fit_joint did not converge{why}; the best start has rms log residual {residual:.3g} "
                       f"(e={e:.3g}, a={a:.3g}, alpha={alpha:.3g}, b={b:.3g}, beta={beta:.3g}). Try more points, "
                       f"a larger max_iter, or check that L falls with N and D.", fit=fit)
    return fit


# ---------------------------------------------------------------------------------------------
# What a fit says about compute


def compute_optimal(fit: JointFit, flops: Any, k: float = 6.0) -> tuple[Any, Any]:
    """(N_opt, D_opt) minimising fit(N, D) under k * N * D = flops (scalars, or arrays for an array of flops).

    Closed form: N_opt = G * (C / k)^(beta / (alpha + beta)), G = (alpha A / (beta B))^(1 / (alpha + beta)),
    D_opt = (C / k) / N_opt. k = 6 FLOPs per parameter per token (forward + backward). See notebook 12.
    """
    if not isinstance(fit, JointFit):
        raise TypeError(f"fit must be a JointFit, got {type(fit).__name__}")
    if not (fit.alpha > 0 and fit.beta > 0 and fit.A > 0 and fit.B > 0):
        raise ValueError(f"compute_optimal needs alpha, beta, A, B > 0 (a loss that falls with N and D), got {fit}")
    k = _positive_number("k", k)
    budget = _positive_flops(flops) / k  # N * D
    g = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / (fit.alpha + fit.beta))
    n_opt = g * budget ** (fit.beta / (fit.alpha + fit.beta))
    d_opt = budget / n_opt
    if n_opt.ndim == 0:
        return float(n_opt), float(d_opt)
    return n_opt, d_opt


def isoflop_curve(fit: JointFit, flops: Any, n_values: Any, k: float = 6.0) -> np.ndarray:
    """Predicted loss at N = n_values with D = flops / (k * N): one compute budget, many model sizes. See notebook 12.

    n_values (m,) -> losses (m,); flops a number (or an array that broadcasts with n_values).
    """
    if not isinstance(fit, JointFit):
        raise TypeError(f"fit must be a JointFit, got {type(fit).__name__}")
    k = _positive_number("k", k)
    budget = _positive_flops(flops)
    n_values = _positive_1d("n_values", n_values if isinstance(n_values, (str, bytes)) else np.atleast_1d(n_values))
    return np.asarray(fit(n_values, budget / (k * n_values)))


def bootstrap_joint(N: Any, D: Any, L: Any, n_resamples: int = 100, seed: int = 0, **fit_options: Any) -> tuple[list[JointFit], int]:
    """Refit the joint law on `n_resamples` resamples of the points (drawn with replacement, seeded):
    the spread of what the fits predict is how uncertain a prediction is. Returns (the fits, how many
    resamples failed to fit: FitError, or fewer than 6 distinct points). See notebook 12.
    """
    N, D, L = _positive_1d("N", N), _positive_1d("D", D), _positive_1d("L", L)
    n = _same_length(N=N, D=D, L=L)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    fits, failed = [], 0
    for _ in range(n_resamples):
        pick = rng.integers(0, n, n)
        if len(np.unique(pick)) < 6:
            failed += 1
            continue
        try:
            fits.append(fit_joint(N[pick], D[pick], L[pick], **fit_options))
        except (FitError, ValueError):  # e.g. a resample with one value of N: no exponent to fit
            failed += 1
    return fits, failed


def chinchilla_tokens_per_parameter(flops: Any = 5.76e23, k: float = 6.0) -> Any:
    """D_opt / N_opt of CHINCHILLA_2022's fit (approach 3) at a compute budget; default: Chinchilla's 5.76e23 FLOPs.

    It is not a constant: with alpha = 0.34 > beta = 0.28, D_opt / N_opt grows as C^((alpha - beta) / (alpha + beta));
    at 5.76e23 FLOPs the rounded published constants give about 93 tokens per parameter (about 40 at 1e20).
    The rule of thumb "about 20 tokens per parameter" comes from the paper's approaches 1 and 2 (Chinchilla:
    70e9 parameters, 1.4e12 tokens), whose N_opt and D_opt both grow close to C^0.5. See notebook 12.
    """
    n_opt, d_opt = compute_optimal(JointFit(**CHINCHILLA_2022), flops, k=k)
    return d_opt / n_opt
