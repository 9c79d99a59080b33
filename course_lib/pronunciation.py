"""Spelling -> pronunciation (grapheme-to-phoneme, G2P) with the encoder-decoder Transformer.

What is here:
- `G2PVocab`, `source_vocab()`, `target_vocab()`: the letter vocabulary of the source and the
  ARPAbet phoneme vocabulary (stress removed) of the target, each with `<pad>`, `<bos>`, `<eos>`;
- `load_g2p_pairs(split)`: (word, phonemes) pairs of the CMU dictionary, stress marks removed;
  a word with several pronunciations gives several training pairs, and `references()` groups
  them so that a prediction counts as correct when it matches ANY of them;
- `encode_pairs` / `G2PBatches`: padded teacher-forcing batches (src, tgt = [BOS] + y,
  labels = y + [EOS]) for `course_lib.models.EncoderDecoder`;
- `g2p_config` / `make_g2p_model`: the model. `EncoderDecoder` multiplies token embeddings by
  sqrt(d_model) exactly when `positions="sinusoidal"`; at this size that hurts, so the course's
  G2P model uses learned positions, which leaves the embeddings unscaled, and Xavier-uniform
  attention / feed-forward matrices (as `torch.nn.Transformer`) instead of N(0, 0.02);
- `predict_batch` (greedy, batched), `predict` (greedy or beam search), `evaluate_g2p`
  (word error rate, phoneme error rate, BLEU on phoneme sequences), `paired_comparison` (two
  decoders or two models scored on the same words: the WER difference with a 95% paired
  bootstrap interval and McNemar's exact test);
- `cross_attention`: which letters each predicted phoneme attended to (an alignment map);
- `validate_word` and `pronunciation_widget`: type a word, see its phonemes and attention map;
- `to_torch_transformer` / `torch_transformer_logits`: the same weights in `torch.nn.Transformer`
  (pre-LN, GELU, final norms: the architectures coincide), giving the same logits (see tests).

Leaves out: stress prediction, multi-word phrases, letters outside a-z ' - . (words with accents
are refused with a clear message), batched beam search. See notebook 07.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from course_lib.data import load_cmudict
from course_lib.generation import beam_search, seq2seq_generate
from course_lib.metrics import corpus_bleu, phoneme_error_rate, sequence_error_rate, strip_stress
from course_lib.models import EncoderDecoder, EncoderDecoderConfig

__all__ = [
    "PAD", "BOS", "EOS", "LETTERS", "PHONEMES",
    "G2PVocab", "source_vocab", "target_vocab",
    "load_g2p_pairs", "references", "validate_word",
    "encode_pairs", "G2PBatches",
    "g2p_config", "make_g2p_model",
    "predict_batch", "predict", "evaluate_g2p", "paired_comparison", "G2PEvaluator",
    "cross_attention", "plot_alignment", "pronunciation_widget",
    "to_torch_transformer", "torch_transformer_logits",
]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)  # ids 0, 1, 2 in both vocabularies
LETTERS = "abcdefghijklmnopqrstuvwxyz'-."  # every character of the CMU dictionary's words
PHONEMES = (  # the 39 ARPAbet phonemes of the CMU dictionary, without stress
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG "
    "OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()
MAX_WORD_LEN = 30  # longest spelling the model accepts (the dictionary's longest is 28)
MAX_PHONEMES = 30  # longest pronunciation decoded (the dictionary's longest is 28)


# ----------------------------------------------------------------------------- vocabularies
class G2PVocab:
    """A fixed list of symbols with `<pad>`=0, `<bos>`=1, `<eos>`=2 first.

    >>> v = G2PVocab(["a", "b"]); v.encode(["b", "a"]), v.decode([1, 4, 3, 2, 4])
    ([4, 3], ['b', 'a'])
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if len(set(symbols)) != len(symbols) or set(symbols) & set(SPECIALS):
            raise ValueError(f"symbols must be distinct and not special tokens {SPECIALS}, got {symbols}")
        self.itos: list[str] = list(SPECIALS) + symbols
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"G2PVocab({len(self)} symbols: {self.itos[:8]} ...)"

    def encode(self, symbols: Iterable[str]) -> list[int]:
        """Symbols -> ids (no BOS/EOS); an unknown symbol raises ValueError naming it."""
        out = []
        for s in symbols:
            if s not in self.stoi:
                raise ValueError(f"unknown symbol {s!r}: the vocabulary has {self.itos[3:]}")
            out.append(self.stoi[s])
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> symbols, dropping `<pad>`/`<bos>` and stopping at the first `<eos>`."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i])
        return out


def source_vocab() -> G2PVocab:
    """The 29 spelling characters (a-z ' - .) plus the 3 special tokens: 32 ids."""
    return G2PVocab(list(LETTERS))


def target_vocab() -> G2PVocab:
    """The 39 stress-free ARPAbet phonemes plus the 3 special tokens: 42 ids."""
    return G2PVocab(PHONEMES)


# ----------------------------------------------------------------------------- data
def load_g2p_pairs(split: str = "train", keep_stress: bool = False) -> list[tuple[str, list[str]]]:
    """(word, phonemes) pairs of the CMU dictionary split, stress digits removed (the standard G2P setting).

    Every pronunciation of a word is a separate pair (the model trains on all of them).
    >>> load_g2p_pairs("train")[0]
    ("'bout", ['B', 'AW', 'T'])
    """
    pairs = load_cmudict(split)
    if keep_stress:
        return pairs
    return [(w, strip_stress(p)) for w, p in pairs]


def references(pairs: Iterable[tuple[str, Sequence[str]]]) -> dict[str, list[list[str]]]:
    """Group pairs by word: word -> all its pronunciations, in dictionary order (duplicates dropped).

    >>> references([("read", ["R", "IY", "D"]), ("read", ["R", "EH", "D"])])
    {'read': [['R', 'IY', 'D'], ['R', 'EH', 'D']]}
    """
    out: dict[str, list[list[str]]] = {}
    for w, p in pairs:
        lst = out.setdefault(w, [])
        if list(p) not in lst:
            lst.append(list(p))
    return out


_WORD_RE = re.compile(r"^[a-z][a-z'\-.]*$")


def validate_word(word: Any) -> str:
    """Lower-case and check a typed word; raise ValueError with a clear message for bad input.

    Accepts Latin letters a-z with ' - . inside (as the dictionary's words); refuses empty
    text, digits, spaces and other alphabets. >>> validate_word(" Hello ")
    'hello'
    """
    if not isinstance(word, str):
        raise TypeError(f"word must be a string, got {type(word).__name__}")
    w = word.strip().lower()
    if not w:
        raise ValueError("please type a word: the input is empty")
    if any(c.isdigit() for c in w):
        raise ValueError(f"{word!r} contains digits: spell numbers out (e.g. 'seven'), the model reads letters a-z only")
    if any(c.isspace() for c in w):
        raise ValueError(f"{word!r} has several words: type one word at a time")
    bad = sorted({c for c in w if c not in LETTERS})
    if bad:
        raise ValueError(
            f"{word!r} contains characters the model never saw: {bad}; it reads English spelling, "
            f"the letters a-z and ' - . only (no accents or non-Latin scripts)"
        )
    if not _WORD_RE.match(w):
        raise ValueError(f"{word!r} must start with a letter a-z")
    if len(w) > MAX_WORD_LEN:
        raise ValueError(f"{word!r} has {len(w)} characters; the model reads at most {MAX_WORD_LEN}")
    return w


def encode_pairs(
    pairs: Sequence[tuple[str, Sequence[str]]], src_vocab: G2PVocab, tgt_vocab: G2PVocab
) -> dict[str, torch.Tensor]:
    """Pad a list of pairs into one teacher-forcing batch for `EncoderDecoder(**batch)`.

    Returns src (B, S) letter ids, src_mask (B, S) 1 = real letter, tgt (B, T) = [BOS] + phonemes
    (padded with <pad>), labels (B, T) = phonemes + [EOS] (padded with -100, ignored by the loss).
    """
    if len(pairs) == 0:
        raise ValueError("encode_pairs needs at least one (word, phonemes) pair")
    srcs = [src_vocab.encode(w) for w, _ in pairs]
    tgts = [tgt_vocab.encode(p) for _, p in pairs]
    return _pad_ids(srcs, tgts, tgt_vocab.bos_id, tgt_vocab.eos_id)


def _pad_ids(srcs: Sequence[list[int]], tgts: Sequence[list[int]], bos_id: int, eos_id: int) -> dict[str, torch.Tensor]:
    """Letter ids and phoneme ids (no BOS/EOS) -> the padded teacher-forcing batch of `encode_pairs`."""
    B, S, T = len(srcs), max(map(len, srcs)), max(map(len, tgts)) + 1
    src = torch.zeros(B, S, dtype=torch.long)
    src_mask = torch.zeros(B, S, dtype=torch.long)
    tgt = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)] = torch.tensor(s)
        src_mask[i, : len(s)] = 1
        tgt[i, : len(t) + 1] = torch.tensor([bos_id] + t)
        labels[i, : len(t) + 1] = torch.tensor(t + [eos_id])
    return {"src": src, "tgt": tgt, "labels": labels, "src_mask": src_mask}


class G2PBatches:
    """Random training batches: calling it returns the next padded batch (a fresh shuffle every epoch).

    `bucket` (default 0 = plain shuffling, the recommended setting): words are shuffled, then each
    run of `bucket` batches is sorted by length before it is cut into batches (whose order is
    shuffled again). Batches then hold words of one length: less padding (1.5x more words per CPU
    second with bucket=4), but every batch is a biased sample (all its words, and all its `<eos>`,
    at the same length), and that costs far more than it saves: after 400 steps of notebook 07's
    2+2 model the training loss was 0.78 with bucket=50 against 0.45 without (validation WER 71%
    against 56%), and the notebook's former 2,200 bucketed steps ended at 56.5% test WER, no
    better than 400 shuffled steps. See notebook 07.

    `chunks` (default 1): with chunks=k > 1 each random batch is sorted by length and cut into k
    micro-batches, each padded only to its own longest word, and the call returns that list;
    `course_lib.training.compute_loss` weights their losses by their token counts, so the loss and
    the gradient are those of the whole random batch (no bias, unlike `bucket`), with far less
    padding: a random batch of 128 is half padding. In 120 s on one thread notebook 07's 2+2 model
    took 1,108 steps with chunks=4 against 856 with one padded batch, and reached 44.6% validation
    WER against 47.4%.

    >>> # batches = G2PBatches(train_pairs, 128, seed=0); batch = batches(); model(**batch).loss
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, Sequence[str]]],
        batch_size: int,
        src_vocab: G2PVocab | None = None,
        tgt_vocab: G2PVocab | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        bucket: int = 0,
        chunks: int = 1,
    ) -> None:
        if not isinstance(bucket, int) or bucket < 0:
            raise ValueError(f"bucket must be an int >= 0, got {bucket!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(chunks, int) or not 1 <= chunks <= batch_size:
            raise ValueError(f"chunks must be an int between 1 and batch_size ({batch_size}), got {chunks!r}")
        if len(pairs) == 0:
            raise ValueError("G2PBatches needs at least one pair")
        self.src_vocab, self.tgt_vocab = src_vocab or source_vocab(), tgt_vocab or target_vocab()
        # Encode once up front: the batches are then cheap to assemble.
        self.src = [self.src_vocab.encode(w) for w, _ in pairs]
        self.tgt = [self.tgt_vocab.encode(p) for _, p in pairs]
        self.batch_size, self.device, self.bucket, self.chunks = batch_size, device, bucket, chunks
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.src)

    def _epoch_order(self) -> list[int]:
        """A random order; with bucketing, words of similar length are batched together (less padding)."""
        perm = torch.randperm(len(self.src), generator=self.generator).tolist()
        if not self.bucket:
            return perm
        chunk = self.batch_size * self.bucket
        batches: list[list[int]] = []
        for start in range(0, len(perm), chunk):  # sort each chunk of `bucket` batches by length, then cut it
            part = sorted(perm[start : start + chunk], key=lambda i: (len(self.src[i]), len(self.tgt[i])))
            batches += [part[j : j + self.batch_size] for j in range(0, len(part), self.batch_size)]
        shuffled = torch.randperm(len(batches), generator=self.generator).tolist()
        return [i for b in shuffled for i in batches[b]]

    def __call__(self) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if len(self.order) < self.batch_size:
            self.order += self._epoch_order()
            self.epoch += 1
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        if self.chunks == 1:
            return self._pad(idx)
        idx = sorted(idx, key=lambda i: (len(self.src[i]), len(self.tgt[i])))  # short words first
        size = math.ceil(len(idx) / self.chunks)
        return [self._pad(idx[j : j + size]) for j in range(0, len(idx), size)]

    def _pad(self, idx: list[int]) -> dict[str, torch.Tensor]:
        """One padded teacher-forcing batch of the pairs `idx`."""
        batch = _pad_ids([self.src[i] for i in idx], [self.tgt[i] for i in idx], self.tgt_vocab.bos_id,
                         self.tgt_vocab.eos_id)
        if self.device is not None:
            batch = {k: v.to(self.device) for k, v in batch.items()}
        return batch


# ----------------------------------------------------------------------------- model
def g2p_config(n_layer: int = 2, d_model: int = 128, n_head: int = 4, dropout: float = 0.1, **overrides: Any) -> EncoderDecoderConfig:
    """The course's G2P model: n_layer encoder + n_layer decoder blocks, learned positions (no sqrt(d) scaling).

    `EncoderDecoder` scales token embeddings by sqrt(d_model) only with sinusoidal positions;
    learned positions keep the N(0, 0.02) embeddings unscaled, which trains much better at this size.
    """
    kw = dict(
        src_vocab_size=len(LETTERS) + 3, tgt_vocab_size=len(PHONEMES) + 3,
        src_block_size=MAX_WORD_LEN, block_size=MAX_PHONEMES + 2,
        n_encoder_layer=n_layer, n_decoder_layer=n_layer, n_head=n_head, d_model=d_model,
        dropout=dropout, pre_norm=True, positions="learned", tie_weights=True,
    )
    kw.update(overrides)
    return EncoderDecoderConfig(**kw)


def make_g2p_model(
    n_layer: int = 2, d_model: int = 128, n_head: int = 4, dropout: float = 0.1, init: str = "xavier", **overrides: Any
) -> EncoderDecoder:
    """An `EncoderDecoder` built from `g2p_config(...)`. See notebook 07.

    init="xavier" (default) re-draws the weight matrices of the attention and feed-forward layers
    with Xavier-uniform, as `torch.nn.Transformer` does (std 0.09 for a 128 x 128 matrix instead of
    GPT-2's 0.02, which was chosen for width 768); embeddings keep N(0, 0.02). At width 128 it
    trained faster (after 300 steps, loss 0.59 against 0.62; with length-bucketed batches 0.45
    against 0.66 after 1,000). init="gpt2" keeps `EncoderDecoder`'s N(0, 0.02) everywhere.
    """
    if init not in ("xavier", "gpt2"):
        raise ValueError(f"init must be 'xavier' or 'gpt2', got {init!r}")
    model = EncoderDecoder(g2p_config(n_layer, d_model, n_head, dropout, **overrides))
    if init == "xavier":
        with torch.no_grad():
            for block in [*model.encoder, *model.decoder]:
                for m in block.modules():
                    if isinstance(m, torch.nn.Linear):
                        torch.nn.init.xavier_uniform_(m.weight)
    return model


# ----------------------------------------------------------------------------- prediction
def _encode_words(words: Sequence[str], src_vocab: G2PVocab, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [src_vocab.encode(w) for w in words]
    S = max(map(len, ids))
    src = torch.zeros(len(ids), S, dtype=torch.long)
    for i, s in enumerate(ids):
        src[i, : len(s)] = torch.tensor(s)
    src = src.to(device)
    return src, (src != 0).long()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_batch(
    model: EncoderDecoder, words: Sequence[str], batch_size: int = 512, max_phonemes: int = MAX_PHONEMES
) -> list[list[str]]:
    """Greedy pronunciations of many words (batched, with the KV cache). Words must be valid (see validate_word).

    Words are sorted by length so each batch carries little padding; the output keeps the input order.
    """
    src_vocab, tgt_vocab = source_vocab(), target_vocab()
    words = [validate_word(w) for w in words]
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    out: list[list[str]] = [[] for _ in words]
    dev = _device(model)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        src, mask = _encode_words([words[i] for i in idx], src_vocab, dev)
        gen = seq2seq_generate(model, src, max_phonemes, tgt_vocab.bos_id, tgt_vocab.eos_id, src_mask=mask)
        for row, i in zip(gen.tolist(), idx):
            out[i] = tgt_vocab.decode(row)
    return out


@torch.no_grad()
def predict(
    model: EncoderDecoder, word: str, beam_size: int = 1, length_penalty: float = 1.0, max_phonemes: int = MAX_PHONEMES
) -> list[str]:
    """The predicted phonemes of one word: greedy (beam_size=1) or beam search.

    >>> # predict(model, "cat") -> ['K', 'AE', 'T']
    """
    w = validate_word(word)
    if beam_size == 1:
        return predict_batch(model, [w], max_phonemes=max_phonemes)[0]
    tgt_vocab = target_vocab()
    src, mask = _encode_words([w], source_vocab(), _device(model))
    best = beam_search(model, src, beam_size=beam_size, max_new_tokens=max_phonemes, length_penalty=length_penalty,
                       eos_id=tgt_vocab.eos_id, bos_id=tgt_vocab.bos_id, src_mask=mask)
    return tgt_vocab.decode(best[0].tolist())


def evaluate_g2p(
    predictions: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]]
) -> dict[str, float]:
    """Scores of predictions against their reference lists (several pronunciations per word allowed).

    wer: fraction of words whose prediction matches none of the references exactly (the G2P
    "word error rate"); per: phoneme edit distance to the closest reference / reference length;
    bleu: corpus BLEU (0-100) on phoneme sequences. Rates are fractions (0.25 = 25%).
    """
    if len(predictions) != len(refs):
        raise ValueError(f"got {len(predictions)} predictions but {len(refs)} reference lists")
    preds = [list(p) for p in predictions]
    ref_lists = [[list(r) for r in rs] for rs in refs]
    return {
        "wer": sequence_error_rate(preds, ref_lists),
        "per": phoneme_error_rate(preds, ref_lists),
        "bleu": corpus_bleu(preds, ref_lists),
        "n_words": len(preds),
    }


def paired_comparison(
    right_a: Sequence[bool], right_b: Sequence[bool], n_boot: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Two methods scored on the SAME words: how much does B change the word error rate, and is it noise?

    right_a[i], right_b[i]: whether A and B got word i right. Returns n, a_only (A right, B wrong),
    b_only, diff = WER(B) - WER(A) (a fraction: -0.01 = B makes 1 point fewer errors), low / high:
    the 95% paired bootstrap interval of diff (the words are resampled, the same resample for both
    methods), and p_value: McNemar's exact test (under "no difference" each word on which exactly one
    method is right is a fair coin). An interval that contains 0 means: not significant.

    >>> r = paired_comparison([1, 1, 0, 0] * 25, [1, 0, 1, 0] * 25); r["diff"], r["a_only"], r["b_only"], r["p_value"]
    (0.0, 25, 25, 1.0)
    """
    from course_lib.metrics import mcnemar_test, paired_bootstrap

    a, b = [bool(x) for x in right_a], [bool(x) for x in right_b]
    if not a or len(a) != len(b):
        raise ValueError(f"need two non-empty score lists on the same words, got {len(a)} and {len(b)}")
    boot = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)  # accuracy(A) - accuracy(B) = WER(B) - WER(A)
    test = mcnemar_test(a, b)
    return {"n": len(a), "a_only": test["a_only"], "b_only": test["b_only"], "diff": boot["diff"],
            "low": boot["low"], "high": boot["high"], "p_value": test["p_value"]}


@dataclass
class G2PEvaluator:
    """Called by `course_lib.training.train` as `eval_fn`: records the phoneme error rate and returns the validation loss.

    Greedy-decodes `words` (a small held-out set) and scores them against `refs`; the history of
    PER and WER is kept in `steps`, `per`, `wer`.
    """

    words: list[str]
    refs: dict[str, list[list[str]]]
    loss_batch: dict[str, torch.Tensor] | None = None
    steps: list[int] = field(default_factory=list)
    per: list[float] = field(default_factory=list)
    wer: list[float] = field(default_factory=list)
    step_fn: Callable[[], int] | None = None

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> float:
        was = model.training
        model.eval()
        preds = predict_batch(model, self.words)
        scores = evaluate_g2p(preds, [self.refs[w] for w in self.words])
        self.per.append(scores["per"])
        self.wer.append(scores["wer"])
        self.steps.append(self.step_fn() if self.step_fn else len(self.steps))
        loss = float("nan")
        if self.loss_batch is not None:
            loss = float(model(**self.loss_batch).loss)
        model.train(was)
        return loss


# ----------------------------------------------------------------------------- attention
@torch.no_grad()
def cross_attention(
    model: EncoderDecoder, word: str, phonemes: Sequence[str] | None = None, layer: int = -1
) -> tuple[list[str], list[str], torch.Tensor]:
    """Which letters each phoneme attended to: (letters, phonemes, weights (T, S)), mean over heads.

    Teacher-forces `phonemes` (default: the model's greedy prediction) and reads the decoder's
    cross-attention at `layer`; row t is the attention of the step that PREDICTS phoneme t
    (its query is the previous token), so the rows line up with the phonemes.
    """
    w = validate_word(word)
    tgt_vocab = target_vocab()
    phones = list(phonemes) if phonemes is not None else predict(model, w)
    n = model.config.n_decoder_layer
    if not -n <= layer < n:
        raise ValueError(f"layer must be in [-{n}, {n}), got {layer}")
    src, mask = _encode_words([w], source_vocab(), _device(model))
    tgt = torch.tensor([[tgt_vocab.bos_id] + tgt_vocab.encode(phones)], device=src.device)  # (1, T + 1)
    was = model.training
    model.eval()
    out = model(src, tgt, src_mask=mask, return_attentions=True)
    model.train(was)
    att = out.cross_attentions[layer][0].mean(0)  # (T + 1, S): mean over heads
    return list(w), phones + [EOS], att.cpu()


def plot_alignment(letters: Sequence[str], phonemes: Sequence[str], weights: torch.Tensor, ax: Any = None, title: str | None = None) -> Any:
    """Heatmap of a cross-attention map: phonemes (rows) against letters (columns). Returns the Axes."""
    from course_lib.viz import plot_attention

    ax = plot_attention(weights, tokens=list(phonemes), tokens_k=list(letters), ax=ax, title=title, annotate=False)
    ax.set_xlabel("letter (attended to)")
    ax.set_ylabel("predicted phoneme")
    ax.tick_params(axis="x", rotation=0)
    return ax


def pronunciation_widget(
    model: EncoderDecoder, dictionary: dict[str, list[list[str]]] | None = None, value: str = "transformer", beam_size: int = 1
) -> Any:
    """An ipywidgets box: type a word, see the predicted phonemes (and the dictionary's, if listed) and the attention map.

    Bad input (empty, digits, non-Latin letters) shows a clear message instead of a plot. See notebook 07.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    text = widgets.Text(value=value, description="Word:", placeholder="type an English word")
    layer = widgets.Dropdown(options=list(range(model.config.n_decoder_layer)), value=model.config.n_decoder_layer - 1,
                             description="Layer:")
    status = widgets.HTML()
    out = widgets.Output()

    def render(*_: Any) -> None:
        out.clear_output(wait=True)
        try:
            w = validate_word(text.value)
        except (ValueError, TypeError) as exc:
            status.value = f"<b style='color:#b00'>⚠ {exc}</b>"
            return
        phones = predict(model, w, beam_size=beam_size)
        known = (dictionary or {}).get(w)
        msg = f"<b>{w}</b> → /{' '.join(phones)}/"
        if known:
            ok = "✔ matches" if phones in known else "✘ differs from"
            msg += f" &nbsp; ({ok} the dictionary: {' | '.join('/' + ' '.join(p) + '/' for p in known)})"
        elif dictionary is not None:
            msg += " &nbsp; (not in the training dictionary: a genuine guess)"
        status.value = msg
        letters, rows, att = cross_attention(model, w, phones, layer=layer.value)
        with out:
            fig, ax = plt.subplots(figsize=(max(3.0, 0.4 * len(letters) + 1.5), max(3.0, 0.35 * len(rows) + 1.2)))
            plot_alignment(letters, rows, att, ax=ax, title=f"cross-attention, layer {layer.value} (mean of heads)")
            plt.show()

    text.observe(render, names="value")
    layer.observe(render, names="value")
    render()
    box = widgets.VBox([widgets.HBox([text, layer]), status, out])
    return box



# ----------------------------------------------------------------------------- torch.nn.Transformer
@torch.no_grad()
def _copy_mha(ours: torch.nn.Module, theirs: torch.nn.MultiheadAttention) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)


@torch.no_grad()
def _copy_norm(ours: torch.nn.Module, theirs: torch.nn.LayerNorm) -> None:
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


@torch.no_grad()
def _copy_ffn(ours: torch.nn.Module, layer: torch.nn.Module) -> None:
    layer.linear1.weight.copy_(ours.fc1.weight)
    layer.linear1.bias.copy_(ours.fc1.bias)
    layer.linear2.weight.copy_(ours.fc2.weight)
    layer.linear2.bias.copy_(ours.fc2.bias)


def _make_torch_transformer(c: EncoderDecoderConfig) -> torch.nn.Transformer:
    return torch.nn.Transformer(
        d_model=c.d_model, nhead=c.n_head, num_encoder_layers=c.n_encoder_layer, num_decoder_layers=c.n_decoder_layer,
        dim_feedforward=c.d_ff or 4 * c.d_model, dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
        batch_first=True, norm_first=c.pre_norm,
    )


def to_torch_transformer(model: EncoderDecoder) -> torch.nn.Transformer:
    """The encoder and decoder stacks of `model` as a `torch.nn.Transformer` with the same weights.

    The architectures coincide: exact GELU, LayerNorm eps 1e-5, and `norm_first` = our `pre_norm`.
    A pre-LN model ends each stack with a LayerNorm (our `enc_norm` / `dec_norm`), which
    nn.Transformer's `encoder.norm` / `decoder.norm` play. A post-LN model (`pre_norm=False`, the 2017
    paper) has no final norms, but nn.Transformer always builds them, so they are removed
    (`norm=None`, which `nn.TransformerEncoder` and `nn.TransformerDecoder` accept).
    What nn.Transformer leaves out (embeddings, positions, output layer) stays ours.
    """
    c = model.config
    with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first was True": harmless
        warnings.simplefilter("ignore", UserWarning)
        tt = _make_torch_transformer(c)
    # keep padded positions as ordinary numbers (a post-LN encoder would otherwise pack them as a nested tensor)
    tt.encoder.enable_nested_tensor = tt.encoder.use_nested_tensor = False
    for ours, theirs in zip(model.encoder, tt.encoder.layers):
        _copy_mha(ours.attn, theirs.self_attn)
        _copy_ffn(ours.ffn, theirs)
        _copy_norm(ours.norm1, theirs.norm1)
        _copy_norm(ours.norm2, theirs.norm2)
    for ours, theirs in zip(model.decoder, tt.decoder.layers):
        _copy_mha(ours.self_attn, theirs.self_attn)
        _copy_mha(ours.cross_attn, theirs.multihead_attn)
        _copy_ffn(ours.ffn, theirs)
        for a, b in ((ours.norm1, theirs.norm1), (ours.norm2, theirs.norm2), (ours.norm3, theirs.norm3)):
            _copy_norm(a, b)
    if c.pre_norm:
        _copy_norm(model.enc_norm, tt.encoder.norm)
        _copy_norm(model.dec_norm, tt.decoder.norm)
    else:  # post-LN: each layer already ends with a LayerNorm; no final one
        tt.encoder.norm, tt.decoder.norm = None, None
    return tt.eval()


@torch.no_grad()
def torch_transformer_logits(
    model: EncoderDecoder, tt: torch.nn.Transformer, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits (B, T, V) computed with our embeddings and output layer around `tt` (from `to_torch_transformer`)."""
    was = model.training
    model.eval()
    x = model._embed(src, model.src_emb, "src")  # (B, S, d)
    y = model._embed(tgt, model.tgt_emb, "tgt")  # (B, T, d)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)  # (T, T) 0 / -inf
    pad = None if src_mask is None else src_mask == 0  # (B, S) True = padding (PyTorch's convention)
    h = tt(x, y, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
    model.train(was)
    return model.lm_head(h)  # (B, T, V)
