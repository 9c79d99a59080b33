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

from course_lib.exercises import check_function
from course_lib.layers import TransformerBlock

__all__ = [
    "check_layer_norm",
    "check_rms_norm",
    "check_block_params",
    "check_block_flops",
    "reference_block_params",
    "reference_block_flops",
]


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
        hint="mean = x.mean(-1, keepdim=True); var = x.var(-1, keepdim=True, unbiased=False) (the biased variance); "
        "(x - mean) / torch.sqrt(var + eps) * weight + bias.",
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
        hint="no mean is subtracted: rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps); return x / rms * weight.",
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
        hint="attention: 4 linear layers d_model -> d_model, each with a bias; feed-forward: d_model -> d_ff "
        "and d_ff -> d_model, with biases; two LayerNorms, each with a weight and a bias of size d_model.",
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
        hint="a (m x k) @ (k x n) product costs 2*m*k*n FLOPs. Count q, k, v and output projections "
        "(each B*T x d_model x d_model), the scores Q K^T and weights @ V (each B x T x T x d_model over all heads), "
        "and the two feed-forward layers (B*T x d_model x d_ff each).",
    )
