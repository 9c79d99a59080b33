import pytest
import torch

from course_lib.exercises import ExerciseError, check_function, checker_hint, show_hint, values_equal
from course_lib.exercises.ch00 import check_count_words, reference_count_words


def test_values_equal_handles_tensors_containers_and_floats():
    assert values_equal(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert not values_equal(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]))
    assert values_equal(torch.tensor([1.0, 2.0 + 1e-7]), torch.tensor([1.0, 2.0]), atol=1e-6)
    assert not values_equal(torch.zeros(2, 3), torch.zeros(3, 2))
    assert values_equal({"a": [1, 2.0]}, {"a": [1, 2.0]})
    assert not values_equal({"a": 1}, {"b": 1})
    assert not values_equal([1, 2], [1, 2, 3])
    assert values_equal(0.1 + 0.2, 0.3, atol=1e-12)
    assert not values_equal("x", 1.0)
    assert not values_equal(None, torch.zeros(2))
    assert not values_equal([[1], [2, 3]], torch.zeros(2))
    import numpy as np
    assert values_equal([1.0, 2.0], np.array([1.0, 2.0]))


def test_unattempted_exercise_prints_hint_and_returns_none(capsys):
    def stub(text):
        raise NotImplementedError

    assert check_count_words(stub) is None
    assert "not attempted yet" in capsys.readouterr().out


def test_right_answer_passes(capsys):
    assert check_count_words(reference_count_words) is True
    assert "all 5 cases match" in capsys.readouterr().out


def test_wrong_answer_names_case_expected_got_and_hint():
    def forgot_lowercase(text):
        counts = {}
        for w in text.split():
            counts[w] = counts.get(w, 0) + 1
        return counts

    with pytest.raises(ExerciseError) as err:
        check_count_words(forgot_lowercase)
    message = str(err.value)
    for part in ("case 3 of 5", "expected: {'the': 3}", "got:", "hint:"):
        assert part in message


def test_crashing_answer_is_reported_with_its_input():
    with pytest.raises(ExerciseError, match="raised ZeroDivisionError"):
        check_function(lambda x: 1 / 0, lambda x: x, [1], name="t")


def test_check_function_rejects_non_callable():
    with pytest.raises(TypeError, match="expected a function"):
        check_function(42, lambda x: x, [1])


HINTS = {1: ("think about the shape", "closer to the method"), 3: ("only one tier",)}


def test_show_hint_prints_the_tiers_asked_for(capsys):
    assert show_hint(HINTS, 1, level=1, chapter="ch01") == "Hint 1: think about the shape"
    both = show_hint(HINTS, 1, chapter="ch01")
    assert both.startswith("Hint 1: think about the shape\nHint 2: closer to the method\n")
    assert "notebooks/solutions/01_tokenization_solutions.ipynb" in both  # the code, after the last tier
    assert show_hint(HINTS, 1, level=5, chapter="ch01") == both  # more than there is: everything
    assert "Hint 2" not in show_hint(HINTS, 3)  # a single tier, no chapter: still a pointer to the solutions
    out = capsys.readouterr().out
    assert out.startswith("Hint 1: think about the shape\n") and out.count("Hint 2") == 2


@pytest.mark.parametrize("exercise,level,message", [
    (2, 1, r"ch09.hint: exercise must be one of \[1, 3\], got 2"),
    ("1", 1, "exercise must be one of"),
    (True, 1, "exercise must be one of"),  # True == 1, but it is not an exercise number
    (1, 0, "level must be an int >= 1"),
    (1, 1.0, "level must be an int >= 1"),
    (1, None, "level must be an int >= 1"),
])
def test_show_hint_rejects_bad_exercise_or_level(exercise, level, message):
    with pytest.raises(ValueError, match=message):
        show_hint(HINTS, exercise, level, chapter="ch09")


def test_checker_hint_is_the_first_tier_and_how_to_ask_for_more():
    assert checker_hint(HINTS, 1, "ch02") == "think about the shape More: ch02.hint(1)."
