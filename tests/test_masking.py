"""Tests for course_lib.masking: BERT's 80/10/10 rule (statistically), special/padding tokens never
chosen, seeded reproducibility, input layouts, the gathered MLM loss, the widget and the checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.masking import (
    KIND_NAMES,
    SPECIAL_TOKENS,
    GatheredMLM,
    bert_inputs,
    clean_review,
    load_tiny_bert,
    mask_tokens,
    masking_html,
    masking_rows,
    masking_widget,
    pack_for_mlm,
    save_tiny_bert,
    special_tokens_mask,
    tiny_bert_available,
)
from course_lib.models import BertConfig, BertForMaskedLM

V = 100
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]


def _batch(B: int = 400, T: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `[CLS] ordinary... [SEP] [PAD]...` with random lengths, and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    pos = torch.arange(T)[None, :]
    attn = (pos < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[attn == 0] = PAD
    return ids, attn


def _z(count: int, n: int, p: float) -> float:
    """How many binomial standard deviations `count` is from n * p."""
    return abs(count - n * p) / math.sqrt(n * p * (1 - p))


def test_proportions_15_80_10_10():
    ids, attn = _batch(B=1000, T=64)  # ~33,000 ordinary tokens
    out = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=0)
    eligible = (attn == 1) & ~special_tokens_mask(ids, SPECIAL)
    n = int(eligible.sum())
    chosen = out.labels != -100
    k = int(chosen.sum())
    assert _z(k, n, 0.15) < 5, (k, n)
    masked = int((out.input_ids[chosen] == MASK).sum())
    same = int((out.input_ids[chosen] == ids[chosen]).sum())
    changed_not_mask = k - masked - same
    assert _z(masked, k, 0.8) < 5
    # random replacements equal the original with probability 1/95: count kinds, then check the ids
    assert _z(int((out.kinds == 2).sum()), k, 0.1) < 5
    assert _z(int((out.kinds == 3).sum()), k, 0.1) < 5
    assert _z(changed_not_mask, k, 0.1 * (1 - 1 / (V - 5))) < 5
    assert 0.145 < k / n < 0.155 and 0.78 < masked / k < 0.82


def test_kinds_agree_with_ids_and_labels():
    ids, attn = _batch(B=200)
    out = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=1)
    chosen = out.labels != -100
    assert torch.equal(chosen, out.kinds != 0)
    assert torch.equal(out.labels[chosen], ids[chosen])  # labels are the original ids
    assert torch.equal(out.input_ids[~chosen], ids[~chosen])  # untouched elsewhere
    assert bool((out.input_ids[out.kinds == 1] == MASK).all())
    assert torch.equal(out.input_ids[out.kinds == 3], ids[out.kinds == 3])
    rand = out.input_ids[out.kinds == 2]
    assert bool((rand >= 5).all()) and bool((rand < V).all())  # random tokens are ordinary ids
    assert set(KIND_NAMES) == {0, 1, 2, 3}


def test_special_and_padding_never_chosen():
    ids, attn = _batch(B=300)
    out = mask_tokens(ids, MASK, V, SPECIAL, mask_prob=1.0, attention_mask=attn, generator=2)
    special = special_tokens_mask(ids, SPECIAL)
    assert bool((out.labels[special] == -100).all())
    assert bool((out.labels[attn == 0] == -100).all())
    assert torch.equal(out.input_ids[special], ids[special])
    # with mask_prob=1 every ordinary real token is chosen
    assert bool((out.labels[(attn == 1) & ~special] != -100).all())


def test_padding_excluded_by_attention_mask_alone():
    ids = torch.tensor([[10, 11, 12, 13]])
    out = mask_tokens(ids, MASK, V, [], mask_prob=1.0, attention_mask=torch.tensor([[1, 1, 0, 0]]), generator=0)
    assert out.labels.tolist() == [[10, 11, -100, -100]]


def test_mask_id_itself_is_never_chosen_nor_a_random_replacement():
    ids = torch.full((50, 50), MASK)
    ids[:, ::2] = 7
    out = mask_tokens(ids, MASK, V, [PAD], mask_prob=1.0, mask_frac=0.0, random_frac=1.0, generator=0)
    assert bool((out.labels[:, 1::2] == -100).all())
    assert not bool((out.input_ids[:, ::2] == PAD).any()) and not bool((out.input_ids[:, ::2] == MASK).any())


def test_reproducible_with_seed_and_generator():
    ids, attn = _batch(B=50)
    a = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=42)
    b = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=torch.Generator().manual_seed(42))
    c = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=43)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.labels, c.labels)
    torch.manual_seed(5)
    d = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn)
    torch.manual_seed(5)
    e = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn)
    assert torch.equal(d.input_ids, e.input_ids)


def test_doctest_example_and_1d_input():
    out = mask_tokens(torch.tensor([2, 10, 11, 12, 3]), 4, 20, [0, 1, 2, 3, 4], mask_prob=1.0, mask_frac=1.0, random_frac=0.0)
    assert out.input_ids.tolist() == [2, 4, 4, 4, 3]
    assert out.labels.tolist() == [-100, 10, 11, 12, -100]


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(input_ids=[1, 2, 3]), TypeError, "torch.Tensor"),
        (dict(input_ids=torch.tensor([1.0, 2.0])), TypeError, "integer"),
        (dict(mask_prob=1.5), ValueError, "mask_prob"),
        (dict(mask_frac=0.8, random_frac=0.3), ValueError, "mask_frac + random_frac"),
        (dict(mask_id=100), ValueError, "mask_id"),
        (dict(input_ids=torch.tensor([5, 120])), ValueError, "max 120"),
        (dict(attention_mask=torch.ones(3, dtype=torch.long)), ValueError, "attention_mask"),
        (dict(generator="seed"), TypeError, "generator"),
    ],
)
def test_clear_errors(kwargs, exc, words):
    args = dict(input_ids=torch.tensor([5, 6]), mask_id=MASK, vocab_size=V, special_ids=SPECIAL)
    args.update(kwargs)
    with pytest.raises(exc, match=words.replace("+", r"\+")):
        mask_tokens(**args)


def test_bert_inputs_pair_truncation_and_padding():
    x = bert_inputs([7, 8], [9], cls_id=CLS, sep_id=SEP)
    assert x["input_ids"].tolist() == [CLS, 7, 8, SEP, 9, SEP]
    assert x["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1]
    assert x["attention_mask"].tolist() == [1] * 6
    y = bert_inputs(list(range(10, 20)), [30, 31], cls_id=CLS, sep_id=SEP, pad_id=PAD, max_len=9)
    assert y["input_ids"].tolist() == [CLS, 10, 11, 12, 13, SEP, 30, 31, SEP]  # the longer segment was cut
    z = bert_inputs([7], cls_id=CLS, sep_id=SEP, pad_id=PAD, max_len=5)
    assert z["input_ids"].tolist() == [CLS, 7, SEP, PAD, PAD] and z["attention_mask"].tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="max_len"):
        bert_inputs([7], [8], cls_id=CLS, sep_id=SEP, max_len=3)


def test_bert_inputs_match_the_reference_tokenizer():
    from tokenizers import Tokenizer  # Hugging Face's fast tokenizer, the engine of transformers' BertTokenizerFast

    from course_lib.data import minilm_path
    from course_lib.tokenization import minilm_wordpiece

    ref_tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    ref_tok.no_truncation()
    ref_tok.enable_padding(length=24, pad_id=0, pad_token="[PAD]")
    wp = minilm_wordpiece()
    a, b = "The film was long.", "I loved every minute of it!"
    ours = bert_inputs(wp.encode(a, False), wp.encode(b, False), cls_id=101, sep_id=102, pad_id=0, max_len=24)
    ref = ref_tok.encode(a, b)
    assert ours["input_ids"].tolist() == ref.ids
    assert ours["token_type_ids"].tolist() == ref.type_ids
    assert ours["attention_mask"].tolist() == ref.attention_mask


def test_pack_for_mlm():
    rows = pack_for_mlm([[5, 6], [8, 9]], block_size=5, cls_id=CLS, sep_id=SEP)
    assert rows.tolist() == [[CLS, 5, 6, SEP, SEP], [CLS, 8, 9, SEP, SEP]]
    rows = pack_for_mlm([[5, 6, 7], [8, 9]], block_size=5, cls_id=CLS, sep_id=SEP)  # a document crosses rows
    assert rows.tolist() == [[CLS, 5, 6, 7, SEP], [CLS, SEP, 8, 9, SEP]]
    assert pack_for_mlm([[5]], 5, CLS, SEP).shape == (0, 5)
    with pytest.raises(ValueError, match="block_size"):
        pack_for_mlm([[5]], 2, CLS, SEP)


def test_gathered_mlm_equals_full_mlm_loss_and_gradients():
    torch.manual_seed(0)
    cfg = BertConfig.preset("tiny", vocab_size=V)
    model = BertForMaskedLM(cfg)
    ids, attn = _batch(B=4, T=16)
    out = mask_tokens(ids, MASK, V, SPECIAL, attention_mask=attn, generator=3)
    full = model(out.input_ids, out.labels, attention_mask=attn).loss
    logits, loss = GatheredMLM(model)(out.input_ids, out.labels, attention_mask=attn)
    assert logits.shape == (int((out.labels != -100).sum()), V)
    torch.testing.assert_close(loss, full)
    g_full = torch.autograd.grad(full, model.bert.tok_emb.weight)[0]
    g_ours = torch.autograd.grad(GatheredMLM(model)(out.input_ids, out.labels, attention_mask=attn)[1], model.bert.tok_emb.weight)[0]
    torch.testing.assert_close(g_ours, g_full)
    with pytest.raises(ValueError, match="labels"):
        GatheredMLM(model)(out.input_ids, out.labels[:, :3])
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        GatheredMLM(torch.nn.Linear(2, 2))


def test_rows_html_and_widget():
    ids = torch.tensor([CLS, 10, 11, 12, 13, 14, SEP])
    res = mask_tokens(ids, MASK, V, SPECIAL, mask_prob=1.0, generator=0)
    rows = masking_rows(ids, res, lambda i: f"t{i}")
    assert len(rows) == 5 and rows[0]["position"] == 1 and rows[0]["original"] == "t10"
    page = masking_html(ids, res, lambda i: f"<{i}>")
    assert "&lt;10&gt;" in page and "chosen 5 of 7" in page
    box = masking_widget(ids.tolist(), lambda i: f"t{i}", MASK, V, SPECIAL, mask_prob=0.0)
    html_out = box.children[1]
    assert "chosen 0 of 7" in html_out.value
    box.children[0].children[0].value = 1.0  # the mask-rate slider: the view updates
    assert "chosen 5 of 7" in html_out.value


def test_clean_review():
    assert clean_review("Great  film!<br /><br />Loved IT.") == "great film! loved it."
    with pytest.raises(TypeError):
        clean_review(None)


def test_save_and_load_tiny_bert(tmp_path):
    from course_lib.tokenization import BPETokenizer

    tok = BPETokenizer.train("a tiny corpus of movie reviews, a tiny corpus", 270, special_tokens=SPECIAL_TOKENS)
    cfg = BertConfig.preset("tiny", vocab_size=tok.vocab_size, pad_id=tok.special_tokens["[PAD]"])
    model = BertForMaskedLM(cfg).eval()
    assert not tiny_bert_available(tmp_path)
    with pytest.raises(FileNotFoundError, match="05_masked_language_modeling"):
        load_tiny_bert(tmp_path)
    save_tiny_bert(model, tok, tmp_path, info={"masked_accuracy": 0.5})
    assert tiny_bert_available(tmp_path)
    m2, tok2, info = load_tiny_bert(tmp_path)
    assert info["masked_accuracy"] == 0.5 and tok2.special_tokens == tok.special_tokens
    x = torch.tensor([tok.encode("a tiny review")])
    torch.testing.assert_close(m2(x).logits, model(x).logits)


def test_exercise_reference_is_the_library_rule():
    from course_lib.exercises.ch05 import reference_apply_mask_rule

    ids, _ = _batch(B=20, T=32)
    out = mask_tokens(ids, MASK, V, SPECIAL, generator=7)
    g = torch.Generator().manual_seed(7)  # replay mask_tokens' draws: choose, kind, random index
    u_choose, u_kind = torch.rand(ids.shape, generator=g), torch.rand(ids.shape, generator=g)
    random_ids = torch.randint(V - 5, ids.shape, generator=g) + 5  # ordinary ids are 5..V-1
    new, labels = reference_apply_mask_rule(ids, u_choose, u_kind, random_ids, MASK, tuple(SPECIAL))
    assert torch.equal(new, out.input_ids) and torch.equal(labels, out.labels)


def test_ch05_checkers_contract(capsys):
    from course_lib.exercises import ExerciseError
    from course_lib.exercises import ch05

    def todo(*args):
        raise NotImplementedError

    for check in (ch05.check_apply_mask_rule, ch05.check_masked_accuracy, ch05.check_segment_ids):
        assert check(todo) is None
    assert "not attempted" in capsys.readouterr().out
    assert ch05.check_apply_mask_rule(ch05.reference_apply_mask_rule)
    assert ch05.check_masked_accuracy(ch05.reference_masked_accuracy)
    assert ch05.check_segment_ids(ch05.reference_segment_ids)
    with pytest.raises(ExerciseError):
        ch05.check_apply_mask_rule(lambda ids, u1, u2, r, m, s: (ids, torch.full_like(ids, -100)))
    with pytest.raises(ExerciseError):
        ch05.check_masked_accuracy(lambda logits, labels: float((logits.argmax(-1) == labels).float().mean()))
    with pytest.raises(ExerciseError):
        ch05.check_segment_ids(lambda ids, sep: [0] * len(ids))
