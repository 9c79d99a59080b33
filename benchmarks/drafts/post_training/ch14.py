"""Checkers for notebook 14 (post-training).

Each `check_*` takes the learner's function, runs it against the course's reference on a few cases,
and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns False;
wrong -> ExerciseError; right -> True. References: `course_lib.post_training.group_advantages`,
`course_lib.post_training.dpo_loss` and the mask rule of `course_lib.post_training.sample_groups`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from course_lib.exercises import check_function
from course_lib.post_training import dpo_loss, group_advantages

__all__ = ["check_group_advantages", "check_dpo_pair_loss", "check_response_mask", "reference_response_mask"]


def check_group_advantages(fn: Callable) -> bool:
    """Exercise 1: fn(rewards (n, G)) -> (rewards - row mean) / (row std + 1e-4)."""
    cases = [
        (torch.tensor([[1.0, 0.0, 0.0, 1.0]]),),
        (torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.5, 1.0]]),),
        (torch.tensor([[0.2, 0.9, 0.4, 0.4, 0.0, 1.0], [3.0, -1.0, 2.0, 0.0, 0.0, 5.0]]),),
    ]
    return check_function(
        fn, lambda r: group_advantages(r), [(c[0].clone(),) for c in cases], name="group advantages", atol=1e-4,
        hint="mean = rewards.mean(dim=1, keepdim=True); std = rewards.std(dim=1, keepdim=True); "
        "return (rewards - mean) / (std + 1e-4).",
    )


def _ref_dpo_pair(pc: float, pr: float, rc: float, rr: float, beta: float) -> float:
    t = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    return float(dpo_loss(t(pc), t(pr), t(rc), t(rr), beta).loss)


def check_dpo_pair_loss(fn: Callable) -> bool:
    """Exercise 2: fn(pc, pr, rc, rr, beta) -> the DPO loss of one pair, a float."""
    cases = [(-1.0, -2.0, -1.5, -1.5, 1.0), (-5.0, -5.0, -5.0, -5.0, 0.1), (-3.2, -1.0, -4.0, -0.5, 0.5),
             (-10.0, -30.0, -12.0, -11.0, 0.1)]
    return check_function(
        fn, _ref_dpo_pair, cases, name="DPO loss of one pair", atol=1e-6,
        hint="z = beta * ((pc - rc) - (pr - rr)); the loss is -log(sigmoid(z)) = log(1 + exp(-z)).",
    )


def reference_response_mask(ids: Sequence[int], prompt_len: int, eos_id: int) -> list[int]:
    """1 on the tokens after the prompt up to and including the first eos_id, 0 elsewhere."""
    ids = list(ids)
    mask = [0] * len(ids)
    for t in range(prompt_len, len(ids)):
        mask[t] = 1
        if ids[t] == eos_id:
            break
    return mask


def check_response_mask(fn: Callable) -> bool:
    """Exercise 3: fn(ids, prompt_len, eos_id) -> the response mask (a list of 0/1)."""
    e = 12
    cases = [
        ([1, 2, 3, 4, 5, e], 3, e), ([1, 2, 3, 4, e, e, e], 3, e), ([1, 2, 3, 4, 5, 6], 3, e),
        ([1, 2, e, 4, e, 6], 2, e), ([e, 2, 3, 4], 1, e), ([1, 2, 3], 3, e),
    ]
    return check_function(
        fn, reference_response_mask, cases, name="response mask",
        hint="start from [0] * len(ids); for t from prompt_len on set mask[t] = 1, and stop after the first eos_id.",
    )
