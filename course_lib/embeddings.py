"""Token embeddings and the three ways to tell a transformer where a token sits. See notebook 02.

What is here:
- `TokenEmbedding`: an `nn.Embedding` that checks its input (integer ids inside the vocabulary).
- `one_hot_embed`: the same lookup written as one-hot vector x matrix (for teaching and tests).
- `sinusoidal_positions` / `SinusoidalPositionalEncoding`: the fixed sine/cosine table of
  "Attention Is All You Need" (Vaswani et al., 2017), added to the token embeddings.
- `LearnedPositionalEmbedding`: one trained vector per position (BERT, GPT-2).
- `RotaryEmbedding` / `apply_rotary` / `rotary_angles`: rotary position embedding (RoPE, Su et al., 2021),
  which rotates queries and keys so that their dot product depends only on the distance between positions;
  `RotaryEmbedding.rotate_qk` plugs into `MultiHeadAttention(..., rotary=...)`.
- `mean_pool` / `cosine_similarity_matrix`: sentence embeddings from token vectors (the way
  sentence-transformers uses all-MiniLM-L6-v2) and their pairwise cosine similarities.

What it leaves out: ALiBi and other attention-bias schemes, scaled/extended RoPE variants
(NTK, YaRN), and embedding scaling by sqrt(d_model) (a model may do that itself).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_lib.utils import INT_DTYPES, check_token_ids

__all__ = [
    "TokenEmbedding",
    "one_hot_embed",
    "sinusoidal_positions",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "rotary_angles",
    "apply_rotary",
    "RotaryEmbedding",
    "mean_pool",
    "cosine_similarity_matrix",
]



def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _check_even(name: str, value: int) -> int:
    _check_positive_int(name, value)
    if value % 2:
        raise ValueError(f"{name} must be even (sines and cosines come in pairs), got {value}")
    return value


def _check_ids(ids: object, vocab_size: int, what: str = "token ids") -> Tensor:
    """Return `ids` as a tensor after checking it holds integers in [0, vocab_size) (course_lib.utils.check_token_ids)."""
    return check_token_ids(ids, what, vocab_size)


class TokenEmbedding(nn.Embedding):
    """A lookup table: row `i` of `weight` (vocab_size, d_model) is the vector of token `i`.

    Same as `nn.Embedding` (same `weight`, same init N(0, 1)), but wrong ids give a clear error.
    >>> emb = TokenEmbedding(10, 4); emb(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 4])

    See notebook 02.
    """

    def __init__(self, vocab_size: int, d_model: int) -> None:
        _check_positive_int("vocab_size", vocab_size)
        _check_positive_int("d_model", d_model)
        super().__init__(vocab_size, d_model)
        self.vocab_size = vocab_size
        self.d_model = d_model

    def forward(self, ids: Tensor) -> Tensor:  # (...,) -> (..., d_model)
        _check_ids(ids, self.num_embeddings)
        if ids.dtype in (torch.int8, torch.uint8, torch.int16):
            ids = ids.long()
        return super().forward(ids)

    def extra_repr(self) -> str:
        return f"vocab_size={self.num_embeddings}, d_model={self.embedding_dim}"


def one_hot_embed(ids: Tensor, weight: Tensor) -> Tensor:
    """Embedding lookup written as a matrix product: one_hot(ids) @ weight.

    Equals `weight[ids]` (and `nn.Embedding`); it costs vocab_size times more work, which is
    why real code does the lookup. `ids` (...,) integers, `weight` (V, d) -> (..., d).
    >>> W = torch.arange(6.).view(3, 2); one_hot_embed(torch.tensor([2, 0]), W)
    tensor([[4., 5.],
            [0., 1.]])

    See notebook 02.
    """
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 2-D tensor (vocab_size, d_model), got {got}")
    _check_ids(ids, weight.shape[0])
    one_hot = torch.nn.functional.one_hot(ids.long(), num_classes=weight.shape[0])  # (..., V)
    return one_hot.to(weight.dtype) @ weight  # (..., V) @ (V, d) -> (..., d)


def sinusoidal_positions(n_positions: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The fixed position table of "Attention Is All You Need": shape (n_positions, d_model).

    PE[pos, 2i] = sin(pos / base^(2i/d_model)),  PE[pos, 2i+1] = cos(pos / base^(2i/d_model)).
    Row 0 is [0, 1, 0, 1, ...].
    >>> sinusoidal_positions(2, 4)
    tensor([[0.0000, 1.0000, 0.0000, 1.0000],
            [0.8415, 0.5403, 0.0100, 0.9999]])

    See notebook 02.
    """
    _check_positive_int("n_positions", n_positions)
    _check_even("d_model", d_model)
    if not base > 0:
        raise ValueError(f"base must be > 0, got {base}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
    angles = pos / base ** (two_i / d_model)  # (P, d/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.to(torch.get_default_dtype())


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sine/cosine table to token embeddings: forward(x (B, T, d)) -> x + PE[:T].

    Nothing is trained; the table is a non-persistent buffer (not in the state_dict).
    `offset` shifts the positions (for generation with a KV cache).
    >>> SinusoidalPositionalEncoding(8, max_len=16)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])

    See notebook 02.
    """

    def __init__(self, d_model: int, max_len: int = 4096, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        _check_even("d_model", d_model)
        _check_positive_int("max_len", max_len)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model, base), persistent=False)  # (max_len, d)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:  # (B, T, d) -> (B, T, d)
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.d_model:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected x of shape (..., T, {self.d_model}), got {got}")
        T = x.shape[-2]
        if offset < 0 or offset + T > self.max_len:
            raise ValueError(
                f"sequence too long: positions {offset}..{offset + T - 1} (length {T}, offset {offset}) "
                f"but max_len={self.max_len}"
            )
        return self.dropout(x + self.pe[offset : offset + T].to(x.dtype))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Embedding):
    """One trained vector per position (as in BERT and GPT-2): weight (max_len, d_model).

    forward(T) returns rows 0..T-1 (shape (T, d)); forward(positions) looks up a tensor of
    positions (shape (..., d)). `offset` shifts an int length (for generation with a KV cache).
    >>> LearnedPositionalEmbedding(16, 8)(5).shape
    torch.Size([5, 8])

    See notebook 02.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        _check_positive_int("max_len", max_len)
        _check_positive_int("d_model", d_model)
        super().__init__(max_len, d_model)
        self.max_len, self.d_model = max_len, d_model

    def forward(self, positions: int | Tensor, offset: int = 0) -> Tensor:
        if isinstance(positions, int) and not isinstance(positions, bool):
            T = positions
            if T < 0 or offset < 0:
                raise ValueError(f"length and offset must be >= 0, got length {T}, offset {offset}")
            if offset + T > self.max_len:
                raise ValueError(
                    f"sequence too long: length {T} (offset {offset}) needs positions up to {offset + T - 1}, "
                    f"but max_len={self.max_len}"
                )
            positions = torch.arange(offset, offset + T, device=self.weight.device)
        elif isinstance(positions, Tensor):
            if positions.dtype not in INT_DTYPES:
                raise TypeError(f"positions must be integers, got dtype {positions.dtype}")
            if positions.numel() and positions.device.type != "meta" and (int(positions.min()) < 0 or int(positions.max()) >= self.max_len):
                raise ValueError(
                    f"positions must lie in [0, {self.max_len}) (max_len={self.max_len}), "
                    f"got min {int(positions.min())}, max {int(positions.max())}"
                )
            positions = positions.long()
        else:
            raise TypeError(f"expected an int length or a tensor of positions, got {type(positions).__name__}")
        return super().forward(positions)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


def rotary_angles(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of the RoPE angles pos * theta_i, theta_i = base^(-2i/head_dim): each (T, head_dim/2).

    >>> cos, sin = rotary_angles(torch.arange(3), 4); cos.shape
    torch.Size([3, 2])

    See notebook 02.
    """
    _check_even("head_dim", head_dim)
    if not isinstance(positions, Tensor) or positions.dim() != 1:
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must be a 1-D tensor (T,), got {got}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, hd/2)
    return torch.cos(angles), torch.sin(angles)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool = True) -> Tensor:
    """Rotate each pair of features of x (..., T, head_dim) by the angles whose cos/sin are (T, head_dim/2).

    interleaved=True pairs (x0, x1), (x2, x3), ... as in the RoFormer paper;
    interleaved=False pairs (x_i, x_{i+head_dim/2}) as in GPT-NeoX / Hugging Face Llama ("rotate_half").
    Each pair (a, b) becomes (a cos - b sin, a sin + b cos). See notebook 02.
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (..., T, head_dim), got {getattr(x, 'shape', type(x).__name__)}")
    T, hd = x.shape[-2], x.shape[-1]
    if hd % 2:
        raise ValueError(f"head_dim must be even, got x.shape[-1] = {hd}")
    if cos.shape != sin.shape or cos.shape[-1] != hd // 2 or cos.shape[-2] != T:
        raise ValueError(
            f"cos and sin must both have shape (T, head_dim/2) = ({T}, {hd // 2}), got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )
    xf = x.float()
    if interleaved:
        a, b = xf[..., 0::2], xf[..., 1::2]  # (..., T, hd/2) each
    else:
        a, b = xf[..., : hd // 2], xf[..., hd // 2 :]
    ra = a * cos - b * sin
    rb = a * sin + b * cos
    out = torch.stack((ra, rb), dim=-1).flatten(-2) if interleaved else torch.cat((ra, rb), dim=-1)
    return out.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): rotate queries and keys by an angle proportional to position.

    Then q_m . k_n depends only on m - n. No parameters.
    >>> rope = RotaryEmbedding(8); q = torch.randn(2, 4, 10, 8)  # (B, nh, T, hs)
    >>> rope.apply(q).shape
    torch.Size([2, 4, 10, 8])

    See notebook 02.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, interleaved: bool = True) -> None:
        super().__init__()
        _check_even("head_dim", head_dim)
        if not base > 0:
            raise ValueError(f"base must be > 0, got {base}")
        self.head_dim, self.base, self.interleaved = head_dim, float(base), interleaved

    def angles(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin) for 1-D `positions`, each (T, head_dim/2)."""
        return rotary_angles(positions, self.head_dim, self.base)

    def apply(self, x: Tensor, positions: Tensor | None = None, offset: int = 0) -> Tensor:  # type: ignore[override]
        """Rotate x (..., T, head_dim); positions default to offset, ..., offset + T - 1.

        (Called with a function instead of a tensor, it is `nn.Module.apply`, so `model.apply(init_fn)` still works.)
        """
        if callable(x) and not isinstance(x, Tensor):
            return super().apply(x)
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.head_dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected x of shape (..., T, {self.head_dim}), got {got}")
        T = x.shape[-2]
        if positions is None:
            positions = torch.arange(offset, offset + T, device=x.device)
        elif not isinstance(positions, Tensor) or positions.shape != (T,):
            got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
            raise ValueError(f"positions must have shape (T,) = ({T},), got {got}")
        cos, sin = self.angles(positions.to(x.device))
        return apply_rotary(x, cos, sin, self.interleaved)

    def forward(self, x: Tensor, positions: Tensor | None = None, offset: int = 0) -> Tensor:
        return self.apply(x, positions, offset)

    def rotate_qk(self, q: Tensor, k: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys (B, nh, T, hs) at positions offset, offset + 1, ...

        Fits the `rotary=` hook of `course_lib.attention.MultiHeadAttention` (offset = KV-cache length):
        `mha(x, rotary=rope.rotate_qk)`.
        """
        return self.apply(q, offset=offset), self.apply(k, offset=offset)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}, interleaved={self.interleaved}"


def mean_pool(hidden: Tensor, attention_mask: Tensor, normalize: bool = True) -> Tensor:
    """Average the token vectors of each sequence, skipping padding: (B, T, d), (B, T) -> (B, d).

    With normalize=True (the default) each result has length 1, as all-MiniLM-L6-v2 expects.
    >>> h = torch.tensor([[[1., 0.], [3., 0.], [9., 9.]]]); m = torch.tensor([[1, 1, 0]])
    >>> mean_pool(h, m, normalize=False)
    tensor([[2., 0.]])

    See notebook 02.
    """
    if not isinstance(hidden, Tensor) or hidden.dim() != 3:
        raise ValueError(f"hidden must have shape (B, T, d), got {getattr(hidden, 'shape', type(hidden).__name__)}")
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != hidden.shape[:2]:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have shape (B, T) = {tuple(hidden.shape[:2])}, got {got}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, d)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def cosine_similarity_matrix(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Cosine similarity of every row of a (N, d) with every row of b (M, d, default a): (N, M).

    >>> cosine_similarity_matrix(torch.tensor([[1., 0.], [1., 1.]]))
    tensor([[1.0000, 0.7071],
            [0.7071, 1.0000]])

    See notebook 02.
    """
    b = a if b is None else b
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"expected a (N, d) and b (M, d) with the same d, got {getattr(a, 'shape', a)} and {getattr(b, 'shape', b)}"
        )
    an = torch.nn.functional.normalize(a, dim=-1)
    bn = torch.nn.functional.normalize(b, dim=-1)
    return an @ bn.T  # (N, d) @ (d, M) -> (N, M)
