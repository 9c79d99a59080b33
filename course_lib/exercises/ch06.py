"""Checkers for notebook 06 (causal language modelling).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are the library's own pieces
(`course_lib.generation.top_k_filter` / `top_p_filter` / `generate`, `course_lib.metrics.perplexity`)
and PyTorch (`torch.tril`, `torch.softmax`, `F.cross_entropy`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.generation import generate, top_k_filter, top_p_filter
from course_lib.metrics import perplexity
from course_lib.models import GPT, GPTConfig

__all__ = [
    "check_shift_targets",
    "check_causal_mask",
    "check_lm_loss",
    "check_perplexity_and_bpc",
    "check_temperature_softmax",
    "check_top_k_probs",
    "check_top_p_probs",
    "check_generate_with_cache",
    "checker_model",
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
    8: (
        "the cache remembers every key and value the model has computed, so after the prompt each step has "
        "to feed only the ONE newest token, and the model places it after the cached positions by itself. "
        "Greedy means: the next token is the most likely one at the last position.",
        "make one empty cache per model with its new_cache method and keep it for the whole loop; the first "
        "call feeds the whole prompt with that cache, every later call feeds only the token just chosen, shape "
        "(B, 1). Take the logits of the last position, their argmax over the vocabulary is the next token; "
        "append it with torch.cat along the time dimension. Run it under torch.no_grad.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 8 up to `level` (1: what to think about, 2: the method), printed and returned."""
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


# ----------------------------------------------------------------------------- exercise 8: decoding with the cache
def checker_model(seed: int = 0) -> GPT:
    """The small seeded GPT the generation checker decodes with (24 token ids, a context of 16), in eval mode.

    Its weights are drawn larger than a fresh GPT's, so that greedy decoding does not repeat one token and
    every mistake (a lost position, a missing context) changes the tokens.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig.preset("tiny", vocab_size=24, block_size=16)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0  # norm gains around 1, the rest around 0
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() > 1 else 0.1) + base)
    return model


class _CountingModel:
    """The model, seen through a window that writes down how many tokens each call feeds (idx.size(1))."""

    def __init__(self, model: GPT) -> None:
        self._model, self.calls = model, []

    def __call__(self, *args, **kwargs):
        idx = args[0] if args else kwargs.get("idx")
        self.calls.append(int(idx.shape[1]) if isinstance(idx, torch.Tensor) and idx.dim() == 2 else -1)
        return self._model(*args, **kwargs)

    forward = __call__

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def __repr__(self) -> str:
        return f"GPT(vocab_size={self._model.config.vocab_size}, block_size={self._model.config.block_size})"


class _Seeded:
    """A checker model with a short repr, so that a failing case prints `checker_model(seed=1)`, not the whole GPT."""

    def __init__(self, seed: int) -> None:
        self.seed, self.gpt = seed, checker_model(seed)

    def __repr__(self) -> str:
        return f"checker_model(seed={self.seed})"


#: (model seed, batch size, prompt length, new tokens): prompt + new tokens stay within the context of 16
_GENERATE_CASES = [(0, 1, 3, 10), (1, 2, 4, 8), (2, 3, 9, 7), (3, 1, 5, 1)]


def check_generate_with_cache(fn: Callable) -> bool | None:
    """Exercise 8: fn(model, ids (B, T), n) -> (B, T + n) greedy tokens, feeding one token per step after the prompt.

    Compared with `course_lib.generation.generate(model, ids, n, greedy=True)` on small seeded GPTs. The
    checker also writes down how many tokens each model call feeds: the prompt's T first, then 1 per step
    (n calls; one more call of 1 token at the end is allowed). Recomputing the whole sequence at every step
    gives the right tokens but not those calls.
    """
    if not callable(fn):
        raise TypeError(f"generate with cache: expected a function, got {type(fn).__name__}")
    cases = []
    for seed, B, T, n in _GENERATE_CASES:
        ids = torch.randint(0, 24, (B, T), generator=torch.Generator().manual_seed(100 + seed))
        cases.append((_Seeded(seed), ids, n))

    def reference(model: "_Seeded", ids: torch.Tensor, n: int) -> tuple[torch.Tensor, list[int]]:
        return generate(model.gpt, ids, n, greedy=True), [ids.shape[1]] + [1] * (n - 1)

    def learner(model: "_Seeded", ids: torch.Tensor, n: int) -> tuple[torch.Tensor, list[int]]:
        window = _CountingModel(model.gpt)
        out = fn(window, ids.clone(), n)
        calls = window.calls
        if len(calls) == n + 1 and calls[-1] == 1:  # a last call whose logits are not needed: allowed
            calls = calls[:-1]
        return out, calls

    return check_function(
        learner, reference, cases, name="generate with the KV cache (tokens, tokens fed per call)",
        hint=checker_hint(HINTS, 8, "ch06"),
    )
