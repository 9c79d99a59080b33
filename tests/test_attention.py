"""Tests for course_lib.attention: equal to PyTorch's attention, masks, KV cache, clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
)

TOL = {torch.float64: 1e-6, torch.float32: 1e-5}


def _qkv(shape_q, t_k=None, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    *lead, t_q, d = shape_q
    t_k = t_q if t_k is None else t_k
    q = torch.randn(*lead, t_q, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, t_k, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, t_k, d + 1, generator=g, dtype=dtype)  # d_v != d_k on purpose
    if requires_grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v


# ----------------------------------------------------------------------------- equal to PyTorch
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 3, 5, 4)], ids=["3d", "4d"])
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal", "bool_broadcast"])
def test_sdpa_matches_torch(dtype, shape, kind):
    q, k, v = _qkv(shape, dtype=dtype)
    T = shape[-2]
    g = torch.Generator().manual_seed(1)
    kwargs = {}
    if kind == "bool":
        m = torch.rand(*shape[:-1], T, generator=g) > 0.3
        m[..., 0] = True  # every row sees at least one key
        kwargs = {"attn_mask": m}
    elif kind == "float":
        kwargs = {"attn_mask": torch.randn(*shape[:-1], T, generator=g, dtype=dtype)}
    elif kind == "causal":
        kwargs = {"is_causal": True}
    elif kind == "bool_broadcast":
        kwargs = {"attn_mask": causal_mask(T)}  # (T, T) broadcast over batch (and heads)
    ours = scaled_dot_product_attention(q, k, v, mask=kwargs.get("attn_mask"), is_causal=kwargs.get("is_causal", False))
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(ours, ref, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("kind", ["bool", "causal"])
def test_sdpa_gradients_match_torch(kind):
    shape = (2, 2, 5, 4)
    q1, k1, v1 = _qkv(shape, requires_grad=True)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q1, k1, v1))
    m = causal_mask(5) if kind == "causal" else (torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(3)) > 0.4) | torch.eye(5, dtype=torch.bool)
    ours = scaled_dot_product_attention(q1, k1, v1, mask=m)
    ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=m)
    w = torch.randn_like(ours)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6)


def test_sdpa_by_hand_and_weights():
    q, k, v = _qkv((1, 4, 3))
    out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    scores = q @ k.transpose(-2, -1) / 3**0.5
    expected_w = scores.exp() / scores.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 4, dtype=w.dtype))
    torch.testing.assert_close(out, w @ v)


def test_sdpa_custom_scale_matches_torch():
    q, k, v = _qkv((2, 4, 6))
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, scale=0.3), F.scaled_dot_product_attention(q, k, v, scale=0.3)
    )


def test_fully_masked_rows_give_zeros_not_nan():
    q, k, v = _qkv((1, 3, 4), requires_grad=True)
    m = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    out, w = scaled_dot_product_attention(q, k, v, mask=m, return_weights=True)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert torch.equal(out[0, 0], torch.zeros_like(out[0, 0]))
    assert torch.equal(w[0, 0], torch.zeros_like(w[0, 0]))
    out.sum().backward()
    assert not torch.isnan(q.grad).any() and not torch.isnan(k.grad).any()
    # float mask with -inf everywhere in a row: same behaviour
    fm = torch.zeros(3, 3, dtype=q.dtype).masked_fill(~m, float("-inf"))
    out2 = scaled_dot_product_attention(q, k, v, mask=fm)
    torch.testing.assert_close(out2, out)
    # rows that are not fully masked equal PyTorch's
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    torch.testing.assert_close(out[:, 1:], ref[:, 1:])


def test_dropout_zero_is_identity_and_dropout_changes_output():
    q, k, v = _qkv((2, 6, 4))
    torch.manual_seed(0)
    a = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    b = scaled_dot_product_attention(q, k, v)
    assert not torch.allclose(a, b)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    kept = w[w > 0]
    assert kept.numel() > 0  # surviving weights are scaled up by 1 / (1 - p)


# ----------------------------------------------------------------------------- masks
def test_causal_mask_square_and_with_cache():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # two new queries after three cached positions: they are positions 3 and 4 of 5
    assert causal_mask(2, 5).int().tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert causal_mask(3).dtype == torch.bool
    with pytest.raises(ValueError, match="t_k >= t_q"):
        causal_mask(4, 2)
    with pytest.raises(ValueError, match="t_q"):
        causal_mask(-1)


def test_padding_mask():
    pm = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert pm.shape == (2, 1, 1, 3) and pm.dtype == torch.bool
    assert pm[1, 0, 0].tolist() == [True, False, False]
    assert torch.equal(padding_mask(torch.tensor([[True, False]])), torch.tensor([[[[True, False]]]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        padding_mask(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        padding_mask(torch.tensor([[1, 2]]))


def test_combine_masks():
    c = combine_masks(causal_mask(2), torch.tensor([True, False]))
    assert c.tolist() == [[True, False], [True, False]]
    f = combine_masks(causal_mask(2), torch.zeros(2, 2))
    assert f.dtype == torch.float32 and torch.isneginf(f[0, 1]) and f[1, 0] == 0
    assert combine_masks(None, None) is None


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv((2, 4, 8), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"same last dim.*\(2, 4, 8\).*\(2, 4, 7\)"):
        scaled_dot_product_attention(q, k[..., :7], v)
    with pytest.raises(ValueError, match="same length T_k"):
        scaled_dot_product_attention(q, k, v[:, :3])
    with pytest.raises(ValueError, match="same number of dims"):
        scaled_dot_product_attention(q, k[None], v)
    with pytest.raises(ValueError, match="leading"):
        scaled_dot_product_attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not broadcast.*\(2, 4, 4\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="dtype torch.int64"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.long))
    with pytest.raises(TypeError):
        scaled_dot_product_attention(q.numpy(), k, v)


def test_mha_bad_inputs():
    with pytest.raises(ValueError, match=r"divisible.*d_model=10, n_heads=3"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, d_model=8\).*\(2, 3, 6\)"):
        mha(torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match=r"context.*\(2, T_k, 8\).*\(1, 5, 8\)"):
        mha(torch.zeros(2, 3, 8), context=torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 3\)"):
        mha(torch.zeros(2, 3, 8), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="dtype"):
        mha(torch.zeros(2, 3, 8), mask=torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match=r"x must have the layer's dtype torch.float32, got torch.float64"):
        mha(torch.zeros(2, 3, 8, dtype=torch.float64))


# ----------------------------------------------------------------------------- multi-head
def _pair(d=16, h=4, bias=True, dtype=torch.float64):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(d, h, bias=bias, batch_first=True).to(dtype).eval()
    ours = MultiHeadAttention(d, h, bias=bias).to(dtype).eval().load_from_torch(ref)
    return ours, ref


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_multihead_attention(fused, bias):
    ours, ref = _pair(bias=bias)
    ours.fused = fused
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    out, w = ours(x, return_weights=True)
    r_out, r_w = ref(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out, r_out)
    torch.testing.assert_close(w, r_w)
    out2, w2 = ours(x)
    assert w2 is None
    torch.testing.assert_close(out2, r_out)


@pytest.mark.parametrize("fused", [True, False])
def test_mha_masks_match_torch(fused):
    ours, ref = _pair()
    ours.fused = fused
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    # torch.nn.MultiheadAttention masks are the other way round: True = NOT allowed
    r_out, _ = ref(x, x, x, key_padding_mask=am == 0, attn_mask=~causal_mask(5))
    out, _ = ours(x, mask=padding_mask(am), is_causal=True)
    torch.testing.assert_close(out, r_out)
    # 3-D mask (B, T_q, T_k)
    m3 = padding_mask(am)[:, 0].expand(2, 5, 5) & causal_mask(5)
    out3, _ = ours(x, mask=m3)
    torch.testing.assert_close(out3, r_out)


def test_mha_gradients_match_torch():
    ours, ref = _pair()
    x1 = torch.randn(2, 4, 16, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    ours(x1, is_causal=True)[0].square().sum().backward()
    ref(x2, x2, x2, attn_mask=~causal_mask(4), need_weights=False)[0].square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.q_proj.weight.grad, ref.in_proj_weight.grad[:16])
    torch.testing.assert_close(ours.v_proj.weight.grad, ref.in_proj_weight.grad[32:])
    torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad)


def test_mha_cross_attention_shapes_and_match():
    ours, ref = _pair()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    mem = torch.randn(2, 7, 16, dtype=torch.float64)
    out, w = ours(x, context=mem, return_weights=True)
    assert out.shape == (2, 3, 16) and w.shape == (2, 4, 3, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 3, dtype=torch.float64))
    r_out, _ = ref(x, mem, mem)
    torch.testing.assert_close(out, r_out)
    src_pad = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    out_m, w_m = ours(x, context=mem, mask=padding_mask(src_pad), return_weights=True)
    assert torch.all(w_m[1, :, :, 4:] == 0)
    r_out_m, _ = ref(x, mem, mem, key_padding_mask=src_pad == 0)
    torch.testing.assert_close(out_m, r_out_m)


@pytest.mark.parametrize("fused", [True, False])
def test_kv_cache_incremental_equals_full_causal(fused):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, fused=fused).double().eval()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    full, _ = mha(x, is_causal=True)
    cache = KVCache()
    steps = [mha(x[:, :3], is_causal=True, cache=cache)[0]]  # a prompt of 3 tokens at once
    for t in range(3, 7):
        steps.append(mha(x[:, t : t + 1], is_causal=True, cache=cache)[0])  # then one at a time
    assert cache.length == 7 and cache.k.shape == (2, 4, 7, 4)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    cache.reset()
    assert cache.length == 0 and len(cache) == 0


def test_kv_cache_update_reorder_and_errors():
    c = KVCache()
    k, v = c.update(torch.zeros(2, 2, 3, 4), torch.ones(2, 2, 3, 5))
    k, v = c.update(torch.zeros(2, 2, 1, 4), torch.ones(2, 2, 1, 5))
    assert k.shape == (2, 2, 4, 4) and v.shape == (2, 2, 4, 5) and c.length == 4
    with pytest.raises(ValueError, match=r"\(B, nh, T, hs\)"):
        c.update(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="new keys must be"):
        c.update(torch.zeros(2, 2, 1, 8), torch.zeros(2, 2, 1, 5))
    c.k[1] += 1
    c.reorder(torch.tensor([1, 1]))
    assert torch.all(c.k == 1) and c.k.shape[0] == 2
    assert "length=4" in repr(c)


def test_cross_attention_cache_reuses_memory():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    mem = torch.randn(1, 5, 8)
    c = KVCache()
    a, _ = mha(torch.randn(1, 1, 8), context=mem, cache=c)
    assert c.length == 5
    x = torch.randn(1, 1, 8)
    b, _ = mha(x, context=mem, cache=c)
    torch.testing.assert_close(b, mha(x, context=mem)[0])
    assert c.length == 5


def test_fused_equals_from_scratch_with_masks_and_float_mask():
    torch.manual_seed(0)
    a = MultiHeadAttention(16, 4, fused=True).eval()
    b = MultiHeadAttention(16, 4, fused=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 6, 16)
    am = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 2 + [1] * 4])  # left padding in row 3
    for kw in (
        {},
        {"is_causal": True},
        {"mask": padding_mask(am)},
        {"mask": padding_mask(am), "is_causal": True},  # row 3: first two queries see nothing
        {"mask": torch.randn(6, 6)},
    ):
        oa, _ = a(x, **kw)
        ob, _ = b(x, **kw)
        assert not torch.isnan(oa).any()
        torch.testing.assert_close(oa, ob, atol=1e-5, rtol=1e-5)


def test_rotary_hook_gets_cache_offset():
    seen = []

    def rotary(q, k, offset):
        seen.append((q.shape[-2], k.shape[-2], offset))
        return q, k

    mha = MultiHeadAttention(8, 2).eval()
    c = KVCache()
    mha(torch.zeros(1, 3, 8), is_causal=True, cache=c, rotary=rotary)
    mha(torch.zeros(1, 1, 8), is_causal=True, cache=c, rotary=rotary)
    assert seen == [(3, 3, 0), (1, 1, 3)]


def test_mha_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    mha.eval()
    a, _ = mha(x)
    b, _ = mha(x)
    assert torch.equal(a, b)
    mha.train()
    c, _ = mha(x)
    assert not torch.allclose(a, c)


# ----------------------------------------------------------------------------- exercise checkers (notebook 03)
def test_ch03_checkers_keep_the_contract():
    import math

    from course_lib.exercises import ExerciseError, ch03

    def todo(*args):
        raise NotImplementedError

    for check in (ch03.check_attention_weights, ch03.check_causal_mask, ch03.check_split_heads, ch03.check_masked_attention):
        assert check(todo) is None

    assert ch03.check_attention_weights(lambda q, k: torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), -1))
    assert ch03.check_causal_mask(lambda tq, tk: torch.ones(tq, tk, dtype=torch.bool).tril(tk - tq))
    assert ch03.check_split_heads(lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2))
    assert ch03.check_masked_attention(
        lambda q, k, v, m: torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~m, float("-inf")), -1) @ v
    )
    with pytest.raises(ExerciseError, match="hint"):
        ch03.check_attention_weights(lambda q, k: torch.softmax(q @ k.T, -1))  # forgot the scaling
    with pytest.raises(ExerciseError):
        ch03.check_causal_mask(lambda tq, tk: torch.ones(tq, tk, dtype=torch.bool).tril())  # top-left aligned
    with pytest.raises(ExerciseError):
        ch03.check_split_heads(lambda x, h: x.view(x.shape[0], h, x.shape[1], -1))  # mixes positions


def test_eval_without_grad_follows_fused_optimizer_steps():
    """Regression: a cached copy of the weights for inference went stale, because the fused AdamW kernel
    updates parameters without bumping their version counters. Evaluation under no_grad must always use
    the current weights."""
    from course_lib.models import GPT, GPTConfig
    from course_lib.training import make_optimizer

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny"))
    opt = make_optimizer(model, lr=1e-2)
    x = torch.randint(0, model.config.vocab_size, (2, 8))
    for _ in range(3):
        model.train()
        loss = model(x, targets=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            fast = model(x, targets=x).loss
        assert torch.allclose(fast, model(x, targets=x).loss)  # no_grad vs grad-enabled: same weights used


@pytest.mark.parametrize("bias", [True, False])
def test_pack_qkv_gives_the_numbers_of_three_projections(bias):
    """pack_qkv stacks q/k/v into one matrix for decoding: same outputs, off again afterwards, LoRA-wrapped
    projections are left alone, and generate() leaves no stacked copy behind (it would miss later updates)."""
    from course_lib.finetuning import LoRALinear
    from course_lib.generation import generate
    from course_lib.models import GPT, GPTConfig

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, bias=bias).eval()
    x = torch.randn(2, 5, 16)
    ref, _ = mha(x, is_causal=True)
    mha.pack_qkv(True)
    assert mha._decoding_qkv is not None and mha._decoding_qkv[0].shape == (48, 16)
    packed, _ = mha(x, is_causal=True)
    with torch.inference_mode():
        cache = KVCache()
        steps = [mha(x[:, t : t + 1], cache=cache)[0] for t in range(5)]
    mha.pack_qkv(False)
    assert mha._decoding_qkv is None
    assert torch.allclose(ref, packed, atol=1e-6) and torch.allclose(torch.cat(steps, 1), ref, atol=1e-5)
    mha.q_proj = LoRALinear(mha.q_proj, r=2)
    mha.pack_qkv(True)
    assert mha._decoding_qkv is None  # a wrapped projection keeps its own forward
    gpt = GPT(GPTConfig.preset("tiny")).eval()
    generate(gpt, torch.zeros(1, 1, dtype=torch.long), 5, greedy=True)
    assert all(getattr(m, "_decoding_qkv", None) is None for m in gpt.modules())
