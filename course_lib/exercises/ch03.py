"""Checkers for notebook 03 (attention).

Each `check_*` takes the learner's function, runs it against the course's reference on a few
cases, and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.attention import causal_mask, scaled_dot_product_attention
from course_lib.exercises import check_function, checker_hint, show_hint

__all__ = ["check_attention_weights", "check_causal_mask", "check_split_heads", "check_masked_attention",
           "check_alibi_bias", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "each query is scored against each key by a dot product, a (T_q, T_k) table; the scores are divided "
        "by the square root of d_k before the softmax, and the softmax runs over the keys, so each row sums "
        "to 1.",
        "matrix-multiply q by the transpose of k, scale by 1 over the square root of q's last dimension, then "
        "take the softmax along the last dimension.",
    ),
    2: (
        "the t_q queries are the LAST t_q positions: query i sits at absolute position i + (t_k - t_q) and "
        "sees every key up to and including that position. When t_q equals t_k this is the usual lower "
        "triangle.",
        "start from an all-True (t_q, t_k) bool matrix and keep its lower triangle, shifted right by t_k - "
        "t_q diagonals (the lower-triangle function takes a diagonal offset); the result must be torch.bool.",
    ),
    3: (
        "head h owns columns h*hs to (h+1)*hs - 1 of every position (hs is d_model / n_heads): first cut each "
        "position's vector into n_heads slices, then move the head axis in front of the time axis. Reshaping "
        "straight to (B, n_heads, T, hs) mixes positions up.",
        "reshape to (B, T, n_heads, hs), which keeps each position's slices together, then swap dimensions 1 "
        "and 2.",
    ),
    4: (
        "exercise 1 plus two things: a masked-out key must get weight exactly 0 after the softmax (which "
        "score has an exponential of 0?), and every transpose must act on the last two dimensions so batch "
        "dims work.",
        "scores: q times k transposed on its last two dims, over the square root of d_k; fill the scores "
        "where the mask is False with minus infinity; softmax over the last dim; multiply the weights by v.",
    ),
    5: (
        "ALiBi needs two things per head: a slope (head h, counted from 1, has 2 to the power minus 8h / n_heads, "
        "so the first head is the steepest) and the distance i - j from query i back to key j. The bias is minus "
        "slope times distance for keys at or before the query, and minus infinity for keys in the future.",
        "make the (t, t) table of distances by subtracting a row of key positions from a column of query "
        "positions; multiply it by the slopes shaped (n_heads, 1, 1) so they broadcast, negate it, then fill "
        "the entries with a negative distance (the future) with minus infinity. Keep the result floating point.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 5 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch03")


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _weights_reference(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return scaled_dot_product_attention(q, k, k, return_weights=True)[1]


def check_attention_weights(fn: Callable) -> bool | None:
    """Exercise 1: fn(q (T_q, d_k), k (T_k, d_k)) returns softmax(q k^T / sqrt(d_k)), shape (T_q, T_k)."""
    cases = [
        (torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])),
        (_randn(4, 8, seed=0), _randn(4, 8, seed=1)),
        (_randn(3, 64, seed=2), _randn(5, 64, seed=3)),
    ]
    return check_function(
        fn, _weights_reference, cases, name="attention weights", atol=1e-5, rtol=1e-4,
        hint=checker_hint(HINTS, 1, "ch03"),
    )


def check_causal_mask(fn: Callable) -> bool | None:
    """Exercise 2: fn(t_q, t_k) returns the bool (t_q, t_k) causal mask; queries are the LAST t_q positions."""
    cases = [(1, 1), (3, 3), (5, 5), (1, 4), (2, 5), (3, 7)]
    return check_function(
        fn, causal_mask, cases, name="causal mask with a cache",
        hint=checker_hint(HINTS, 2, "ch03"),
    )


def _split_heads_reference(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, d = x.shape
    return x.view(B, T, n_heads, d // n_heads).transpose(1, 2)


def check_split_heads(fn: Callable) -> bool | None:
    """Exercise 3: fn(x (B, T, d_model), n_heads) returns (B, n_heads, T, d_model // n_heads)."""
    cases = [
        (torch.arange(24.0).view(1, 2, 12), 3),
        (_randn(2, 5, 12, seed=4), 4),
        (_randn(3, 7, 16, seed=5), 1),
        (_randn(2, 3, 16, seed=6), 16),
    ]
    return check_function(
        fn, _split_heads_reference, cases, name="split heads",
        hint=checker_hint(HINTS, 3, "ch03"),
    )


def _masked_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return scaled_dot_product_attention(q, k, v, mask=mask)


def check_masked_attention(fn: Callable) -> bool | None:
    """Exercise 4: fn(q, k, v, mask) is attention with a bool mask (True = may attend), any batch dims."""
    pad = torch.tensor([[True, True, True, False, False]])  # (1, 5) broadcast over queries
    cases = [
        (_randn(5, 4, seed=7), _randn(5, 4, seed=8), _randn(5, 3, seed=9), causal_mask(5)),
        (_randn(5, 4, seed=10), _randn(5, 4, seed=11), _randn(5, 4, seed=12), pad),
        (_randn(2, 3, 6, 8, seed=13), _randn(2, 3, 6, 8, seed=14), _randn(2, 3, 6, 8, seed=15), causal_mask(6)),
    ]
    return check_function(
        fn, _masked_reference, cases, name="masked attention", atol=1e-5, rtol=1e-4,
        hint=checker_hint(HINTS, 4, "ch03"),
    )


def _alibi_reference(n_heads: int, t: int) -> torch.Tensor:
    """ALiBi bias (n_heads, t, t): -m_h * (i - j) for key j <= query i, -inf for j > i; m_h = 2^(-8h / n_heads), h = 1..n_heads.

    n_heads=2, t=3 -> slopes (1/16, 1/256); head 0: [[0, -inf, -inf], [-1/16, 0, -inf], [-2/16, -1/16, 0]].
    """
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, dtype=torch.float32) / n_heads)  # (nh,)
    pos = torch.arange(t)
    distance = pos[:, None] - pos[None, :]  # (t, t): i - j, negative for keys in the future
    bias = slopes[:, None, None] * -distance  # (nh, t, t): -m_h (i - j), 0 (not -0) on the diagonal
    return bias.masked_fill(distance < 0, float("-inf"))


def check_alibi_bias(fn: Callable) -> bool | None:
    """Exercise 5: fn(n_heads, t) returns the causal ALiBi bias (n_heads, t, t), added to the scores (n_heads a power of 2)."""
    cases = [(1, 1), (2, 3), (4, 4), (8, 5), (16, 3)]
    return check_function(
        fn, _alibi_reference, cases, name="ALiBi bias", atol=1e-6, rtol=1e-5,
        hint=checker_hint(HINTS, 5, "ch03"),
    )
