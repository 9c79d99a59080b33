"""Every chapter's exercise checkers keep the contract of course_lib.exercises.

An untouched exercise (still raising NotImplementedError) prints a hint and returns None, so the
exercise notebooks run top to bottom with no stray output; an answer that returns nothing useful
raises ExerciseError. Right answers are proven by the solutions notebooks, which the test run executes.

Hints come in tiers (issue 21): a chapter with `HINTS` prints only the first tier, what to think about,
from an untouched checker; `chNN.hint(k)` gives the next tier; no tier is the code.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import course_lib.exercises as exercises
from course_lib.exercises import ExerciseError

MODULES = {
    info.name: importlib.import_module(f"course_lib.exercises.{info.name}")
    for info in pkgutil.iter_modules(exercises.__path__)
    if info.name.startswith("ch")
}
CHECKERS = [
    (f"{chapter}.{name}", fn)
    for chapter, module in MODULES.items()
    for name, fn in inspect.getmembers(module, inspect.isfunction)
    if name.startswith("check_") and fn.__module__ == module.__name__
]
#: chapters whose hints are tiered (issue 21); any other chapter with a HINTS dict is tested the same way
TIERED = sorted({"ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07", "ch08", "ch09", "ch10", "ch11", "ch13"} | {
    chapter for chapter, module in MODULES.items() if hasattr(module, "HINTS")
})
TIERED_CHECKERS = [(name, fn) for name, fn in CHECKERS if name.split(".")[0] in TIERED]
ALL_TIERS = [
    (f"{chapter}[{n}][{i}]", text)
    for chapter in TIERED
    for n, tiers in MODULES[chapter].HINTS.items()
    for i, text in enumerate(tiers, 1)
]
ROOT = Path(__file__).resolve().parents[1]


def _exercise_number(checker) -> int:
    match = re.match(r"\s*Exercise (\d+)\b", checker.__doc__ or "")
    assert match, f"{checker.__qualname__}: its docstring must start with 'Exercise N:'"
    return int(match.group(1))


def _untouched(*args, **kwargs):
    raise NotImplementedError


def test_every_chapter_with_exercises_has_checkers():
    assert len({name.split(".")[0] for name, _ in CHECKERS}) >= 5


@pytest.mark.parametrize("name,checker", CHECKERS, ids=[n for n, _ in CHECKERS])
def test_unattempted_exercise_returns_none_with_hint(name, checker, capsys):
    assert checker(_untouched) is None
    out = capsys.readouterr().out
    assert "not attempted yet" in out.lower()
    assert "False" not in out  # no stray result


@pytest.mark.parametrize("name,checker", CHECKERS, ids=[n for n, _ in CHECKERS])
def test_useless_answer_is_an_exercise_error(name, checker):
    with pytest.raises(ExerciseError):
        checker(lambda *args, **kwargs: None)


# ----------------------------------------------------------------------------- tiered hints
@pytest.mark.parametrize("chapter", TIERED)
def test_hints_cover_every_checker_in_tiers(chapter):
    module = MODULES[chapter]
    numbers = {_exercise_number(fn) for name, fn in CHECKERS if name.startswith(f"{chapter}.")}
    assert numbers and numbers <= set(module.HINTS), f"{chapter}: exercises without hints: {numbers - set(module.HINTS)}"
    for n, tiers in module.HINTS.items():
        assert isinstance(tiers, tuple) and len(tiers) >= 2, f"{chapter} exercise {n}: want at least 2 tiers"
        assert all(isinstance(t, str) and len(t) > 40 for t in tiers)
        assert len(set(tiers)) == len(tiers)
    assert "hint" in module.__all__ and "HINTS" in module.__all__


@pytest.mark.parametrize("name,checker", TIERED_CHECKERS, ids=[n for n, _ in TIERED_CHECKERS])
def test_untouched_checker_prints_first_tier_only(name, checker, capsys):
    chapter, n = name.split(".")[0], _exercise_number(checker)
    tiers = MODULES[chapter].HINTS[n]
    assert checker(_untouched) is None
    out = capsys.readouterr().out
    assert tiers[0] in out and f"More: {chapter}.hint({n})." in out
    assert not any(later in out for later in tiers[1:]), "an untouched checker must not print the later tiers"


#: a call such as `x.view(`, `tril(` or `math.exp(`: an identifier glued to an opening parenthesis
_CALL = re.compile(r"\b[A-Za-z_][\w.]*\(")
#: indexing or slicing such as `ids[i]` or `probs[:, 0]`
_INDEX = re.compile(r"\b[A-Za-z_]\w*\[")
#: a single '=' (an assignment or keyword argument), not part of ==, <=, >=, !=
_ASSIGN = re.compile(r"(?<![<>=!])=(?!=)")
#: pieces of the reference solutions that the old hints gave away
_ANSWERS = ("ids[:-1]", "ids[1:]", "zip(ids", "keepdim=True", "dim=-1", "float('-inf')", "lambda", "import ",
            "unbiased=False", "math.exp", "math.log(", "torch.tril", ".topk(", ".scatter(", ".partition(",
            "json.loads(", "F.normalize(", ".view(", ".transpose(", ".masked_fill(", ".softmax(", "@")


@pytest.mark.parametrize("where,text", ALL_TIERS, ids=[w for w, _ in ALL_TIERS])
def test_no_hint_tier_is_the_code(where, text):
    assert "return " not in text, f"{where} gives a code line: {text!r}"
    assert not _CALL.search(text), f"{where} gives a call {_CALL.search(text).group()!r}: say it in words"
    assert not _INDEX.search(text), f"{where} gives an index {_INDEX.search(text).group()!r}: say it in words"
    assert not _ASSIGN.search(text.replace("'='", "")), f"{where} gives an assignment: {text!r}"
    assert not [a for a in _ANSWERS if a in text], f"{where} gives away {[a for a in _ANSWERS if a in text]}"


@pytest.mark.parametrize("chapter", TIERED)
def test_hint_prints_tiers_on_request_and_validates(chapter, capsys):
    module = MODULES[chapter]
    n = min(module.HINTS)
    first = module.hint(n, level=1)
    assert first == f"Hint 1: {module.HINTS[n][0]}" and "Hint 2" not in first
    both = module.hint(n)
    assert first in both and module.HINTS[n][1] in both
    solutions = re.search(r"notebooks/solutions/\S+\.ipynb", both)  # after the last tier: where the code is
    assert solutions and (ROOT / solutions.group()).exists()
    assert capsys.readouterr().out == f"{first}\n{both}\n"
    bad = max(module.HINTS) + 1
    with pytest.raises(ValueError, match=re.escape(str(sorted(module.HINTS)))):
        module.hint(bad)
    for level in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="level"):
            module.hint(n, level=level)
