"""Exercise checkers for notebook 00: a warm-up that shows how every exercise in the course works."""

from __future__ import annotations

from typing import Callable

from . import check_function


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
        hint="lower-case the text, split it on whitespace with str.split(), and count with a dict.",
    )
