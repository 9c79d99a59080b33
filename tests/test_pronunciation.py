"""Tests for course_lib.pronunciation (G2P data, model, decoding, attention, widget) and exercises.ch07."""

from __future__ import annotations

import pytest
import sacrebleu
import torch

from course_lib import pronunciation as pr
from course_lib.exercises import ExerciseError
from course_lib.exercises import ch07
from course_lib.models import EncoderDecoder
from course_lib.training import make_optimizer

WORDS = [("cat", ["K", "AE", "T"]), ("dog", ["D", "AO", "G"]), ("read", ["R", "IY", "D"]), ("read", ["R", "EH", "D"]),
         ("tomato", ["T", "AH", "M", "EY", "T", "OW"])]


def tiny_model(pre_norm: bool = True, seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    return pr.make_g2p_model(n_layer=1, d_model=32, n_head=2, dropout=0.0, pre_norm=pre_norm)


@pytest.fixture(scope="module")
def trained() -> EncoderDecoder:
    """A tiny model that has memorised cat, dog, tomato (and 'read' twice)."""
    model = tiny_model()
    batches = pr.G2PBatches(WORDS, 5, seed=0)
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(150):
        loss = model(**batches()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ----------------------------------------------------------------------------- vocabularies and data
def test_vocabularies():
    src, tgt = pr.source_vocab(), pr.target_vocab()
    assert len(src) == 32 and len(tgt) == 42
    assert src.itos[:3] == [pr.PAD, pr.BOS, pr.EOS] == tgt.itos[:3]
    assert src.decode(src.encode("it's")) == list("it's")
    assert tgt.decode([tgt.bos_id] + tgt.encode(["K", "AE", "T"]) + [tgt.eos_id, 5, 0]) == ["K", "AE", "T"]
    with pytest.raises(ValueError, match="unknown symbol 'AE1'"):
        tgt.encode(["AE1"])
    with pytest.raises(ValueError, match="distinct"):
        pr.G2PVocab(["a", "a"])
    cfg = pr.g2p_config()
    assert cfg.src_vocab_size == len(src) and cfg.tgt_vocab_size == len(tgt)


def test_load_pairs_and_references():
    pairs = pr.load_g2p_pairs("validation")
    assert len(pairs) > 6000
    assert not any(ch.isdigit() for _, p in pairs for ph in p for ch in ph)  # stress removed
    assert {ph for _, p in pairs for ph in p} <= set(pr.PHONEMES)
    assert {c for w, _ in pairs for c in w} <= set(pr.LETTERS)
    refs = pr.references(pairs)
    assert sum(len(v) for v in refs.values()) <= len(pairs)
    assert any(len(v) > 1 for v in refs.values())  # some words have several pronunciations
    assert pr.references(WORDS)["read"] == [["R", "IY", "D"], ["R", "EH", "D"]]
    with_stress = pr.load_g2p_pairs("validation", keep_stress=True)
    assert any(ph[-1].isdigit() for _, p in with_stress for ph in p)


@pytest.mark.parametrize("bad, match", [
    ("", "empty"), ("   ", "empty"), ("abc123", "digits"), ("привет", "never saw"), ("北京", "never saw"),
    ("café", "never saw"), ("two words", "one word"), ("-abc", "start with a letter"), ("a" * 31, "at most"),
])
def test_validate_word_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        pr.validate_word(bad)


def test_validate_word_accepts():
    assert pr.validate_word("  Hello ") == "hello"
    assert pr.validate_word("o'brien") == "o'brien"
    with pytest.raises(TypeError):
        pr.validate_word(3)


def test_encode_pairs_teacher_forcing():
    b = pr.encode_pairs(WORDS, pr.source_vocab(), pr.target_vocab())
    assert b["src"].shape == (5, 6) and b["tgt"].shape == (5, 7) and b["labels"].shape == (5, 7)
    assert (b["tgt"][:, 0] == 1).all()  # every decoder input starts with <bos>
    real = b["labels"] != -100
    # labels are the decoder inputs shifted left by one, ending with <eos>
    assert torch.equal(b["labels"][:, :-1][real[:, :-1] & (b["labels"][:, :-1] != 2)],
                       b["tgt"][:, 1:][real[:, :-1] & (b["labels"][:, :-1] != 2)])
    assert (b["labels"][real] != 0).all()
    assert ((b["labels"] == 2).sum(1) == 1).all()
    assert torch.equal(b["src_mask"].sum(1), torch.tensor([3, 3, 4, 4, 6]))
    with pytest.raises(ValueError):
        pr.encode_pairs([], pr.source_vocab(), pr.target_vocab())


def test_batches_are_deterministic_and_cover_an_epoch():
    a, b = pr.G2PBatches(WORDS, 2, seed=3), pr.G2PBatches(WORDS, 2, seed=3)
    for _ in range(4):
        x, y = a(), b()
        assert all(torch.equal(x[k], y[k]) for k in x)
    c = pr.G2PBatches(WORDS, 5, seed=0)
    batch = c()
    assert sorted(batch["src_mask"].sum(1).tolist()) == [3, 3, 4, 4, 6]
    ref = pr.encode_pairs(WORDS, pr.source_vocab(), pr.target_vocab())
    assert set(batch) == set(ref)
    with pytest.raises(ValueError):
        pr.G2PBatches(WORDS, 0)


def test_model_does_not_scale_embeddings():
    model = tiny_model()
    ids = torch.tensor([[3, 4, 5]])
    x = model._embed(ids, model.src_emb, "src")
    assert torch.allclose(x, model.src_emb(ids) + model.src_pos(3))
    assert model.config.positions == "learned"


# ----------------------------------------------------------------------------- decoding and metrics
def test_predict_greedy_and_beam(trained):
    assert pr.predict_batch(trained, ["tomato", "cat", "dog"]) == [WORDS[4][1], WORDS[0][1], WORDS[1][1]]
    assert pr.predict(trained, "Cat") == ["K", "AE", "T"]
    assert pr.predict(trained, "tomato", beam_size=3) == WORDS[4][1]
    assert pr.predict(trained, "read") in (["R", "IY", "D"], ["R", "EH", "D"])
    with pytest.raises(ValueError, match="digits"):
        pr.predict(trained, "r2d2")


def test_evaluate_g2p_multi_reference():
    refs = pr.references(WORDS)
    preds = [["K", "AE", "T"], ["D", "AA", "G"], ["R", "EH", "D"]]
    s = pr.evaluate_g2p(preds, [refs["cat"], refs["dog"], refs["read"]])
    assert s["wer"] == pytest.approx(1 / 3)
    assert s["per"] == pytest.approx(1 / 9)
    hyps = [" ".join(p) for p in preds]
    sb = sacrebleu.corpus_bleu(hyps, [[" ".join(refs["cat"][0]), " ".join(refs["dog"][0]), " ".join(refs["read"][1])]],
                               tokenize="none")
    assert s["bleu"] == pytest.approx(sb.score, abs=1e-9)
    with pytest.raises(ValueError):
        pr.evaluate_g2p(preds, [refs["cat"]])


def test_evaluator_records_per(trained):
    refs = pr.references(WORDS)
    ev = pr.G2PEvaluator(["cat", "dog"], refs, loss_batch=pr.encode_pairs(WORDS, pr.source_vocab(), pr.target_vocab()))
    loss = ev(trained)
    assert loss < 0.5 and ev.per == [0.0] and ev.wer == [0.0] and ev.steps == [0]


def test_cross_attention_rows_are_distributions(trained):
    letters, phones, att = pr.cross_attention(trained, "tomato")
    assert letters == list("tomato") and phones == WORDS[4][1] + [pr.EOS]
    assert att.shape == (7, 6)
    assert torch.allclose(att.sum(-1), torch.ones(7), atol=1e-5)
    _, phones2, att2 = pr.cross_attention(trained, "cat", ["K", "AA", "T"], layer=0)
    assert phones2 == ["K", "AA", "T", pr.EOS] and att2.shape == (4, 3)
    with pytest.raises(ValueError, match="layer"):
        pr.cross_attention(trained, "cat", layer=3)


def test_widget_and_plot(trained):
    import matplotlib

    matplotlib.use("Agg")
    ax = pr.plot_alignment(*pr.cross_attention(trained, "dog"))
    assert ax.get_xlabel().startswith("letter")
    box = pr.pronunciation_widget(trained, pr.references(WORDS), value="cat")
    text, status = box.children[0].children[0], box.children[1]
    assert "K AE T" in status.value and "matches" in status.value
    text.value = "12"
    assert "digits" in status.value
    text.value = ""
    assert "empty" in status.value
    text.value = "ελλάδα"
    assert "never saw" in status.value
    text.value = "zzq"
    assert "not in the training dictionary" in status.value


# ----------------------------------------------------------------------------- torch.nn.Transformer
@pytest.mark.parametrize("pre_norm", [True, False])
def test_same_logits_as_torch_transformer(pre_norm):
    torch.manual_seed(1)
    model = pr.make_g2p_model(n_layer=2, d_model=32, n_head=4, dropout=0.1, pre_norm=pre_norm).eval()
    for p in model.parameters():  # move away from the init so norms and biases matter too
        p.data += 0.05 * torch.randn_like(p)
    tt = pr.to_torch_transformer(model)
    b = pr.encode_pairs(WORDS, pr.source_vocab(), pr.target_vocab())
    ours = model(b["src"], b["tgt"], src_mask=b["src_mask"]).logits
    theirs = pr.torch_transformer_logits(model, tt, b["src"], b["tgt"], b["src_mask"])
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert all(layer.norm_first == pre_norm for layer in [*tt.encoder.layers, *tt.decoder.layers])
    with torch.no_grad():  # the encoder agrees at every position, padding included (no nested-tensor packing)
        pad = b["src_mask"] == 0
        assert pad.any()
        memory = tt.encoder(model._embed(b["src"], model.src_emb, "src"), src_key_padding_mask=pad)
        assert torch.allclose(memory, model.encode(b["src"], b["src_mask"]), atol=1e-5)
    assert (tt.encoder.norm is None) == (not pre_norm) and (tt.decoder.norm is None) == (not pre_norm)
    assert sum(p.numel() for p in tt.parameters()) == sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("encoder.", "decoder.", "enc_norm.", "dec_norm.")))


def test_post_ln_layers_equal_torch_layers():
    """Post-LN (the 2017 paper): nn.Transformer adds final norms we don't have, but the layers coincide."""
    model = tiny_model(pre_norm=False).eval()
    enc, dec = model.encoder[0], model.decoder[0]
    t_enc = torch.nn.TransformerEncoderLayer(32, 2, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=False)
    t_dec = torch.nn.TransformerDecoderLayer(32, 2, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=False)
    pr._copy_mha(enc.attn, t_enc.self_attn)
    pr._copy_ffn(enc.ffn, t_enc)
    pr._copy_mha(dec.self_attn, t_dec.self_attn)
    pr._copy_mha(dec.cross_attn, t_dec.multihead_attn)
    pr._copy_ffn(dec.ffn, t_dec)
    for a, b in ((enc.norm1, t_enc.norm1), (enc.norm2, t_enc.norm2), (dec.norm1, t_dec.norm1),
                 (dec.norm2, t_dec.norm2), (dec.norm3, t_dec.norm3)):
        pr._copy_norm(a, b)
    t_enc.eval(), t_dec.eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 5, 32, generator=g), torch.randn(2, 4, 32, generator=g)
    with torch.no_grad():
        assert torch.allclose(enc(x)[0], t_enc(x), atol=1e-5)
        causal = torch.nn.Transformer.generate_square_subsequent_mask(4)
        assert torch.allclose(dec(y, x)[0], t_dec(y, x, tgt_mask=causal), atol=1e-5)


# ----------------------------------------------------------------------------- exercise checkers
def test_checkers_accept_references(capsys):
    assert ch07.check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool).tril())
    assert ch07.check_teacher_forcing(ch07.reference_teacher_forcing)
    assert ch07.check_beam_step(ch07.reference_beam_step)
    from course_lib.metrics import sequence_error_rate

    assert ch07.check_word_error_rate(sequence_error_rate)


def test_checkers_not_attempted_and_wrong(capsys):
    def todo(*args):
        raise NotImplementedError

    for check in (ch07.check_causal_mask, ch07.check_teacher_forcing, ch07.check_beam_step, ch07.check_word_error_rate):
        assert check(todo) is None
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(ExerciseError):
        ch07.check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool).triu())
    with pytest.raises(ExerciseError):
        ch07.check_teacher_forcing(lambda ids, b, e: ([b] + list(ids), list(ids)))

    def no_offset(scores, logp, k):  # forgets the beams' running scores
        V = logp.size(-1)
        top = torch.topk(logp.reshape(-1), k)
        return top.indices // V, top.indices % V, top.values

    with pytest.raises(ExerciseError):
        ch07.check_beam_step(no_offset)
    with pytest.raises(ExerciseError):  # only compares with the first reference
        ch07.check_word_error_rate(lambda p, r: sum(a != b[0] for a, b in zip(p, r)) / len(p))


def test_bucketed_batches_cover_each_word_once_per_epoch():
    pairs = [("a" * n + "b" * (i % 3), ["AH"] * n) for i, n in enumerate(list(range(1, 21)) * 2)]  # 40 pairs
    src = pr.source_vocab()
    for bucket in (0, 5):
        b = pr.G2PBatches(pairs, 4, seed=1, bucket=bucket)
        words = []
        for _ in range(10):  # 10 batches of 4 = one epoch
            batch = b()
            words += ["".join(src.decode(row)) for row in batch["src"].tolist()]
        assert sorted(words) == sorted(w for w, _ in pairs) and b.epoch == 1
    bucketed, plain = pr.G2PBatches(pairs, 4, seed=1, bucket=10), pr.G2PBatches(pairs, 4, seed=1, bucket=0)
    pad = lambda g: sum(int((g()["src_mask"] == 0).sum()) for _ in range(10))  # noqa: E731
    assert pad(bucketed) < pad(plain)
    with pytest.raises(ValueError, match="bucket"):
        pr.G2PBatches(pairs, 4, bucket=-1)


def test_default_batches_are_unbiased_samples_not_length_buckets():
    """Regression (issue 10): the old default bucket=50 sorted the words by length, so every batch held
    words of one length (a biased sample: 2,200 such steps trained no better than 400 shuffled ones).
    The default must now mix lengths like a random sample does."""
    pairs = [("a" * n + "b" * (i % 5), ["AH"] * n) for i, n in enumerate([2, 3, 4, 5, 6, 7, 8, 9] * 40)]  # 320 pairs
    b = pr.G2PBatches(pairs, 16, seed=0)
    assert b.bucket == 0
    distinct = [len(set(b()["src_mask"].sum(1).tolist())) for _ in range(20)]  # source lengths seen per batch
    assert sum(distinct) / len(distinct) >= 5  # a random 16 of 8 equally common lengths: about 7
    bucketed = pr.G2PBatches(pairs, 16, seed=0, bucket=50)  # still available, opt-in
    assert max(len(set(bucketed()["src_mask"].sum(1).tolist())) for _ in range(20)) <= 2


def test_make_g2p_model_init():
    """Xavier-uniform attention/FFN matrices by default (as nn.Transformer), N(0, 0.02) embeddings; 'gpt2' keeps 0.02."""
    torch.manual_seed(0)
    xav, gpt2 = pr.make_g2p_model(1, 128, 4, 0.0), pr.make_g2p_model(1, 128, 4, 0.0, init="gpt2")
    assert abs(xav.encoder[0].attn.q_proj.weight.std().item() - (2 / 256) ** 0.5) < 0.005
    assert abs(gpt2.encoder[0].attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(xav.tgt_emb.weight.std().item() - 0.02) < 0.003 and xav.lm_head.weight is xav.tgt_emb.weight
    with pytest.raises(ValueError, match="init"):
        pr.make_g2p_model(1, 32, 2, init="normal")


def test_chunked_batches_give_the_whole_batch_loss_and_gradient():
    """chunks=k: the random batch, sorted by length, cut into k micro-batches that pad less; the token-weighted
    loss of the pieces (course_lib.training.compute_loss) equals the loss of the one padded batch, and so does
    the gradient."""
    from course_lib.training import compute_loss

    pairs = [("a" * n + "b" * (i % 4), ["AH"] * (n % 7 + 1)) for i, n in enumerate(list(range(1, 17)) * 4)]  # 64 pairs
    whole, chunked = pr.G2PBatches(pairs, 16, seed=2), pr.G2PBatches(pairs, 16, seed=2, chunks=4)
    src = pr.source_vocab()
    for _ in range(4):  # one epoch: same words per step, in 4 micro-batches
        b, parts = whole(), chunked()
        assert isinstance(parts, list) and len(parts) == 4
        words = lambda bs: sorted("".join(src.decode(r)) for x in bs for r in x["src"].tolist())  # noqa: E731
        assert words([b]) == words(parts)
        assert sum(int((p["src_mask"] == 0).sum()) for p in parts) < int((b["src_mask"] == 0).sum())  # less padding
        for model in (tiny_model(),):
            model.eval()
            full = compute_loss(model, b)
            full.backward()
            g_full = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
            pieces = compute_loss(model, parts)
            pieces.backward()
            assert torch.allclose(full, pieces, atol=1e-6)
            assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(g_full, model.parameters()))
    assert chunked.epoch == whole.epoch == 1
    with pytest.raises(ValueError, match="chunks"):
        pr.G2PBatches(pairs, 4, chunks=5)
    with pytest.raises(ValueError, match="chunks"):
        pr.G2PBatches(pairs, 4, chunks=0)


def test_paired_comparison():
    """B fixes 30 words and breaks 10 of 400: WER falls 5 points, McNemar p < 0.01, the interval excludes 0;
    equal changes both ways are not significant."""
    a = [True] * 200 + [False] * 30 + [True] * 10 + [False] * 160
    b = [True] * 200 + [True] * 30 + [False] * 10 + [False] * 160
    r = pr.paired_comparison(a, b)
    assert (r["n"], r["a_only"], r["b_only"]) == (400, 10, 30)
    assert r["diff"] == pytest.approx(-20 / 400)
    assert r["low"] < r["diff"] < r["high"] < 0
    assert r["p_value"] < 0.01
    tie = pr.paired_comparison([1, 0] * 50, [0, 1] * 50)
    assert tie["diff"] == 0 and tie["low"] < 0 < tie["high"] and tie["p_value"] == 1.0
    same = pr.paired_comparison([1, 0, 1], [1, 0, 1], n_boot=100)
    assert same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="same words"):
        pr.paired_comparison([1, 0], [1])
