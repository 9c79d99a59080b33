"""Exercise 5 of notebook 03 (the ALiBi bias): the reference against a case computed by hand, the solution
of the solutions notebook passes its checker, and typical wrong answers fail with a helpful ExerciseError."""

import ast
import json
import math
from pathlib import Path

import pytest
import torch

from course_lib.exercises import ExerciseError, ch03

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf


def _solution(name: str):
    """The function `name` as written in notebooks/solutions/03_attention_solutions.ipynb (its def only)."""
    nb = json.loads((ROOT / "notebooks" / "solutions" / "03_attention_solutions.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                namespace = {"torch": torch, "math": math}
                exec(compile(ast.Module([node], type_ignores=[]), "solutions", "exec"), namespace)
                return namespace[name]
    raise AssertionError(f"{name} not found in the solutions notebook")


def test_reference_matches_a_case_computed_by_hand():
    # 2 heads: slopes 2^(-8*1/2) = 1/16 and 2^(-8*2/2) = 1/256; bias -m (i - j) below the diagonal, -inf above
    m1, m2 = 1 / 16, 1 / 256
    by_hand = torch.tensor([
        [[0.0, -INF, -INF], [-m1, 0.0, -INF], [-2 * m1, -m1, 0.0]],
        [[0.0, -INF, -INF], [-m2, 0.0, -INF], [-2 * m2, -m2, 0.0]],
    ])
    got = ch03._alibi_reference(2, 3)
    assert got.dtype == torch.float32 and got.shape == (2, 3, 3)
    assert torch.equal(got, by_hand)


def test_reference_slopes_of_8_heads_are_the_papers():
    # ALiBi (Press et al.): 8 heads -> slopes 1/2, 1/4, ..., 1/256, read from the distance-1 entries
    slopes = -ch03._alibi_reference(8, 2)[:, 1, 0]
    assert torch.equal(slopes, torch.tensor([2.0 ** -k for k in range(1, 9)]))


def test_solution_passes(capsys):
    assert ch03.check_alibi_bias(_solution("alibi_bias")) is True
    assert "all 5 cases match" in capsys.readouterr().out


def _sign_flipped(n_heads, t):
    """A bonus for distance instead of a penalty: far keys win."""
    future = ~torch.ones(t, t, dtype=torch.bool).tril()
    return (-ch03._alibi_reference(n_heads, t)).masked_fill(future, -INF)


def _slopes_from_head_0(n_heads, t):
    """Heads counted from 0: slopes 1, 2^(-8/n), ... (the first head is one step too steep)."""
    slopes = 2.0 ** (-8.0 * torch.arange(n_heads) / n_heads)
    pos = torch.arange(t)
    distance = pos[:, None] - pos[None, :]
    return (slopes[:, None, None] * -distance).masked_fill(distance < 0, -INF)


def _no_causal_block(n_heads, t):
    """The distance penalty everywhere, the future included (symmetric |i - j|): tokens see the future."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
    pos = torch.arange(t)
    return slopes[:, None, None] * -(pos[:, None] - pos[None, :]).abs()


@pytest.mark.parametrize("wrong", [_sign_flipped, _slopes_from_head_0, _no_causal_block])
def test_typical_wrong_answers_fail_naming_case_expected_got(wrong):
    with pytest.raises(ExerciseError) as err:
        ch03.check_alibi_bias(wrong)
    message = str(err.value)
    for part in ("ALiBi bias: case 2 of 5 is wrong", "expected:", "got:", "hint:", "ch03.hint(5)"):
        assert part in message, part


def test_wrong_answers_are_really_wrong():
    # the wrong answers above differ from the reference where it matters, not by accident of the cases
    ref = ch03._alibi_reference(4, 4)
    for wrong in (_sign_flipped, _slopes_from_head_0, _no_causal_block):
        assert not torch.equal(wrong(4, 4), ref)
    assert torch.equal(_solution("alibi_bias")(4, 4), ref)


def test_untouched_prints_only_the_first_hint(capsys):
    def alibi_bias(n_heads, t):
        raise NotImplementedError

    assert ch03.check_alibi_bias(alibi_bias) is None
    out = capsys.readouterr().out
    assert ch03.HINTS[5][0] in out and ch03.HINTS[5][1] not in out and "False" not in out
