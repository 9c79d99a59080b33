"""Checkers for notebook 05 (masked language modelling).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are written from BERT's rules; the masking
rule's reference is checked against `course_lib.masking.mask_tokens` in tests/test_masking.py.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_lib.exercises import check_function, checker_hint, show_hint

__all__ = [
    "check_apply_mask_rule",
    "check_masked_accuracy",
    "check_segment_ids",
    "reference_apply_mask_rule",
    "reference_masked_accuracy",
    "reference_segment_ids",
    "hint",
    "HINTS",
]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "two random decisions per token, both already drawn for you: first whether an ordinary (not special) "
        "token is chosen at all, when u_choose is below 0.15; then what happens to a chosen one, from u_kind: "
        "80% become [MASK], 10% a random token, 10% stay as they are. The labels keep the original id at "
        "EVERY chosen position, the unchanged ones included, and -100 everywhere else.",
        "build boolean tensors of the shape of ids: ordinary (the id is not one of special_ids; torch.isin "
        "tests membership), chosen (ordinary and u_choose below 0.15), then the [MASK] part and the random part "
        "of chosen from u_kind. Write into a copy of ids, never into ids itself, and make the labels with "
        "torch.where from chosen, the original ids and a tensor full of -100.",
    ),
    2: (
        "only the positions with a real label count: -100 marks the positions the model was not asked to "
        "predict. The model's guess at a position is its most likely token; the accuracy is the number of "
        "right guesses divided by the number of counted positions, given back as a Python float.",
        "a boolean mask where the labels differ from -100; the guesses are the argmax of the logits over the "
        "last (vocabulary) dimension; compare guesses and labels at the masked positions only, take the mean "
        "of the matches as floats, and turn that 0-d tensor into a number with item.",
    ),
    3: (
        "walk through the ids in order: every token up to AND including the first [SEP] is in segment 0, "
        "every token after it in segment 1. The first [SEP] itself still belongs to segment 0, and a second "
        "[SEP] changes nothing.",
        "keep a current segment that starts at 0; for each id, first append the current segment to the "
        "output list, then, if the id is sep_id, switch the current segment to 1. Doing those two steps in "
        "that order is what puts the first [SEP] in segment 0.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 3 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch05")

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


def check_apply_mask_rule(fn: Callable) -> bool | None:
    """Exercise 1: fn(ids, u_choose, u_kind, random_ids, mask_id, special_ids) -> (masked ids, labels)."""
    return check_function(
        fn, reference_apply_mask_rule, _mask_rule_cases(), name="BERT's 80/10/10 rule",
        hint=checker_hint(HINTS, 1, "ch05"),
    )


def reference_masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of positions with labels != -100 where argmax(logits) equals the label."""
    keep = labels != -100
    return float((logits.argmax(-1)[keep] == labels[keep]).float().mean())


def check_masked_accuracy(fn: Callable) -> bool | None:
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
        hint=checker_hint(HINTS, 2, "ch05"),
    )


def reference_segment_ids(ids: list[int], sep_id: int) -> list[int]:
    """0 up to and including the first [SEP], 1 afterwards (BERT's token_type_ids for a pair)."""
    out, seg = [], 0
    for i in ids:
        out.append(seg)
        if i == sep_id:
            seg = 1
    return out


def check_segment_ids(fn: Callable) -> bool | None:
    """Exercise 3: fn(ids (list of ints), sep_id) -> segment ids: 0 up to the first [SEP] included, then 1."""
    cases = [
        ([101, 7592, 102, 2088, 102], 102),
        ([101, 7592, 2088, 102], 102),
        ([2, 10, 11, 3, 12, 13, 14, 3], 3),
    ]
    return check_function(
        fn, reference_segment_ids, cases, name="segment ids",
        hint=checker_hint(HINTS, 3, "ch05"),
    )
