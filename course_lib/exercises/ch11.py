"""Checkers for notebook 11 (the anatomy of an LLM project).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are `course_lib.cli.shard_batch` and
`course_lib.cli.parse_override`, plus `reference_nearest` (cosine similarity search) and
`reference_corpus_perplexity` (perplexity of a corpus scored in batches of different sizes).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.cli import parse_override, shard_batch
from course_lib.exercises import ExerciseError, check_function, checker_hint, show_hint

__all__ = [
    "check_shard",
    "check_parse_override",
    "check_nearest",
    "check_corpus_perplexity",
    "reference_nearest",
    "reference_corpus_perplexity",
    "hint",
    "HINTS",
]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "each of the world_size processes gets the same number of rows, B / world_size, in one contiguous "
        "block; process rank gets the rank-th block, so the blocks of ranks 0, 1, ... in order give back the "
        "batch.",
        "get the block size by integer division of the batch's first dimension by world_size, then slice the "
        "rows from rank times the size up to (rank + 1) times the size.",
    ),
    2: (
        "split only at the FIRST '=' (a value may contain '=' too), split the key at each '.', and try to "
        "read the value as JSON (a number, null, a bool, a list); when it is not valid JSON, keep the raw "
        "string.",
        "str.partition splits at the first separator; json.loads reads the value; catch json.JSONDecodeError "
        "and fall back to the raw text.",
    ),
    3: (
        "cosine similarity ignores lengths, a plain dot product favours long rows. Make the query and every "
        "row unit length first; then the most similar rows are those with the largest dot products.",
        "normalise the index rows and the query along the last dim (F.normalize), multiply the (N, d) index "
        "by the (d,) query to get N similarities, and take the indices of the k largest with topk (best "
        "first).",
    ),
    4: (
        "a batch mean hides the batch's size: a batch of 128 tokens must weigh 128 times more than a batch of "
        "1. Average over tokens, not over batches, and exponentiate only at the end.",
        "multiply each mean loss by its token count to get that batch's total loss, add the totals, divide by "
        "the total number of tokens, then take the exponential.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 4 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch11")


def check_shard(fn: Callable) -> bool | None:
    """Exercise 1: fn(batch (B, ...), rank, world_size) -> the rank's contiguous B / world_size rows."""
    x = torch.arange(24).view(8, 3)
    cases = [(x, 0, 2), (x, 1, 2), (x, 3, 4), (x, 0, 1), (torch.arange(6), 2, 3)]
    ok = check_function(
        fn, shard_batch, cases, name="shard",
        hint=checker_hint(HINTS, 1, "ch11"),
    )
    if ok:  # the shards of all ranks, put back together, must be the global batch
        joined = torch.cat([fn(x, r, 4) for r in range(4)])
        if not torch.equal(joined, x):
            raise ExerciseError("the 4 shards concatenated do not give back the global batch: every row exactly once, in order")
    return ok


def check_parse_override(fn: Callable) -> bool | None:
    """Exercise 2: fn("section.key=value") -> (["section", "key"], value parsed as JSON, else the raw string)."""
    cases = [
        ("train.lr=3e-4",),
        ("train.max_steps=500",),
        ("generate.prompt=ROMEO:",),
        ("train.max_seconds=null",),
        ("train.progress=false",),
        ('generate.words=["cat", "dog"]',),
        ("generate.prompt=a=b",),
    ]
    return check_function(
        fn, parse_override, cases, name="parse_override",
        hint=checker_hint(HINTS, 2, "ch11"),
    )


def reference_nearest(query: torch.Tensor, index: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (k,) of the `k` rows of `index` (N, d) most cosine-similar to `query` (d,), best first."""
    sims = F.normalize(index, dim=-1) @ F.normalize(query, dim=-1)  # (N,)
    return sims.topk(k).indices


def check_nearest(fn: Callable) -> bool | None:
    """Exercise 3: fn(query (d,), index (N, d), k) -> indices (k,) of the most cosine-similar rows, best first."""
    g = torch.Generator().manual_seed(11)
    index = torch.randn(50, 8, generator=g)
    scaled = index * torch.rand(50, 1, generator=g) * 10  # lengths differ: cosine, not dot product
    cases = [
        (torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 1.0], [2.0, 0.1], [-1.0, 0.0], [0.5, 0.5]]), 2),
        (torch.randn(8, generator=g), index, 5),
        (torch.randn(8, generator=g), scaled, 3),
    ]
    return check_function(
        fn, reference_nearest, cases, name="nearest",
        hint=checker_hint(HINTS, 3, "ch11"),
    )


def reference_corpus_perplexity(mean_losses: Sequence[float], n_tokens: Sequence[int]) -> float:
    """exp(total loss / total tokens) from per-batch MEAN losses and token counts (batches of different sizes)."""
    total = sum(l * n for l, n in zip(mean_losses, n_tokens))
    return math.exp(total / sum(n_tokens))


def check_corpus_perplexity(fn: Callable) -> bool | None:
    """Exercise 4: fn(mean_losses, n_tokens) -> the corpus perplexity, each batch weighted by its token count."""
    cases = [
        ([2.0], [10]),
        ([1.0, 3.0], [10, 10]),
        ([1.0, 3.0], [30, 10]),
        ([4.2, 2.5, 0.7], [128, 64, 5]),
    ]
    return check_function(
        fn, reference_corpus_perplexity, cases, name="corpus perplexity", rtol=1e-6, atol=1e-9,
        hint=checker_hint(HINTS, 4, "ch11"),
    )
