"""Every chapter's exercise checkers keep the contract of course_lib.exercises.

An untouched exercise (still raising NotImplementedError) prints a hint and returns False, so the
exercise notebooks run top to bottom; an answer that returns nothing useful raises ExerciseError.
Right answers are proven by the solutions notebooks, which the test run executes.
"""

import importlib
import inspect
import pkgutil

import pytest

import course_lib.exercises as exercises
from course_lib.exercises import ExerciseError

CHECKERS = [
    (f"{info.name}.{name}", fn)
    for info in pkgutil.iter_modules(exercises.__path__)
    if info.name.startswith("ch")
    for name, fn in inspect.getmembers(importlib.import_module(f"course_lib.exercises.{info.name}"), inspect.isfunction)
    if name.startswith("check_") and fn.__module__ == f"course_lib.exercises.{info.name}"
]


def test_every_chapter_with_exercises_has_checkers():
    assert len({name.split(".")[0] for name, _ in CHECKERS}) >= 5


@pytest.mark.parametrize("name,checker", CHECKERS, ids=[n for n, _ in CHECKERS])
def test_unattempted_exercise_returns_none_with_hint(name, checker, capsys):
    def untouched(*args, **kwargs):
        raise NotImplementedError

    assert checker(untouched) is None
    assert "not attempted yet" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("name,checker", CHECKERS, ids=[n for n, _ in CHECKERS])
def test_useless_answer_is_an_exercise_error(name, checker):
    with pytest.raises(ExerciseError):
        checker(lambda *args, **kwargs: None)
