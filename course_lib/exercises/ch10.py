"""Checkers for notebook 10 (interaction formats).

Each `check_*` takes the learner's function, runs it against the course's reference on a few cases,
and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. References: `course_lib.chat.render` (itself tested equal
to transformers' `apply_chat_template`), `course_lib.chat.masked_targets`, `course_lib.chat.pack_conversations`
with the label rule of `course_lib.chat.sft_batch` (`reference_pack_rows`), and plain rules for the reply
format and the stop strings.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from course_lib.chat import masked_targets, masked_windows, pack_conversations, render
from course_lib.exercises import check_function, checker_hint, show_hint

__all__ = [
    "check_render_chatml",
    "check_masked_labels",
    "check_format_ok",
    "check_pack_rows",
    "check_cut_reply",
    "reference_format_ok",
    "reference_pack_rows",
    "reference_cut_reply",
    "hint",
    "HINTS",
]

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
    4: (
        "packing glues the conversations end to end into ONE stream of ids and ONE stream of mask values, then "
        "cuts the stream into rows. Row r reads T + 1 tokens starting at r times T: its first T are the inputs, "
        "its last T the labels, so consecutive rows share one token and every token after the first is a label "
        "exactly once. A label is -100 where the mask of that label token is 0; where one conversation ends, "
        "the label is the next conversation's first token, which the mask already hides.",
        "concatenate all ids and all masks (course_lib.chat has a function that does it); the number of rows "
        "is the stream length minus one, floor-divided by T, and the leftover tail is dropped. For each row "
        "take the window of T + 1 ids and T + 1 mask values; the inputs are the window without its last token, "
        "the labels the window without its first, set to -100 where the window's mask without its first entry "
        "is 0. Stack the rows into two (R, T) long tensors.",
    ),
    5: (
        "a generated continuation runs past the end of the reply; the reply is everything before the FIRST "
        "place where any stop string begins, so look for every stop string and keep the earliest hit, not the "
        "first one in the list. If none occurs, the whole text is the reply and it did not stop.",
        "for each stop string find where it starts in the text (str.find gives minus one when it is absent); "
        "among the hits keep the smallest position, cut the text there and say True; with no hit give back "
        "the text unchanged and False. Look at the case with a user who typed the stop string: that is why a "
        "special token is safer.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 5 up to `level` (1: what to think about, 2: the method), printed and returned."""
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


# ----------------------------------------------------------------------------- exercise 4: packing with the loss mask
def reference_pack_rows(encoded: Sequence[tuple[Sequence[int], Sequence[int]]], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack encoded conversations into rows: x (R, T) inputs, y (R, T) labels, -100 where the target is not the assistant's.

    The conversations are concatenated (`course_lib.chat.pack_conversations`); row r is the window of T + 1
    tokens at r * T, cut as `course_lib.chat.sft_batch` cuts its windows. R = (N - 1) // T; the tail is dropped.
    >>> reference_pack_rows([([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1])], 2)
    (tensor([[1, 2],
            [3, 4]]), tensor([[   2,    3],
            [-100,    5]]))
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    ids, mask, _ = pack_conversations(encoded)  # (N,), (N,)
    rows = (len(ids) - 1) // block_size
    if rows < 1:
        raise ValueError(f"the stream has {len(ids)} tokens, need at least block_size + 1 = {block_size + 1}")
    return masked_windows(ids, mask, torch.arange(rows) * block_size, block_size)


#: two ChatML-like conversations, ids and masks as encode_chat gives them: 1 = start, 2 = end, 3 = newline, 10+ = text
_CONV_A = ([1, 10, 3, 11, 12, 2, 3, 1, 20, 3, 21, 22, 2, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0])
_CONV_B = ([1, 10, 3, 13, 2, 3, 1, 20, 3, 23, 2, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0])
_CONV_C = ([1, 10, 3, 14, 15, 16, 2, 3, 1, 20, 3, 24, 25, 26, 27, 2, 3, 1, 10, 3, 17, 2, 3, 1, 20, 3, 28, 2, 3],
           [0] * 11 + [1, 1, 1, 1, 1, 0] + [0] * 9 + [1, 1, 0])


def check_pack_rows(fn: Callable) -> bool | None:
    """Exercise 4: fn(encoded [(ids, mask), ...], block_size T) -> (x (R, T), y (R, T)): packed rows and masked labels."""
    cases = [
        ([_CONV_A, _CONV_B], 4),
        ([_CONV_A, _CONV_B, _CONV_C], 8),
        ([_CONV_C], 5),
        ([_CONV_B, _CONV_A, _CONV_B], 12),
        ([_CONV_A, _CONV_C, _CONV_B, _CONV_A], 16),
    ]
    return check_function(
        fn, reference_pack_rows, cases, name="packed rows with the loss mask",
        hint=checker_hint(HINTS, 4, "ch10"),
    )


# ----------------------------------------------------------------------------- exercise 5: where a reply stops
def reference_cut_reply(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The reply in a generated continuation: the text before the earliest stop string, and whether one was found.

    >>> reference_cut_reply("positive</s>\\n\\n### Instruction:", ("### Instruction:", "</s>"))
    ('positive', True)
    """
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


_ALPACA_STOPS = ("</s>", "### Instruction:")


def check_cut_reply(fn: Callable) -> bool | None:
    """Exercise 5: fn(text, stops) -> (reply, stopped): cut a generated continuation at its earliest stop string."""
    cases = [
        ("positive</s>\n\n### Instruction:\nAnd this one?", _ALPACA_STOPS),
        ("K AE1 T\n\n### Instruction:\nHow is the word", _ALPACA_STOPS),  # no </s>: the next header stops it
        ("### Instruction: say </s> twice</s>", _ALPACA_STOPS),  # the earliest hit, not the first stop in the list
        ("negative", _ALPACA_STOPS),  # ran out of tokens: no stop
        ("Close the tag with </s> and go on.</s>", _ALPACA_STOPS),  # a user's </s> in the content: cut too early
        ("positive<|im_end|>\n<|im_start|>user", ("<|im_end|>",)),
        ("", _ALPACA_STOPS),
    ]
    return check_function(
        fn, reference_cut_reply, cases, name="cut the reply at its stop",
        hint=checker_hint(HINTS, 5, "ch10"),
    )
