"""Checkers for notebook 02 (embeddings and positions).

Each `check_*` takes the learner's function, runs it against the course's reference on a few
cases, and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.embeddings import cosine_similarity_matrix, one_hot_embed, sinusoidal_positions
from course_lib.exercises import check_function

__all__ = ["check_one_hot_lookup", "check_sinusoidal", "check_cosine_matrix", "check_rope_2d"]


def _weights(v: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(v, d, generator=torch.Generator().manual_seed(seed))


def check_one_hot_lookup(fn: Callable) -> bool | None:
    """Exercise 1: fn(ids, weight) returns one_hot(ids) @ weight, shape (..., d)."""
    cases = [
        (torch.tensor([2, 0, 1]), _weights(3, 4, 0)),
        (torch.tensor([[5, 5], [0, 9]]), _weights(10, 3, 1)),
        (torch.tensor([7]), _weights(8, 1, 2)),
    ]
    return check_function(
        fn, one_hot_embed, cases, name="one-hot lookup", atol=1e-5, rtol=1e-5,
        hint="torch.nn.functional.one_hot(ids, num_classes=weight.shape[0]) gives integers: "
        "convert with .float() (or .to(weight.dtype)) before the @ with weight.",
    )


def check_sinusoidal(fn: Callable) -> bool | None:
    """Exercise 2: fn(n_positions, d_model) returns the (n_positions, d_model) sine/cosine table."""
    cases = [(1, 2), (2, 4), (10, 8), (50, 32)]
    return check_function(
        fn, sinusoidal_positions, cases, name="sinusoidal positions", atol=1e-4, rtol=1e-4,
        hint="angle[pos, i] = pos / 10000 ** (2*i / d_model) for i in range(d_model // 2); "
        "even columns pe[:, 0::2] get sin(angle), odd columns pe[:, 1::2] get cos(angle).",
    )


def check_cosine_matrix(fn: Callable) -> bool | None:
    """Exercise 3: fn(a (N, d), b (M, d)) returns the (N, M) matrix of cosine similarities."""
    g = torch.Generator().manual_seed(3)
    cases = [
        (torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [3.0, 0.0], [-1.0, -1.0]])),
        (torch.randn(4, 6, generator=g), torch.randn(5, 6, generator=g)),
        (torch.randn(3, 384, generator=g), torch.randn(3, 384, generator=g)),
    ]
    return check_function(
        fn, cosine_similarity_matrix, cases, name="cosine similarity matrix", atol=1e-5, rtol=1e-4,
        hint="divide every row by its length (a / a.norm(dim=-1, keepdim=True)), same for b, then a_unit @ b_unit.T.",
    )


def _rope_2d_reference(v: torch.Tensor, position: int, theta: float) -> torch.Tensor:
    angle = torch.tensor(position * theta, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    x, y = v.double()
    return torch.stack([x * c - y * s, x * s + y * c]).to(v.dtype)


def check_rope_2d(fn: Callable) -> bool | None:
    """Exercise 4: fn(v (2,), position, theta) rotates the 2-D vector v by the angle position * theta."""
    cases = [
        (torch.tensor([1.0, 0.0]), 0, 0.5),
        (torch.tensor([1.0, 0.0]), 1, torch.pi / 2),
        (torch.tensor([0.3, -2.0]), 7, 0.1),
        (torch.tensor([2.0, 1.0]), 100, 1e-2),
    ]
    return check_function(
        fn, _rope_2d_reference, cases, name="RoPE in 2-D", atol=1e-5, rtol=1e-5,
        hint="(x, y) -> (x cos a - y sin a, x sin a + y cos a) with a = position * theta; "
        "use math.cos / math.sin or torch.cos on a tensor, and return a tensor of shape (2,).",
    )
