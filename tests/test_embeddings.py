"""Tests for course_lib.embeddings: lookups, sinusoidal / learned / rotary positions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    apply_rotary,
    cosine_similarity_matrix,
    mean_pool,
    one_hot_embed,
    rotary_angles,
    sinusoidal_positions,
)


# ---------------------------------------------------------------- token embeddings
def test_one_hot_times_matrix_equals_lookup():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(50, 8, generator=g)
    ids = torch.randint(0, 50, (3, 7), generator=g)
    expected = W[ids]
    manual = torch.nn.functional.one_hot(ids, 50).float() @ W
    torch.testing.assert_close(manual, expected)
    torch.testing.assert_close(one_hot_embed(ids, W), expected)


def test_token_embedding_equals_nn_embedding():
    torch.manual_seed(0)
    ours, ref = TokenEmbedding(30, 6), nn.Embedding(30, 6)
    ref.weight.data.copy_(ours.weight.data)
    ids = torch.randint(0, 30, (2, 5))
    torch.testing.assert_close(ours(ids), ref(ids))
    assert isinstance(ours.weight, nn.Parameter) and ours.weight.shape == (30, 6)
    # gradients flow to the rows that were used, and only those
    ours(torch.tensor([3, 3, 7])).sum().backward()
    used = ours.weight.grad.abs().sum(1) > 0
    assert used.nonzero().flatten().tolist() == [3, 7]
    # loading an nn.Embedding state_dict works unchanged
    ours2 = TokenEmbedding(30, 6)
    ours2.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours2(ids), ref(ids))
    # int32 ids work too
    torch.testing.assert_close(ours(ids.int()), ref(ids))


@pytest.mark.parametrize("bad", [torch.tensor([0, 30]), torch.tensor([-1, 2])])
def test_token_embedding_out_of_range(bad):
    with pytest.raises(ValueError, match=r"\[0, vocab_size=30\)"):
        TokenEmbedding(30, 6)(bad)


def test_token_embedding_bad_dtype_and_args():
    emb = TokenEmbedding(30, 6)
    with pytest.raises(TypeError, match="integer dtype"):
        emb(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="Tensor"):
        emb([1, 2])
    with pytest.raises(ValueError, match="vocab_size"):
        TokenEmbedding(0, 4)
    with pytest.raises(ValueError, match="2-D"):
        one_hot_embed(torch.tensor([1]), torch.zeros(3))


# ---------------------------------------------------------------- sinusoidal
def test_sinusoidal_known_values():
    pe = sinusoidal_positions(2, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    expected1 = torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)])
    torch.testing.assert_close(pe[1], expected1)


def test_sinusoidal_against_formula():
    P, d = 50, 16
    pe = sinusoidal_positions(P, d)
    assert pe.shape == (P, d) and pe.dtype == torch.float32
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert abs(pe[pos, 2 * i].item() - math.sin(angle)) < 1e-6
            assert abs(pe[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-6
    # each (sin, cos) pair lies on the unit circle
    torch.testing.assert_close(pe.pow(2).sum(1), torch.full((P,), d / 2.0))


def test_sinusoidal_errors():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(10, 7)
    with pytest.raises(ValueError, match="n_positions"):
        sinusoidal_positions(0, 8)


def test_sinusoidal_module():
    enc = SinusoidalPositionalEncoding(8, max_len=16)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(enc(x), x + sinusoidal_positions(5, 8))
    torch.testing.assert_close(enc(x, offset=3), x + sinusoidal_positions(8, 8)[3:8])
    assert list(enc.state_dict()) == [] and not list(enc.parameters())
    with pytest.raises(ValueError, match="max_len=16"):
        enc(torch.zeros(1, 17, 8))
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 8\)"):
        enc(torch.zeros(1, 5, 6))


# ---------------------------------------------------------------- learned
def test_learned_positions():
    torch.manual_seed(0)
    lp = LearnedPositionalEmbedding(10, 4)
    torch.testing.assert_close(lp(6), lp.weight[:6])
    torch.testing.assert_close(lp(3, offset=2), lp.weight[2:5])
    torch.testing.assert_close(lp(torch.tensor([[0, 9]])), lp.weight[[0, 9]].unsqueeze(0))
    assert sum(p.numel() for p in lp.parameters()) == 40
    with torch.no_grad():  # a fresh tensor, not a view of the weights: .numpy() works (notebook 05 plots it)
        assert not lp(6).requires_grad and lp(6).numpy().shape == (6, 4)
    with pytest.raises(ValueError, match=r"length 11.*max_len=10"):
        lp(11)
    with pytest.raises(ValueError, match="max_len=10"):
        lp(torch.tensor([10]))
    with pytest.raises(TypeError):
        lp(torch.tensor([1.0]))


# ---------------------------------------------------------------- rotary
def _rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Reference: pairs (x_2i, x_2i+1) as complex numbers, multiplied by exp(i * pos * theta_i)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    rot = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64), positions.double()[:, None] * theta)
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)


def _rotate_half_reference(x, positions, base=10000.0):
    """Reference: Hugging Face Llama's rotate_half formulation."""
    d = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    freqs = positions.double()[:, None] * inv_freq  # (T, d/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x.double()[..., : d // 2], x.double()[..., d // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x.double() * emb.cos() + rotated * emb.sin()).to(x.dtype)


def test_rope_matches_complex_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 16)  # (B, nh, T, hs)
    pos = torch.arange(12)
    torch.testing.assert_close(RotaryEmbedding(16).apply(x), _rope_complex(x, pos), atol=1e-5, rtol=1e-5)
    pos2 = torch.tensor([5, 0, 3, 100, 7, 8, 9, 1, 2, 4, 6, 11])
    torch.testing.assert_close(RotaryEmbedding(16).apply(x, pos2), _rope_complex(x, pos2), atol=1e-4, rtol=1e-4)
    # offset = positions starting there
    torch.testing.assert_close(RotaryEmbedding(16).apply(x, offset=4), _rope_complex(x, pos + 4), atol=1e-4, rtol=1e-4)
    # the half-split layout matches Hugging Face's rotate_half
    rope_half = RotaryEmbedding(16, interleaved=False)
    torch.testing.assert_close(rope_half(x), _rotate_half_reference(x, pos), atol=1e-5, rtol=1e-5)


def test_rope_preserves_norms_and_position_zero():
    torch.manual_seed(1)
    x = torch.randn(4, 20, 8)
    rope = RotaryEmbedding(8)
    y = rope.apply(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0: no rotation


def test_rope_relative_position_property():
    torch.manual_seed(2)
    d = 32
    rope = RotaryEmbedding(d)
    q, k = torch.randn(d), torch.randn(d)

    def score(m: int, n: int) -> float:
        qm = rope.apply(q[None], torch.tensor([m]))[0]
        kn = rope.apply(k[None], torch.tensor([n]))[0]
        return float(qm @ kn)

    for delta in (0, 1, 5, -3):
        scores = [score(m, m - delta) for m in (3, 10, 50, 200)]
        assert max(scores) - min(scores) < 1e-3, (delta, scores)
    assert abs(score(10, 7) - score(10, 2)) > 1e-3  # and different distances do differ


def test_rope_functions_and_errors():
    cos, sin = rotary_angles(torch.arange(5), 6)
    assert cos.shape == sin.shape == (5, 3)
    torch.testing.assert_close(cos[0], torch.ones(3))
    x = torch.randn(5, 6)
    torch.testing.assert_close(apply_rotary(x, cos, sin), RotaryEmbedding(6).apply(x))
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 8\)"):
        RotaryEmbedding(8).apply(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"\(T,\) = \(3,\)"):
        RotaryEmbedding(8).apply(torch.randn(3, 8), torch.arange(4))
    with pytest.raises(ValueError, match="head_dim/2"):
        apply_rotary(torch.randn(3, 8), cos, sin)
    # nn.Module.apply(fn) still works (models call model.apply(init_fn))
    seen = []
    RotaryEmbedding(8).apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["RotaryEmbedding"]


def test_rope_keeps_dtype():
    x = torch.randn(2, 4, 8, dtype=torch.bfloat16)
    y = RotaryEmbedding(8).apply(x)
    assert y.dtype == torch.bfloat16


# ---------------------------------------------------------------- pooling and similarity
def test_mean_pool_skips_padding():
    torch.manual_seed(3)
    h = torch.randn(2, 4, 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    pooled = mean_pool(h, mask, normalize=False)
    torch.testing.assert_close(pooled[0], h[0].mean(0))
    torch.testing.assert_close(pooled[1], h[1, :2].mean(0))
    unit = mean_pool(h, mask)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(pooled, dim=-1))
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match=r"\(B, T\) = \(2, 4\)"):
        mean_pool(h, mask[:, :3])


def test_cosine_similarity_matrix_matches_torch():
    torch.manual_seed(4)
    a, b = torch.randn(5, 7), torch.randn(3, 7)
    ref = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    torch.testing.assert_close(cosine_similarity_matrix(a, b), ref)
    torch.testing.assert_close(cosine_similarity_matrix(a).diagonal(), torch.ones(5))
    with pytest.raises(ValueError, match="same d"):
        cosine_similarity_matrix(a, torch.randn(3, 6))


def test_rope_rotate_qk_plugs_into_attention():
    from course_lib.attention import MultiHeadAttention

    torch.manual_seed(5)
    rope = RotaryEmbedding(8)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    rq, rk = rope.rotate_qk(q, k, offset=2)
    torch.testing.assert_close(rq, rope.apply(q, offset=2))
    torch.testing.assert_close(rk, rope.apply(k, offset=2))
    # shifting every position by the same amount leaves causal attention unchanged (relative positions)
    mha = MultiHeadAttention(24, 3)
    x = torch.randn(1, 6, 24)
    out0, _ = mha(x, is_causal=True, rotary=rope.rotate_qk)
    out7, _ = mha(x, is_causal=True, rotary=lambda q, k, off: rope.rotate_qk(q, k, off + 7))
    torch.testing.assert_close(out0, out7, atol=1e-5, rtol=1e-5)
