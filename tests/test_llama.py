"""The Llama-style model of notebook 13: built from the course's blocks, proven against transformers' LlamaForCausalLM.

Two oracles: a tiny random Llama (fast; every weight copied into transformers' model) and the real
SmolLM2-135M-Instruct, which both libraries load from the same GGUF file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.attention import KVCache, MultiHeadAttention, repeat_kv
from course_lib.generation import generate, stream
from course_lib.llama import Llama, LlamaConfig, QuantizedLinear, kv_cache_bytes_per_token, llama_state_from_gguf
from course_lib.layers import TransformerBlock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ----------------------------------------------------------------------------- grouped-query attention
def test_repeat_kv_equals_transformers():
    from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

    x = torch.randn(2, 3, 5, 4)
    for n in (1, 2, 3):
        assert torch.equal(repeat_kv(x, n), hf_repeat_kv(x, n))
    with pytest.raises(ValueError, match="n_rep must be an int >= 1"):
        repeat_kv(x, 0)
    with pytest.raises(ValueError, match=r"\(B, n_kv_heads, T, head_dim\)"):
        repeat_kv(x[0], 2)


def test_gqa_with_as_many_kv_heads_as_query_heads_is_multi_head_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, bias=False, batch_first=True)
    mha = MultiHeadAttention(16, 4, bias=False, n_kv_heads=4).load_from_torch(ref)
    x = torch.randn(2, 6, 16)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)  # True = blocked, for PyTorch's module
    expected, _ = ref(x, x, x, attn_mask=mask, need_weights=False)
    out, _ = mha(x, is_causal=True)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_gqa_equals_multi_head_attention_with_repeated_key_value_weights():
    """Sharing a key/value head across a group is the same as copying its weights into each query head."""
    torch.manual_seed(0)
    gqa = MultiHeadAttention(24, 6, bias=False, n_kv_heads=2)
    mha = MultiHeadAttention(24, 6, bias=False)
    hs, rep = 4, 3
    with torch.no_grad():
        mha.q_proj.weight.copy_(gqa.q_proj.weight)
        mha.out_proj.weight.copy_(gqa.out_proj.weight)
        for ours, theirs in ((gqa.k_proj, mha.k_proj), (gqa.v_proj, mha.v_proj)):
            w = ours.weight.view(2, 1, hs, 24).expand(2, rep, hs, 24).reshape(24, 24)  # head h -> kv head h // 3
            theirs.weight.copy_(w)
    x = torch.randn(2, 7, 24)
    for fused in (True, False):
        gqa.fused = mha.fused = fused
        a, _ = gqa(x, is_causal=True)
        b, _ = mha(x, is_causal=True)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_gqa_cache_holds_only_the_kv_heads_and_gives_the_same_output():
    torch.manual_seed(1)
    gqa = MultiHeadAttention(24, 6, n_kv_heads=2).eval()
    x = torch.randn(1, 9, 24)
    full, _ = gqa(x, is_causal=True)
    cache = KVCache()
    steps = [gqa(x[:, :5], is_causal=True, cache=cache)[0]] + [gqa(x[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.k.shape == (1, 2, 9, 4)  # 2 of 6 heads: a third of the multi-head cache
    gqa.pack_qkv(True)  # the decoding path with stacked projections gives the same numbers
    packed, _ = gqa(x, is_causal=True)
    gqa.pack_qkv(False)
    torch.testing.assert_close(packed, full, atol=1e-6, rtol=1e-5)


def test_gqa_rejects_a_kv_head_count_that_does_not_divide_the_heads():
    with pytest.raises(ValueError, match="n_kv_heads must be a positive int that divides n_heads=6"):
        MultiHeadAttention(24, 6, n_kv_heads=4)
    with pytest.raises(ValueError, match="grouped-query"):
        MultiHeadAttention(24, 6, n_kv_heads=2).load_from_torch(nn.MultiheadAttention(24, 6))


def test_kv_cache_bytes_per_token():
    c = LlamaConfig()
    assert kv_cache_bytes_per_token(c, 2) == 2 * 30 * 3 * 64 * 2
    assert kv_cache_bytes_per_token(c, 2, n_kv_head=9) == 3 * kv_cache_bytes_per_token(c, 2)


# ----------------------------------------------------------------------------- tiny model vs transformers
def _hf_copy(model: Llama):
    """transformers' LlamaForCausalLM with the same config and every weight copied from `model`."""
    from transformers import LlamaConfig as HFConfig, LlamaForCausalLM

    c = model.config
    hf = LlamaForCausalLM(HFConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff, num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head, max_position_embeddings=c.block_size,
        rms_norm_eps=c.norm_eps, rope_theta=c.rope_base, tie_word_embeddings=c.tie_weights, attention_bias=False,
        mlp_bias=False, hidden_act="silu",
    )).eval()
    sd = {"model.embed_tokens.weight": model.tok_emb.weight, "model.norm.weight": model.norm_f.weight,
          "lm_head.weight": model.lm_head.weight}
    for i, b in enumerate(model.blocks):
        p = f"model.layers.{i}."
        gate, up = b.ffn.fc1.weight.chunk(2)
        sd.update({p + "input_layernorm.weight": b.norm1.weight, p + "post_attention_layernorm.weight": b.norm2.weight,
                   p + "self_attn.q_proj.weight": b.attn.q_proj.weight, p + "self_attn.k_proj.weight": b.attn.k_proj.weight,
                   p + "self_attn.v_proj.weight": b.attn.v_proj.weight, p + "self_attn.o_proj.weight": b.attn.out_proj.weight,
                   p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": b.ffn.fc2.weight})
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return hf


@pytest.mark.parametrize("fused", [True, False])
def test_tiny_llama_equals_transformers(fused):
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset("tiny", fused=fused)).eval()
    for p in model.parameters():  # norms away from 1, so that a wrong norm cannot hide
        if p.dim() == 1:
            nn.init.uniform_(p, 0.5, 1.5)
    hf = _hf_copy(model)
    ids = torch.randint(0, 64, (2, 20))
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf(ids).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        cache = model.new_cache()  # prompt, then one token at a time
        parts = [model(ids[:, :12], cache=cache).logits] + [model(ids[:, t : t + 1], cache=cache).logits for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(parts, 1), theirs, atol=1e-5, rtol=1e-4)
    assert cache[0].k.shape == (2, 2, 20, 8)  # (B, n_kv_head, T, head_dim)
    out = generate(model, ids[:, :5], 10, greedy=True)
    hf_out = hf.generate(ids[:, :5], max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(out, hf_out)


def test_llama_uses_the_course_blocks_and_counts_its_parameters():
    c = LlamaConfig.preset("tiny")
    model = Llama(c)
    assert all(type(b) is TransformerBlock for b in model.blocks)  # the GPT's block class, configured as Llama's
    attn = model.blocks[0].attn
    assert (attn.n_heads, attn.n_kv_heads, attn.k_proj.out_features) == (4, 2, 16)
    per_block = 3 * c.d_model * c.d_ff + 2 * c.d_model * c.d_model + 2 * 16 * c.d_model + 2 * c.d_model
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert n == c.vocab_size * c.d_model + c.n_layer * per_block + c.d_model  # tied: the embedding counted once


def test_stream_gives_the_tokens_of_generate():
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset("tiny")).eval()
    prompt = torch.randint(0, 64, (1, 4))
    out = generate(model, prompt, 12, top_k=10, generator=torch.Generator().manual_seed(3))
    toks = [int(t[0]) for t in stream(model, prompt, 12, top_k=10, generator=torch.Generator().manual_seed(3))]
    assert toks == out[0, 4:].tolist()
    x = torch.ones(2, requires_grad=True)  # the caller is not left in inference mode between yields
    it = stream(model, prompt, 3)
    next(it)
    assert (x * 2).requires_grad and not torch.is_inference_mode_enabled()


def test_llama_config_errors():
    with pytest.raises(ValueError, match="n_kv_head=4 must divide n_head=6"):
        LlamaConfig(n_head=6, n_kv_head=4, d_model=48)
    with pytest.raises(ValueError, match="even width"):
        LlamaConfig(n_head=4, n_kv_head=2, d_model=12)
    with pytest.raises(ValueError, match="architecture 'llama'"):
        LlamaConfig.from_gguf_metadata({"general.architecture": "gpt2"})
    with pytest.raises(ValueError, match="lacks the key 'llama.context_length'"):
        LlamaConfig.from_gguf_metadata({"general.architecture": "llama", "llama.vocab_size": 10})
    model = Llama(LlamaConfig.preset("tiny"))
    with pytest.raises(ValueError, match="longer than the model's context of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


# ----------------------------------------------------------------------------- the real SmolLM2 vs transformers
PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "自然语言处理是人工智能的一个重要分支。",
]


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from course_lib.data import smollm2_gguf_path
    from course_lib.gguf import GGUFFile
    from course_lib.tokenization import BPETokenizer
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = smollm2_gguf_path()
    ours = Llama.from_gguf(path)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                              attn_implementation="eager").eval()  # its sdpa path is slow on a CPU (enable_gqa)
    tok = BPETokenizer.from_gguf_metadata(GGUFFile(path).metadata)
    return path, ours, hf, tok


def test_smollm2_config_from_the_file(smollm2):
    path, ours, hf, _ = smollm2
    c = ours.config
    assert (c.n_layer, c.n_head, c.n_kv_head, c.d_model, c.d_ff, c.vocab_size) == (30, 9, 3, 576, 1536, 49152)
    assert c.rope_base == 100000.0 and c.block_size == 8192
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters()) == 134_515_008


def test_smollm2_logits_equal_transformers(smollm2):
    _, ours, hf, tok = smollm2
    worst = 0.0
    with torch.no_grad():
        for text in PROMPTS:
            ids = torch.tensor([tok.encode(text, allowed_special="all")])
            a, b = ours(ids).logits, hf(ids).logits
            worst = max(worst, (a - b).abs().max().item())
            assert torch.equal(a.argmax(-1), b.argmax(-1)), text
            cache = ours.new_cache()  # with the KV cache: the prompt in two parts, then token by token
            cut = ids.size(1) // 2
            parts = [ours(ids[:, :cut], cache=cache).logits] + [ours(ids[:, t : t + 1], cache=cache).logits for t in range(cut, ids.size(1))]
            c = torch.cat(parts, 1)
            worst = max(worst, (c - b).abs().max().item())
            assert torch.equal(c.argmax(-1), b.argmax(-1)), text
    print(f"largest |logit difference| over {len(PROMPTS)} prompts, with and without cache: {worst:.2e}")
    assert worst <= 1e-3


def test_smollm2_greedy_generation_equals_transformers(smollm2):
    _, ours, hf, tok = smollm2
    ids = torch.tensor([tok.encode(PROMPTS[0], allowed_special="all")])
    out = generate(ours, ids, 64, greedy=True)
    expected = hf.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=None, pad_token_id=2)
    assert out.shape == (1, ids.size(1) + 64)
    assert torch.equal(out, expected)


def test_smollm2_quantized_layers_give_the_same_logits(smollm2):
    path, ours, _, tok = smollm2
    q = Llama.from_gguf(path, quantized=True)
    kinds = {type(m).__name__ for m in q.modules() if isinstance(m, (nn.Linear, QuantizedLinear))}
    assert kinds == {"QuantizedLinear", "Linear"}  # blocks quantized; the tied LM head is the float embedding
    ids = torch.tensor([tok.encode(PROMPTS[2])])
    with torch.no_grad():
        torch.testing.assert_close(q(ids).logits, ours(ids).logits, atol=1e-4, rtol=1e-4)
    layer = q.blocks[0].attn.q_proj
    torch.testing.assert_close(layer.weight_float(), ours.blocks[0].attn.q_proj.weight, atol=0, rtol=0)
    qbytes = sum(b.numel() for b in q.buffers())
    assert qbytes < 0.2 * 4 * sum(p.numel() for p in ours.blocks.parameters())  # under a fifth of float32


def test_gguf_tensor_with_a_wrong_shape_is_named(smollm2):
    from course_lib.gguf import GGUFFile

    path = smollm2[0]
    gf = GGUFFile(path)
    wrong = LlamaConfig.from_gguf_metadata(gf.metadata, d_ff=1024)
    with pytest.raises(ValueError, match=r"tensor 'blk\.0\.ffn_gate\.weight' has shape \(1536, 576\), but the config needs \(1024, 576\)"):
        llama_state_from_gguf(gf, wrong)


def test_quantized_linear_checks_its_input():
    raw = torch.zeros(4, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match="supports"):
        QuantizedLinear(raw, "Q5_K", 64)
    with pytest.raises(ValueError, match=r"\(\*, 40\)"):
        QuantizedLinear(raw[:, :30], "Q4_1", 64)
    layer = QuantizedLinear(raw, "Q4_1", 64)
    assert layer(torch.ones(2, 64)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        layer(torch.ones(2, 32))
    assert np.isfinite(layer.weight_float().numpy()).all()
