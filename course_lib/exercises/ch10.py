"""Checkers for notebook 10 (interaction formats).

Each `check_*` takes the learner's function, runs it against the course's reference on a few cases,
and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. References: `course_lib.chat.render` (itself tested equal
to transformers' `apply_chat_template`), `course_lib.chat.masked_targets` and a plain format rule.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from course_lib.chat import masked_targets, render
from course_lib.exercises import check_function

__all__ = ["check_render_chatml", "check_masked_labels", "check_format_ok", "reference_format_ok"]

_CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": 'How is the word "cat" pronounced?'}, {"role": "assistant", "content": "K AE1 T"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Is this review positive or negative?\nA joy."},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "And this one?\nA bore."},
    ],
]


def check_render_chatml(fn: Callable) -> bool:
    """Exercise 1: fn(messages, add_generation_prompt) -> the ChatML string."""
    cases = [(c, g) for c in _CONVERSATIONS for g in (False, True)]
    return check_function(
        fn, lambda m, g: render(m, "chatml", g), cases, name="ChatML renderer",
        hint="for each message: '<|im_start|>' + role + '\\n' + content + '<|im_end|>' + '\\n'; "
        "then, if add_generation_prompt, '<|im_start|>assistant\\n'.",
    )


def _ref_labels(ids: Sequence[int], mask: Sequence[int]) -> torch.Tensor:
    return masked_targets(ids, mask)[1]


def check_masked_labels(fn: Callable) -> bool:
    """Exercise 2: fn(ids, mask) -> labels y (len(ids) - 1,): y[t] = ids[t + 1] if mask[t + 1] else -100."""
    cases = [
        ([5, 6, 7, 8], [0, 0, 1, 1]),
        ([1, 2, 3, 4, 5, 6], [0, 1, 1, 0, 0, 1]),
        ([9, 9, 9], [0, 0, 0]),
        ([3, 1, 4, 1, 5, 9, 2, 6], [1, 1, 1, 1, 0, 0, 1, 1]),
    ]
    return check_function(
        fn, _ref_labels, cases, name="assistant-only labels",
        hint="labels are the inputs shifted by one: y = ids[1:]; then set y[t] = -100 where mask[t + 1] == 0. "
        "Return a torch.long tensor (or a list).",
    )


def reference_format_ok(reply: Sequence[int], im_start: int, im_end: int) -> bool:
    """A reply is well formed if it has at least one token before a final im_end and no im_start/im_end before that."""
    reply = list(reply)
    return len(reply) >= 2 and reply[-1] == im_end and im_start not in reply and im_end not in reply[:-1]


def check_format_ok(fn: Callable) -> bool:
    """Exercise 3: fn(reply_ids, im_start, im_end) -> bool, the format-adherence rule for one reply."""
    s, e = 100, 101
    cases = [
        ([5, 6, e], s, e), ([5, 6], s, e), ([e], s, e), ([5, s, 7, e], s, e), ([5, e, 6, e], s, e),
        ([], s, e), ([7, 8, 9, 10, e], s, e), ([s, 5, e], s, e),
    ]
    return check_function(
        fn, reference_format_ok, cases, name="format adherence",
        hint="three conditions: at least one token before the end, the last token is im_end, "
        "and no im_start (an invented turn) or earlier im_end anywhere before it.",
    )
