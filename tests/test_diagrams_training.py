"""Tests of course_lib.diagrams.training: names, ids, key labels, and that every number comes from the code."""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.diagrams import training as T
from course_lib.diagrams.kit import Diagram, svg_texts

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
NAMES = {"training_cost": "training-cost", "post_training_stages": "post-training-stages"}


@pytest.fixture(scope="module")
def svgs():
    return {f: getattr(T, f)().svg() for f in NAMES}


texts = svg_texts  # the text of every <text> element, one per line of a label


def joined(svg: str) -> str:
    return "\n".join(texts(svg))


@pytest.mark.parametrize("func,name", NAMES.items())
def test_each_diagram_has_its_name_and_id(func, name, svgs):
    d = getattr(T, func)()
    assert isinstance(d, Diagram) and d.name == name
    assert f'id="diagram-{name}"' in svgs[func]
    assert "notebook" in inspect.getdoc(getattr(T, func))  # the docstring names its notebook


def test_svg_is_identical_in_another_process(svgs):
    code = ("import hashlib, json; from course_lib.diagrams import training as T; "
            f"print(json.dumps({{f: hashlib.sha256(getattr(T, f)().svg().encode()).hexdigest() for f in {list(NAMES)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    assert theirs == {f: hashlib.sha256(s.encode()).hexdigest() for f, s in svgs.items()}


def test_diagrams_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for f in NAMES:
        getattr(T, f)()
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- 12 training cost
def test_flop_counts_are_two_per_weight_per_product_and_twelve_t_d_for_attention():
    c = T.flop_counts(5, 7, T=8, d=16)  # other sizes than the picture's: the counts scale, not typed
    assert c["weights"] == 35
    assert (c["forward"], c["grad_x"], c["grad_w"]) == (2 * 35, 2 * 35, 2 * 35)
    assert c["attention_per_token"] == 12 * 8 * 16
    assert c["layer_weights"] == 12 * 16 * 16


def test_counted_flops_agree_with_notebook_12s_formula():
    from course_lib.scaling import SweepConfig, flops_per_token, gpt_config

    c = T.flop_counts()
    sweep = SweepConfig()
    assert (c["T"], c["d"]) == (sweep.block_size, max(d for _, d in sweep.shapes))
    vocab = 65
    for n_layer, d in sweep.shapes:
        cfg = gpt_config(n_layer, d, vocab, sweep.block_size)
        per_layer = T.flop_counts(T=sweep.block_size, d=d)
        total = sum(per_layer[k] for k in ("forward", "grad_x", "grad_w")) // per_layer["weights"]
        assert flops_per_token(cfg) == total * (n_layer * per_layer["layer_weights"] + d * vocab) + \
            n_layer * per_layer["attention_per_token"]


def test_training_cost_shows_the_counted_numbers(svgs):
    c = T.flop_counts()
    n = c["weights"]
    labels, t = texts(svgs["training_cost"]), joined(svgs["training_cost"])
    assert n == T.WEIGHT_SHAPE[0] * T.WEIGHT_SHAPE[1] and f"({T.WEIGHT_SHAPE[0]} × {T.WEIGHT_SHAPE[1]} = {n} weights)" in t
    assert labels.count(f"counted: {2 * n} FLOPs") == 3 and labels.count("= 2 per weight") == 3
    assert "2 + 2 + 2 = 6 FLOPs per weight per token   →   C ≈ 6 · N · D" in labels
    assert [x for x in labels if re.fullmatch(r"w\d\d", x)] == [f"w{i + 1}{j + 1}" for i in range(T.WEIGHT_SHAPE[0])
                                                                 for j in range(T.WEIGHT_SHAPE[1])]
    assert f"{c['attention_per_token']:,} = 12·{c['T']}·{c['d']}" in t and "12·n_layer·T·d" in t
    for key in ("forward", "backward", "y = x W", "∂L/∂x = ∂L/∂y Wᵀ", "∂L/∂W = xᵀ ∂L/∂y", "compute-", "optimal"):
        assert key in t


def test_training_cost_numbers_follow_the_counts(monkeypatch):
    real = T.flop_counts()
    fake = {**real, "forward": 3 * real["weights"], "attention_per_token": 777}  # a different count must show
    monkeypatch.setattr(T, "flop_counts", lambda: fake)
    t = joined(T.training_cost().svg())
    assert f"counted: {3 * real['weights']} FLOPs" in t and "= 3 per weight" in t
    assert "3 + 2 + 2 = 7 FLOPs per weight per token" in t and "C ≈ 7 · N · D" in t and "777 = 12·" in t


def test_budget_panel_is_chinchillas_law(svgs):
    from course_lib.scaling import CHINCHILLA_2022, JointFit, compute_optimal

    b = T.budget_example()
    n_opt, d_opt = compute_optimal(JointFit(**CHINCHILLA_2022), T.CHINCHILLA_FLOPS)
    assert b["N"][1] == pytest.approx(n_opt) and b["D"][1] == pytest.approx(d_opt)
    assert all(6 * n * d == pytest.approx(T.CHINCHILLA_FLOPS) for n, d in zip(b["N"], b["D"]))  # one budget
    assert b["loss"][1] < b["loss"][0] and b["loss"][1] < b["loss"][2]  # the optimum lies in between
    assert b["curve_loss"].min() == pytest.approx(b["loss"][1], abs=2e-3)
    t = joined(svgs["training_cost"])
    for n, d, loss in zip(b["N"], b["D"], b["loss"]):
        assert f"N = {T._short(n)}" in t and f"D = {T._short(d)}" in t and f"loss {loss:.2f}" in t
    assert T._short(3.2e10) == "32B" and T._short(2.98e12) == "3.0T" and T._power(5.76e23) == "5.76 × 10²³"
    assert "C = 5.76 × 10²³ FLOPs" in t


# ----------------------------------------------------------------------------- 10 post-training stages
def test_stages_in_order_with_data_and_loss(svgs):
    labels, t = texts(svgs["post_training_stages"]), joined(svgs["post_training_stages"])
    titles = [x for x in labels if re.fullmatch(r"\d · .+", x)]
    assert titles == ["1 · pretraining", "2 · supervised fine-tuning", "3 · preference optimisation",
                      "4 · RL with a checker"]
    for key in ("data: raw text", "on every token", "assistant's tokens only", "loss (DPO)", "frozen reference",
                "loss (GRPO)", "group's mean", "chosen", "rejected", "m = 0", "m = 1", "<|im_end|>"):
        assert key in t, key
    assert "this notebook (10)" in labels and "added later in the course" in labels
    nb = (ROOT / "notebooks" / "10_interaction_formats.ipynb").read_text()
    assert "This notebook does the second box" in nb and "post_training_stages()" in nb  # SFT is box 2


def test_grpo_group_is_scored_by_the_checker(svgs):
    from course_lib.post_training import AdditionTask, dpo_loss, group_advantages

    g = T.grpo_example()
    task = AdditionTask(3)
    assert g["rewards"] == [task.reward((T.GRPO_PROBLEM, task.encode(r))) for r in T.GRPO_REPLIES] == [1, 0, 0, 1]
    assert g["advantages"] == pytest.approx(group_advantages(torch.tensor([g["rewards"]]))[0].tolist())
    labels = texts(svgs["post_training_stages"])
    prompt = task.prompt(*T.GRPO_PROBLEM)
    assert [x for x in labels if x.startswith(prompt) and x.endswith("$")] == [prompt + r for r in T.GRPO_REPLIES]
    drawn = [x for x in labels if re.fullmatch(r"[+-]\d\.\d\d", x)]
    assert drawn == [f"{a:+.2f}" for a in g["advantages"]]
    t = joined(svgs["post_training_stages"])
    assert f"β = {inspect.signature(dpo_loss).parameters['beta'].default:g} (dpo_loss default)" in t
    assert f"{prompt}0217$   chosen   ↑" in t and f"{prompt}0216$   rejected   ↓" in t
    assert f"group mean {sum(g['rewards']) / 4:g}" in t


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("func", NAMES)
def test_no_text_runs_off_the_canvas(func):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = getattr(T, func)().figure
    renderer = FigureCanvasAgg(fig).get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    for t in fig.axes[0].texts:
        if t.get_text():
            box = t.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= W + 1 and box.y1 <= H + 1, (t.get_text(), box, W, H)


@pytest.mark.parametrize("func", NAMES)
def test_no_two_labels_overlap(func):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    d = getattr(T, func)()
    renderer = FigureCanvasAgg(d.figure).get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in d.figure.axes[0].texts if t.get_text().strip()]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            assert not (a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1), (ta, tb)
