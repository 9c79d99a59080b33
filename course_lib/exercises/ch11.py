"""Checkers for notebook 11 (the anatomy of an LLM project).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are the rules of a data-parallel split
(`course_lib.training.shard_batch` is one such split), `course_lib.cli.parse_override`, `reference_nearest`
(cosine similarity search) and `reference_corpus_perplexity` (perplexity of a corpus scored in
batches of different sizes).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from course_lib.cli import parse_override
from course_lib.exercises import ExerciseError, _short, check_function, checker_hint, show_hint

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
        "each of the world_size processes gets the same number of rows, B / world_size, and every row of the "
        "global batch goes to exactly one process. The simplest such split cuts the batch into world_size "
        "contiguous blocks and gives process rank the rank-th block (any other split that keeps those rules "
        "passes too).",
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


def _shard_rows(shard: object, batch: torch.Tensor, where: str, hint_line: str) -> list[int]:
    """The row numbers of `batch` that `shard` holds; ExerciseError when it is not a stack of the batch's rows.

    The rows of the checker's batches are all different, so each row of a shard names one row of the batch.
    """
    try:
        shard = torch.as_tensor(shard)
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseError(f"{where} gave {type(shard).__name__}, not a tensor of rows of the batch"
                            + hint_line) from None
    if shard.dim() != batch.dim() or shard.shape[1:] != batch.shape[1:]:
        rows = "(n,)" if batch.dim() == 1 else f"(n, {', '.join(map(str, batch.shape[1:]))})"
        raise ExerciseError(f"{where} gave a tensor of shape {tuple(shard.shape)}: a shard is a stack of whole rows "
                            f"of the batch, shape {rows}" + hint_line)
    flat_batch = batch.reshape(len(batch), -1)
    flat_shard = shard.reshape(len(shard), flat_batch.shape[1]).to(batch.dtype)
    same = (flat_shard[:, None, :] == flat_batch[None, :, :]).all(-1)  # (n, B): shard row i is batch row j
    if not bool(same.any(1).all()):
        raise ExerciseError(f"{where} holds rows that are not rows of the global batch: {_short(shard.tolist(), 200)}"
                            + hint_line)
    return same.int().argmax(1).tolist()


def check_shard(fn: Callable) -> bool | None:
    """Exercise 1: fn(batch (B, ...), rank, world_size) -> the rank's B / world_size rows; the shards of all ranks
    together hold every row of the batch exactly once.

    Any such split passes (contiguous blocks as `shard_batch` cuts them, interleaved rows, ...): data
    parallelism only needs every row trained on by exactly one process, all processes doing the same amount
    of work. The batch sizes divide evenly, as `shard_batch` requires. Each rank is called on its own, as each
    process would call it.
    """
    cases = [(torch.arange(24).view(8, 3), w) for w in (1, 2, 4, 8)] + [
        (torch.arange(6), 3),
        (torch.arange(60).view(12, 5) * 7 - 100, 3),
        (torch.arange(48).view(12, 2, 2), 6),
    ]
    hint_line = f"\n  hint:     {checker_hint(HINTS, 1, 'ch11')}"
    for batch, world_size in cases:
        B, case = len(batch), f"global batch of shape {tuple(batch.shape)}, world_size {world_size}"
        shards: list[list[int]] = []  # rank -> the rows of the batch it holds
        for rank in range(world_size):
            try:
                shard = fn(batch.clone(), rank, world_size)
            except NotImplementedError:
                print("⏳ shard: not attempted yet. Replace `raise NotImplementedError` with your code."
                      f"\n   Hint: {checker_hint(HINTS, 1, 'ch11')}")
                return None
            except Exception as exc:  # the learner's code crashed for this rank: say which, keep the cause
                raise ExerciseError(f"shard: rank {rank} ({case}) raised {type(exc).__name__}: {exc}"
                                    + hint_line) from exc
            shards.append(_shard_rows(shard, batch, f"shard: rank {rank} ({case})", hint_line))
        owner: dict[int, int] = {}  # row of the batch -> the rank that holds it
        for rank, rows in enumerate(shards):
            for row in rows:
                if row in owner:
                    who = f"twice to rank {rank}" if owner[row] == rank else f"to rank {owner[row]} and to rank {rank}"
                    raise ExerciseError(f"shard: row {row} of the {case} is given {who}: every row goes to exactly "
                                        "one process" + hint_line)
                owner[row] = rank
        missing = sorted(set(range(B)) - set(owner))
        if missing:
            raise ExerciseError(f"shard: rows {missing} of the {case} go to no process: the shards together must "
                                "hold every row" + hint_line)
        sizes = [len(rows) for rows in shards]
        if any(n != B // world_size for n in sizes):
            raise ExerciseError(f"shard: the ranks of the {case} got {sizes} rows, expected {B // world_size} each "
                                "(B / world_size): every process trains on the same number of rows" + hint_line)
    print(f"✅ shard: all {len(cases)} batches split into shards of B / world_size rows, each row on one rank.")
    return True


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
