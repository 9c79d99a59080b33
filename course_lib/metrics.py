"""Evaluation numbers: perplexity, accuracy, corpus BLEU, edit distance, WER and PER, and how sure they are.

Everything is written from scratch in plain Python/PyTorch; the tests check BLEU against
`sacrebleu` (tokenize="none") and perplexity against `torch.nn.functional.cross_entropy`.

Leaves out: BLEU's own tokenizers (we take pre-tokenized, space-separated text or token
lists), chrF, ROUGE and METEOR. See notebooks 06, 07 and 11.

Uncertainty: `wilson_interval` / `accuracy_interval` for one method's accuracy, and for two methods
scored on the same items `paired_bootstrap` (an interval for the difference) and `mcnemar_test`
(exact p-value). See notebooks 07, 08, 10 and 14.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "perplexity",
    "perplexity_from_logits",
    "accuracy",
    "ngram_counts",
    "corpus_bleu",
    "edit_distance",
    "error_rate",
    "word_error_rate",
    "phoneme_error_rate",
    "sequence_error_rate",
    "strip_stress",
    "wilson_interval",
    "accuracy_interval",
    "paired_bootstrap",
    "mcnemar_test",
]


# ----------------------------------------------------------------------------- perplexity
def perplexity(loss: float | torch.Tensor) -> float:
    """Perplexity = exp(mean cross-entropy in nats).

    >>> round(perplexity(math.log(65)), 6)
    65.0

    See notebook 06.
    """
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"loss must be a scalar, got a tensor of shape {tuple(loss.shape)}")
        loss = float(loss.detach())
    loss = float(loss)
    if math.isnan(loss):
        raise ValueError("loss is NaN; perplexity is undefined")
    if loss < 0:
        raise ValueError(f"loss must be a cross-entropy >= 0 (nats), got {loss}: perplexity would be below 1")
    return math.exp(min(loss, 700.0))  # cap so a diverged run gives a huge number, not an OverflowError


def perplexity_from_logits(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> float:
    """Perplexity of `targets` (B, T) under `logits` (B, T, V); positions equal to `ignore_index` are skipped.

    See notebook 06.
    """
    if logits.dim() < 2 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must have shape targets.shape + (V,); got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index)
    return perplexity(loss)


def accuracy(predictions: torch.Tensor | Sequence, targets: torch.Tensor | Sequence, ignore_index: int = -100) -> float:
    """Fraction of positions where the prediction equals the target.

    `predictions` are class ids with the same shape as `targets`, or logits with one extra last
    dimension (the argmax is taken). Targets equal to `ignore_index` are skipped.

    >>> accuracy(torch.tensor([1, 0, 2]), torch.tensor([1, 1, 2]))
    0.6666666666666666

    See notebooks 08 and 11.
    """
    predictions = torch.as_tensor(predictions)
    targets = torch.as_tensor(targets)
    if predictions.dim() == targets.dim() + 1:
        predictions = predictions.argmax(dim=-1)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions must have the shape of targets (or targets.shape + (num_classes,) for logits); "
            f"got predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)}"
        )
    keep = targets != ignore_index
    n = int(keep.sum())
    if n == 0:
        raise ValueError("no positions to score: every target equals ignore_index or the input is empty")
    return float(((predictions == targets) & keep).sum()) / n


# ----------------------------------------------------------------------------- BLEU
def _tokens(x: str | Sequence[Hashable]) -> list:
    """A string is split on whitespace; a list/tuple of tokens is used as is."""
    if isinstance(x, str):
        return x.split()
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(f"expected a string or a list of tokens, got {type(x).__name__}")


def ngram_counts(tokens: Sequence[Hashable], max_n: int = 4) -> Counter:
    """Count every n-gram (as a tuple) for n = 1..max_n.

    >>> sorted(ngram_counts(["a", "b", "a"], 2).items())
    [(('a',), 2), (('a', 'b'), 1), (('b',), 1), (('b', 'a'), 1)]
    """
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


def corpus_bleu(
    hypotheses: Sequence[str | Sequence[Hashable]],
    references: Sequence[Sequence[str | Sequence[Hashable]]],
    max_n: int = 4,
    smooth: str = "exp",
) -> float:
    """Corpus BLEU (0-100) of `hypotheses` against `references`, as sacrebleu computes it.

    `references[i]` is the list of references for `hypotheses[i]` (one or more). Text is
    pre-tokenized: a string is split on spaces, a list of tokens is used as is.
    BLEU = BP * exp(mean_n log p_n), with clipped n-gram precisions p_n summed over the corpus
    and brevity penalty BP = exp(1 - r/c) when the hypotheses (length c) are shorter than the
    closest references (length r). `smooth`: "exp" (sacrebleu's default: the k-th zero
    precision becomes 1 / (2^k * total_n)) or "none".

    >>> round(corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]), 6)
    100.0

    Equal to `sacrebleu.corpus_bleu(hyps, list(zip(*refs)), tokenize="none")` (see tests).
    See notebooks 07 and 11.
    """
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}")
    if not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be a positive int, got {max_n!r}")
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists (of sentences), not a single string")
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} reference lists")
    correct = [0] * max_n
    total = [0] * max_n
    sys_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        if isinstance(refs, str):
            raise TypeError("references[i] must be a list of references (e.g. [['a ref']]), not a string")
        if len(refs) == 0:
            raise ValueError("every hypothesis needs at least one reference")
        h = _tokens(hyp)
        ref_toks = [_tokens(r) for r in refs]
        # Closest reference length; a tie goes to the shorter reference (as sacrebleu does).
        r = min((abs(len(rt) - len(h)), len(rt)) for rt in ref_toks)[1]
        sys_len += len(h)
        ref_len += r
        max_ref: Counter = Counter()  # for each n-gram: its largest count in any one reference
        for rt in ref_toks:
            max_ref |= ngram_counts(rt, max_n)
        for gram, c in ngram_counts(h, max_n).items():
            correct[len(gram) - 1] += min(c, max_ref[gram])  # clipped count
        for n in range(1, max_n + 1):
            total[n - 1] += max(0, len(h) - n + 1)

    if not any(correct):
        return 0.0
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    log_p = []
    k = 0
    for n in range(max_n):
        if total[n] == 0:  # no n-grams this long at all: sacrebleu stops here and scores them as 0
            break
        if correct[n] == 0:
            if smooth == "exp":
                k += 1
                log_p.append(math.log(100.0 / (2**k * total[n])))
            else:
                return 0.0
        else:
            log_p.append(math.log(100.0 * correct[n] / total[n]))
    log_p += [-9999999999.0] * (max_n - len(log_p))  # sacrebleu's log(0)
    return bp * math.exp(sum(log_p) / max_n)


# ----------------------------------------------------------------------------- edit distance
def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance: fewest insertions, deletions and substitutions turning `a` into `b`.

    >>> edit_distance("kitten", "sitting")
    3
    >>> edit_distance(["K", "AE1", "T"], ["K", "AA1", "T"])
    1
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))  # one row of the dynamic-programming table
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _as_reference_lists(references: Sequence) -> list[list]:
    out = []
    for refs in references:
        # One reference (a string, or a list of str tokens) or several (a list of those).
        if isinstance(refs, str) or (isinstance(refs, (list, tuple)) and (len(refs) == 0 or isinstance(refs[0], str))):
            out.append([refs])
        else:
            out.append(list(refs))
    return out


def error_rate(predictions: Sequence, references: Sequence) -> float:
    """Corpus error rate = sum of edit distances / sum of reference lengths (token sequences).

    `references[i]` may be one reference or a list of several: the one with the smallest edit
    distance to the prediction is used (ties: the first listed), so matching ANY reference counts
    as correct. Strings are split on whitespace. The rate can exceed 1 (many insertions).
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of sequences, not a single string")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    errors = length = 0
    for pred, refs in zip(predictions, _as_reference_lists(references)):
        p = _tokens(pred)
        dist, r_len = min(((edit_distance(p, _tokens(r)), len(_tokens(r))) for r in refs), key=lambda t: t[0])
        errors += dist
        length += r_len
    if length == 0:
        raise ValueError("references are empty: the error rate is undefined")
    return errors / length


def word_error_rate(predictions: Sequence[str | Sequence[str]], references: Sequence) -> float:
    """WER: word-level edit distance / number of reference words, over the corpus.

    >>> word_error_rate(["the cat sat"], ["the cat sat down"])
    0.25

    See notebook 07.
    """
    return error_rate(predictions, references)


def strip_stress(phonemes: Sequence[str]) -> list[str]:
    """Drop ARPAbet stress digits: ["K", "AE1", "T"] -> ["K", "AE", "T"]."""
    return [p.rstrip("012") for p in phonemes]


def phoneme_error_rate(predictions: Sequence[Sequence[str]], references: Sequence, ignore_stress: bool = False) -> float:
    """PER: phoneme-level edit distance / number of reference phonemes, over the corpus.

    `references[i]` is one pronunciation (list of phonemes or a space-separated string) or a list
    of several (e.g. CMUdict's alternatives): the closest one counts. `ignore_stress` drops the
    stress digits first.

    >>> phoneme_error_rate([["K", "AE1", "T"]], [[["K", "AE1", "T"], ["K", "AA1", "T"]]])
    0.0

    See notebook 07.
    """
    if ignore_stress:
        predictions = [strip_stress(_tokens(p)) for p in predictions]
        references = [[strip_stress(_tokens(r)) for r in refs] for refs in _as_reference_lists(references)]
    return error_rate(predictions, references)


def sequence_error_rate(predictions: Sequence, references: Sequence) -> float:
    """Fraction of predictions that match none of their references exactly.

    In grapheme-to-phoneme papers this is what "word error rate" means (a word is wrong if any
    phoneme is wrong). See notebook 07.
    """
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("no predictions to score")
    wrong = sum(
        all(_tokens(p) != _tokens(r) for r in refs) for p, refs in zip(predictions, _as_reference_lists(references))
    )
    return wrong / len(predictions)


# ----------------------------------------------------------------------------- uncertainty
def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% for z=1.96) for an accuracy of k correct out of n.

    Better than p ± z·sqrt(p(1-p)/n) near 0 and 1 and for small n (it never leaves [0, 1]).
    >>> [round(x, 3) for x in wilson_interval(50, 100)]
    [0.404, 0.596]
    """
    if isinstance(n, bool) or isinstance(k, bool) or not isinstance(n, int) or n < 1 or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"need integers 0 <= k <= n with n >= 1, got k={k!r}, n={n!r}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_correct(correct: Sequence[bool] | torch.Tensor, name: str = "correct") -> torch.Tensor:
    c = torch.as_tensor(correct).flatten()
    if c.numel() == 0:
        raise ValueError(f"{name} is empty")
    if c.dtype != torch.bool and not bool(((c == 0) | (c == 1)).all()):
        raise ValueError(f"{name} must hold booleans (or 0/1), got values such as {c[:5].tolist()}")
    return c.bool()


def accuracy_interval(correct: Sequence[bool] | torch.Tensor, z: float = 1.96) -> tuple[float, float, float]:
    """(accuracy, low, high): the Wilson score interval (95% for z=1.96) of a fraction of correct items.

    >>> [round(x, 3) for x in accuracy_interval([True] * 80 + [False] * 20)]
    [0.8, 0.711, 0.867]
    """
    c = _as_correct(correct)
    k, n = int(c.sum()), c.numel()
    low, high = wilson_interval(k, n, z)
    return k / n, low, high


def _paired(correct_a: Sequence[bool] | torch.Tensor, correct_b: Sequence[bool] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_correct(correct_a, "correct_a"), _as_correct(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"A and B must be scored on the same items, got {a.numel()} and {b.numel()}")
    return a, b


def paired_bootstrap(
    correct_a: Sequence[bool] | torch.Tensor,
    correct_b: Sequence[bool] | torch.Tensor,
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Accuracy of A minus accuracy of B on the same items, with a paired bootstrap interval.

    Resamples the items (the same resample for both methods, which keeps their pairing) `n_boot`
    times; the interval is the central `level` range of the resampled differences.
    -> {"diff", "low", "high"}. An interval that contains 0 means: not significant at that level.
    >>> r = paired_bootstrap([1, 1, 0, 0] * 25, [1, 0, 1, 0] * 25); r["diff"], r["low"] < 0 < r["high"]
    (0.0, True)
    """
    a, b = _paired(correct_a, correct_b)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot must be an int >= 100, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = a.double() - b.double()  # (N,) per-item difference: -1, 0 or +1
    g = torch.Generator().manual_seed(seed)
    diffs = []
    for start in range(0, n_boot, 1000):  # chunks keep memory small
        idx = torch.randint(0, d.numel(), (min(1000, n_boot - start), d.numel()), generator=g)
        diffs.append(d[idx].mean(1))
    tail = (1.0 - level) / 2
    low, high = torch.quantile(torch.cat(diffs), torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return {"diff": float(d.mean()), "low": low, "high": high}


def mcnemar_test(correct_a: Sequence[bool] | torch.Tensor, correct_b: Sequence[bool] | torch.Tensor) -> dict[str, float]:
    """McNemar's exact test: do A and B differ on the items where exactly one of them is right?

    Counts a_only (A right, B wrong) and b_only; under "no difference" each disagreement is a fair
    coin, so the two-sided p-value is that of a binomial(a_only + b_only, 1/2).
    >>> mcnemar_test([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0])["p_value"]
    0.0625
    """
    a, b = _paired(correct_a, correct_b)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n, k = a_only + b_only, min(a_only, b_only)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}
