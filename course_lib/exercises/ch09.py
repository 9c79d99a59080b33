"""Checkers for notebook 09 (mixture of experts).

Each `check_*` takes the learner's function, runs it against `course_lib.moe` on a few cases and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.layers import FeedForward
from course_lib.moe import TokenChoiceMoE, expert_capacity, expert_choice_route, load_balancing_loss, token_choice_route

__all__ = [
    "check_top_k_gates",
    "check_capacity",
    "check_load_balancing_loss",
    "check_expert_choice",
    "check_moe_forward",
    "check_router_gradient",
    "hint",
    "HINTS",
]

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
    5: (
        "three stages: the router scores each token against each expert, the gates of exercise 1 say which k "
        "experts a token goes to and with what weight, and the output of a token is the gate-weighted sum of "
        "ITS experts' outputs. An expert runs only on the tokens that chose it.",
        "the logits are x times the transposed router weight, shape (N, E); turn them into top-k gates as in "
        "exercise 1. Start from a zero (N, d) output; for each expert, find the rows where its gate is above "
        "0, run the expert on those rows only, multiply by their gates (one column, kept as (n, 1)) and add "
        "the result into those rows (index_add, or indexing on the left of an assignment).",
    ),
    6: (
        "the router is trained only through the gates: the loss reaches a logit through the gate values it "
        "changes. Ask what the gates of one token add up to, and what happens to a single gate that is "
        "renormalised by itself.",
        "make a copy of the logits that requires grad, build the combine weights with token_choice_route "
        "(or your gates of exercise 1, with and without the renormalisation), multiply them by the scores, "
        "sum to one number and ask torch.autograd.grad for the gradient with respect to that copy.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 6 up to `level` (1: what to think about, 2: the method), printed and returned."""
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


# ----------------------------------------------------------------------------- exercise 5: a whole MoE layer
def _moe_layer(router_weight: torch.Tensor, experts: Sequence[nn.Module], k: int) -> TokenChoiceMoE:
    """course_lib.moe's TokenChoiceMoE (no capacity, renormalised gates) holding these router and expert weights."""
    E, d = router_weight.shape
    layer = TokenChoiceMoE(d, experts[0].d_ff, n_experts=E, k=k, capacity_factor=None, activation=experts[0].activation)
    with torch.no_grad():
        layer.router.weight.copy_(router_weight)
        for mine, theirs in zip(layer.experts, experts):
            mine.load_state_dict(theirs.state_dict())
    return layer.eval()


def _ref_moe_forward(x: torch.Tensor, router_weight: torch.Tensor, experts: Sequence[nn.Module], k: int) -> torch.Tensor:
    with torch.no_grad():
        return _moe_layer(router_weight, experts, k)(x)


class _Experts(list):
    """The experts of a case, printed short: `[4 experts FeedForward(8 -> 16 -> 8)]`."""

    def __repr__(self) -> str:
        e = self[0]
        return f"[{len(self)} experts FeedForward({e.d_model} -> {e.d_ff} -> {e.d_model}, {e.activation})]"


def moe_case(seed: int, n_tokens: int, d_model: int, n_experts: int, k: int, d_ff: int = 16,
             activation: str = "gelu") -> tuple[torch.Tensor, torch.Tensor, list, int]:
    """A seeded case for exercise 5: (x (N, d), router_weight (E, d), experts (E FeedForwards), k)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    experts = _Experts(FeedForward(d_model, d_ff, activation, 0.0).eval() for _ in range(n_experts))
    x = torch.randn(n_tokens, d_model, generator=g)
    router_weight = torch.randn(n_experts, d_model, generator=g) * 0.5
    return x, router_weight, experts, k


def check_moe_forward(fn: Callable) -> bool | None:
    """Exercise 5: fn(x (N, d), router_weight (E, d), experts (E modules), k) -> (N, d), a top-k token-choice MoE layer.

    Compared with `course_lib.moe.TokenChoiceMoE` (renormalised gates, no capacity: nothing dropped) holding
    the same router and expert weights.
    """
    cases = [
        moe_case(0, 6, 8, 4, 2),
        moe_case(1, 10, 8, 4, 1),
        moe_case(2, 12, 12, 8, 3, activation="relu"),
        moe_case(3, 9, 8, 3, 3),  # every expert for every token
    ]
    return check_function(
        fn, _ref_moe_forward, cases, name="MoE forward", atol=1e-5, rtol=1e-4,
        hint=checker_hint(HINTS, 5, "ch09"),
    )


# ----------------------------------------------------------------------------- exercise 6: what trains the router
def _ref_router_gradient(logits: torch.Tensor, scores: torch.Tensor, k: int, normalize: bool) -> torch.Tensor:
    leaf = logits.detach().clone().requires_grad_(True)
    combine = token_choice_route(leaf, k, normalize=normalize).combine  # (N, E)
    (grad,) = torch.autograd.grad((combine * scores).sum(), leaf)
    return grad


def check_router_gradient(fn: Callable) -> bool | None:
    """Exercise 6: fn(logits (N, E), scores (N, E), k, normalize) -> (N, E) gradient of sum(gates * scores) w.r.t. the logits.

    `scores` stands for what the loss gains per unit of gate (how useful expert e's output is to token n);
    the gates are token choice's combine weights, renormalised or not. With k=1 and renormalised gates the
    answer is zero up to rounding (p / p): the LM loss cannot teach the router.
    """
    cases = []
    for seed, (n, e, k, normalize) in enumerate([(6, 4, 1, True), (6, 4, 1, False), (8, 4, 2, True), (8, 4, 2, False),
                                                 (5, 8, 3, True)]):
        cases.append((_logits(30 + seed, n, e), _logits(40 + seed, n, e, scale=1.0), k, normalize))
    return check_function(
        fn, _ref_router_gradient, cases, name="router gradient", atol=1e-6, rtol=1e-4,
        hint=checker_hint(HINTS, 6, "ch09"),
    )
