"""Checkers for notebook 06 (causal language modelling).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are the library's own pieces
(`course_lib.generation.top_k_filter` / `top_p_filter`, `course_lib.metrics.perplexity`) and
PyTorch (`torch.tril`, `torch.softmax`, `F.cross_entropy`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.generation import top_k_filter, top_p_filter
from course_lib.metrics import perplexity

__all__ = [
    "check_shift_targets",
    "check_causal_mask",
    "check_lm_loss",
    "check_perplexity_and_bpc",
    "check_temperature_softmax",
    "check_top_k_probs",
    "check_top_p_probs",
    "hint",
    "HINTS",
]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "next-token prediction pairs each token with the one after it: the last token has no target and the "
        "first token is nobody's target, so both tensors are one shorter than ids.",
        "two slices of ids: the inputs leave out the last token, the targets leave out the first; give them "
        "back as a tuple.",
    ),
    2: (
        "row i is query i, column j is key j; query i may see itself and everything before it (j <= i): a "
        "triangle of True values in the lower left, including the diagonal.",
        "build a (T, T) all-True bool matrix and keep its lower triangle (torch has a function for that).",
    ),
    3: (
        "cross-entropy is the mean, over all B*T positions, of minus the log-probability the model gave to "
        "the right token. F.cross_entropy wants (N, V) logits and (N,) targets, so B and T must be merged "
        "first.",
        "reshape the logits to (B*T, V) and the targets to (B*T,) and call F.cross_entropy; or by hand: "
        "log_softmax over V, pick each target's entry with gather on the last dim, average minus those.",
    ),
    4: (
        "the loss is a mean natural-log loss. Perplexity is the number of equally likely choices that would "
        "give that loss; bits per character measure the same loss with base-2 logs.",
        "perplexity is the exponential of the loss; to turn nats into bits, divide by the natural log of 2 "
        "(the math module has both).",
    ),
    5: (
        "temperature rescales the logits, not the probabilities: below 1 it sharpens the distribution, above "
        "1 it flattens it. The order of the two steps matters.",
        "divide the logits by the temperature first, then take the softmax over the last dimension.",
    ),
    6: (
        "find the k-th largest logit: every token below it is out, ties at that value stay in. Removed tokens "
        "get probability exactly 0 and the kept ones must sum to 1.",
        "topk gives the k largest values; the smallest of them is the threshold. Set the logits below it to "
        "minus infinity, then take the softmax.",
    ),
    7: (
        "rank the tokens by probability and keep adding them until the kept mass reaches p. A token stays "
        "when the mass of the tokens ranked ABOVE it is still below p, so the top token always stays.",
        "sort the probabilities in descending order, take the cumulative sum, subtract each token's own "
        "probability to get the mass above it, keep where that is below p, map the keep mask back to the "
        "original order, zero the rest and renormalise.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 7 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch06")


def _logits(seed: int, *shape: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# ----------------------------------------------------------------------------- references
def _ref_shift(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ids[:-1], ids[1:]


def _ref_mask(T: int) -> torch.Tensor:
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


def _ref_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def _ref_ppl_bpc(loss: float) -> tuple[float, float]:
    return perplexity(loss), loss / math.log(2)


def _ref_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=-1)


def _ref_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    return torch.softmax(top_k_filter(logits, k), dim=-1)


def _ref_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    return torch.softmax(top_p_filter(logits, p), dim=-1)


# ----------------------------------------------------------------------------- checkers
def check_shift_targets(fn: Callable) -> bool | None:
    """Exercise 1: fn(ids (N,)) -> (inputs (N-1,), targets (N-1,)): the target at t is the token at t + 1."""
    cases = [
        (torch.tensor([5, 6, 7, 8]),),
        (torch.tensor([1, 2]),),
        (torch.randint(0, 65, (50,), generator=torch.Generator().manual_seed(0)),),
    ]
    return check_function(
        fn, _ref_shift, cases, name="shift targets",
        hint=checker_hint(HINTS, 1, "ch06"),
    )


def check_causal_mask(fn: Callable) -> bool | None:
    """Exercise 2: fn(T) -> bool (T, T), True where query i may attend to key j (j <= i)."""
    return check_function(
        fn, _ref_mask, [(1,), (4,), (9,)], name="causal mask",
        hint=checker_hint(HINTS, 2, "ch06"),
    )


def check_lm_loss(fn: Callable) -> bool | None:
    """Exercise 3: fn(logits (B, T, V), targets (B, T)) -> mean cross-entropy over all B*T positions (a 0-d tensor)."""
    g = torch.Generator().manual_seed(3)
    cases = [
        (torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]])),  # uniform: ln 4
        (_logits(1, 2, 5, 7), torch.randint(0, 7, (2, 5), generator=g)),
        (_logits(2, 3, 8, 65), torch.randint(0, 65, (3, 8), generator=g)),
    ]
    return check_function(
        fn, _ref_lm_loss, cases, name="language-model loss", atol=1e-5, rtol=1e-5,
        hint=checker_hint(HINTS, 3, "ch06"),
    )


def check_perplexity_and_bpc(fn: Callable) -> bool | None:
    """Exercise 4: fn(loss in nats per character) -> (perplexity, bits per character)."""
    cases = [(math.log(65),), (1.0,), (1.5,), (2.0,)]
    return check_function(
        fn, _ref_ppl_bpc, cases, name="perplexity and bits per character", atol=1e-6, rtol=1e-6,
        hint=checker_hint(HINTS, 4, "ch06"),
    )


def check_temperature_softmax(fn: Callable) -> bool | None:
    """Exercise 5: fn(logits (..., V), temperature) -> softmax(logits / temperature) over the last dim."""
    cases = [
        (torch.tensor([2.0, 1.0, 0.0]), 1.0),
        (torch.tensor([2.0, 1.0, 0.0]), 0.5),
        (_logits(4, 2, 10), 2.0),
        (_logits(5, 65), 0.7),
    ]
    return check_function(
        fn, _ref_temperature, cases, name="temperature softmax", atol=1e-6, rtol=1e-5,
        hint=checker_hint(HINTS, 5, "ch06"),
    )


def check_top_k_probs(fn: Callable) -> bool | None:
    """Exercise 6: fn(logits (V,), k) -> probabilities with all but the k most likely tokens set to 0, renormalised."""
    cases = [
        (torch.tensor([1.0, 3.0, 2.0, 0.0]), 2),
        (torch.tensor([1.0, 3.0, 2.0, 0.0]), 1),
        (_logits(6, 20), 5),
        (_logits(7, 65), 65),
    ]
    return check_function(
        fn, _ref_top_k, cases, name="top-k probabilities", atol=1e-6, rtol=1e-5,
        hint=checker_hint(HINTS, 6, "ch06"),
    )


def check_top_p_probs(fn: Callable) -> bool | None:
    """Exercise 7: fn(logits (V,), p) -> nucleus probabilities: keep the fewest most likely tokens whose mass reaches p."""
    cases = [
        (torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.75),  # keeps 0.5 and 0.3
        (torch.tensor([0.5, 0.3, 0.15, 0.05]).log(), 0.4),  # keeps only the top token
        (torch.tensor([0.1, 0.6, 0.3]).log(), 0.95),  # keeps all three
        (_logits(8, 30), 0.9),
        (_logits(9, 65, scale=1.0), 0.5),
    ]
    return check_function(
        fn, _ref_top_p, cases, name="top-p (nucleus) probabilities", atol=1e-6, rtol=1e-5,
        hint=checker_hint(HINTS, 7, "ch06"),
    )
