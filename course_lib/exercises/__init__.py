"""Checkers for the notebooks' exercises.

Each chapter has a module (`ch00`, `ch01`, ...) whose functions take the learner's code, run it
against the course's reference on a few cases and print a helpful verdict. The shared machinery
lives here: `check_function` compares a learner's function with a reference.

The contract every checker keeps:
- a function still raising `NotImplementedError` is not an error: the checker prints a hint and
  returns None (so a notebook shows no stray result), and an untouched exercise notebook runs top to bottom;
- a wrong answer raises `ExerciseError` naming the case, what was expected, what was given and a hint;
- a right answer prints a short success line and returns True.

Hints come in tiers, so an untouched exercise does not give the answer away: a chapter keeps
`HINTS = {exercise: (what to think about, closer to the method)}`, its checkers print the first tier
(`checker_hint`), and its `hint(exercise, level=2)` prints the tiers up to `level` (`show_hint`),
pointing to the solutions notebook (which has the code) after the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["ExerciseError", "check_function", "checker_hint", "show_hint", "values_equal"]


class ExerciseError(AssertionError):
    """A learner's answer differs from the reference."""


def _solutions_notebook(chapter: str) -> str:
    """The solutions notebook of `chapter` ("ch01" -> "notebooks/solutions/01_tokenization_solutions.ipynb")."""
    number = chapter.removeprefix("ch")
    folder = Path(__file__).resolve().parents[2] / "notebooks" / "solutions"
    found = sorted(folder.glob(f"{number}_*_solutions.ipynb")) if number else []
    return f"notebooks/solutions/{found[0].name}" if found else f"the solutions notebook of chapter {number or '?'}"


def show_hint(hints: Mapping[int, Sequence[str]], exercise: int, level: int = 2, chapter: str = "") -> str:
    """Print and return the hints of `exercise` up to `level` (1: what to think about, 2: closer to the method).

    Asking for the last tier (or more) also names the solutions notebook, which has the code.
    >>> _ = show_hint({1: ("think", "closer")}, 1, level=1)
    Hint 1: think
    """
    where = f"{chapter}.hint: " if chapter else ""
    if isinstance(exercise, bool) or not isinstance(exercise, int) or exercise not in hints:
        raise ValueError(f"{where}exercise must be one of {sorted(hints)}, got {exercise!r}")
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"{where}level must be an int >= 1 (exercise {exercise} has {len(hints[exercise])} tiers), "
                         f"got {level!r}")
    tiers = hints[exercise][:level]
    text = "\n".join(f"Hint {i}: {h}" for i, h in enumerate(tiers, 1))
    if level >= len(hints[exercise]):
        text += f"\nStill stuck? The code is in {_solutions_notebook(chapter)}."
    print(text)
    return text


def checker_hint(hints: Mapping[int, Sequence[str]], exercise: int, chapter: str) -> str:
    """The hint a checker prints: the first tier of `exercise` and how to ask for the next one."""
    return f"{hints[exercise][0]} More: {chapter}.hint({exercise})."


def _short(x: Any, limit: int = 300) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + " ..."


def values_equal(got: Any, expected: Any, atol: float = 0.0, rtol: float = 0.0) -> bool:
    """True when `got` matches `expected`: exactly, or within atol/rtol for tensors and floats.

    Containers (list, tuple, dict) are compared element by element.
    >>> values_equal([1, 2.0000001], [1, 2.0], atol=1e-6)
    True
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            try:
                got = torch.as_tensor(got)
            except (TypeError, ValueError, RuntimeError):  # None, ragged lists, strings: not a tensor
                return False
        if got.shape != expected.shape:
            return False
        if atol == 0 and rtol == 0:
            return bool(torch.equal(got.to(expected.dtype), expected))
        return bool(torch.allclose(got.to(torch.float64).cpu(), expected.to(torch.float64).cpu(), atol=atol, rtol=rtol))
    if isinstance(expected, np.ndarray):
        return values_equal(got, torch.as_tensor(expected), atol, rtol)
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            values_equal(got[k], expected[k], atol, rtol) for k in expected
        )
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(got, (list, tuple))
            and len(got) == len(expected)
            and all(values_equal(g, e, atol, rtol) for g, e in zip(got, expected))
        )
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return abs(float(got) - float(expected)) <= atol + rtol * abs(float(expected))
        except (TypeError, ValueError):
            return False
    return got == expected


def check_function(
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Iterable[Sequence[Any]],
    *,
    name: str = "exercise",
    atol: float = 0.0,
    rtol: float = 0.0,
    hint: str = "",
) -> bool | None:
    """Run `learner_fn(*case)` and `reference_fn(*case)` on every case and compare the results.

    Returns True when all cases match, None when the exercise is not attempted yet
    (the learner's function raises NotImplementedError); raises ExerciseError otherwise.
    """
    if not callable(learner_fn):
        raise TypeError(f"{name}: expected a function, got {type(learner_fn).__name__}")
    cases = [tuple(c) if isinstance(c, (list, tuple)) else (c,) for c in cases]
    for i, args in enumerate(cases, 1):
        expected = reference_fn(*args)
        try:
            got = learner_fn(*args)
        except NotImplementedError:
            print(f"⏳ {name}: not attempted yet. Replace `raise NotImplementedError` with your code." + (f"\n   Hint: {hint}" if hint else ""))
            return None
        except Exception as exc:  # the learner's code crashed: say where, keep the cause
            raise ExerciseError(
                f"{name}: case {i} of {len(cases)} raised {type(exc).__name__}: {exc}\n"
                f"  input:    {_short(args)}" + (f"\n  hint:     {hint}" if hint else "")
            ) from exc
        if not values_equal(got, expected, atol=atol, rtol=rtol):
            raise ExerciseError(
                f"{name}: case {i} of {len(cases)} is wrong.\n"
                f"  input:    {_short(args)}\n"
                f"  expected: {_short(expected)}\n"
                f"  got:      {_short(got)}" + (f"\n  hint:     {hint}" if hint else "")
            )
    print(f"✅ {name}: all {len(cases)} cases match the reference.")
    return True
