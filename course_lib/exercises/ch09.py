"""Checkers for notebook 09 (mixture of experts).

Each `check_*` takes the learner's function, runs it against `course_lib.moe` on a few cases and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.exercises import check_function
from course_lib.moe import expert_capacity, expert_choice_route, load_balancing_loss, token_choice_route

__all__ = ["check_top_k_gates", "check_capacity", "check_load_balancing_loss", "check_expert_choice"]


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
        hint="probs = logits.softmax(-1); vals, idx = probs.topk(k, dim=-1); vals = vals / vals.sum(-1, keepdim=True); "
        "then torch.zeros_like(probs).scatter(1, idx, vals).",
    )


def check_capacity(fn: Callable) -> bool | None:
    """Exercise 2: fn(n_tokens, n_experts, capacity_factor, k) -> tokens one expert may take (an int)."""
    cases = [(64, 4, 1.0, 1), (64, 4, 1.25, 2), (100, 8, 1.0, 2), (2048, 4, 2.0, 1), (10, 4, 1.0, 1)]
    return check_function(
        fn, expert_capacity, cases, name="expert capacity",
        hint="each of the n_tokens tokens makes k choices; shared by n_experts experts, times the factor; "
        "round UP with math.ceil and return an int.",
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
        hint="f = F.one_hot(expert_index, E).sum((0, 1)).float() / expert_index.numel(); P = probs.mean(0); "
        "return E * (f * P).sum().",
    )


def check_expert_choice(fn: Callable) -> bool | None:
    """Exercise 4: fn(logits (N, E), capacity) -> (N, E) combine weights of expert-choice routing."""
    cases = [(_logits(20, 6, 2), 3), (_logits(21, 16, 4), 4), (_logits(22, 12, 4), 12), (_logits(23, 9, 3), 1)]
    return check_function(
        fn, _ref_expert_choice, cases, name="expert choice", atol=1e-5, rtol=1e-5,
        hint="probs = logits.softmax(-1) (over experts, per token); g, idx = probs.t().topk(capacity, dim=-1) "
        "(each expert's best tokens); then torch.zeros_like(probs).scatter(0, idx.t(), g.t()).",
    )
