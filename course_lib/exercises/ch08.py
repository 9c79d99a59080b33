"""Checkers for notebook 08 (fine-tuning BERT).

Each `check_*` takes the learner's function, runs it against the library's reference on a few
cases, and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. The references are `course_lib.finetuning`'s
`mean_pool`, `LoRALinear` (forward and merge) and `SoftPrompt.insert`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from course_lib.exercises import check_function
from course_lib.finetuning import LoRALinear, SoftPrompt, mean_pool

__all__ = ["check_mean_pool", "check_lora_forward", "check_merge_lora", "check_insert_prompt"]


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def check_mean_pool(fn: Callable) -> bool:
    """Exercise 1: fn(h (B, T, d), attention_mask (B, T)) -> mean of the real tokens' states (B, d)."""
    cases = [
        (torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]])),
        (_randn(0, 2, 4, 3), torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])),
        (_randn(1, 3, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])),
    ]
    return check_function(
        fn, mean_pool, cases, name="mean pooling", atol=1e-5, rtol=1e-5,
        hint="m = attention_mask.unsqueeze(-1).float(); (h * m).sum(1) / m.sum(1). Padding must not count.",
    )


def _lora(W: torch.Tensor, b: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float) -> LoRALinear:
    base = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        base.weight.copy_(W)
        base.bias.copy_(b)
    lora = LoRALinear(base, r=A.shape[0], alpha=alpha)
    with torch.no_grad():
        lora.lora_A.copy_(A)
        lora.lora_B.copy_(B)
    return lora


def _ref_lora_forward(x, W, b, A, B, alpha):
    with torch.no_grad():
        return _lora(W, b, A, B, alpha)(x)


def _ref_merge(W, A, B, alpha):
    lora = _lora(W, torch.zeros(W.shape[0]), A, B, alpha)
    lora.merge()
    return lora.base.weight.detach().clone()


def _lora_cases() -> list[tuple]:
    cases = []
    for seed, (n, d_in, d_out, r, alpha) in enumerate([(2, 4, 3, 1, 1.0), (5, 8, 6, 2, 16.0), (3, 16, 16, 4, 8.0)]):
        cases.append((_randn(seed, n, d_in), _randn(seed + 10, d_out, d_in), _randn(seed + 20, d_out),
                      _randn(seed + 30, r, d_in), _randn(seed + 40, d_out, r), alpha))
    return cases


def check_lora_forward(fn: Callable) -> bool:
    """Exercise 2: fn(x (N, d_in), W (d_out, d_in), b (d_out,), A (r, d_in), B (d_out, r), alpha) -> (N, d_out)."""
    return check_function(
        fn, _ref_lora_forward, _lora_cases(), name="LoRA forward", atol=1e-4, rtol=1e-4,
        hint="r = A.shape[0]; x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T. The scale is alpha / r, not alpha.",
    )


def check_merge_lora(fn: Callable) -> bool:
    """Exercise 3: fn(W (d_out, d_in), A (r, d_in), B (d_out, r), alpha) -> the merged weight (d_out, d_in)."""
    cases = [(W, A, B, alpha) for _x, W, _b, A, B, alpha in _lora_cases()]
    return check_function(
        fn, _ref_merge, cases, name="merge LoRA", atol=1e-4, rtol=1e-4,
        hint="W + (alpha / r) * B @ A, with r = A.shape[0]: (d_out, r) @ (r, d_in) has W's shape.",
    )


def _ref_insert(x, mask, prompt):
    sp = SoftPrompt(prompt.shape[0], prompt.shape[1], init=prompt)
    with torch.no_grad():
        return sp.insert(x, mask)


def check_insert_prompt(fn: Callable) -> bool:
    """Exercise 4: fn(x (B, T, d), attention_mask (B, T), prompt (n, d)) -> (x (B, T+n, d), mask (B, T+n)),
    the prompt vectors placed right after [CLS] (position 0), their mask entries 1."""
    cases = [
        (_randn(0, 1, 3, 2), torch.tensor([[1, 1, 1]]), _randn(1, 2, 2)),
        (_randn(2, 2, 4, 4), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]), _randn(3, 3, 4)),
    ]
    return check_function(
        fn, _ref_insert, cases, name="insert soft prompt", atol=1e-6,
        hint="p = prompt.unsqueeze(0).expand(B, -1, -1); torch.cat([x[:, :1], p, x[:, 1:]], dim=1); "
        "the mask gets torch.ones(B, n) at the same place.",
    )
