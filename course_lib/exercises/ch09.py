"""Checkers for notebook 09 (mixture of experts).

Each `check_*` takes the learner's function, runs it against `course_lib.moe` on a few cases and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.moe import expert_capacity, expert_choice_route, load_balancing_loss, token_choice_route

__all__ = ["check_top_k_gates", "check_capacity", "check_load_balancing_loss", "check_expert_choice", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "three steps per token: probabilities over the experts, keep only the k largest, rescale those k to "
        "sum to 1. Everything else in the (N, E) output is 0, and each kept value stays in its own expert's "
        "column.",
        "softmax over the last dim; topk along it gives values and indices; divide the values by their sum; "
        "write them into a zero (N, E) tensor at those indices (scatter along dim 1).",
    ),
    2: (
        "count the choices: n_tokens tokens make k choices each, spread over n_experts experts, times the "
        "capacity factor. An expert cannot take a fraction of a token, so round up.",
        "multiply the factor, n_tokens and k, divide by n_experts, take the ceiling (math.ceil) and give back "
        "an int.",
    ),
    3: (
        "f_e is the share of all N*k choices that went to expert e (counted choices, not probabilities); P_e "
        "is the router's mean probability for e over the tokens. The loss is E times the sum of f_e P_e: 1 "
        "when both are uniform.",
        "count each expert in expert_index (one-hot over E summed over both axes, or bincount) and divide by "
        "the number of entries; average probs over the tokens (dim 0); multiply elementwise, sum, times E.",
    ),
    4: (
        "turn the question around: the softmax is still over experts for each token, but now each EXPERT "
        "picks its capacity best tokens, looking down its column of the (N, E) probabilities. A token may be "
        "taken by several experts or by none.",
        "transpose the probabilities to (E, N), take topk of size capacity along the tokens, then write the "
        "chosen probabilities into a zero (N, E) tensor at their (token, expert) places: transpose indices "
        "and values back and scatter along dim 0.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 4 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch09")


def _logits(seed: int, n: int, e: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(n, e, generator=torch.Generator().manual_seed(seed)) * scale


def _ref_top_k_gates(logits: torch.Tensor, k: int) -> torch.Tensor:
    return token_choice_route(logits, k).combine


def _ref_expert_choice(logits: torch.Tensor, capacity: int) -> torch.Tensor:
    return expert_choice_route(logits, capacity).combine


def check_top_k_gates(fn: Callable) -> bool | None:
    """Exercise 1: fn(logits (N, E), k) -> (N, E) gates: softmax, keep the top k per token, renormalise."""
    cases = [
        (torch.tensor([[2.0, 1.0, 0.0, -1.0]]), 2),
        (_logits(0, 6, 4), 1),
        (_logits(1, 8, 4), 2),
        (_logits(2, 5, 8), 3),
    ]
    return check_function(
        fn, _ref_top_k_gates, cases, name="top-k gates", atol=1e-5, rtol=1e-5,
        hint=checker_hint(HINTS, 1, "ch09"),
    )


def check_capacity(fn: Callable) -> bool | None:
    """Exercise 2: fn(n_tokens, n_experts, capacity_factor, k) -> tokens one expert may take (an int)."""
    cases = [(64, 4, 1.0, 1), (64, 4, 1.25, 2), (100, 8, 1.0, 2), (2048, 4, 2.0, 1), (10, 4, 1.0, 1)]
    return check_function(
        fn, expert_capacity, cases, name="expert capacity",
        hint=checker_hint(HINTS, 2, "ch09"),
    )


def check_load_balancing_loss(fn: Callable) -> bool | None:
    """Exercise 3: fn(probs (N, E), expert_index (N, k)) -> E * sum_e f_e * P_e (a 0-d tensor)."""
    cases = []
    for seed, (n, e, k) in enumerate([(8, 2, 1), (32, 4, 2), (20, 8, 2)]):
        probs = _logits(10 + seed, n, e).softmax(-1)
        cases.append((probs, probs.topk(k, dim=-1).indices))
    uniform = torch.full((8, 4), 0.25)
    cases.append((uniform, torch.arange(8)[:, None] % 4))
    return check_function(
        fn, load_balancing_loss, cases, name="load-balancing loss", atol=1e-5, rtol=1e-5,
        hint=checker_hint(HINTS, 3, "ch09"),
    )


def check_expert_choice(fn: Callable) -> bool | None:
    """Exercise 4: fn(logits (N, E), capacity) -> (N, E) combine weights of expert-choice routing."""
    cases = [(_logits(20, 6, 2), 3), (_logits(21, 16, 4), 4), (_logits(22, 12, 4), 12), (_logits(23, 9, 3), 1)]
    return check_function(
        fn, _ref_expert_choice, cases, name="expert choice", atol=1e-5, rtol=1e-5,
        hint=checker_hint(HINTS, 4, "ch09"),
    )
