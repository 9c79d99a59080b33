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

from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.finetuning import LoRALinear, SoftPrompt, mean_pool

__all__ = ["check_mean_pool", "check_lora_forward", "check_merge_lora", "check_insert_prompt", "check_lora_parameter_count",
           "reference_lora_parameter_count", "hint", "HINTS"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "padding must not count: leave the padded positions' states out of the sum, and divide by the number "
        "of REAL tokens of each row, not by T. Every row of the batch has its own count.",
        "turn the (B, T) mask into (B, T, 1) floats (unsqueeze the last dim) so that it broadcasts over d; "
        "multiply h by it, sum over the token dimension (dim 1), and divide by the mask summed over the same "
        "dimension.",
    ),
    2: (
        "the frozen layer's output plus a low-rank correction: x goes down through A to r numbers, then back "
        "up through B to d_out, and that path is scaled by alpha divided by the rank r, which is the number of "
        "rows of A. The scale is alpha over r, not alpha.",
        "read r from A's first dimension; compute x times W transposed, plus b; then x times A transposed "
        "times B transposed, multiplied by alpha over r; add the two. Follow the shapes: (N, d_in) to (N, r) "
        "to (N, d_out).",
    ),
    3: (
        "the adapter's path from x through A and B is linear, so it equals multiplying x by a single "
        "(d_out, d_in) matrix, scaled as in exercise 2. Add that matrix to W; the bias does not change.",
        "the extra matrix is the matrix product of B and A, a (d_out, r) by (r, d_in) product with W's "
        "shape, times alpha over r (r is the number of rows of A); the merged weight is W plus it.",
    ),
    4: (
        "the output has n more positions: position 0 ([CLS]) stays first, then come the n prompt vectors, "
        "then the other tokens. Every row of the batch gets the same prompt, and the mask grows the same way, "
        "with 1s at the prompt's places (the prompt is always attended to).",
        "give the (n, d) prompt a batch dimension and expand it to B copies; concatenate along the position "
        "dimension (dim 1) the first position of x, the prompt and the positions from 1 on; build the mask the "
        "same way with a (B, n) tensor of ones, in the mask's dtype, in the middle.",
    ),
    5: (
        "LoRA adds two small matrices to each adapted layer, A of shape (r, d_in) and B of shape (d_out, r); "
        "the layer's own weight and bias stay frozen and do not count.",
        "a block has four attention matrices from d_model to d_model and a feed-forward pair, d_model to d_ff "
        "and d_ff back to d_model; add r times (d_in + d_out) for each of the six, then multiply by the number "
        "of adapted blocks.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1 to 5 up to `level` (1: what to think about, 2: the method), printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch08")


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def check_mean_pool(fn: Callable) -> bool | None:
    """Exercise 1: fn(h (B, T, d), attention_mask (B, T)) -> mean of the real tokens' states (B, d)."""
    cases = [
        (torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]])),
        (_randn(0, 2, 4, 3), torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])),
        (_randn(1, 3, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])),
    ]
    return check_function(
        fn, mean_pool, cases, name="mean pooling", atol=1e-5, rtol=1e-5,
        hint=checker_hint(HINTS, 1, "ch08"),
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


def check_lora_forward(fn: Callable) -> bool | None:
    """Exercise 2: fn(x (N, d_in), W (d_out, d_in), b (d_out,), A (r, d_in), B (d_out, r), alpha) -> (N, d_out)."""
    return check_function(
        fn, _ref_lora_forward, _lora_cases(), name="LoRA forward", atol=1e-4, rtol=1e-4,
        hint=checker_hint(HINTS, 2, "ch08"),
    )


def check_merge_lora(fn: Callable) -> bool | None:
    """Exercise 3: fn(W (d_out, d_in), A (r, d_in), B (d_out, r), alpha) -> the merged weight (d_out, d_in)."""
    cases = [(W, A, B, alpha) for _x, W, _b, A, B, alpha in _lora_cases()]
    return check_function(
        fn, _ref_merge, cases, name="merge LoRA", atol=1e-4, rtol=1e-4,
        hint=checker_hint(HINTS, 3, "ch08"),
    )


def _ref_insert(x, mask, prompt):
    sp = SoftPrompt(prompt.shape[0], prompt.shape[1], init=prompt)
    with torch.no_grad():
        return sp.insert(x, mask)


def check_insert_prompt(fn: Callable) -> bool | None:
    """Exercise 4: fn(x (B, T, d), attention_mask (B, T), prompt (n, d)) -> (x (B, T+n, d), mask (B, T+n)),
    the prompt vectors placed right after [CLS] (position 0), their mask entries 1."""
    cases = [
        (_randn(0, 1, 3, 2), torch.tensor([[1, 1, 1]]), _randn(1, 2, 2)),
        (_randn(2, 2, 4, 4), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]), _randn(3, 3, 4)),
    ]
    return check_function(
        fn, _ref_insert, cases, name="insert soft prompt", atol=1e-6,
        hint=checker_hint(HINTS, 4, "ch08"),
    )


# ----------------------------------------------------------------------------- exercise 5
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")  # notebook 08's LoRA adapts all six


def reference_lora_parameter_count(rank: int, n_layers: int, d_model: int, d_ff: int) -> int:
    """Trainable LoRA parameters when `add_lora` adapts the six matrices of `n_layers` BERT blocks, counted on a real
    (small, random) BERT of that shape."""
    from course_lib.finetuning import add_lora, freeze, lora_parameters
    from course_lib.models import BERT, BertConfig

    bert = freeze(BERT(BertConfig(vocab_size=8, block_size=4, n_layer=n_layers, n_head=1, d_model=d_model, d_ff=d_ff,
                                  dropout=0.0, add_pooler=False)))
    add_lora(bert, r=rank, alpha=2 * rank, targets=LORA_TARGETS)
    return sum(p.numel() for p in lora_parameters(bert))


def check_lora_parameter_count(fn: Callable) -> bool | None:
    """Exercise 5: fn(rank, n_layers, d_model, d_ff) -> LoRA's trainable parameters on q, k, v, out, fc1 and fc2."""
    cases = [(8, 2, 384, 1536), (2, 2, 384, 1536), (32, 2, 384, 1536), (4, 1, 16, 64), (1, 3, 8, 40)]
    return check_function(fn, reference_lora_parameter_count, cases, name="LoRA parameter count",
                          hint=checker_hint(HINTS, 5, "ch08"))
