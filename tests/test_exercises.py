import pytest
import torch

from course_lib.exercises import ExerciseError, check_function, values_equal
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


def test_unattempted_exercise_prints_hint_and_returns_false(capsys):
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
