"""Checkers for notebook 13 (a modern LLM: SmolLM2-135M rebuilt from the course's parts).

Each `check_*` takes the learner's function, runs it against the course's reference on a few cases,
and keeps the contract of `course_lib.exercises`: not attempted -> hint, returns None;
wrong -> ExerciseError; right -> True. References: `course_lib.attention.repeat_kv`,
`course_lib.gguf.dequantize` (bit-for-bit equal to llama.cpp's gguf package) and
`course_lib.embeddings.apply_rotary(..., interleaved=False)` with `rotary_angles`.
Hints come in two tiers: the checker prints the first (what to think about); `hint(n)` prints the next.
The cases are synthetic, so the checkers need neither the GGUF file nor transformers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from course_lib.attention import repeat_kv
from course_lib.embeddings import apply_rotary, rotary_angles
from course_lib.exercises import check_function, checker_hint, show_hint
from course_lib.gguf import dequantize, quantize

__all__ = ["check_repeat_kv", "check_dequantize_q4_1_block", "check_rotary_half", "check_stored_bytes", "hint", "HINTS",
           "reference_dequantize_q4_1_block", "reference_rotary_half", "reference_stored_bytes"]

#: exercise number -> hints, first what to think about, then closer to the method (never the code).
HINTS: dict[int, tuple[str, ...]] = {
    1: (
        "query head h reads key/value head h // n_rep, so each key/value head must appear n_rep times in a row, "
        "next to itself: [k0, k0, k0, k1, k1, k1], not [k0, k1, k0, k1, k0, k1].",
        "make room for a new axis right after the head axis, repeat along it, then merge the two head axes into one "
        "(torch has functions that repeat each element in place along a dimension, too).",
    ),
    2: (
        "a Q4_1 block is 2 bytes of float16 scale d, 2 bytes of float16 minimum m, then 16 bytes of 4-bit codes; "
        "each weight is d * q + m, computed in float32.",
        "read the first four bytes as two little-endian float16 numbers; of the 16 code bytes, the LOW nibbles "
        "(byte & 15) are weights 0..15 and the HIGH nibbles (byte >> 4) are weights 16..31.",
    ),
    3: (
        "in the half-split convention feature i pairs with feature i + head_dim/2; pair i turns by the angle "
        "position * base^(-2i / head_dim).",
        "cut q into a first and a second half (a, b); each pair becomes (a cos - b sin, a sin + b cos); put the "
        "two new halves back side by side. Each row of q has its own position.",
    ),
    4: (
        "a quantized tensor is stored row by row in blocks: each block of 32 weights takes a fixed number of "
        "bytes, whatever the weights are. F32 and F16 have blocks of one weight.",
        "count the blocks of one row (row length / block size), multiply by the bytes of one block, then by the "
        "number of rows. A Q8_0 block is a float16 scale and 32 one-byte codes; Q4_0 a scale and 32 four-bit "
        "codes; Q4_1 a scale, a minimum and 32 four-bit codes.",
    ),
}


def hint(exercise: int, level: int = 2) -> str:
    """The hints of exercise 1, 2, 3 or 4 up to `level` (1: what to think about, 2: closer to the method); printed and returned."""
    return show_hint(HINTS, exercise, level, chapter="ch13")


# ----------------------------------------------------------------------------- exercise 1
def check_repeat_kv(fn: Callable) -> bool | None:
    """Exercise 1: fn(x (B, n_kv, T, head_dim), n_rep) -> (B, n_kv * n_rep, T, head_dim), each head repeated in place."""
    g = torch.Generator().manual_seed(13)
    cases = [
        (torch.arange(4.0).view(1, 2, 1, 2), 2),
        (torch.randn(1, 3, 5, 8, generator=g), 3),  # SmolLM2's 3 key/value heads for 9 query heads
        (torch.randn(2, 2, 4, 6, generator=g), 4),
        (torch.randn(1, 4, 3, 2, generator=g), 1),  # n_rep = 1: multi-head attention, unchanged
    ]
    return check_function(fn, repeat_kv, cases, name="repeat_kv", hint=checker_hint(HINTS, 1, "ch13"))


# ----------------------------------------------------------------------------- exercise 2
def reference_dequantize_q4_1_block(block: bytes) -> np.ndarray:
    """The 32 float32 weights of one 20-byte Q4_1 block (`course_lib.gguf.dequantize` of it)."""
    return dequantize(np.frombuffer(bytes(block), dtype=np.uint8), "Q4_1", (32,))


def _q4_1_blocks() -> list[bytes]:
    rng = np.random.default_rng(13)
    rows = [
        rng.normal(0, 0.05, 32),  # a typical weight block
        rng.uniform(-1, 3, 32),  # all levels used, a positive and a negative end
        np.full(32, 0.25),  # a constant block: d = 0, every weight is m
        np.linspace(-2, 0.5, 32),
    ]
    blocks = [bytes(quantize(np.asarray(r, dtype=np.float32), "Q4_1")) for r in rows]
    blocks.append(bytes([0x00, 0x3C, 0x00, 0xBC] + [0x10 * (15 - i % 16) + i % 16 for i in range(16)]))  # d=1, m=-1
    return blocks


def check_dequantize_q4_1_block(fn: Callable) -> bool | None:
    """Exercise 2: fn(block: 20 bytes) -> the 32 weights (float32 array, tensor or list), as llama.cpp decodes them."""
    return check_function(
        fn, reference_dequantize_q4_1_block, [(b,) for b in _q4_1_blocks()], name="Q4_1 block",
        atol=1e-6, rtol=1e-6, hint=checker_hint(HINTS, 2, "ch13"),
    )


# ----------------------------------------------------------------------------- exercise 3
def reference_rotary_half(q: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """q (T, head_dim) rotated by RoPE at `positions` (T,), pairing feature i with i + head_dim/2."""
    cos, sin = rotary_angles(positions, q.shape[-1], base)
    return apply_rotary(q, cos, sin, interleaved=False)


def check_rotary_half(fn: Callable) -> bool | None:
    """Exercise 3: fn(q (T, head_dim), positions (T,), base) -> q rotated, half-split pairs (Hugging Face's Llama)."""
    g = torch.Generator().manual_seed(13)
    cases = [
        (torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([1]), 10000.0),
        (torch.randn(5, 8, generator=g), torch.arange(5), 10000.0),
        (torch.randn(3, 64, generator=g), torch.tensor([0, 100, 5000]), 100000.0),  # SmolLM2's head_dim and base
        (torch.randn(4, 16, generator=g), torch.tensor([7, 3, 3, 0]), 500.0),
    ]
    return check_function(fn, reference_rotary_half, cases, name="rotary (half-split)", atol=1e-4, rtol=1e-4,
                          hint=checker_hint(HINTS, 3, "ch13"))


# ----------------------------------------------------------------------------- exercise 4
def reference_stored_bytes(shape: tuple[int, ...], qtype: str) -> int:
    """Bytes that a tensor of `shape` takes in the GGUF file as `qtype` (what `course_lib.gguf.quantize` writes)."""
    return int(quantize(np.zeros(shape, dtype=np.float32), qtype).nbytes)


def check_stored_bytes(fn: Callable) -> bool | None:
    """Exercise 4: fn(shape, qtype) -> the bytes of a (rows, row_length) tensor stored as F32, F16, Q8_0, Q4_0 or Q4_1."""
    cases = [
        ((576, 576), "Q4_1"),  # one of SmolLM2's attention matrices
        ((1536, 576), "Q4_1"),  # a feed-forward matrix
        ((192, 576), "Q8_0"),
        ((64, 64), "Q4_0"),
        ((3, 32), "F16"),
        ((576,), "F32"),  # a norm's weight: one row
        ((49152, 576), "Q4_1"),  # the token embedding
    ]
    return check_function(fn, reference_stored_bytes, cases, name="stored bytes", hint=checker_hint(HINTS, 4, "ch13"))
