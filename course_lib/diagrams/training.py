"""Concept diagrams of what training costs and of the stages after pretraining, drawn with the course's kit.

What it does: two pictures, each a function with no arguments that returns a `Diagram`:
- `training_cost()` (notebook 12): one weight matrix and one token, forward and backward, 6 FLOPs per
  weight, hence C ≈ 6·N·D; attention's weight-free term 12·n_layer·T·d; and one compute budget shared
  between model size N and tokens D, with the compute-optimal point in between;
- `post_training_stages()` (notebook 10): pretraining -> supervised fine-tuning -> preference
  optimisation (DPO) -> reinforcement learning with a checker (GRPO), each with its data and its loss.

Every number a picture shows is computed here: the FLOPs are counted by PyTorch's `FlopCounterMode` on a
real matrix product and on the course's attention (`flop_counts()` returns them), the budget panel comes from
`course_lib.scaling` (Chinchilla's published law, `compute_optimal`, `isoflop_curve`), and the GRPO group is
scored by notebook 14's checker (`AdditionTask.reward`) and turned into advantages by `group_advantages`
(`grpo_example()` returns it).

Leaves out: the notebooks' measured sweeps and trained models (their plots show those), biases, norms and
softmax (a few FLOPs per number, not per weight), and post-training methods the course does not run
(reward models, PPO's value network).

See notebooks 10 and 12.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from course_lib.diagrams.kit import COLOURS, Diagram, arrow, box, bracket, canvas, grid, label

__all__ = ["training_cost", "post_training_stages", "flop_counts", "budget_example", "grpo_example",
           "WEIGHT_SHAPE", "CHINCHILLA_FLOPS", "GRPO_PROBLEM", "GRPO_REPLIES"]

#: the example weight matrix of `training_cost()`: d_in x d_out, small enough to draw every weight.
WEIGHT_SHAPE = (4, 3)

#: Chinchilla's training budget in FLOPs (Hoffmann et al. 2022), the budget notebook 12 uses for the published law.
CHINCHILLA_FLOPS = 5.76e23

#: notebook 14's task: one addition problem and a group of four sampled replies (answer + end token "$").
GRPO_PROBLEM = (42, 175)
GRPO_REPLIES = ("0217$", "0216$", "0207$", "0217$")


def _count(fn) -> int:
    """FLOPs of the matrix products `fn()` runs, as PyTorch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flop_counts(d_in: int = WEIGHT_SHAPE[0], d_out: int = WEIGHT_SHAPE[1], T: int | None = None,
                d: int | None = None) -> dict:
    """FLOPs counted on real tensors: one token through a d_in x d_out weight (forward, dL/dx, dL/dW), and one
    layer's attention over T tokens of width d (scores and weighted sum, forward + backward), per token; and
    `layer_weights`, the weights one block multiplies by (Q, K, V, output: 4d², feed-forward: 2·d·4d).

    T and d default to the context length and the widest model of notebook 12's sweep (`SweepConfig`).
    """
    from course_lib.attention import scaled_dot_product_attention

    if T is None or d is None:
        from course_lib.scaling import SweepConfig

        sweep = SweepConfig()
        T = sweep.block_size if T is None else T
        d = max(width for _, width in sweep.shapes) if d is None else d
    x = torch.ones(1, d_in, requires_grad=True)  # one token's activation (values do not change the count)
    w = torch.ones(d_in, d_out, requires_grad=True)
    forward = _count(lambda: x @ w)
    y = x @ w
    grad_y = torch.ones_like(y)
    grad_x = _count(lambda: torch.autograd.grad(y, x, grad_y, retain_graph=True))
    grad_w = _count(lambda: torch.autograd.grad(y, w, grad_y, retain_graph=True))
    q, k, v = (torch.ones(1, T, d, requires_grad=True) for _ in range(3))

    def attention_step():
        out = scaled_dot_product_attention(q, k, v)
        out.backward(torch.ones_like(out))

    attention = _count(attention_step)
    return {"weights": d_in * d_out, "forward": forward, "grad_x": grad_x, "grad_w": grad_w,
            "T": T, "d": d, "attention_per_token": attention // T,
            "layer_weights": 4 * d * d + 2 * d * 4 * d}  # Q, K, V, output + the two feed-forward matrices (d_ff = 4d)


def budget_example(flops: float = CHINCHILLA_FLOPS, factor: float = 10.0) -> dict:
    """One compute budget C = 6·N·D under Chinchilla's published law: the compute-optimal (N, D), a model
    `factor` times smaller and one `factor` times bigger (each with D = C / 6N), and their predicted losses."""
    from course_lib.scaling import CHINCHILLA_2022, JointFit, compute_optimal, isoflop_curve

    law = JointFit(**CHINCHILLA_2022)
    n_opt, _ = compute_optimal(law, flops)
    sizes = np.array([n_opt / factor, n_opt, n_opt * factor])
    curve_n = n_opt * np.logspace(-1.5, 1.5, 61)
    return {"flops": flops, "law": law, "N": sizes, "D": flops / (6 * sizes), "loss": isoflop_curve(law, flops, sizes),
            "curve_N": curve_n, "curve_loss": isoflop_curve(law, flops, curve_n)}


def grpo_example() -> dict:
    """The group of `GRPO_REPLIES` to `GRPO_PROBLEM`, scored by notebook 14's checker and made group-relative."""
    from course_lib.post_training import AdditionTask, group_advantages

    task = AdditionTask(3)
    rewards = [task.reward((GRPO_PROBLEM, task.encode(r))) for r in GRPO_REPLIES]
    advantages = group_advantages(torch.tensor([rewards]))[0].tolist()
    return {"prompt": task.prompt(*GRPO_PROBLEM), "answer": task.answer(*GRPO_PROBLEM), "replies": list(GRPO_REPLIES),
            "rewards": rewards, "mean": sum(rewards) / len(rewards), "advantages": advantages}


def _short(n: float) -> str:
    """A count in words of thousands: 3.2e10 -> '32B', 3.0e12 -> '3.0T'."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= size:
            v = n / size
            return f"{v:.1f}{suffix}" if v < 10 else f"{v:.0f}{suffix}"
    return f"{n:,.0f}"


def _power(x: float) -> str:
    """5.76e23 -> '5.76 × 10²³'."""
    e = int(math.floor(math.log10(x)))
    sup = str(e).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{x / 10 ** e:.2f} × 10{sup}"


# ----------------------------------------------------------------------------- 12 what training costs
def training_cost() -> Diagram:
    """Why a training step costs 6 FLOPs per weight per token (C ≈ 6·N·D), attention's extra term, and one budget
    shared between model size and tokens (notebook 12)."""
    c = flop_counts()
    n_w = c["weights"]
    per_weight = [c["forward"] // n_w, c["grad_x"] // n_w, c["grad_w"] // n_w]
    total = sum(per_weight)
    d_in, d_out = WEIGHT_SHAPE
    d, ax = canvas("training-cost", "What a training step costs: 6 FLOPs per weight per token, and one budget shared "
                   "between model size and data", 20, 11)

    # left: one weight matrix, one token
    label(ax, 5.45, 10.6, f"One weight matrix, one token: {total} FLOPs per weight", size=11, bold=True)
    cell = 0.5
    grid(ax, 0.6, 9.3, [[f"x{i + 1}" for i in range(d_in)]], cell=cell, colours=[["vector"] * d_in], size=8)
    label(ax, 0.6 + d_in * cell / 2, 9.65, f"x  (1 × {d_in})", size=8, colour="soft_ink")
    label(ax, 3.05, 9.05, "·", size=14, bold=True)
    grid(ax, 3.5, 9.3, [[f"w{i + 1}{j + 1}" for j in range(d_out)] for i in range(d_in)], cell=cell,
         colours=[["block"] * d_out for _ in range(d_in)], size=7)
    label(ax, 3.5 + d_out * cell / 2, 9.65, f"W  ({d_in} × {d_out} = {n_w} weights)", size=8, colour="soft_ink")
    label(ax, 5.5, 9.05, "=", size=12, bold=True)
    grid(ax, 5.9, 9.3, [[f"y{j + 1}" for j in range(d_out)]], cell=cell, colours=[["vector"] * d_out], size=8)
    label(ax, 5.9 + d_out * cell / 2, 9.65, f"y  (1 × {d_out})", size=8, colour="soft_ink")
    label(ax, 5.9, 8.1, "y_j = sum over i of x_i · w_ij:\nper weight one multiply\nand one add",
          size=8, ha="left", colour="soft_ink")

    label(ax, 5.45, 6.85, "Training the token through W: three matrix products", size=9, bold=True)
    rows = [("forward", "y = x W", "the layer's output", c["forward"], per_weight[0], "output"),
            ("backward", "∂L/∂x = ∂L/∂y Wᵀ", "passed on to the layer below", c["grad_x"], per_weight[1], "loss"),
            ("backward", "∂L/∂W = xᵀ ∂L/∂y", "the gradient the optimiser uses", c["grad_w"], per_weight[2], "loss")]
    for r, (kind, formula, what, counted, per, colour) in enumerate(rows):
        y = 5.6 - r * 1.0
        box(ax, 0.3, y, 1.8, 0.8, kind, colour=colour, size=9, bold=True)
        box(ax, 2.3, y, 3.9, 0.8, f"{formula}\n{what}", colour="white", size=8)
        box(ax, 6.4, y, 4.2, 0.8, f"counted: {counted} FLOPs\n= {per} per weight", colour="white", size=8.5)
    box(ax, 0.3, 2.45, 10.3, 0.85, f"{' + '.join(map(str, per_weight))} = {total} FLOPs per weight per token"
        f"   →   C ≈ {total} · N · D", colour="highlight", size=10, bold=True)
    label(ax, 5.45, 2.1, "N weights, D training tokens; the backward pass costs twice the forward", size=8,
          colour="soft_ink")
    share = c["attention_per_token"] / (c["attention_per_token"] + total * c["layer_weights"])
    box(ax, 0.3, 0.2, 10.3, 1.5, "", colour="muted", dashed=True)
    label(ax, 0.5, 0.95,
          "Aside: attention's scores Q Kᵀ and its weighted sum A V multiply activations by\n"
          "activations, so N does not count them. They add 12·T·d FLOPs per layer and token,\n"
          f"12·n_layer·T·d in all. Counted at T = {c['T']}, d = {c['d']} (notebook 12's widest GPT):\n"
          f"{c['attention_per_token']:,} = 12·{c['T']}·{c['d']}, {share:.0%} of that layer's training FLOPs.",
          size=8, ha="left")

    # right: one budget, many ways to spend it
    b = budget_example()
    x0, x1, y0, y1 = 12.2, 19.4, 6.4, 9.7
    label(ax, 15.7, 10.6, f"One budget C = {total}·N·D: model size or tokens?", size=11, bold=True)
    lo, hi = float(b["curve_loss"].min()), float(b["curve_loss"].max())

    def at(n, loss):
        return (x0 + (math.log10(n / b["N"][1]) + 1.5) / 3.0 * (x1 - x0), y0 + (loss - lo) / (hi - lo) * (y1 - y0))

    pts = [at(n, l) for n, l in zip(b["curve_N"], b["curve_loss"])]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=COLOURS["edge"], linewidth=1.4)
    arrow(ax, (x0 - 0.2, y0 - 0.3), (x1 + 0.3, y0 - 0.3), width=0.9)
    arrow(ax, (x0 - 0.2, y0 - 0.3), (x0 - 0.2, y1 + 0.2), width=0.9)
    label(ax, x0 - 0.45, (y0 + y1) / 2, "predicted loss", size=8, colour="soft_ink", rotation=90)
    label(ax, (x0 + x1) / 2, y0 - 0.6, "model size N (log scale); tokens D = C / 6N", size=8, colour="soft_ink")
    names = ["smaller model,\nmore tokens", "compute-\noptimal", "bigger model,\nfewer tokens"]
    side = 0.65  # equal areas: width ∝ √N, height ∝ √D, so width × height ∝ N·D = C / 6
    for i, (n, dd, loss) in enumerate(zip(b["N"], b["D"], b["loss"])):
        px, py = at(n, loss)
        w, h = side * math.sqrt(n / b["N"][1]), side * math.sqrt(dd / b["D"][1])
        for top, bottom in ((py, y0 - 0.3), (y0 - 0.85, 3.75 + h / 2)):  # around the axis' caption
            ax.plot([px, px], [top, bottom], color=COLOURS["soft_ink"], linewidth=0.7, linestyle=":")
        ax.plot([px], [py], marker="o", markersize=7, color=COLOURS["highlight"] if i == 1 else "white",
                markeredgecolor=COLOURS["edge"])
        box(ax, px - w / 2, 3.75 - h / 2, w, h, "", colour="highlight" if i == 1 else "vector", round=False)
        label(ax, px, 1.75, f"{names[i]}\nN = {_short(n)}\nD = {_short(dd)}\nloss {loss:.2f}", size=8, bold=i == 1)
    label(ax, x0 - 0.2, 3.75, "N × D", size=8, colour="soft_ink", ha="right")
    label(ax, (x0 + x1) / 2, 0.55, "rectangles N wide, D tall: equal areas, the same compute", size=8, colour="soft_ink")
    label(ax, (x0 + x1) / 2, 0.15, f"loss: Chinchilla's fitted law at its budget C = {_power(b['flops'])} FLOPs",
          size=8, colour="soft_ink", italic=True)
    return d


# ----------------------------------------------------------------------------- 10 post-training stages
def post_training_stages() -> Diagram:
    """From raw text to an assistant: pretraining, supervised fine-tuning (notebook 10), then DPO and GRPO
    (notebook 14), each stage with its data and its loss (notebook 10)."""
    from course_lib.post_training import dpo_loss

    beta = inspect.signature(dpo_loss).parameters["beta"].default
    g = grpo_example()
    chosen = g["replies"][g["rewards"].index(max(g["rewards"]))]  # a DPO pair: a better and a worse sample
    rejected = g["replies"][g["rewards"].index(min(g["rewards"]))]
    d, ax = canvas("post-training-stages", "From raw text to an assistant: pretraining, SFT, preferences (DPO) and "
                   "reinforcement learning with a checker (GRPO)", 20, 9.6)
    label(ax, 10, 9.2, "From raw text to an assistant: what each stage trains on, and what its loss rewards",
          size=11, bold=True)
    w, gap, y, h = 4.5, 0.45, 1.5, 6.0
    xs = [0.25 + i * (w + gap) for i in range(4)]
    stages = [
        ("1 · pretraining", "data: raw text", "loss: next-token cross-entropy\non every token",
         "→ a base model: continues text", "text"),
        ("2 · supervised fine-tuning", "data: demonstrations written\nin the chat format",
         "loss: cross-entropy on the\nassistant's tokens only", "→ follows the chat format, stops", "token"),
        ("3 · preference optimisation", "data: a prompt, a chosen and a\nrejected reply",
         "loss (DPO): push log π(chosen)\n− log π(rejected) up, measured\nagainst a frozen reference",
         "→ prefers the better reply", "attention"),
        ("4 · RL with a checker", "data: prompts only; the model\nsamples a group of replies",
         "loss (GRPO): raise the replies\nthe checker scores above the\ngroup's mean, lower the others",
         "→ passes the checker more often", "output"),
    ]
    for x, (name, data, loss, result, colour) in zip(xs, stages):
        box(ax, x, y, w, h, "", colour=colour)
        label(ax, x + w / 2, y + h - 0.35, name, size=9.5, bold=True)
        label(ax, x + 0.2, y + h - 0.75, data, size=8.5, ha="left", va="top")
        label(ax, x + 0.2, y + 1.95, loss, size=8.5, ha="left", va="top")
        label(ax, x + w / 2, y - 0.35, result, size=8.5, colour="soft_ink")
    for a, b in zip(xs, xs[1:]):
        arrow(ax, (a + w + 0.02, y + h / 2), (b - 0.02, y + h / 2), width=1.4)

    # one small example per stage, between its data and its loss
    my = y + 2.45
    x = xs[0] + 0.25
    for i, t in enumerate(["To", "␣be", "␣or", "␣not", "␣to", "␣be"]):
        box(ax, x + i * 0.66, my + 0.9, 0.62, 0.5, t, colour="loss", size=7.5, round=False)
    label(ax, xs[0] + w / 2, my + 0.55, "every position is a target", size=8, colour="soft_ink")

    x = xs[1] + 0.2
    box(ax, x, my + 0.9, 2.0, 0.5, "user: question", colour="muted", size=7.5, round=False)
    box(ax, x + 2.1, my + 0.9, 2.0, 0.5, "reply <|im_end|>", colour="loss", size=7.5, round=False)
    label(ax, x + 1.0, my + 0.55, "m = 0", size=8, colour="soft_ink")
    label(ax, x + 3.1, my + 0.55, "m = 1", size=8, colour="soft_ink")

    x = xs[2] + 0.2
    box(ax, x, my + 1.15, 4.1, 0.45, f"{g['prompt']}{chosen}   chosen   ↑", colour="vector", size=8, round=False)
    box(ax, x, my + 0.6, 4.1, 0.45, f"{g['prompt']}{rejected}   rejected   ↓", colour="loss", size=8, round=False)
    label(ax, xs[2] + w / 2, my + 0.05, f"β = {beta:g} (dpo_loss default);\nlarger β: π stays nearer the reference",
          size=7.5, colour="soft_ink")

    x = xs[3] + 0.2
    label(ax, x + 2.35, my + 1.92, "reward", size=7.5, colour="soft_ink")
    label(ax, x + 3.5, my + 1.92, "advantage", size=7.5, colour="soft_ink")
    for i, (reply, reward, adv) in enumerate(zip(g["replies"], g["rewards"], g["advantages"])):
        yy = my + 1.55 - i * 0.34
        label(ax, x, yy, f"{g['prompt']}{reply}", size=7.5, ha="left")
        label(ax, x + 2.35, yy, f"{reward:g}", size=7.5)
        label(ax, x + 3.5, yy, f"{adv:+.2f}", size=7.5, bold=adv > 0)
    label(ax, xs[3] + w / 2, my + 0.05, f"group mean {g['mean']:g};\nadvantage = (reward − mean) / std",
          size=7.5, colour="soft_ink")

    # which notebook does which stage
    top = y + h + 0.25
    box(ax, xs[0] + 0.4, top, w - 0.8, 0.5, "notebook 06; 10's base model", colour="muted", size=8)
    box(ax, xs[1] + 0.4, top, w - 0.8, 0.5, "this notebook (10)", colour="highlight", size=9, bold=True)
    bracket(ax, xs[2] + 0.2, xs[3] + w - 0.2, top + 0.1, "", below=False)
    box(ax, (xs[2] + xs[3] + w) / 2 - 2.2, top + 0.05, 4.4, 0.5, "added later in the course", colour="white", size=9, bold=True)
    label(ax, 10, 0.35, f"examples: an addition task ({g['prompt']}{g['answer']}, then the end token $); "
          "rewards by its checker, advantages by group_advantages; π: the model being trained",
          size=8, colour="soft_ink", italic=True)
    return d
