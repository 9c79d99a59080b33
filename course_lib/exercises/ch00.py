"""Exercise checkers for notebook 00: a warm-up that shows how every exercise in the course works."""

from __future__ import annotations

from typing import Callable

from . import check_function, checker_hint, show_hint

__all__ = ["check_count_words", "reference_count_words", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    0: (  # exercise 0.1 of notebook 00
        "decide what counts as one word: \"The\" and \"the\" must be the same word, and runs of spaces must not "
        "make empty words. Then you need a running count per word.",
        "make the whole text lower case, cut it wherever there is whitespace (a str method without arguments "
        "does exactly that and drops empty pieces), and keep the counts in a dict: add 1 for each word you meet.",
    ),
}


def hint(exercise: int = 0, level: int = 2) -> str:
    """The hints of the warm-up exercise up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch00")


def reference_count_words(text: str) -> dict[str, int]:
    """How often each lower-cased, whitespace-separated word occurs: "a b A" -> {"a": 2, "b": 1}."""
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def check_count_words(fn: Callable[[str], dict[str, int]]) -> bool | None:
    """Exercise 0.1: count words. See notebook 00."""
    cases = ["to be or not to be", "", "The the THE", "  spaces   everywhere  ", "To be, or not to be: that is the question"]
    return check_function(
        fn,
        reference_count_words,
        cases,
        name="Exercise 0.1 (count words)",
        hint=checker_hint(HINTS, 0, "ch00"),
    )
