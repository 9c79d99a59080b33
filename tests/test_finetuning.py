"""Tests of course_lib.finetuning: freezing, heads, caching, LoRA (merged == unmerged), prompt tuning,
and our BertForSequenceClassification training step for step like transformers'."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from course_lib.finetuning import (
    BertClassifier,
    ClassificationHead,
    LoRALinear,
    SoftPrompt,
    TopLayersClassifier,
    accuracy_of,
    add_lora,
    cached_batches,
    cls_attention,
    embed,
    encode_hidden_states,
    encode_texts,
    fit,
    freeze,
    freeze_bert_except_top,
    lora_parameters,
    make_batches,
    mean_pool,
    merge_lora,
    plot_cls_attention,
    predict,
    run_blocks,
    sentiment_widget,
    set_dropout,
    to_transformers,
    train_linear_probe,
    trainable_summary,
    unfreeze,
    unmerge_lora,
)
from course_lib.models import BERT, BertConfig, BertForSequenceClassification


def tiny_bert(seed: int = 0, **kw) -> BERT:
    torch.manual_seed(seed)
    return BERT(BertConfig.preset("tiny", n_layer=3, **kw)).eval()


def random_ids(n: int = 10, seed: int = 0, vocab: int = 64) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = int(torch.randint(3, 12, (1,), generator=g))
        out.append([1] + torch.randint(5, vocab, (t - 2,), generator=g).tolist() + [2])
    return out


class ToyTokenizer:
    """A callable tokenizer with the Hugging Face interface used by finetuning: words -> ids."""

    def __init__(self) -> None:
        self.vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}

    def _ids(self, text: str) -> list[int]:
        return [1] + [self.vocab.setdefault(w, 5 + len(self.vocab) % 59) for w in text.split()] + [2]

    def __call__(self, texts, truncation=True, max_length=64):
        out = []
        for t in texts:
            ids = self._ids(t)
            out.append(ids[: max_length - 1] + [2] if len(ids) > max_length else ids)
        return {"input_ids": out}

    def convert_ids_to_tokens(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return [inv.get(i, f"#{i}") for i in ids]


# ----------------------------------------------------------------------------- data
def test_encode_texts_truncates_and_keeps_sep():
    tok = ToyTokenizer()
    ids = encode_texts(tok, ["a b c d e f g", "a"], max_length=5)
    assert [len(x) for x in ids] == [5, 3] and ids[0][-1] == 2 and ids[0][0] == 1
    with pytest.raises(TypeError):
        encode_texts(tok, "one string")
    with pytest.raises(ValueError):
        encode_texts(tok, ["a"], max_length=1)


def test_make_batches_pads_dynamically_and_covers_everything():
    ids = random_ids(50)
    labels = [i % 2 for i in range(50)]
    batches = make_batches(ids, labels, batch_size=8, shuffle=True, seed=1, bucket=2)
    seen = torch.cat([b["index"] for b in batches]).sort().values
    assert seen.tolist() == list(range(50))
    for b in batches:
        lens = b["attention_mask"].sum(1)
        assert b["input_ids"].shape[1] == int(lens.max())  # padded to its own longest row
        for j, i in enumerate(b["index"].tolist()):
            assert b["input_ids"][j, : len(ids[i])].tolist() == ids[i]
            assert int(b["labels"][j]) == labels[i]
    again = make_batches(ids, labels, batch_size=8, shuffle=True, seed=1, bucket=2)
    assert all(torch.equal(a["index"], b["index"]) for a, b in zip(batches, again))  # seeded
    with pytest.raises(ValueError, match="same length"):
        make_batches(ids, labels[:3])


# ----------------------------------------------------------------------------- freezing and heads
def test_freeze_bert_except_top_counts():
    torch.manual_seed(0)
    clf = BertClassifier(tiny_bert(), ClassificationHead(32))
    freeze_bert_except_top(clf, 1)
    s = trainable_summary(clf)
    block = sum(p.numel() for p in clf.bert.blocks[-1].parameters())
    head = sum(p.numel() for p in clf.head.parameters())
    pooler = sum(p.numel() for p in clf.bert.pooler.parameters())
    assert s["trainable"] == block + head + pooler
    assert not any(p.requires_grad for p in clf.bert.blocks[0].parameters())
    freeze_bert_except_top(clf, 0)
    assert trainable_summary(clf)["trainable"] == head
    unfreeze(clf)
    assert trainable_summary(clf)["fraction"] == 1.0
    with pytest.raises(ValueError, match="n_top"):
        freeze_bert_except_top(clf, 4)
    with pytest.raises(TypeError):
        freeze_bert_except_top(nn.Linear(2, 2), 1)


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0], [3.0], [9.0]]])
    assert torch.equal(mean_pool(h, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0]]))
    with pytest.raises(ValueError):
        mean_pool(h, torch.tensor([[1, 1]]))
    with pytest.raises(ValueError):
        ClassificationHead(8, pooling="max")


def test_bert_classifier_matches_course_bert():
    """Our embed + run_blocks path gives BERT.forward's hidden states exactly."""
    bert = tiny_bert()
    b = make_batches(random_ids(6), batch_size=6)[0]
    ref = bert(b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    x, _ = run_blocks(bert, embed(bert, b["input_ids"]), b["attention_mask"])
    assert torch.allclose(x, ref, atol=1e-6)
    head = ClassificationHead(32, pooling="cls").eval()
    clf = BertClassifier(bert, head).eval()
    out = clf(b["input_ids"], b["attention_mask"], labels=torch.zeros(6, dtype=torch.long))
    assert torch.allclose(out.logits, head(ref, b["attention_mask"]), atol=1e-6)
    assert out.loss is not None and out.loss.dim() == 0


def test_full_fine_tuning_runs_every_step_and_trains_every_used_weight():
    """Notebook 08's full fine-tuning once ran 12 steps and scored 62%: check the step count and that
    every weight the classifier uses moves. With mean pooling the [CLS] pooler gets no gradient, so
    the notebook removes it (then every remaining trainable tensor trains)."""
    bert = tiny_bert()
    ids, labels = random_ids(32), [i % 2 for i in range(32)]
    batches = lambda s: make_batches(ids, labels, batch_size=8, shuffle=True, seed=s)
    with_pooler = BertClassifier(copy.deepcopy(bert), ClassificationHead(32))
    before = copy.deepcopy(with_pooler.state_dict())
    fit(unfreeze(with_pooler), batches, steps=3, lr=1e-2, progress=False)
    assert torch.equal(with_pooler.bert.pooler.weight, before["bert.pooler.weight"])  # never used
    bert.pooler = None
    clf = unfreeze(BertClassifier(bert, ClassificationHead(32)))
    before = copy.deepcopy(clf.state_dict())
    res = fit(clf, batches, steps=7, lr=1e-2, progress=False)  # 4 batches per epoch: crosses an epoch
    assert res.history.steps[-1] == 7 and res.history.stopped_by == "max_steps"
    assert res.trainable == trainable_summary(clf)["trainable"] == sum(p.numel() for p in clf.parameters())
    unchanged = [k for k, v in clf.state_dict().items() if torch.equal(v, before[k])]
    assert unchanged == [], f"these weights did not train: {unchanged}"


# ----------------------------------------------------------------------------- caching
def test_cached_top_layers_equal_the_whole_model():
    bert = tiny_bert()
    ids, labels = random_ids(12), [i % 2 for i in range(12)]
    cache = encode_hidden_states(bert, ids, layers=(1, 3), batch_size=5)
    assert len(cache[1]) == 12 and cache[1][0].shape == (len(ids[0]), 32)
    head = ClassificationHead(32).eval()
    top = TopLayersClassifier(bert, head, start=1).eval()
    p_top, y_top = predict(top, cached_batches(cache[1], labels, batch_size=4))
    p_full, y_full = predict(BertClassifier(bert, head), make_batches(ids, labels, batch_size=5))
    assert torch.allclose(p_top, p_full, atol=1e-5) and torch.equal(y_top, y_full)
    # start = n_layer: the head alone on the last layer's cached states
    probe = TopLayersClassifier(bert, head, start=3)
    p_probe, _ = predict(probe, cached_batches(cache[3], labels, batch_size=4))
    assert torch.allclose(p_probe, p_full, atol=1e-5)
    assert sum(p.numel() for p in top.parameters()) == sum(p.numel() for p in bert.blocks[1:].parameters()) + 66
    with pytest.raises(ValueError):
        encode_hidden_states(bert, ids, layers=(4,))


def test_training_top_layers_on_cache_updates_the_shared_bert():
    bert = tiny_bert()
    before = copy.deepcopy(bert.state_dict())
    ids, labels = random_ids(16), [int(len(x) > 7) for x in random_ids(16)]
    cache = encode_hidden_states(bert, ids, layers=(2,))
    freeze(bert)
    top = TopLayersClassifier(bert, ClassificationHead(32), start=2)
    unfreeze(top)
    res = fit(top, cached_batches(cache[2], labels, batch_size=8, shuffle=True), steps=5, lr=1e-2, progress=False)
    assert res.trainable == sum(p.numel() for p in top.parameters())
    after = bert.state_dict()
    assert torch.equal(after["blocks.0.attn.q_proj.weight"], before["blocks.0.attn.q_proj.weight"])
    assert not torch.equal(after["blocks.2.attn.q_proj.weight"], before["blocks.2.attn.q_proj.weight"])


# ----------------------------------------------------------------------------- LoRA
def test_lora_linear_starts_as_base_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(8, 4)
    lora = LoRALinear(copy.deepcopy(base), r=2, alpha=4)
    x = torch.randn(5, 8)
    assert torch.equal(lora(x), base(x))  # B = 0 at the start
    with torch.no_grad():
        lora.lora_B.normal_()
    y = lora(x)
    expected = base(x) + 2.0 * x @ lora.lora_A.T @ lora.lora_B.T
    assert torch.allclose(y, expected, atol=1e-5)
    lora.merge()
    assert lora.merged and torch.allclose(lora(x), y, atol=1e-5)
    lora.unmerge()
    assert torch.allclose(lora.base.weight, base.weight, atol=1e-6)
    assert not lora.base.weight.requires_grad and lora.lora_A.requires_grad
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv1d(2, 2, 1))


def test_add_lora_merged_and_unmerged_models_agree_after_training():
    bert = tiny_bert()
    clf = BertClassifier(bert, ClassificationHead(32))
    freeze(clf.bert)
    wrapped = add_lora(clf, r=4, alpha=8, targets=("q_proj", "v_proj", "fc1"), layers=[1, 2])
    assert len(wrapped) == 6 and len(lora_parameters(clf)) == 12
    n_lora = sum(p.numel() for p in lora_parameters(clf))
    assert n_lora == 2 * (4 * (32 + 32) * 2 + 4 * (32 + 64))
    assert trainable_summary(clf)["trainable"] == n_lora + 66
    ids, labels = random_ids(16), [i % 2 for i in range(16)]
    batches = make_batches(ids, labels, batch_size=8, shuffle=True)
    fit(clf, batches, steps=6, lr=1e-2, progress=False)
    assert any(float(w.lora_B.detach().abs().sum()) > 0 for w in wrapped)
    p_unmerged, _ = predict(clf, batches)
    merge_lora(clf)
    p_merged, _ = predict(clf, batches)
    assert torch.allclose(p_unmerged, p_merged, atol=1e-5)
    unmerge_lora(clf)
    assert torch.allclose(predict(clf, batches)[0], p_unmerged, atol=1e-5)
    with pytest.raises(ValueError, match="already"):
        add_lora(clf, layers=[1])
    with pytest.raises(ValueError):
        add_lora(clf, targets=("nope",))
    with pytest.raises(ValueError):
        merge_lora(nn.Linear(2, 2))


# ----------------------------------------------------------------------------- prompt tuning
def test_soft_prompt_inserts_after_cls_and_only_the_prompt_trains():
    bert = tiny_bert()
    prompt = SoftPrompt(3, 32, init=bert.tok_emb.weight[10:13])
    clf = BertClassifier(bert, ClassificationHead(32), prompt=prompt)
    freeze(clf.bert)
    s = trainable_summary(clf)
    assert s["trainable"] == 3 * 32 + 66
    x, m = prompt.insert(torch.zeros(2, 5, 32), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert x.shape == (2, 8, 32) and m.tolist()[0] == [1, 1, 1, 1, 1, 1, 0, 0]
    ids, labels = random_ids(16), [i % 2 for i in range(16)]
    batches = make_batches(ids, labels, batch_size=8)
    before = bert.tok_emb.weight.clone()
    v0 = prompt.vectors.detach().clone()
    fit(clf, batches, steps=3, lr=1e-2, progress=False)
    assert torch.equal(bert.tok_emb.weight, before) and not torch.equal(prompt.vectors, v0)
    assert 0.0 <= accuracy_of(clf, batches) <= 1.0
    with pytest.raises(ValueError):
        SoftPrompt(2, 32, init=torch.zeros(3, 32))


# ----------------------------------------------------------------------------- transformers
def test_our_classifier_trains_like_transformers():
    """Same weights, same batches, same AdamW, dropout off: losses and logits agree to float32 rounding."""
    torch.manual_seed(0)
    cfg = BertConfig.preset("tiny", n_layer=2, dropout=0.1)
    ours = set_dropout(BertForSequenceClassification(cfg), 0.0).train()
    assert ours.config.dropout == 0.0 and ours.bert.blocks[0].attn.dropout == 0.0
    theirs = to_transformers(ours).train()
    batches = make_batches(random_ids(24), [i % 2 for i in range(24)], batch_size=8, shuffle=True)
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-3)
    opt_b = torch.optim.AdamW(theirs.parameters(), lr=1e-3)
    for b in batches:
        la = ours(b["input_ids"], labels=b["labels"], attention_mask=b["attention_mask"]).loss
        lb = theirs(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        assert abs(la.item() - lb.item()) < 1e-5
        for opt, loss in ((opt_a, la), (opt_b, lb)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    b = batches[0]
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(b["input_ids"], attention_mask=b["attention_mask"]).logits
        c = theirs(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(a, c, atol=1e-4)
    with pytest.raises(TypeError):
        to_transformers(nn.Linear(2, 2))


# ----------------------------------------------------------------------------- attention and widget
def test_cls_attention_and_widget():
    import matplotlib

    matplotlib.use("Agg")
    tok = ToyTokenizer()
    bert = tiny_bert()
    clf = BertClassifier(bert, ClassificationHead(32))
    tokens, w, probs = cls_attention(clf, tok, "a fine film")
    assert tokens == ["[CLS]", "a", "fine", "film", "[SEP]"] and w.shape == (5,)
    assert abs(float(w.sum()) - 1.0) < 1e-5 and abs(float(probs.sum()) - 1.0) < 1e-5
    clf.prompt = SoftPrompt(2, 32)
    tokens, w, _ = cls_attention(clf, tok, "a fine film")
    assert w.shape == (5,) and float(w.sum()) <= 1.0 + 1e-6
    ax = plot_cls_attention(tokens, w, probs)
    assert len(ax.patches) == 5
    with pytest.raises(ValueError):
        plot_cls_attention(tokens, w[:2])
    box = sentiment_widget(clf, tok, text="not good")
    assert box.children[0].description == "Review:" and "probability" in box.children[1].value
    box.children[0].value = "great"
    assert "probability" in box.children[1].value


def test_linear_probe_separates_separable_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).long()
    probe = train_linear_probe(x, y, steps=200, lr=5e-2)
    assert float((probe(x).argmax(-1) == y).float().mean()) > 0.95
    with pytest.raises(ValueError):
        train_linear_probe(x[0], y)


def test_ch08_checkers_keep_the_exercise_contract():
    from course_lib.exercises import ExerciseError, ch08

    def not_yet(*args):
        raise NotImplementedError

    def pool(h, m):
        m = m.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1)

    def lora_fwd(x, W, b, A, B, alpha):
        return x @ W.T + b + (alpha / A.shape[0]) * (x @ A.T) @ B.T

    def merge(W, A, B, alpha):
        return W + (alpha / A.shape[0]) * B @ A

    def insert(x, m, p):
        B = x.shape[0]
        ones = torch.ones(B, p.shape[0], dtype=m.dtype)
        return torch.cat([x[:, :1], p.expand(B, -1, -1), x[:, 1:]], 1), torch.cat([m[:, :1], ones, m[:, 1:]], 1)

    pairs = [(ch08.check_mean_pool, pool), (ch08.check_lora_forward, lora_fwd),
             (ch08.check_merge_lora, merge), (ch08.check_insert_prompt, insert)]
    for check, right in pairs:
        assert check(right) is True
        assert check(not_yet) is None
    with pytest.raises(ExerciseError):
        ch08.check_merge_lora(lambda W, A, B, alpha: W + alpha * B @ A)  # forgot the 1/r
    with pytest.raises(ExerciseError):
        ch08.check_mean_pool(lambda h, m: h.mean(1))  # counts the padding


def test_lora_parameter_count_checker_passes_the_formula_and_fails_the_slips(capsys):
    from course_lib.exercises import ExerciseError, ch08

    right = lambda r, n, d, f: r * n * (4 * 2 * d + 2 * (d + f))  # noqa: E731
    assert ch08.check_lora_parameter_count(right) is True
    assert ch08.reference_lora_parameter_count(8, 2, 384, 1536) == 110_592  # notebook 08's printed count
    for wrong in (lambda r, n, d, f: r * n * 6 * 2 * d,  # every matrix taken as d x d
                  lambda r, n, d, f: r * n * (4 * d + 2 * f),  # one side of each matrix only
                  lambda r, n, d, f: r * r * n * (4 * 2 * d + 2 * (d + f))):  # r squared
        with pytest.raises(ExerciseError):
            ch08.check_lora_parameter_count(wrong)
    capsys.readouterr()

    def not_yet(*args):
        raise NotImplementedError

    assert ch08.check_lora_parameter_count(not_yet) is None
    assert "(r, d_in)" in capsys.readouterr().out


def test_accuracy_interval_is_wilson_and_contains_the_accuracy():
    from course_lib.finetuning import accuracy_interval
    from course_lib.post_training import wilson_interval

    acc, low, high = accuracy_interval(torch.tensor([True] * 683 + [False] * 171))
    assert acc == pytest.approx(683 / 854) and (low, high) == pytest.approx(wilson_interval(683, 854))
    assert low < acc < high and high - low < 0.06  # about +-2.7 points on 854 sentences
    with pytest.raises(ValueError):
        accuracy_interval([])
    with pytest.raises(ValueError):
        accuracy_interval([0.5, 1.0])


def test_paired_bootstrap_and_mcnemar_see_a_real_difference_and_not_noise():
    from course_lib.finetuning import mcnemar_test, paired_bootstrap

    g = torch.Generator().manual_seed(0)
    b = torch.rand(854, generator=g) < 0.75
    flip = torch.rand(854, generator=g) < 0.10
    a = b | flip                              # A = B plus about 2.5 points: a real, paired gain
    boot = paired_bootstrap(a, b, seed=0)
    assert boot["diff"] == pytest.approx(float(a.float().mean() - b.float().mean()))
    assert 0 < boot["low"] < boot["diff"] < boot["high"]
    assert mcnemar_test(a, b)["p_value"] < 1e-3 and mcnemar_test(a, b)["b_only"] == 0
    same = paired_bootstrap(b, b.clone())
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0} and mcnemar_test(b, b)["p_value"] == 1.0
    # 20 items won and 20 lost: disagreements both ways, no gain -> the interval contains 0
    c = b.clone()
    c[b.nonzero().flatten()[:20]] = False
    c[(~b).nonzero().flatten()[:20]] = True
    noisy = paired_bootstrap(c, b)
    assert noisy["low"] < 0 < noisy["high"] and mcnemar_test(c, b)["p_value"] == 1.0
    assert paired_bootstrap(a, b, seed=1) != boot           # seeded, and the seed matters
    assert paired_bootstrap(a, b, seed=0) == boot
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:10])
    with pytest.raises(ValueError):
        mcnemar_test(a[:3], b)


def test_mcnemar_exact_p_value_matches_scipy_binomial_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    from course_lib.finetuning import mcnemar_test

    a = torch.tensor([1] * 12 + [0] * 4 + [1] * 30 + [0] * 10, dtype=torch.bool)
    b = torch.tensor([0] * 12 + [1] * 4 + [1] * 30 + [0] * 10, dtype=torch.bool)
    r = mcnemar_test(a, b)
    assert (r["a_only"], r["b_only"]) == (12, 4)
    assert r["p_value"] == pytest.approx(scipy_stats.binomtest(4, 16, 0.5).pvalue)


def test_majority_baseline_and_correct_of():
    from course_lib.finetuning import correct_of, majority_baseline

    label, right = majority_baseline([1, 1, 0], [0, 1, 1, 1])
    assert label == 1 and right.tolist() == [False, True, True, True]
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert correct_of(probs, [0, 1, 1]).tolist() == [True, True, False]
    with pytest.raises(ValueError):
        correct_of(probs, [0, 1])
