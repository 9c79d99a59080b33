"""Tests for course_lib.models: tiny seeded configurations, BERT == transformers, overfitting one batch."""

import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F

from course_lib.models import (
    BERT,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    EncoderDecoder,
    EncoderDecoderConfig,
    GPT,
    GPTConfig,
    GPTDecoder,
    ModelOutput,
    count_parameters,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("tiny", **kw))


def _overfit(model, batch, steps=150, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(*batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


# ----------------------------------------------------------------------------- configs
def test_configs_presets_and_json_round_trip():
    for cls in (GPTConfig, BertConfig, EncoderDecoderConfig):
        for name in cls.PRESETS:
            cfg = cls.preset(name)
            assert cls.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    assert GPTConfig.preset("tiny", vocab_size=7).vocab_size == 7
    with pytest.raises(ValueError, match="unknown preset"):
        GPTConfig.preset("nope")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="unknown GPTConfig keys"):
        GPTConfig.from_dict({"n_layers": 3})


# ----------------------------------------------------------------------------- GPT
def test_gpt_shapes_loss_and_tying():
    model = _tiny_gpt()
    x = torch.randint(0, 32, (3, 10))
    logits, loss = model(x, x)
    assert logits.shape == (3, 10, 32)
    assert torch.allclose(loss, F.cross_entropy(logits.view(-1, 32), x.view(-1)))
    assert model.lm_head.weight is model.tok_emb.weight
    untied = _tiny_gpt(tie_weights=False)
    assert count_parameters(untied) == count_parameters(model) + 32 * 32
    y = x.clone()
    y[:, :5] = -100  # ignored positions
    expected = F.cross_entropy(logits[:, 5:].reshape(-1, 32), x[:, 5:].reshape(-1))
    assert torch.allclose(model(x, y).loss, expected, atol=1e-6)


def test_gpt_fused_equals_from_scratch_and_is_causal():
    fast = _tiny_gpt()
    slow = GPT(dataclasses.replace(fast.config, fused=False))
    slow.load_state_dict(fast.state_dict())
    fast.eval(), slow.eval()
    x = torch.randint(0, 32, (2, 12))
    out = slow(x, return_attentions=True)
    assert torch.allclose(fast(x).logits, out.logits, atol=1e-5)
    w = out.attentions[0]  # (B, nh, T, T)
    assert w.shape == (2, 2, 12, 12)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 12), atol=1e-5)
    assert float(w.detach().triu(diagonal=1).abs().max()) == 0.0  # no looking ahead
    # Changing a later token never changes earlier logits.
    x2 = x.clone()
    x2[:, 8] = (x2[:, 8] + 1) % 32
    assert torch.allclose(fast(x).logits[:, :8], fast(x2).logits[:, :8], atol=1e-6)


def test_gpt_bad_input():
    model = _tiny_gpt()
    with pytest.raises(ValueError, match="longer than the model's context of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"vocab_size=32.*max 32"):
        model(torch.tensor([[1, 32]]))
    with pytest.raises(ValueError, match="min -1"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    x = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, vocab_size=32\).*max 32"):
        model(x, torch.tensor([[1, 2, 32]]))
    with pytest.raises(ValueError, match="targets must lie.*min -5"):
        model(x, torch.tensor([[1, -5, 2]]))
    with pytest.raises(TypeError, match="targets must hold integer"):
        model(x, torch.zeros(1, 3))
    assert model(x, torch.tensor([[1, -100, 2]])).loss.isfinite()  # -100 is ignored, not out of range


def test_gpt_overfits_one_batch():
    model = _tiny_gpt(seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 32, (4, 16), generator=g)
    y = torch.randint(0, 32, (4, 16), generator=g)
    assert _overfit(model, (x, y), steps=200) < 0.05


# ----------------------------------------------------------------------------- GPTDecoder
@pytest.mark.parametrize(
    "kw", [dict(), dict(norm="rmsnorm"), dict(activation="relu"), dict(activation="swiglu", bias=False), dict(tie_weights=False)]
)
def test_gpt_decoder_gives_the_logits_of_forward_with_a_cache(kw):
    model = _tiny_gpt(seed=2, **kw).eval()
    decoder, cache = model.fast_decoder(), model.new_cache()
    assert isinstance(decoder, GPTDecoder)
    ids = torch.randint(0, 32, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # a prompt, single tokens, several tokens after a cache (the offset causal mask), up to the full context
        for a, b in [(0, 5), (5, 6), (6, 7), (7, 12), (12, 13), (13, 16)]:
            want = model(ids[:, a:b], cache=cache).logits[:, -1]  # (B, V)
            got = decoder(ids[:, a:b])
            assert got.shape == (3, 32) and decoder.length == b == cache[0].length
            assert torch.equal(got, want)  # same kernels in the same order: the same bits on this CPU
        decoder.reset()  # a new sequence, in the same buffers
        assert decoder.length == 0
        assert torch.equal(decoder(ids[:, :4]), model(ids[:, :4]).logits[:, -1])
    out = decoder(ids[:, 4:5])  # outside no_grad too: the decoder keeps no gradients
    assert not out.requires_grad and out.shape == (3, 32) and decoder.length == 5


def test_call_counts_stated_for_one_decoding_step():
    # GPTDecoder's docstring and the README quote these counts for the notebook's char-shakespeare GPT:
    # one cached token through GPT.forward vs through GPTDecoder.
    from course_lib.models import decoding_call_counts

    torch.manual_seed(0)
    readable, fast = decoding_call_counts(GPT(GPTConfig.preset("char-shakespeare", vocab_size=65)))
    assert (readable.module_calls, readable.torch_ops) == (49, 119)
    assert (fast.module_calls, fast.torch_ops) == (0, 83)
    doc = " ".join(GPTDecoder.__doc__.split())
    assert "49 module calls" in doc and "119 PyTorch operations" in doc and "83 PyTorch operations" in doc


def test_fast_decoder_only_for_models_it_reproduces():
    from course_lib.moe import MoEGPT, MoEGPTConfig

    assert _tiny_gpt(fused=False).fast_decoder() is None  # the from-scratch kernels give other bits
    torch.manual_seed(0)
    assert MoEGPT(MoEGPTConfig.preset("tiny")).fast_decoder() is None
    swapped = _tiny_gpt()

    class MyLinear(torch.nn.Linear):
        pass

    swapped.blocks[1].ffn.fc2 = MyLinear(swapped.blocks[1].ffn.fc2.in_features, 32)  # e.g. a LoRA wrapper
    assert swapped.fast_decoder() is None
    hooked = _tiny_gpt()
    handle = hooked.blocks[0].attn.register_forward_hook(lambda *args: None)
    assert hooked.fast_decoder() is None  # the decoder would skip the hook
    handle.remove()
    assert hooked.fast_decoder() is not None
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert hooked.fast_decoder() is None
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="plain GPT with fused=True"):
        GPTDecoder(_tiny_gpt(fused=False))


def test_gpt_decoder_bad_input():
    model = _tiny_gpt().eval()
    decoder = model.fast_decoder()
    with pytest.raises(ValueError, match=r"vocab_size=32.*max 32"):
        decoder(torch.tensor([[1, 32]]))
    with pytest.raises(TypeError, match="integer"):
        decoder(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least one new token"):
        decoder(torch.zeros(1, 0, dtype=torch.long))
    with torch.no_grad():
        decoder(torch.zeros(2, 10, dtype=torch.long))
        with pytest.raises(ValueError, match=r"10 cached = 17, longer than the model's context of 16"):
            decoder(torch.zeros(2, 7, dtype=torch.long))
        with pytest.raises(ValueError, match="decoder caches 2; call reset"):
            decoder(torch.zeros(3, 1, dtype=torch.long))
        assert decoder.length == 10  # refused calls change nothing
        model.train()
        with pytest.raises(RuntimeError, match="model.eval"):
            decoder(torch.zeros(2, 1, dtype=torch.long))
        model.eval()
        decoder.reset()
        assert decoder(torch.zeros(3, 2, dtype=torch.long)).shape == (3, 32)  # a new batch size after reset


# ----------------------------------------------------------------------------- BERT
def _minilm_reference():
    from course_lib.data import load_minilm

    return load_minilm(attn_implementation="eager")


def test_bert_matches_transformers_minilm():
    tokenizer, hf = _minilm_reference()
    ours = BERT.from_pretrained()
    texts = ["The cat sat on the mat.", "Attention is all you need, or so they say [SEP] really?"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    enc["token_type_ids"][1, -4:] = 1  # exercise the segment embeddings too
    with torch.no_grad():
        ref = hf(**enc, output_attentions=True, output_hidden_states=True)
        out = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], return_attentions=True, return_hidden_states=True)
        fast = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    for a, b in zip(out.hidden_states, ref.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert len(out.attentions) == 6 and out.attentions[0].shape == (2, 12, enc["input_ids"].size(1),) * 1 + (enc["input_ids"].size(1),)
    for a, b in zip(out.attentions, ref.attentions):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.last_hidden_state, ref.last_hidden_state, atol=1e-4, rtol=0)


def test_bert_mlm_head_and_prefix_loading(tmp_path):
    """A random HF BertForMaskedLM saved with 'bert.' prefixes and a 'cls.' head loads and matches."""
    from transformers import BertConfig as HFBertConfig
    from transformers import BertForMaskedLM as HFBertForMaskedLM

    torch.manual_seed(0)
    hf_cfg = HFBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=24)
    hf = HFBertForMaskedLM(hf_cfg).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours = BertForMaskedLM.from_pretrained(tmp_path)
    assert ours.has_pretrained_head
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(input_ids=ids).logits, atol=1e-4, rtol=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        BERT.from_pretrained(tmp_path / "missing")


def test_bert_heads_overfit_and_shapes():
    torch.manual_seed(0)
    cfg = BertConfig.preset("tiny")
    mlm = BertForMaskedLM(cfg)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 64, (4, 12), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    labels[:, 7] = ids[:, 7]
    masked = ids.clone()
    masked[:, [3, 7]] = 4  # [MASK]
    assert mlm(masked, labels).logits.shape == (4, 12, 64)
    assert _overfit(mlm, (masked, labels), steps=150) < 0.05

    torch.manual_seed(0)
    clf = BertForSequenceClassification(BertConfig.preset("tiny", num_labels=3))
    y = torch.tensor([0, 1, 2, 1])
    out = clf(ids, y, None, torch.ones_like(ids))
    assert out.logits.shape == (4, 3)
    assert _overfit(clf, (ids, y), steps=100) < 0.05
    with pytest.raises(ValueError, match="num_labels=3"):
        clf(ids, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        clf.bert(ids, attention_mask=torch.ones(4, 3))


def test_bert_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BERT(BertConfig.preset("tiny")).eval()
    ids = torch.randint(5, 64, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    a = model(ids).last_hidden_state
    b = model(padded, attention_mask=mask).last_hidden_state[:, :6]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- encoder-decoder
def _copy_task(n=8, length=6, vocab=16, seed=0):
    """Reverse a random sequence: src = x, tgt = [BOS] + reversed(x), labels = reversed(x) + [EOS]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, vocab, (n, length), generator=g)
    y = x.flip(1)
    bos = torch.ones(n, 1, dtype=torch.long)
    eos = torch.full((n, 1), 2, dtype=torch.long)
    return x, torch.cat([bos, y], 1), torch.cat([y, eos], 1)


def test_encoder_decoder_shapes_attention_and_overfit():
    torch.manual_seed(0)
    model = EncoderDecoder(EncoderDecoderConfig.preset("tiny"))
    src, tgt, labels = _copy_task()
    out = model(src, tgt, labels, src_mask=torch.ones_like(src), return_attentions=True)
    assert isinstance(out, ModelOutput) and out.logits.shape == (8, 7, 16)
    assert len(out.cross_attentions) == 1 and out.cross_attentions[0].shape == (8, 2, 7, 6)
    assert torch.allclose(out.cross_attentions[0].sum(-1), torch.ones(8, 2, 7), atol=1e-5)
    assert _overfit(model, (src, tgt, labels), steps=250, lr=3e-3) < 0.05
    model.eval()
    pred = model.generate(src, 7, bos_id=1, eos_id=2)
    assert torch.equal(pred[:, 1:], labels)


def test_encoder_decoder_source_padding_is_ignored():
    torch.manual_seed(0)
    model = EncoderDecoder(EncoderDecoderConfig.preset("tiny", positions="learned")).eval()
    src = torch.randint(3, 16, (1, 5))
    tgt = torch.randint(3, 16, (1, 4))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    a = model(src, tgt).logits
    b = model(padded, tgt, src_mask=mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="src has 13 tokens"):
        model(torch.zeros(1, 13, dtype=torch.long), tgt)
    with pytest.raises(ValueError, match="tgt must lie in"):
        model(src, torch.tensor([[16]]))


def test_bert_config_from_hf_overrides_win_and_unknown_fields_are_named():
    hf = {"vocab_size": 100, "max_position_embeddings": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
          "hidden_size": 8, "intermediate_size": 16, "hidden_dropout_prob": 0.1}
    assert BertConfig.from_hf(hf).dropout == 0.1
    cfg = BertConfig.from_hf(hf, dropout=0.0, num_labels=3)  # an override of a translated field used to be a TypeError
    assert (cfg.dropout, cfg.num_labels, cfg.n_layer) == (0.0, 3, 2)
    with pytest.raises(TypeError, match=r"unknown BertConfig field\(s\) \['dropuot'\]"):
        BertConfig.from_hf(hf, dropuot=0.0)


# ----------------------------------------------------------------------------- BERT's pre-LN option
def _hand_pre_ln_bert(bert, ids):
    """The pre-LN encoder written out with plain tensor operations (no course_lib modules' forward)."""
    c = bert.config
    ln = lambda m, h: F.layer_norm(h, (c.d_model,), m.weight, m.bias, c.eps)
    lin = lambda m, h: h @ m.weight.T + m.bias
    B, T = ids.shape
    hs = c.d_model // c.n_head
    x = bert.tok_emb.weight[ids] + bert.seg_emb.weight[torch.zeros_like(ids)] + bert.pos_emb.weight[:T]
    x = ln(bert.emb_norm, x)
    for blk in bert.blocks:
        h = ln(blk.norm1, x)
        q, k, v = (lin(p, h).view(B, T, c.n_head, hs).transpose(1, 2) for p in (blk.attn.q_proj, blk.attn.k_proj, blk.attn.v_proj))
        att = torch.softmax(q @ k.transpose(-1, -2) / hs**0.5, dim=-1) @ v  # (B, nh, T, hs)
        x = x + lin(blk.attn.out_proj, att.transpose(1, 2).reshape(B, T, c.d_model))
        h = ln(blk.norm2, x)
        x = x + lin(blk.ffn.fc2, F.gelu(lin(blk.ffn.fc1, h)))
    return ln(bert.final_norm, x)


@pytest.mark.parametrize("fused", [True, False])
def test_bert_pre_ln_equals_hand_computed_forward(fused):
    torch.manual_seed(0)
    bert = BERT(BertConfig.preset("tiny", pre_ln=True, fused=fused)).eval()
    assert bert.final_norm is not None and all(b.pre_norm for b in bert.blocks)
    with torch.no_grad():  # non-trivial norms so that a missing or misplaced LayerNorm shows
        for m in bert.modules():
            if type(m).__name__.endswith("LayerNorm"):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        out = bert(ids, return_hidden_states=True)
        ref = _hand_pre_ln_bert(bert, ids)
    torch.testing.assert_close(out.last_hidden_state, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.hidden_states[-1], ref, atol=1e-5, rtol=0)  # the final norm is in the last one
    post = BERT(BertConfig.preset("tiny")).eval()  # the default stays post-LN (BERT, MiniLM)
    assert post.final_norm is None and not any(b.pre_norm for b in post.blocks)


def test_bert_pre_ln_and_init_std_round_trip_through_a_checkpoint(tmp_path):
    from course_lib.training import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig.preset("tiny", pre_ln=True, init_std=0.05)).eval()
    assert 0.04 < float(model.bert.blocks[0].attn.q_proj.weight.detach().std()) < 0.06  # init_std is used
    save_checkpoint(tmp_path, model)
    loaded = load_checkpoint(tmp_path, BertForMaskedLM)["model"].eval()
    assert loaded.config == model.config and loaded.config.pre_ln and loaded.config.init_std == 0.05
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["pre_ln"] is True


def test_bert_pre_ln_bad_values_and_hf_loading_are_refused():
    with pytest.raises(TypeError, match="pre_ln must be a bool"):
        BertConfig.preset("tiny", pre_ln="yes")
    with pytest.raises(ValueError, match="init_std must be a positive float"):
        BertConfig.preset("tiny", init_std=0.0)
    with pytest.raises(ValueError, match="post-LN"):
        BERT.from_pretrained(pre_ln=True)


def test_lm_loss_reads_back_one_value_per_step():
    """The target check costs one host sync (a single bool read back), not one per min/max (issue 23)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from course_lib.models import _lm_loss

    reads = []

    class _Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default or func.__name__.startswith("nonzero"):
                reads.append(str(func))
            return func(*args, **(kwargs or {}))

    logits, targets = torch.randn(2, 5, 7), torch.tensor([[1, 2, -100, 3, 4], [0, 6, 6, -100, 1]])
    with _Reads():
        loss = _lm_loss(logits, targets, targets.shape)
    assert reads == ["aten._local_scalar_dense.default"], reads
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=-100))
