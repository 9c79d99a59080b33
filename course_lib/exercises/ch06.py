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

from course_lib.exercises import check_function
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
]


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
        hint="inputs are every token but the last, targets every token but the first: ids[:-1], ids[1:].",
    )


def check_causal_mask(fn: Callable) -> bool | None:
    """Exercise 2: fn(T) -> bool (T, T), True where query i may attend to key j (j <= i)."""
    return check_function(
        fn, _ref_mask, [(1,), (4,), (9,)], name="causal mask",
        hint="row i (a query) may see columns 0..i: torch.tril(torch.ones(T, T, dtype=torch.bool)).",
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
        hint="flatten to (B*T, V) and (B*T,), then F.cross_entropy; or by hand: "
        "-(log_softmax(logits, -1).gather(-1, targets[..., None])).mean().",
    )


def check_perplexity_and_bpc(fn: Callable) -> bool | None:
    """Exercise 4: fn(loss in nats per character) -> (perplexity, bits per character)."""
    cases = [(math.log(65),), (1.0,), (1.5,), (2.0,)]
    return check_function(
        fn, _ref_ppl_bpc, cases, name="perplexity and bits per character", atol=1e-6, rtol=1e-6,
        hint="perplexity = math.exp(loss); a nat is 1/ln 2 bits, so bits = loss / math.log(2).",
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
        hint="divide the logits by the temperature BEFORE the softmax: torch.softmax(logits / temperature, dim=-1).",
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
        hint="kth = torch.topk(logits, k).values[-1]; set logits < kth to -inf; then softmax.",
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
        hint="sort the probabilities in descending order; a token is kept when the mass of the tokens ranked "
        "ABOVE it is still < p (so the top token is always kept); zero the rest and renormalise.",
    )
