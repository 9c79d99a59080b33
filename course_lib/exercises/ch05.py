"""Checkers for notebook 05 (masked language modelling).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are written from BERT's rules; the masking
rule's reference is checked against `course_lib.masking.mask_tokens` in tests/test_masking.py.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.exercises import check_function

__all__ = [
    "check_apply_mask_rule",
    "check_masked_accuracy",
    "check_segment_ids",
    "reference_apply_mask_rule",
    "reference_masked_accuracy",
    "reference_segment_ids",
]

MASK_ID = 4
SPECIAL_IDS = (0, 1, 2, 3, 4)


def reference_apply_mask_rule(
    ids: torch.Tensor, u_choose: torch.Tensor, u_kind: torch.Tensor, random_ids: torch.Tensor, mask_id: int, special_ids: tuple
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's rule with the random draws given: chosen = ordinary & (u_choose < 0.15);
    u_kind < 0.8 -> [MASK], 0.8 <= u_kind < 0.9 -> random_ids, else kept. Returns (new ids, labels)."""
    ordinary = ~torch.isin(ids, torch.tensor(list(special_ids)))
    chosen = ordinary & (u_choose < 0.15)
    out = ids.clone()
    out[chosen & (u_kind < 0.8)] = mask_id
    rand = chosen & (u_kind >= 0.8) & (u_kind < 0.9)
    out[rand] = random_ids[rand]
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, labels


def _mask_rule_cases() -> list[tuple]:
    cases = []
    ids = torch.tensor([2, 10, 11, 12, 13, 3])  # [CLS] four words [SEP]
    cases.append((ids, torch.tensor([0.0, 0.1, 0.5, 0.05, 0.14, 0.0]), torch.tensor([0.0, 0.5, 0.5, 0.85, 0.95, 0.0]),
                  torch.tensor([9, 9, 9, 42, 9, 9]), MASK_ID, SPECIAL_IDS))
    g = torch.Generator().manual_seed(5)
    for B, T in ((3, 12), (8, 32)):
        ids = torch.randint(5, 60, (B, T), generator=g)
        ids[:, 0], ids[:, -1] = 2, 3
        ids[0, -4:] = 0  # padding
        cases.append((ids, torch.rand(B, T, generator=g), torch.rand(B, T, generator=g),
                      torch.randint(5, 60, (B, T), generator=g), MASK_ID, SPECIAL_IDS))
    return cases


def check_apply_mask_rule(fn: Callable) -> bool:
    """Exercise 1: fn(ids, u_choose, u_kind, random_ids, mask_id, special_ids) -> (masked ids, labels)."""
    return check_function(
        fn, reference_apply_mask_rule, _mask_rule_cases(), name="BERT's 80/10/10 rule",
        hint="ordinary = ~torch.isin(ids, torch.tensor(special_ids)); chosen = ordinary & (u_choose < 0.15); "
        "then [MASK] where u_kind < 0.8, random_ids where 0.8 <= u_kind < 0.9; labels = original id where chosen, else -100.",
    )


def reference_masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of positions with labels != -100 where argmax(logits) equals the label."""
    keep = labels != -100
    return float((logits.argmax(-1)[keep] == labels[keep]).float().mean())


def check_masked_accuracy(fn: Callable) -> bool:
    """Exercise 2: fn(logits (B, T, V), labels (B, T) with -100) -> accuracy over the chosen positions (a float)."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 10, 7, generator=g)
    labels = torch.full((4, 10), -100)
    labels[:, ::3] = logits.argmax(-1)[:, ::3]  # right on these ...
    labels[0, 0] = (logits[0, 0].argmax() + 1) % 7  # ... except one
    cases = [
        (torch.tensor([[[0.1, 2.0, 0.3], [1.0, 0.0, 0.0]]]), torch.tensor([[1, -100]])),
        (torch.tensor([[[0.1, 2.0, 0.3], [1.0, 0.0, 0.0]]]), torch.tensor([[2, 0]])),
        (logits, labels),
    ]
    return check_function(
        fn, reference_masked_accuracy, cases, name="masked-token accuracy", atol=1e-6,
        hint="keep = labels != -100; (logits.argmax(-1)[keep] == labels[keep]).float().mean().item()",
    )


def reference_segment_ids(ids: list[int], sep_id: int) -> list[int]:
    """0 up to and including the first [SEP], 1 afterwards (BERT's token_type_ids for a pair)."""
    out, seg = [], 0
    for i in ids:
        out.append(seg)
        if i == sep_id:
            seg = 1
    return out


def check_segment_ids(fn: Callable) -> bool:
    """Exercise 3: fn(ids (list of ints), sep_id) -> segment ids: 0 up to the first [SEP] included, then 1."""
    cases = [
        ([101, 7592, 102, 2088, 102], 102),
        ([101, 7592, 2088, 102], 102),
        ([2, 10, 11, 3, 12, 13, 14, 3], 3),
    ]
    return check_function(
        fn, reference_segment_ids, cases, name="segment ids",
        hint="walk through the ids with a flag seg = 0; append seg, and set seg = 1 after you have seen the first [SEP].",
    )
