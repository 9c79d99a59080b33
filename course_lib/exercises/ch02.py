"""Checkers for notebook 02 (embeddings and positions).

Each `check_*` takes the learner's function, runs it against the course's reference on a few
cases, and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.embeddings import cosine_similarity_matrix, one_hot_embed, sinusoidal_positions
from course_lib.exercises import check_function, checker_hint, show_hint

__all__ = ["check_one_hot_lookup", "check_sinusoidal", "check_cosine_matrix", "check_rope_2d", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "a one-hot vector for id i, multiplied by the weight matrix, picks row i. The shape goes from "
        "ids.shape to ids.shape + (V,), then to ids.shape + (d,). Watch the dtype: one-hot vectors come out "
        "as integers.",
        "make one-hot vectors with as many classes as weight has rows, convert them to weight's float dtype, "
        "then matrix-multiply them by weight (the product acts on the last dimension, so any shape of ids "
        "works).",
    ),
    2: (
        "columns come in pairs that share one frequency: pair i (columns 2i and 2i + 1) uses the angle "
        "position / 10000^(2i / d_model); the even column holds its sine, the odd column its cosine.",
        "build a column of positions and a row of the d_model / 2 frequencies, multiply them with "
        "broadcasting to get every angle at once, then fill the even columns of an empty (n_positions, "
        "d_model) table with the sines and the odd columns with the cosines.",
    ),
    3: (
        "cosine similarity is a dot product divided by both lengths. If every row already had length 1, all N "
        "x M cosines would be a single matrix product.",
        "divide each row of a and of b by its own norm (over the last dim, keeping that dim so it "
        "broadcasts), then multiply a's unit rows by the transpose of b's unit rows: (N, d) times (d, M).",
    ),
    4: (
        "rotating a 2-D vector by an angle mixes its two coordinates with the cosine and the sine of that "
        "angle; here the angle is position times theta, and the vector's length must not change.",
        "the new x is x cos a minus y sin a, the new y is x sin a plus y cos a; stack the two numbers into a "
        "tensor of shape (2,) with v's dtype.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 4 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch02")


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
        hint=checker_hint(HINTS, 1, "ch02"),
    )


def check_sinusoidal(fn: Callable) -> bool | None:
    """Exercise 2: fn(n_positions, d_model) returns the (n_positions, d_model) sine/cosine table."""
    cases = [(1, 2), (2, 4), (10, 8), (50, 32)]
    return check_function(
        fn, sinusoidal_positions, cases, name="sinusoidal positions", atol=1e-4, rtol=1e-4,
        hint=checker_hint(HINTS, 2, "ch02"),
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
        hint=checker_hint(HINTS, 3, "ch02"),
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
        hint=checker_hint(HINTS, 4, "ch02"),
    )
