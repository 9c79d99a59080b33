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
from course_lib.exercises import check_function, checker_hint, show_hint

__all__ = ["check_render_chatml", "check_masked_labels", "check_format_ok", "reference_format_ok", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "every message becomes one block: a start marker followed by the role, a newline, the content, an end "
        "marker, a newline; the blocks follow each other with nothing in between. With add_generation_prompt, "
        "an open assistant header comes last, so the model writes the reply next.",
        "for each message build <|im_start|>, then the role, a newline, the content, <|im_end|> and a newline; "
        "join all of them into one string; if add_generation_prompt is true, append <|im_start|>assistant and a "
        "newline. When a case fails, compare your string with the expected one the checker prints.",
    ),
    2: (
        "labels are the inputs shifted by one: the label at position t is the NEXT token, the one at t + 1, so "
        "there is one label fewer than there are ids. The mask of that next token decides whether it is "
        "trained; where that mask is 0 the label is -100.",
        "take the ids from the second one on as the labels, and the mask from its second entry on as the keep "
        "flags; set the label to -100 wherever its flag is 0. Give back a long tensor (or a list of ints).",
    ),
    3: (
        "a well-formed reply says something and then ends its turn exactly once, at the very end. Three "
        "conditions: at least one token before the end, the last token is im_end, and neither im_start (an "
        "invented new turn) nor an earlier im_end appears anywhere else.",
        "make the reply a list; check that its length is at least 2, that its last element is im_end, that "
        "im_start is not in it, and that im_end is not among the tokens before the last one; combine the four "
        "checks with and, giving a bool.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 3 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch10")

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


def check_render_chatml(fn: Callable) -> bool | None:
    """Exercise 1: fn(messages, add_generation_prompt) -> the ChatML string."""
    cases = [(c, g) for c in _CONVERSATIONS for g in (False, True)]
    return check_function(
        fn, lambda m, g: render(m, "chatml", g), cases, name="ChatML renderer",
        hint=checker_hint(HINTS, 1, "ch10"),
    )


def _ref_labels(ids: Sequence[int], mask: Sequence[int]) -> torch.Tensor:
    return masked_targets(ids, mask)[1]


def check_masked_labels(fn: Callable) -> bool | None:
    """Exercise 2: fn(ids, mask) -> labels y (len(ids) - 1,): y[t] = ids[t + 1] if mask[t + 1] else -100."""
    cases = [
        ([5, 6, 7, 8], [0, 0, 1, 1]),
        ([1, 2, 3, 4, 5, 6], [0, 1, 1, 0, 0, 1]),
        ([9, 9, 9], [0, 0, 0]),
        ([3, 1, 4, 1, 5, 9, 2, 6], [1, 1, 1, 1, 0, 0, 1, 1]),
    ]
    return check_function(
        fn, _ref_labels, cases, name="assistant-only labels",
        hint=checker_hint(HINTS, 2, "ch10"),
    )


def reference_format_ok(reply: Sequence[int], im_start: int, im_end: int) -> bool:
    """A reply is well formed if it has at least one token before a final im_end and no im_start/im_end before that."""
    reply = list(reply)
    return len(reply) >= 2 and reply[-1] == im_end and im_start not in reply and im_end not in reply[:-1]


def check_format_ok(fn: Callable) -> bool | None:
    """Exercise 3: fn(reply_ids, im_start, im_end) -> bool, the format-adherence rule for one reply."""
    s, e = 100, 101
    cases = [
        ([5, 6, e], s, e), ([5, 6], s, e), ([e], s, e), ([5, s, 7, e], s, e), ([5, e, 6, e], s, e),
        ([], s, e), ([7, 8, 9, 10, e], s, e), ([s, 5, e], s, e),
    ]
    return check_function(
        fn, reference_format_ok, cases, name="format adherence",
        hint=checker_hint(HINTS, 3, "ch10"),
    )
