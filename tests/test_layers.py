"""Tests for course_lib.layers: equal to torch.nn's norms and transformer layers, and to BERT's layer."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, causal_mask, padding_mask
from course_lib.layers import DecoderBlock, FeedForward, LayerNorm, RMSNorm, TransformerBlock, gelu, make_norm

D, H, FF = 16, 4, 32


def test_gelu_is_exact_erf_gelu():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(gelu(x), F.gelu(x))  # approximate="none"
    assert not torch.allclose(gelu(x), F.gelu(x, approximate="tanh"), atol=1e-6)


@pytest.mark.parametrize("activation", ["gelu", "relu", "swiglu"])
def test_feedforward_formula(activation):
    torch.manual_seed(0)
    ff = FeedForward(D, FF, activation=activation).double()
    x = torch.randn(2, 3, D, dtype=torch.float64)
    h = ff.fc1(x)
    if activation == "gelu":
        h = F.gelu(h)
    elif activation == "relu":
        h = F.relu(h)
    else:
        assert ff.fc1.out_features == 2 * FF
        h = F.silu(h[..., :FF]) * h[..., FF:]
    torch.testing.assert_close(ff(x), ff.fc2(h))
    assert {n for n, _ in ff.named_parameters()} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_feedforward_errors_and_no_bias():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(D, FF, activation="tanh")
    with pytest.raises(ValueError, match=r"\(\.\.\., d_model=16\).*\(2, 8\)"):
        FeedForward(D, FF)(torch.zeros(2, 8))
    assert FeedForward(D, FF, bias=False).fc1.bias is None


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch_values_and_gradients(bias):
    torch.manual_seed(0)
    ours, ref = LayerNorm(D, eps=1e-5, bias=bias).double(), nn.LayerNorm(D, eps=1e-5, bias=bias).double()
    with torch.no_grad():
        ref.weight.normal_()
        ours.weight.copy_(ref.weight)
        if bias:
            ref.bias.normal_()
            ours.bias.copy_(ref.bias)
    x1 = (torch.randn(3, 5, D, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_rmsnorm_matches_torch_values_and_gradients():
    torch.manual_seed(0)
    ours, ref = RMSNorm(D, eps=1e-6).double(), nn.RMSNorm(D, eps=1e-6).double()
    with torch.no_grad():
        ref.weight.normal_()
        ours.weight.copy_(ref.weight)
    x1 = torch.randn(3, 5, D, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    torch.testing.assert_close(ours(x1), ref(x2))
    ours(x1).pow(3).sum().backward()
    ref(x2).pow(3).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    # float32 too
    x = torch.randn(4, D)
    torch.testing.assert_close(RMSNorm(D)(x), nn.RMSNorm(D, eps=1e-6)(x), atol=1e-5, rtol=1e-5)


def test_norm_errors():
    with pytest.raises(ValueError, match=r"d=16.*\(2, 4\)"):
        LayerNorm(D)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"d=16"):
        RMSNorm(D)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="norm must be one of"):
        make_norm("batchnorm", D)
    assert isinstance(make_norm("rmsnorm", D), RMSNorm)


# ----------------------------------------------------------------------------- blocks vs torch.nn
def _load_encoder_layer(block: TransformerBlock, ref: nn.TransformerEncoderLayer) -> None:
    block.attn.load_from_torch(ref.self_attn)
    with torch.no_grad():
        for ours, theirs in ((block.ffn.fc1, ref.linear1), (block.ffn.fc2, ref.linear2), (block.norm1, ref.norm1), (block.norm2, ref.norm2)):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("fused", [True, False])
def test_transformer_block_matches_torch_encoder_layer(pre_norm, fused):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=pre_norm).double().eval()
    with torch.no_grad():  # non-trivial norms
        for p in (ref.norm1.weight, ref.norm1.bias, ref.norm2.weight, ref.norm2.bias):
            p.add_(0.3 * torch.randn_like(p))
    block = TransformerBlock(D, H, FF, pre_norm=pre_norm, fused=fused).double().eval()
    _load_encoder_layer(block, ref)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    am = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    y, w = block(x, mask=padding_mask(am), return_weights=True)
    torch.testing.assert_close(y, ref(x, src_key_padding_mask=am == 0))
    assert w.shape == (2, H, 6, 6)
    yc, none = block(x, is_causal=True)
    assert none is None
    torch.testing.assert_close(yc, ref(x, src_mask=~causal_mask(6), is_causal=True))


def test_pre_ln_and_post_ln_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 4, D)
    pre = TransformerBlock(D, H, FF, pre_norm=True).eval()
    post = TransformerBlock(D, H, FF, pre_norm=False).eval()
    post.load_state_dict(pre.state_dict())
    h = x + pre.attn(pre.norm1(x))[0]
    torch.testing.assert_close(pre(x)[0], h + pre.ffn(pre.norm2(h)))
    h = pre.norm1(x + pre.attn(x)[0])
    torch.testing.assert_close(post(x)[0], pre.norm2(h + pre.ffn(h)))
    assert not torch.allclose(pre(x)[0], post(x)[0])
    # post-LN output is normalised (mean 0, std 1 per position); pre-LN output is not
    out = post(x)[0]
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)


def test_block_rmsnorm_swiglu_and_names():
    b = TransformerBlock(D, H, FF, norm="rmsnorm", activation="swiglu", bias=False, eps=1e-6)
    assert isinstance(b.norm1, RMSNorm) and b.norm1.eps == 1e-6 and b.attn.q_proj.bias is None
    names = {n.split(".")[0] for n, _ in b.named_parameters()}
    assert names == {"attn", "ffn", "norm1", "norm2"}
    y, _ = b(torch.randn(2, 5, D), is_causal=True)
    assert y.shape == (2, 5, D)


@pytest.mark.parametrize("fused", [True, False])
def test_block_kv_cache_equals_full(fused):
    torch.manual_seed(0)
    b = TransformerBlock(D, H, FF, fused=fused).double().eval()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    full, _ = b(x, is_causal=True)
    c = KVCache()
    parts = [b(x[:, :2], is_causal=True, cache=c)[0]] + [b(x[:, t : t + 1], is_causal=True, cache=c)[0] for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(parts, 1), full)


def test_block_matches_transformers_bert_layer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    cfg = BertConfig(hidden_size=D, num_attention_heads=H, intermediate_size=FF, hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    bert = BertLayer(cfg).eval()
    block = TransformerBlock(D, H, FF, pre_norm=False, eps=1e-12).eval()
    a = bert.attention
    mapping = {
        "attn.q_proj": a.self.query, "attn.k_proj": a.self.key, "attn.v_proj": a.self.value,
        "attn.out_proj": a.output.dense, "norm1": a.output.LayerNorm,
        "ffn.fc1": bert.intermediate.dense, "ffn.fc2": bert.output.dense, "norm2": bert.output.LayerNorm,
    }
    with torch.no_grad():
        for name, mod in mapping.items():
            ours = block.get_submodule(name)
            ours.weight.copy_(mod.weight)
            ours.bias.copy_(mod.bias)
    x = torch.randn(2, 5, D)
    am = torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])
    ext = (1.0 - am[:, None, None, :].float()) * torch.finfo(torch.float32).min  # BERT's additive mask
    out = bert(x, attention_mask=ext)
    out = out[0] if isinstance(out, tuple) else out
    ours, _ = block(x, mask=padding_mask(am))
    torch.testing.assert_close(ours, out, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- decoder block
def _load_decoder_layer(block: DecoderBlock, ref: nn.TransformerDecoderLayer) -> None:
    block.self_attn.load_from_torch(ref.self_attn)
    block.cross_attn.load_from_torch(ref.multihead_attn)
    with torch.no_grad():
        pairs = ((block.ffn.fc1, ref.linear1), (block.ffn.fc2, ref.linear2), (block.norm1, ref.norm1),
                 (block.norm2, ref.norm2), (block.norm3, ref.norm3))
        for ours, theirs in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-LN", "post-LN"])
def test_decoder_block_matches_torch_decoder_layer(pre_norm):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=pre_norm).double().eval()
    block = DecoderBlock(D, H, FF, pre_norm=pre_norm).double().eval()
    _load_decoder_layer(block, ref)
    x = torch.randn(2, 4, D, dtype=torch.float64)
    mem = torch.randn(2, 7, D, dtype=torch.float64)
    src = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    y, (ws, wc) = block(x, mem, memory_mask=padding_mask(src), return_weights=True)
    r = ref(x, mem, tgt_mask=~causal_mask(4), memory_key_padding_mask=src == 0, tgt_is_causal=True)
    torch.testing.assert_close(y, r)
    assert ws.shape == (2, H, 4, 4) and wc.shape == (2, H, 4, 7)
    assert torch.all(ws[..., 0, 1:] == 0) and torch.all(wc[1, ..., 5:] == 0)
    y2, none = block(x, mem, memory_mask=padding_mask(src))
    assert none is None
    torch.testing.assert_close(y2, r)


def test_decoder_block_cache_and_self_mask():
    torch.manual_seed(0)
    block = DecoderBlock(D, H, FF, norm="rmsnorm").double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mem = torch.randn(2, 3, D, dtype=torch.float64)
    full, _ = block(x, mem)
    c = KVCache()
    parts = [block(x[:, t : t + 1], mem, cache=c)[0] for t in range(5)]
    torch.testing.assert_close(torch.cat(parts, 1), full)
    # target padding on top of the causal mask leaves real positions' outputs unchanged
    tgt = torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])
    y, _ = block(x, mem, self_mask=padding_mask(tgt))
    torch.testing.assert_close(y[:, :3], full[:, :3])
    with pytest.raises(ValueError, match="context"):
        block(x, torch.randn(2, 3, 8, dtype=torch.float64))
