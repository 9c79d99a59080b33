"""Checkers for notebook 01 (tokenization).

Each `check_*` runs the learner's function against the course's reference on a few cases: it returns
True when all match, prints a hint and returns None while the function still raises
NotImplementedError, and raises ExerciseError (with the case, expected value and a hint) when wrong.
Exercise 6 trains on Chinese news sentences from `course_lib.data.load_chinese_news`.
"""

from __future__ import annotations

import warnings
from typing import Callable

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.tokenization import BPETokenizer, WordPieceTokenizer, get_stats, merge

__all__ = ["check_count_pairs", "check_merge_pair", "check_bpe_encode", "check_wordpiece", "check_tokens_per_char",
           "check_train_merges", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "every neighbouring pair counts once: a list of n ids has n - 1 pairs, and pairs may overlap, so [7, "
        "7, 7, 7] holds (7, 7) three times.",
        "walk over the list side by side with itself shifted by one place (zip pairs them up) and add 1 to "
        "each pair's count in a dict, starting a new pair at 0.",
    ),
    2: (
        "build a new list, scanning left to right; once a pair is merged, its second id is used up, so the "
        "next look starts two places further on: [7, 7, 7] with (7, 7) gives [8, 7], not [8, 8].",
        "a while loop over a position: if there is a next id and the two form the pair, append idx and move "
        "by 2; otherwise append the id itself and move by 1.",
    ),
    3: (
        "start from the text's UTF-8 bytes as integers. Merges must be replayed in the order they were "
        "learned, which is the order of their new ids, not the order in which pairs appear in the text.",
        "loop: among the pairs present now, pick the one with the smallest new id in merges (a pair not in "
        "merges counts as infinitely late); stop when that pair is not in merges or fewer than 2 ids are "
        "left; otherwise replace it everywhere with your merge_pair.",
    ),
    4: (
        "greedy longest-match-first: at each position take the LONGEST vocabulary piece that fits and never "
        "go back; pieces after the first are looked up with the '##' prefix; one position with no match turns "
        "the whole word into ['[UNK]'].",
        "keep a start position; move an end position from the end of the word back towards start until the "
        "substring (with '##' in front when start is not 0) is in the vocabulary; keep it and jump start to "
        "end. If no end works, the answer is ['[UNK]'].",
    ),
    5: (
        "a ratio: the number of tokens the tokenizer produces for the text, over the number of characters in "
        "it (characters, not bytes: 自 is one character but three UTF-8 bytes).",
        "encode the text, count the ids you get, and divide by the length of the Python string (a float "
        "division).",
    ),
    6: (
        "training is exercises 1 and 2 in a loop: count the pairs of the current ids, pick the most frequent "
        "one (a tie goes to the smaller pair: compare first ids, then second ids), give it the next new id "
        "(256, then 257, ...) and merge it everywhere. Stop early when the ids have no pair left.",
        "start from the text's UTF-8 bytes as integers and an empty dict of merges. Repeat num_merges times: "
        "if fewer than 2 ids are left, stop; count the pairs with your count_pairs; the winner is the pair "
        "with the largest count, and among equal counts the smallest pair, so sort by minus the count, then "
        "by the pair; store it with id 256 plus the number of merges so far; replace the ids by your "
        "merge_pair of them.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 6 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch01")


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
        hint=checker_hint(HINTS, 1, "ch01"),
    )


def check_merge_pair(fn: Callable) -> bool | None:
    """Exercise 2: `merge_pair(ids, pair, idx) -> list[int]` replaces every occurrence of `pair` by `idx`."""
    cases = [([1, 2, 3, 1, 2], (1, 2), 4), ([7, 7, 7], (7, 7), 8), ([1, 2], (2, 1), 9), ([], (1, 2), 3), ([1, 2, 1, 2, 2], (1, 2), 256)]
    return check_function(
        fn, merge, cases, name="Exercise 2: merge_pair",
        hint=checker_hint(HINTS, 2, "ch01"),
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
        hint=checker_hint(HINTS, 3, "ch01"),
    )


def _reference_wordpiece(word: str, vocab: list[str]) -> list[str]:
    return WordPieceTokenizer(list(vocab)).wordpiece(word)


def check_wordpiece(fn: Callable) -> bool | None:
    """Exercise 4: `wordpiece(word, vocab) -> list[str]`: greedy longest-match-first, `##` continuations, `[UNK]`."""
    cases = [("unaffable", _WP_VOCAB), ("tokenization", _WP_VOCAB), ("playings", _WP_VOCAB), ("aaa", _WP_VOCAB),
             ("xyz", _WP_VOCAB), ("playx", _WP_VOCAB), ("token", _WP_VOCAB)]
    return check_function(
        fn, _reference_wordpiece, cases, name="Exercise 4: wordpiece",
        hint=checker_hint(HINTS, 4, "ch01"),
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
        hint=checker_hint(HINTS, 5, "ch01"),
    )


def _reference_train_merges(text: str, num_merges: int) -> dict[tuple[int, int], int]:
    with warnings.catch_warnings():  # a text that runs out of pairs: the course's trainer warns and stops early
        warnings.simplefilter("ignore", UserWarning)
        return BPETokenizer.train(text, vocab_size=256 + num_merges, pattern=None).merges


def check_train_merges(fn: Callable) -> bool | None:
    """Exercise 6: `train_merges(text, num_merges) -> dict[(int, int), int]`: BPE training on one chunk of text."""
    cases = [
        ("aaabdaaabac", 3),
        ("abababab", 5),                                        # runs out of pairs after 3 merges
        ("ab", 4),
        ("猫猫猫狗狗猫猫", 6),                                   # two merges build one Chinese character
        ("自然语言处理是人工智能的一个重要分支。语言模型处理语言。", 12),
        ("the cat sat on the mat", 8),                          # ties: the smallest pair wins
    ]
    return check_function(
        fn, _reference_train_merges, cases, name="Exercise 6: train_merges",
        hint=checker_hint(HINTS, 6, "ch01"),
    )


