"""Attention: scaled dot-product attention, masks, multi-head attention and a KV cache.

What it does:
- `scaled_dot_product_attention`: softmax(q k^T / sqrt(d_k) + mask) v, written from scratch
  with PyTorch's mask conventions (a bool mask is True where a query may attend; a float mask
  is added to the scores).
- `causal_mask`, `padding_mask`: the two masks every transformer needs.
- `KVCache`: keys and values of the tokens seen so far, for fast step-by-step decoding.
- `MultiHeadAttention`: self- and cross-attention with `n_heads` heads, a fast path through
  `torch.nn.functional.scaled_dot_product_attention` and a from-scratch path that also returns
  the attention weights. With `n_kv_heads < n_heads` it is grouped-query attention (Llama 2/3,
  SmolLM2): each key/value head serves n_heads / n_kv_heads query heads (`repeat_kv`), and the
  KV cache holds only the n_kv_heads heads. n_kv_heads = 1 is multi-query attention.

Fully masked rows (a query that may attend to nothing) give an output of zeros and weights of
zeros, never NaN; PyTorch >= 2.5 does the same.

Leaves out: rotary positions (pass a `rotary` function, see `course_lib.embeddings`), sliding
windows, flash-attention kernels written by hand.

See notebook 03 (and notebook 13 for grouped-query attention).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "KVCache",
    "MultiHeadAttention",
    "repeat_kv",
]

Rotary = Callable[[torch.Tensor, torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


# ----------------------------------------------------------------------------- checks
def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (..., T, d) with at least 2 dims, got shape {tuple(t.shape)}")
    if not (q.ndim == k.ndim == v.ndim):
        raise ValueError(
            f"q, k, v must have the same number of dims, e.g. (B, T, d) or (B, nh, T, hs); "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"q, k, v must share their leading (batch/head) dims; "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dim d_k: expected k of shape "
            f"{(*k.shape[:-1], q.shape[-1])}, got {tuple(k.shape)} (q is {tuple(q.shape)})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length T_k: expected v of shape "
            f"{(*v.shape[:-2], k.shape[-2], v.shape[-1])}, got {tuple(v.shape)} (k is {tuple(k.shape)})"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}")


def _check_mask(mask: torch.Tensor, target: tuple[int, ...]) -> None:
    """Raise a ValueError/TypeError unless `mask` is bool/float and broadcasts to `target`."""
    _check_tensor("mask", mask)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(
            f"mask must be bool (True = may attend) or float (added to the scores), got dtype {mask.dtype}; "
            f"for a (B, T) 0/1 attention_mask use padding_mask(attention_mask)"
        )
    ok = mask.ndim <= len(target)
    if ok:
        try:
            ok = torch.broadcast_shapes(tuple(mask.shape), target) == target
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape {target} "
            f"(..., T_q, T_k); expected e.g. {target[-2:]} or (B, 1, 1, T_k) from padding_mask()"
        )


# ----------------------------------------------------------------------------- masks
def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (t_q, t_k) mask, True where query i may attend to key j (j <= i + t_k - t_q).

    The queries are the last t_q positions of the t_k keys, as when decoding with a KV cache.
    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    >>> causal_mask(1, 3).int().tolist()
    [[1, 1, 1]]
    """
    t_k = t_q if t_k is None else t_k
    for name, t in (("t_q", t_q), ("t_k", t_k)):
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"{name} must be an int >= 0, got {t!r}")
    if t_k < t_q:
        raise ValueError(
            f"causal_mask needs t_k >= t_q (the queries are the last t_q of the t_k positions), got t_q={t_q}, t_k={t_k}"
        )
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, 1, T) key mask from a (B, T) 0/1 or bool tensor (1/True = real token).

    >>> padding_mask(torch.tensor([[1, 1, 0]])).tolist()
    [[[[True, True, False]]]]
    """
    _check_tensor("attention_mask", attention_mask)
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must have shape (B, T), got shape {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool:
        if attention_mask.is_complex():
            raise TypeError(f"attention_mask must be bool or 0/1 numbers, got dtype {attention_mask.dtype}")
        bad = (attention_mask != 0) & (attention_mask != 1)
        if bool(bad.any()):
            raise ValueError(
                f"attention_mask must hold only 0 and 1 (1 = real token), got values "
                f"{torch.unique(attention_mask).tolist()[:10]}"
            )
        attention_mask = attention_mask != 0
    return attention_mask[:, None, None, :]  # (B, 1, 1, T)


def _to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        zeros = torch.zeros((), dtype=dtype, device=mask.device)
        return torch.where(mask, zeros, torch.tensor(float("-inf"), dtype=dtype, device=mask.device))
    return mask.to(dtype)


def combine_masks(a: torch.Tensor | None, b: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Combine two masks (bool or additive float): bool & bool stays bool, otherwise floats are added.

    >>> combine_masks(causal_mask(2), torch.tensor([True, False])).int().tolist()
    [[1, 0], [1, 0]]
    """
    if a is None:
        return b
    if b is None:
        return a
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    ftype = a.dtype if a.is_floating_point() else (b.dtype if b.is_floating_point() else dtype)
    return _to_additive(a, ftype) + _to_additive(b, ftype)


# ----------------------------------------------------------------------------- the core
def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    return_weights: bool = False,
    scale: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + mask) v, from scratch; q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v).

    Same conventions as `torch.nn.functional.scaled_dot_product_attention`: a bool mask is True
    where a query may attend, a float mask is added to the scores, both broadcast to
    (..., T_q, T_k); scale defaults to 1/sqrt(d_k); dropout is applied to the weights whenever
    dropout_p > 0 (pass 0.0 in eval mode). Differences: `is_causal` may be combined with `mask`,
    and when T_q < T_k the queries are taken as the LAST T_q positions (see `causal_mask`;
    PyTorch aligns them top-left). A query with nothing to attend to gets zeros, not NaN.
    Returns out (..., T_q, d_v), and also the weights (..., T_q, T_k) actually used
    (after dropout) when `return_weights`.

    >>> q = torch.zeros(1, 2, 4); v = torch.tensor([[[1.0] * 4, [3.0] * 4]])
    >>> scaled_dot_product_attention(q, q, v)[0, 0].tolist()  # equal scores -> mean of values
    [2.0, 2.0, 2.0, 2.0]
    """
    _check_qkv(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    t_q, t_k = q.shape[-2], k.shape[-2]
    target = (*q.shape[:-2], t_q, t_k)
    if mask is not None:
        _check_mask(mask, target)
    if is_causal:
        mask = combine_masks(mask, causal_mask(t_q, t_k, device=q.device), dtype=q.dtype)

    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    # rows where every score is -inf: softmax would give 0/0 = NaN; give zeros instead.
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., T_q, 1)
    if bool(dead.any()):
        scores = scores.masked_fill(dead, 0.0)
        weights = torch.softmax(scores, dim=-1).masked_fill(dead, 0.0)
    else:
        weights = torch.softmax(scores, dim=-1)  # each row sums to 1
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    out = weights @ v  # (..., T_q, d_v)
    return (out, weights) if return_weights else out


# ----------------------------------------------------------------------------- KV cache
class KVCache:
    """Keys and values (B, nh, T, hs) of the positions seen so far; `update` appends and returns all.

    The keys and values live in buffers that grow by doubling, so appending one token copies one
    row instead of the whole cache (`torch.cat` at every step would copy T rows). Appending writes
    in place: use a cache for inference (under `torch.no_grad()`), not inside a training step.
    >>> c = KVCache(); k, v = c.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)); c.length
    3
    """

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None  # (B, nh, capacity, hs); rows past `length` are unused
        self._v: torch.Tensor | None = None
        self._length = 0

    @property
    def k(self) -> torch.Tensor | None:
        """The cached keys (B, nh, T, hs), or None before the first update."""
        return None if self._k is None else self._k[:, :, : self._length]

    @property
    def v(self) -> torch.Tensor | None:
        """The cached values (B, nh, T, hs), or None before the first update."""
        return None if self._v is None else self._v[:, :, : self._length]

    @property
    def length(self) -> int:
        """Number of cached positions T."""
        return self._length

    def __len__(self) -> int:
        return self._length

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k_new, v_new (B, nh, T_new, hs) and return all keys and values (B, nh, T, hs)."""
        _check_tensor("k_new", k_new)
        _check_tensor("v_new", v_new)
        if k_new.ndim != 4 or v_new.ndim != 4:
            raise ValueError(
                f"KVCache.update expects k_new and v_new of shape (B, nh, T, hs), "
                f"got {tuple(k_new.shape)} and {tuple(v_new.shape)}"
            )
        if k_new.shape[:3] != v_new.shape[:3]:
            raise ValueError(f"k_new and v_new must agree on (B, nh, T), got {tuple(k_new.shape)} and {tuple(v_new.shape)}")
        T_old, T_new = self._length, k_new.shape[-2]
        if self._k is None:
            self._k = k_new.new_empty(*k_new.shape[:2], max(T_new, 16), k_new.shape[-1])  # room for 16+ tokens
            self._v = v_new.new_empty(*v_new.shape[:2], max(T_new, 16), v_new.shape[-1])
        else:
            assert self._v is not None
            k, v = self._k, self._v
            if k_new.shape[:2] != k.shape[:2] or k_new.shape[-1] != k.shape[-1] or v_new.shape[-1] != v.shape[-1]:
                raise ValueError(
                    f"KVCache holds keys (B, nh, T, hs) = {(*k.shape[:2], T_old, k.shape[-1])}; new keys must be "
                    f"{(*k.shape[:2], 'T_new', k.shape[-1])}, got {tuple(k_new.shape)} "
                    f"(values {tuple(v_new.shape)}); call reset() for a new sequence"
                )
            if T_old + T_new > k.shape[-2]:  # full: double the buffers (amortised O(1) per token)
                cap = max(2 * k.shape[-2], T_old + T_new)
                self._k = torch.cat([k[:, :, :T_old], k.new_empty(*k.shape[:2], cap - T_old, k.shape[-1])], dim=-2)
                self._v = torch.cat([v[:, :, :T_old], v.new_empty(*v.shape[:2], cap - T_old, v.shape[-1])], dim=-2)
        assert self._k is not None and self._v is not None
        self._k.narrow(2, T_old, T_new).copy_(k_new)  # rows T_old .. T_old + T_new - 1 filled
        self._v.narrow(2, T_old, T_new).copy_(v_new)
        self._length = T_old + T_new
        return self._k.narrow(2, 0, self._length), self._v.narrow(2, 0, self._length)  # (B, nh, T, hs) views

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (e.g. the surviving beams in beam search)."""
        if self._k is not None:
            assert self._v is not None
            self._k = self._k.index_select(0, index.to(self._k.device))
            self._v = self._v.index_select(0, index.to(self._v.device))

    def reset(self) -> None:
        """Forget everything (start a new sequence)."""
        self._k = self._v = None
        self._length = 0

    def __repr__(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"KVCache(length={self.length}, shape={shape})"


# ----------------------------------------------------------------------------- multi-head
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head n_rep times along dim 1: (B, n_kv, T, hs) -> (B, n_kv * n_rep, T, hs).

    Grouped-query attention: query head h uses key/value head h // n_rep, so heads [k0, k1] with
    n_rep=2 become [k0, k0, k1, k1] (the order of Hugging Face's `repeat_kv`, not [k0, k1, k0, k1]).
    >>> repeat_kv(torch.tensor([[[[0.]], [[1.]]]]), 2).flatten().tolist()
    [0.0, 0.0, 1.0, 1.0]
    See notebook 13.
    """
    _check_tensor("x", x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, n_kv_heads, T, head_dim), got shape {tuple(x.shape)}")
    if not isinstance(n_rep, int) or isinstance(n_rep, bool) or n_rep < 1:
        raise ValueError(f"n_rep must be an int >= 1, got {n_rep!r}")
    if n_rep == 1:
        return x
    B, n_kv, T, hs = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, hs).reshape(B, n_kv * n_rep, T, hs)


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention with projections q_proj, k_proj, v_proj, out_proj.

    forward(x (B, T, d_model)) -> (out (B, T, d_model), weights (B, nh, T_q, T_k) or None).
    `fused=True` runs PyTorch's fast kernel unless weights are asked for; `fused=False` always
    runs the from-scratch `scaled_dot_product_attention`.
    `n_kv_heads` (default n_heads) < n_heads makes it grouped-query attention: k_proj and v_proj
    give n_kv_heads heads of head_dim, each shared by n_heads / n_kv_heads query heads, and a KV
    cache stores n_kv_heads / n_heads of the keys and values of the multi-head version.
    >>> mha = MultiHeadAttention(8, 2); out, w = mha(torch.zeros(1, 3, 8)); out.shape
    torch.Size([1, 3, 8])
    >>> MultiHeadAttention(8, 4, n_kv_heads=2).k_proj  # 2 key heads of width 2
    Linear(in_features=8, out_features=4, bias=True)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        fused: bool = True,
        n_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or not isinstance(n_heads, int) or d_model <= 0 or n_heads <= 0:
            raise ValueError(f"d_model and n_heads must be positive ints, got d_model={d_model!r}, n_heads={n_heads!r}")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if not isinstance(n_kv_heads, int) or isinstance(n_kv_heads, bool) or n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise ValueError(
                f"n_kv_heads must be a positive int that divides n_heads={n_heads} (each key/value head serves "
                f"n_heads / n_kv_heads query heads), got n_kv_heads={n_kv_heads!r}; "
                f"e.g. one of {[h for h in range(1, n_heads + 1) if n_heads % h == 0]}"
            )
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model must be divisible by n_heads: got d_model={d_model}, n_heads={n_heads} "
                f"(d_model % n_heads = {d_model % n_heads}); e.g. n_heads in "
                f"{[h for h in range(1, min(d_model, 64) + 1) if d_model % h == 0]}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.n_kv_heads = n_kv_heads
        self.dropout, self.fused = dropout, fused
        d_kv = n_kv_heads * self.head_dim  # = d_model for multi-head attention
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_kv, bias=bias)
        self.v_proj = nn.Linear(d_model, d_kv, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def extra_repr(self) -> str:
        kv = f", n_kv_heads={self.n_kv_heads}" if self.n_kv_heads != self.n_heads else ""
        return f"d_model={self.d_model}, n_heads={self.n_heads}{kv}, head_dim={self.head_dim}, fused={self.fused}"

    def _split(self, x: torch.Tensor, n_heads: int | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n_heads or self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    _decoding_qkv: tuple[torch.Tensor, torch.Tensor | None] | None = None  # set only while decoding

    def pack_qkv(self, on: bool = True) -> None:
        """Decoding speed-up: stack q_proj, k_proj, v_proj into one (d_model + 2 d_kv, d_model) matrix, so that
        self-attention runs one matrix multiply instead of three (same numbers); `on=False` drops it.

        `course_lib.generation` turns it on for the length of one generate call, when the weights
        cannot change, and off at the end: a stacked copy kept longer would miss later weight updates.
        Only plain nn.Linear projections are stacked (a LoRA wrapper keeps its own forward).
        """
        plain = all(type(lin) is nn.Linear for lin in (self.q_proj, self.k_proj, self.v_proj))
        self._decoding_qkv = self._stacked_qkv() if on and plain else None

    @torch.no_grad()
    def _stacked_qkv(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q_proj, k_proj, v_proj stacked: weight (d_model + 2 d_kv, d_model) and bias or None (a copy); d_kv = d_model for MHA."""
        lins = (self.q_proj, self.k_proj, self.v_proj)
        w = torch.cat([lin.weight for lin in lins])  # (3 d_model, d_model)
        b = None if self.q_proj.bias is None else torch.cat([lin.bias for lin in lins])
        return w, b

    def _check_input(self, name: str, x: torch.Tensor) -> None:
        _check_tensor(name, x)
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, T, d_model={self.d_model}), got shape {tuple(x.shape)}")
        weight = getattr(self.out_proj, "weight", None)  # a quantized layer keeps bytes, not a weight
        dtype = weight.dtype if isinstance(weight, torch.Tensor) else x.dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"{name} must have the layer's dtype {dtype}, got {x.dtype} (convert with .to({dtype}))")

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        return_weights: bool = False,
        rotary: Rotary | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from x (B, T_q, d) to itself, or to `context` (B, T_k, d) for cross-attention.

        mask: bool (True = may attend) or additive float, broadcastable to (B, nh, T_q, T_k);
        a 3-D mask is read as (B, T_q, T_k); use `padding_mask` for a (B, T) attention_mask.
        With a cache, T_k = cache length + T_q: a padding mask must cover all of those keys.
        is_causal: query i sees keys up to its absolute position (cache length + i).
        cache: a `KVCache`; for self-attention the new keys/values are appended; for
        cross-attention the context's keys/values are computed once and then reused.
        rotary: optional function (q, k, offset) -> (q, k) on (B, nh, T, hs) tensors that adds
        rotary positions; offset is the cache length (self-attention only).
        """
        self._check_input("x", x)
        if context is not None:
            self._check_input("context", context)
            if context.shape[0] != x.shape[0]:
                raise ValueError(
                    f"context must have the batch size of x: expected ({x.shape[0]}, T_k, {self.d_model}), "
                    f"got {tuple(context.shape)}"
                )
        B, T_q, _ = x.shape
        past, n_kv = 0, self.n_kv_heads
        if context is None:
            if self._decoding_qkv is None:
                q = self._split(self.q_proj(x))  # (B, nh, T_q, hs)
                k = self._split(self.k_proj(x), n_kv)  # (B, n_kv, T_q, hs)
                v = self._split(self.v_proj(x), n_kv)
            elif n_kv == self.n_heads:  # stacked projections (see pack_qkv): one matrix multiply, then cut in three
                qkv = F.linear(x, *self._decoding_qkv).view(B, T_q, 3, self.n_heads, self.head_dim)
                q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T_q, hs)
            else:  # grouped-query: the stacked rows are d_model + d_kv + d_kv
                qkv = F.linear(x, *self._decoding_qkv).view(B, T_q, self.n_heads + 2 * n_kv, self.head_dim)
                q, k, v = qkv.transpose(1, 2).split([self.n_heads, n_kv, n_kv], dim=1)  # (B, nh | n_kv, T_q, hs)
            past = cache.length if cache is not None else 0
            if rotary is not None:
                q, k = rotary(q, k, past)
            if cache is not None:
                k, v = cache.update(k, v)  # (B, nh, past + T_q, hs)
        else:
            q = self._split(self.q_proj(x))  # (B, nh, T_q, hs)
            if cache is not None and cache.length > 0:
                assert cache.k is not None and cache.v is not None
                k, v = cache.k, cache.v  # cross-attention: the memory does not change
            else:
                k = self._split(self.k_proj(context), n_kv)  # (B, n_kv, T_k, hs)
                v = self._split(self.v_proj(context), n_kv)
                if cache is not None:
                    cache.update(k, v)
        T_k = k.shape[-2]
        p = self.dropout if self.training else 0.0
        if n_kv != self.n_heads:  # grouped-query: each key/value head serves n_rep = n_heads / n_kv query heads
            n_rep = self.n_heads // n_kv
            if T_q == 1 and mask is None and self.fused and not return_weights:
                # one new token (decoding): the n_rep query heads of a group read the same keys, so stand them
                # in as n_rep queries of that key head; no copy of the cache (as transformers' pack_gqa)
                out = F.scaled_dot_product_attention(q.reshape(B, n_kv, n_rep, self.head_dim), k, v, dropout_p=p)
                return self.out_proj(out.reshape(B, 1, self.d_model)), None  # (B, n_kv, n_rep, hs) -> (B, 1, d)
            # (PyTorch's enable_gqa=True avoids the copies too, but its CPU kernel measured 10x slower)
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, T_k, hs)

        if mask is not None:
            _check_tensor("mask", mask)
            if mask.ndim == 3:
                mask = mask.unsqueeze(1)  # (B, 1, T_q, T_k)
            _check_mask(mask, (B, self.n_heads, T_q, T_k))
        if is_causal:
            if context is not None and T_k < T_q:
                raise ValueError(f"is_causal with cross-attention needs T_k >= T_q, got T_q={T_q}, T_k={T_k}")
            # query i is at absolute position T_k - T_q + i; a single query (decoding) sees every key: no mask
            causal = causal_mask(T_q, T_k, device=x.device) if T_q > 1 else None
        else:
            causal = None

        if self.fused and not return_weights:
            if causal is not None and mask is None and T_q == T_k:
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                m = combine_masks(mask, causal, dtype=q.dtype)
                if m is not None and m.is_floating_point():
                    m = m.to(q.dtype)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=p)
                if m is not None:  # zeros for fully masked rows, whatever the PyTorch version
                    dead = (~m if m.dtype == torch.bool else torch.isneginf(m)).all(dim=-1, keepdim=True)
                    if bool(dead.any()):
                        out = out.masked_fill(dead, 0.0)  # (B, nh, T_q, hs)
            weights = None
        else:
            m = combine_masks(mask, causal, dtype=q.dtype)
            out, weights = scaled_dot_product_attention(q, k, v, mask=m, dropout_p=p, return_weights=True)
            if not return_weights:
                weights = None
        out = out.transpose(1, 2).contiguous().view(B, T_q, self.d_model)  # (B, T_q, d_model)
        return self.out_proj(out), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a `torch.nn.MultiheadAttention` (same width, heads, bias) into this module."""
        if self.n_kv_heads != self.n_heads:
            raise ValueError(
                f"nn.MultiheadAttention has one key/value head per query head; this module is grouped-query "
                f"(n_kv_heads={self.n_kv_heads}, n_heads={self.n_heads}) and cannot take its weights"
            )
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(
                f"expected nn.MultiheadAttention(embed_dim={self.d_model}, num_heads={self.n_heads}), "
                f"got embed_dim={mha.embed_dim}, num_heads={mha.num_heads}"
            )
        if mha.in_proj_weight is None:
            raise ValueError("nn.MultiheadAttention with separate kdim/vdim is not supported")
        wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        if (mha.in_proj_bias is None) != (self.q_proj.bias is None):
            raise ValueError("bias mismatch: both modules must have biases, or neither")
        if mha.in_proj_bias is not None:
            for lin, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                lin.bias.copy_(b)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        return self
