"""Layers of a transformer: feed-forward, LayerNorm, RMSNorm, encoder and decoder blocks.

What it does:
- `gelu` (exact, with erf, as BERT), `FeedForward` (GELU / ReLU / SwiGLU MLP),
- `LayerNorm` and `RMSNorm` written from scratch,
- `TransformerBlock`: attention + feed-forward with residuals, pre-LN (GPT-2, Llama) or post-LN
  (the original Transformer and BERT),
- `DecoderBlock`: causal self-attention, cross-attention to the encoder's output, feed-forward.

Leaves out: the embeddings and heads (see `course_lib.models`), mixture-of-experts feed-forwards
(see `course_lib.moe`), parallel attention/FFN blocks.

See notebook 04 (and notebook 03 for the attention inside).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, MultiHeadAttention, Rotary

__all__ = ["gelu", "FeedForward", "LayerNorm", "RMSNorm", "make_norm", "TransformerBlock", "DecoderBlock"]

ACTIVATIONS = ("gelu", "relu", "swiglu")
NORMS = ("layernorm", "rmsnorm")


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), as in BERT.

    >>> round(gelu(torch.tensor(1.0)).item(), 4)
    0.8413
    """
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _check_last_dim(name: str, x: torch.Tensor, d: int, what: str = "d") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != d:
        raise ValueError(f"{name} must have shape (..., {what}={d}), got shape {tuple(x.shape)}")


class FeedForward(nn.Module):
    """Position-wise MLP: fc2(act(fc1(x))), then dropout; d_model -> d_ff -> d_model.

    activation "gelu" (exact) or "relu": fc1 (d_model -> d_ff), fc2 (d_ff -> d_model), as BERT's
    intermediate.dense / output.dense. "swiglu": fc1 (d_model -> 2*d_ff) holds [gate; up],
    out = fc2(silu(gate) * up), as Llama (gate_proj, up_proj stacked in that order).
    >>> FeedForward(8, 32)(torch.zeros(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        for name, val in (("d_model", d_model), ("d_ff", d_ff)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        self.fc1 = nn.Linear(d_model, 2 * d_ff if activation == "swiglu" else d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim("x", x, self.d_model, "d_model")
        h = self._activate(self.fc1(x))  # fc1: (B, T, d_ff) or (B, T, 2*d_ff)
        return self.dropout(self.fc2(h))  # (B, T, d_model)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        """The activation between fc1 and fc2: (..., d_ff) or, for swiglu, (..., 2*d_ff) -> (..., d_ff)."""
        if self.activation == "gelu":
            return gelu(h)
        if self.activation == "relu":
            return torch.relu(h)
        gate, up = h.chunk(2, dim=-1)  # (..., d_ff) each
        return F.silu(gate) * up

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance, as PyTorch).

    >>> LayerNorm(2)(torch.tensor([[1.0, 3.0]])).round(decimals=3).tolist()
    [[-1.0, 1.0]]
    """

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim("x", x, self.d)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dim: LayerNorm without centring or bias.

    >>> RMSNorm(2)(torch.tensor([[3.0, 4.0]])).mul(100).round().tolist()  # rms = sqrt(12.5)
    [[85.0, 113.0]]
    """

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_last_dim("x", x, self.d)
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}"


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def make_norm(kind: str, d: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """LayerNorm or RMSNorm by name: "layernorm" | "rmsnorm"."""
    if kind == "layernorm":
        return LayerNorm(d, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(d, eps=eps)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class TransformerBlock(nn.Module):
    """One encoder/decoder-only block: self-attention and feed-forward, each with a residual.

    pre-LN (pre_norm=True, GPT-2/Llama):  x = x + drop(attn(norm1(x)));  x = x + drop(ffn(norm2(x)))
    post-LN (pre_norm=False, BERT):       x = norm1(x + drop(attn(x)));  x = norm2(x + drop(ffn(x)))
    forward returns (x, attention weights (B, nh, T, T) or None). n_kv_heads < n_heads: grouped-query
    attention (see `course_lib.attention.MultiHeadAttention`); RMSNorm + SwiGLU + no bias is Llama's block.
    >>> y, _ = TransformerBlock(8, 2, 32)(torch.zeros(1, 3, 8)); y.shape
    torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm: str = "layernorm",
        pre_norm: bool = True,
        activation: str = "gelu",
        bias: bool = True,
        eps: float = 1e-5,
        fused: bool = True,
        n_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, fused=fused, n_kv_heads=n_kv_heads)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=0.0, bias=bias)
        self.norm1 = make_norm(norm, d_model, eps=eps, bias=bias)
        self.norm2 = make_norm(norm, d_model, eps=eps, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        return_weights: bool = False,
        rotary: Rotary | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model) -> (x (B, T, d_model), weights or None); mask/cache as in MultiHeadAttention."""
        kw = dict(mask=mask, is_causal=is_causal, cache=cache, return_weights=return_weights, rotary=rotary)
        drop = self.drop if self.training else _identity  # eval: skip a no-op module call (faster decoding)
        if self.pre_norm:
            a, w = self.attn(self.norm1(x), **kw)
            x = x + drop(a)
            x = x + drop(self.ffn(self.norm2(x)))
        else:
            a, w = self.attn(x, **kw)
            x = self.norm1(x + drop(a))
            x = self.norm2(x + drop(self.ffn(x)))
        return x, w


class DecoderBlock(nn.Module):
    """Encoder-decoder block: causal self-attention, cross-attention to `memory`, feed-forward.

    pre-LN:  x += drop(self_attn(norm1(x))); x += drop(cross_attn(norm2(x), memory)); x += drop(ffn(norm3(x)))
    post-LN: x = norm1(x + drop(self_attn(x))); x = norm2(x + drop(cross_attn(x, memory))); x = norm3(x + drop(ffn(x)))
    >>> y, _ = DecoderBlock(8, 2, 32)(torch.zeros(1, 3, 8), torch.zeros(1, 5, 8)); y.shape
    torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm: str = "layernorm",
        pre_norm: bool = True,
        activation: str = "gelu",
        bias: bool = True,
        eps: float = 1e-5,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, fused=fused)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, fused=fused)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=0.0, bias=bias)
        self.norm1 = make_norm(norm, d_model, eps=eps, bias=bias)
        self.norm2 = make_norm(norm, d_model, eps=eps, bias=bias)
        self.norm3 = make_norm(norm, d_model, eps=eps, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor | None] | None]:
        """x (B, T, d), memory (B, S, d) -> (x (B, T, d), (self_weights, cross_weights) or None).

        self-attention is always causal (self_mask, e.g. target padding, is added on top);
        memory_mask, e.g. padding_mask(source_attention_mask) (B, 1, 1, S), masks the encoder's padding.
        cache: a KVCache for the self-attention (step-by-step decoding); cross-attention is recomputed.
        """
        sa = dict(mask=self_mask, is_causal=True, cache=cache, return_weights=return_weights)
        ca = dict(mask=memory_mask, return_weights=return_weights)
        drop = self.drop if self.training else _identity  # eval: skip a no-op module call (faster decoding)
        if self.pre_norm:
            a, w_self = self.self_attn(self.norm1(x), **sa)
            x = x + drop(a)
            a, w_cross = self.cross_attn(self.norm2(x), context=memory, **ca)
            x = x + drop(a)
            x = x + drop(self.ffn(self.norm3(x)))
        else:
            a, w_self = self.self_attn(x, **sa)
            x = self.norm1(x + drop(a))
            a, w_cross = self.cross_attn(x, context=memory, **ca)
            x = self.norm2(x + drop(a))
            x = self.norm3(x + drop(self.ffn(x)))
        return x, ((w_self, w_cross) if return_weights else None)
