"""Checkers for notebook 01 (tokenization).

Each `check_*` runs the learner's function against the course's reference on a few cases: it returns
True when all match, prints a hint and returns None while the function still raises
NotImplementedError, and raises ExerciseError (with the case, expected value and a hint) when wrong.
"""

from __future__ import annotations

from typing import Callable

from course_lib.exercises import check_function
from course_lib.tokenization import BPETokenizer, WordPieceTokenizer, get_stats, merge

__all__ = ["check_count_pairs", "check_merge_pair", "check_bpe_encode", "check_wordpiece", "check_tokens_per_char"]

_TOY_MERGES = BPETokenizer.train("aaabdaaabac", vocab_size=259, pattern=None).merges
_SMALL_MERGES = BPETokenizer.train(
    "the cat sat on the mat. the dog ate the hat; then the cat sat again. 猫猫猫 " * 3, vocab_size=256 + 30, pattern=None
).merges
_WP_VOCAB = ["[UNK]", "un", "##aff", "##able", "aff", "able", "token", "##ization", "##iz", "##ation", "to", "##ken",
             "play", "##ing", "##s", "s", "a", "##a"]


def check_count_pairs(fn: Callable) -> bool | None:
    """Exercise 1: `count_pairs(ids) -> dict[(int, int), int]` counts adjacent pairs."""
    cases = [([1, 2, 3, 1, 2],), ([],), ([5],), ([7, 7, 7, 7],), (list("hello world".encode()),)]
    return check_function(
        fn, get_stats, cases, name="Exercise 1: count_pairs",
        hint="loop over zip(ids, ids[1:]) and add 1 to counts[pair]; [7, 7, 7, 7] has the pair (7, 7) three times",
    )


def check_merge_pair(fn: Callable) -> bool | None:
    """Exercise 2: `merge_pair(ids, pair, idx) -> list[int]` replaces every occurrence of `pair` by `idx`."""
    cases = [([1, 2, 3, 1, 2], (1, 2), 4), ([7, 7, 7], (7, 7), 8), ([1, 2], (2, 1), 9), ([], (1, 2), 3), ([1, 2, 1, 2, 2], (1, 2), 256)]
    return check_function(
        fn, merge, cases, name="Exercise 2: merge_pair",
        hint="walk with an index i; when ids[i], ids[i+1] == pair append idx and jump by 2, else append ids[i] and step 1",
    )


def _reference_bpe_encode(text: str, merges: dict) -> list[int]:
    return BPETokenizer(merges, pattern=None).encode_ordinary(text)


def check_bpe_encode(fn: Callable) -> bool | None:
    """Exercise 3: `bpe_encode(text, merges) -> list[int]`: UTF-8 bytes, then apply the earliest merge again and again."""
    cases = [
        ("aaabdaaabac", _TOY_MERGES),
        ("abracadabra", _TOY_MERGES),
        ("", _TOY_MERGES),
        ("the cat sat on the mat", _SMALL_MERGES),
        ("then the dog sat. 猫!", _SMALL_MERGES),
    ]
    return check_function(
        fn, _reference_bpe_encode, cases, name="Exercise 3: bpe_encode",
        hint="ids = list(text.encode('utf-8')); while some adjacent pair is in merges, pick the pair with the "
        "smallest merges[pair] (min(..., key=lambda p: merges.get(p, float('inf')))) and merge it",
    )


def _reference_wordpiece(word: str, vocab: list[str]) -> list[str]:
    return WordPieceTokenizer(list(vocab)).wordpiece(word)


def check_wordpiece(fn: Callable) -> bool | None:
    """Exercise 4: `wordpiece(word, vocab) -> list[str]`: greedy longest-match-first, `##` continuations, `[UNK]`."""
    cases = [("unaffable", _WP_VOCAB), ("tokenization", _WP_VOCAB), ("playings", _WP_VOCAB), ("aaa", _WP_VOCAB),
             ("xyz", _WP_VOCAB), ("playx", _WP_VOCAB), ("token", _WP_VOCAB)]
    return check_function(
        fn, _reference_wordpiece, cases, name="Exercise 4: wordpiece",
        hint="from the current start, try the longest substring first (end = len(word), then shorter); later pieces "
        "are looked up as '##' + piece; if nothing matches, the whole word is ['[UNK]']",
    )


def _reference_tokens_per_char(tokenizer, text: str) -> float:
    return len(tokenizer.encode(text)) / len(text)


def check_tokens_per_char(fn: Callable) -> bool | None:
    """Exercise 5: `tokens_per_char(tokenizer, text) -> float`: how many tokens a tokenizer spends per character."""
    from course_lib.tokenization import bpe_from_tiktoken

    gpt4 = bpe_from_tiktoken("cl100k_base")
    cases = [(gpt4, "hello world"), (gpt4, "自然语言处理"), (gpt4, "    return x ** 2\n")]
    return check_function(
        fn, _reference_tokens_per_char, cases, name="Exercise 5: tokens_per_char", rtol=1e-9,
        hint="len(tokenizer.encode(text)) / len(text)",
    )
