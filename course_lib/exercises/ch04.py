"""Checkers for notebook 04 (the transformer block).

Each `check_*` takes the learner's function, runs it against a reference on a few cases, and
keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are PyTorch's own functions
(`F.layer_norm`, `F.rms_norm`), `sum(p.numel())` of the library's block, and a FLOP count
measured by `torch.utils.flop_counter.FlopCounterMode`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.layers import TransformerBlock

__all__ = [
    "check_layer_norm",
    "check_rms_norm",
    "check_block_params",
    "check_block_flops",
    "reference_block_params",
    "reference_block_flops",
    "hint",
    "HINTS",
]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "normalise each token's vector on its own: subtract its mean, divide by its standard deviation (eps "
        "goes inside the square root), then scale and shift each feature. The variance is the biased one: "
        "divide by d, not d - 1.",
        "take the mean and the variance over the last dim with keepdim, so they broadcast, asking for the "
        "biased variance (unbiased off); centre x, divide by the square root of variance plus eps, times "
        "weight, plus bias.",
    ),
    2: (
        "RMSNorm drops the centring: no mean is subtracted and there is no bias. Divide each token's vector "
        "by its root mean square (eps inside the root), then scale by weight.",
        "square x, average over the last dim keeping the dim, add eps, take the square root; divide x by it "
        "and multiply by weight.",
    ),
    3: (
        "count layer by layer: a linear layer from n to m features has n*m weights and m biases, a LayerNorm "
        "of size d has d weights and d biases. The heads only split d_model, so their number changes no "
        "count.",
        "attention has 4 linear layers d_model to d_model (query, key, value, output), with biases; the "
        "feed-forward has d_model to d_ff and d_ff to d_model, with biases; there are two LayerNorms. Add "
        "them up as a formula in d_model and d_ff.",
    ),
    4: (
        "only matrix products count, and an (m x k) by (k x n) product costs 2*m*k*n FLOPs. List every product "
        "of the block's forward pass: the projections, the two products inside attention, the feed-forward "
        "layers.",
        "four projections, each (B*T x d_model) by (d_model x d_model); the scores Q K^T and weights times V, each "
        "B x T x T x d_model multiply-adds over all heads together (the heads split d_model, so their count "
        "cancels); two feed-forward layers of B*T x d_model x d_ff each. Double each and add.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 4 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch04")


def _tensors(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


def _ref_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def _ref_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def check_layer_norm(fn: Callable) -> bool | None:
    """Exercise 1: fn(x (..., d), weight (d,), bias (d,), eps) -> LayerNorm over the last dim."""
    x1, w1, b1 = _tensors(0, (2, 3, 8), (8,), (8,))
    x2, w2, b2 = _tensors(1, (5, 16), (16,), (16,))
    cases = [
        (torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.ones(4), torch.zeros(4), 1e-5),
        (x1, w1, b1, 1e-5),
        (x2 * 100 + 7, w2, b2, 1e-3),
    ]
    return check_function(
        fn, _ref_layer_norm, cases, name="LayerNorm", atol=1e-4, rtol=1e-4,
        hint=checker_hint(HINTS, 1, "ch04"),
    )


def check_rms_norm(fn: Callable) -> bool | None:
    """Exercise 2: fn(x (..., d), weight (d,), eps) -> RMSNorm over the last dim."""
    x1, w1 = _tensors(2, (2, 3, 8), (8,))
    x2, w2 = _tensors(3, (4, 32), (32,))
    cases = [
        (torch.tensor([[3.0, 4.0]]), torch.ones(2), 1e-6),
        (x1, w1, 1e-6),
        (x2 + 5, w2, 1e-5),
    ]
    return check_function(
        fn, _ref_rms_norm, cases, name="RMSNorm", atol=1e-4, rtol=1e-4,
        hint=checker_hint(HINTS, 2, "ch04"),
    )


def reference_block_params(d_model: int, d_ff: int) -> int:
    """Parameters of the library's pre-LN TransformerBlock (LayerNorm, GELU, biases), counted."""
    block = TransformerBlock(d_model, 1, d_ff)
    return sum(p.numel() for p in block.parameters())


def check_block_params(fn: Callable) -> bool | None:
    """Exercise 3: fn(d_model, d_ff) -> number of parameters of one block (a formula, no module)."""
    cases = [(4, 16), (64, 256), (128, 512), (768, 3072), (100, 50)]
    return check_function(
        fn, reference_block_params, cases, name="block parameters",
        hint=checker_hint(HINTS, 3, "ch04"),
    )


def reference_block_flops(batch: int, seq_len: int, d_model: int, d_ff: int) -> int:
    """Forward matmul FLOPs of the library's block, measured with FlopCounterMode (from-scratch attention)."""
    n_heads = 2 if d_model % 2 == 0 else 1
    block = TransformerBlock(d_model, n_heads, d_ff, fused=False)
    x = torch.zeros(batch, seq_len, d_model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        block(x)
    return int(counter.get_total_flops())


def check_block_flops(fn: Callable) -> bool | None:
    """Exercise 4: fn(batch, seq_len, d_model, d_ff) -> forward matmul FLOPs of one block (a formula)."""
    cases = [(1, 1, 4, 16), (2, 8, 16, 64), (1, 32, 16, 64), (3, 5, 24, 40)]
    return check_function(
        fn, reference_block_flops, cases, name="block FLOPs",
        hint=checker_hint(HINTS, 4, "ch04"),
    )
