"""Tests for course_lib.metrics: BLEU against sacrebleu, perplexity against torch, edit distances."""

import math
import random

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from course_lib.metrics import (
    accuracy,
    corpus_bleu,
    edit_distance,
    ngram_counts,
    perplexity,
    perplexity_from_logits,
    phoneme_error_rate,
    sequence_error_rate,
    strip_stress,
    word_error_rate,
)


def test_perplexity_matches_exp_of_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    targets[0, 0] = -100
    ce = F.cross_entropy(logits.view(-1, 7), targets.view(-1), ignore_index=-100)
    assert perplexity_from_logits(logits, targets) == pytest.approx(math.exp(ce.item()), rel=1e-6)
    assert perplexity(math.log(65)) == pytest.approx(65.0)
    assert perplexity(torch.tensor(0.0)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        perplexity_from_logits(logits, targets[:, :3])
    with pytest.raises(ValueError, match="scalar"):
        perplexity(torch.zeros(3))


def test_accuracy_ids_and_logits():
    assert accuracy(torch.tensor([1, 0, 2]), torch.tensor([1, 1, 2])) == pytest.approx(2 / 3)
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, torch.tensor([1, 0, -100])) == 1.0
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="ignore_index"):
        accuracy(torch.tensor([1]), torch.tensor([-100]))


def test_ngram_counts_example():
    assert ngram_counts(["a", "b", "a"], 2) == {("a",): 2, ("b",): 1, ("a", "b"): 1, ("b", "a"): 1}


def _random_corpus(seed, n_sent=30, n_refs=2):
    rng = random.Random(seed)
    vocab = "the a cat dog sat on mat rug ran fast slow big red blue".split()
    hyps, refs = [], []
    for _ in range(n_sent):
        ref0 = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        hyp = [w if rng.random() < 0.7 else rng.choice(vocab) for w in ref0]
        if rng.random() < 0.3:
            hyp = hyp[: rng.randint(1, len(hyp))]
        if rng.random() < 0.3:
            hyp += [rng.choice(vocab) for _ in range(rng.randint(1, 3))]
        others = [[w if rng.random() < 0.6 else rng.choice(vocab) for w in ref0] for _ in range(n_refs - 1)]
        hyps.append(" ".join(hyp))
        refs.append([" ".join(ref0)] + [" ".join(o) for o in others])
    return hyps, refs


@pytest.mark.parametrize("seed,n_refs", [(0, 1), (1, 2), (2, 3), (3, 1)])
def test_corpus_bleu_equals_sacrebleu(seed, n_refs):
    hyps, refs = _random_corpus(seed, n_refs=n_refs)
    expected = sacrebleu.corpus_bleu(hyps, [list(s) for s in zip(*refs)], tokenize="none").score
    assert corpus_bleu(hyps, refs) == pytest.approx(expected, abs=0.01)
    # Token lists give the same score as space-joined strings.
    assert corpus_bleu([h.split() for h in hyps], [[r.split() for r in rs] for rs in refs]) == pytest.approx(
        expected, abs=0.01
    )


def test_corpus_bleu_edge_cases_match_sacrebleu():
    cases = [
        (["the cat sat on the mat"], [["the cat sat on the mat"]]),
        (["a b"], [["a b c d e"]]),  # short: no 3-grams, brevity penalty
        (["x y z"], [["a b c"]]),  # no match at all
        (["a b c d"], [["a b d c", "a b c e f"]]),  # tie in closest length
        (["a b c", "d e f g h"], [["a b c"], ["d e x g h"]]),
    ]
    for hyps, refs in cases:
        expected = sacrebleu.corpus_bleu(hyps, [list(s) for s in zip(*refs)], tokenize="none").score
        assert corpus_bleu(hyps, refs) == pytest.approx(expected, abs=0.01), (hyps, refs)


def test_corpus_bleu_bad_input():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="list of references"):
        corpus_bleu(["a"], ["a"])
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu(["a"], [["a"]], smooth="floor")


def test_edit_distance_examples():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance([], []) == 0
    assert edit_distance(["K", "AE1", "T"], ["K", "AA1", "T"]) == 1


def test_word_and_phoneme_error_rates():
    assert word_error_rate(["the cat sat"], ["the cat sat down"]) == pytest.approx(0.25)
    assert word_error_rate(["a b", "c"], ["a b", "d e"]) == pytest.approx(2 / 4)
    # Matching ANY of several references counts as correct.
    assert phoneme_error_rate([["K", "AE1", "T"]], [[["K", "AA1", "T"], ["K", "AE1", "T"]]]) == 0.0
    assert phoneme_error_rate([["K", "AE0", "T"]], [["K", "AE1", "T"]]) == pytest.approx(1 / 3)
    assert phoneme_error_rate([["K", "AE0", "T"]], [["K", "AE1", "T"]], ignore_stress=True) == 0.0
    assert strip_stress(["K", "AE1", "T"]) == ["K", "AE", "T"]
    assert sequence_error_rate([["K", "AE1", "T"], ["D", "AO1", "G"]], [["K", "AE1", "T"], ["D", "AA1", "G"]]) == 0.5
    with pytest.raises(ValueError, match="2 predictions but 1"):
        word_error_rate(["a", "b"], ["a"])


def test_perplexity_of_a_negative_loss_is_an_error():
    with pytest.raises(ValueError, match="cross-entropy >= 0"):
        perplexity(-1.0)


def test_wilson_interval_matches_the_formula_and_rejects_bad_counts():
    from course_lib.metrics import accuracy_interval, wilson_interval

    low, high = wilson_interval(50, 100)
    assert round(low, 3) == 0.404 and round(high, 3) == 0.596
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    acc, lo, hi = accuracy_interval([True] * 80 + [False] * 20)
    assert acc == 0.8 and (round(lo, 3), round(hi, 3)) == (0.711, 0.867)
    for k, n in ((5, 4), (-1, 4), (1, 0), (1.0, 4)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            wilson_interval(k, n)
    with pytest.raises(ValueError, match="booleans"):
        accuracy_interval([0, 2, 1])


def test_paired_bootstrap_and_mcnemar():
    from course_lib.metrics import mcnemar_test, paired_bootstrap

    a = [1] * 60 + [0] * 40
    b = [1] * 40 + [0] * 60  # B loses 20 items that A gets, gains none
    r = paired_bootstrap(a, b)
    assert r["diff"] == pytest.approx(0.2) and 0 < r["low"] < 0.2 < r["high"]
    assert paired_bootstrap(a, b) == r  # seeded: the same interval every time
    m = mcnemar_test(a, b)
    assert (m["a_only"], m["b_only"]) == (20, 0) and m["p_value"] == pytest.approx(2 / 2**20)
    assert mcnemar_test(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(a, b, n_boot=10)
