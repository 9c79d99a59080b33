"""Adapting a pretrained BERT to a classification task: five ways, from a probe to LoRA. See notebook 08.

What is here:
- Data: `encode_texts` (WordPiece ids, truncated), `make_batches` (dynamic padding, batches of
  similar lengths, seeded shuffles) -> dicts `{input_ids, attention_mask, labels}`.
- Freezing: `freeze`, `unfreeze`, `freeze_bert_except_top`, `trainable_summary`.
- `mean_pool` and `ClassificationHead` (pooling "cls" or "mean" -> dropout -> Linear).
- `BertClassifier`: any `course_lib.models.BERT` + a head, with an optional `SoftPrompt`
  (prompt tuning: trainable vectors inserted after [CLS], the encoder frozen).
- Feature caching: `encode_hidden_states` runs the frozen lower layers once;
  `TopLayersClassifier` trains the top blocks (and/or LoRA in them) on those cached states,
  the same numbers as the whole model with its lower layers frozen, several times cheaper.
- LoRA from scratch: `LoRALinear` (y = W x + b + (alpha / r) B A x), `add_lora`, `merge_lora`,
  `unmerge_lora`, `lora_parameters`; merged and unmerged models give the same outputs.
- `fit` (the course's `training.train` loop with a classifier's defaults), `predict`, `accuracy_of`.
- Comparing methods on the same test sentences: `correct_of`, `accuracy_interval` (Wilson),
  `paired_bootstrap` and `mcnemar_test` (paired differences), `majority_baseline`.
- `to_transformers`: the same weights in Hugging Face's `BertForSequenceClassification`.
- `cls_attention`, `plot_cls_attention`, `sentiment_widget`: what the [CLS] token looks at.

Leaves out: adapters other than LoRA (bottleneck adapters, IA3), prefix tuning of every layer
(P-tuning v2), quantised LoRA, mixed precision, multi-label tasks.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import padding_mask
from course_lib.metrics import accuracy_interval, mcnemar_test, paired_bootstrap  # re-exported for notebooks 08 and 10
from course_lib.models import BERT, BertForSequenceClassification, ModelOutput, count_parameters
from course_lib.utils import close_progress

__all__ = [
    "encode_texts",
    "make_batches",
    "freeze",
    "unfreeze",
    "freeze_bert_except_top",
    "trainable_summary",
    "set_dropout",
    "mean_pool",
    "ClassificationHead",
    "SoftPrompt",
    "BertClassifier",
    "embed",
    "run_blocks",
    "encode_hidden_states",
    "cached_batches",
    "TopLayersClassifier",
    "LoRALinear",
    "add_lora",
    "merge_lora",
    "unmerge_lora",
    "lora_parameters",
    "train_linear_probe",
    "fit",
    "predict",
    "accuracy_of",
    "correct_of",
    "accuracy_interval",
    "paired_bootstrap",
    "mcnemar_test",
    "majority_baseline",
    "to_transformers",
    "cls_attention",
    "plot_cls_attention",
    "sentiment_widget",
]

LABEL_NAMES = ("negative", "positive")


# ============================================================================= data
def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int = 64) -> list[list[int]]:
    """Token ids of each text ([CLS] ... [SEP]), truncated to `max_length`; no padding.

    `tokenizer` is a Hugging Face tokenizer (callable) or any object with `.encode(text) -> ids`.
    >>> # encode_texts(tok, ["a gem"]) -> [[101, 1037, 17070, 102]]
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string; wrap it in a list")
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    texts = list(texts)
    if callable(tokenizer):
        return [list(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    out = []
    for t in texts:
        ids = list(tokenizer.encode(t))
        out.append(ids[: max_length - 1] + ids[-1:] if len(ids) > max_length else ids)
    return out


def _pad(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask  # (B, T), (B, T)


def _batch_order(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int, bucket: int) -> list[list[int]]:
    """Indices grouped into batches: shuffled (seeded), then sorted by length inside chunks of `bucket` batches."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    idx = list(range(len(lengths)))
    if shuffle:
        random.Random(seed).shuffle(idx)
        chunk = batch_size * bucket
        idx = [i for s in range(0, len(idx), chunk) for i in sorted(idx[s : s + chunk], key=lambda j: lengths[j])]
        batches = [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
        random.Random(seed + 1).shuffle(batches)
        return batches
    idx.sort(key=lambda j: lengths[j])  # evaluation: shortest first, the least padding
    return [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]


def make_batches(
    ids: Sequence[Sequence[int]],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    bucket: int = 20,
    pad_id: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Padded batches `{input_ids (B, T), attention_mask (B, T), labels (B,), index (B,)}`.

    Dynamic padding: each batch is padded to its own longest sequence. With `shuffle=True` the
    order is random (seeded) but each batch holds sequences of similar length (sorted inside
    chunks of `bucket` batches), so little compute is spent on [PAD]. `index` gives each row's
    position in `ids`, to put predictions back in order.
    """
    if labels is not None and len(labels) != len(ids):
        raise ValueError(f"ids and labels must have the same length, got {len(ids)} and {len(labels)}")
    if len(ids) == 0:
        raise ValueError("ids is empty")
    out = []
    for rows in _batch_order([len(s) for s in ids], batch_size, shuffle, seed, bucket):
        input_ids, mask = _pad([ids[i] for i in rows], pad_id)
        b = {"input_ids": input_ids, "attention_mask": mask}
        if labels is not None:
            b["labels"] = torch.tensor([int(labels[i]) for i in rows], dtype=torch.long)
        b["index"] = torch.tensor(rows, dtype=torch.long)
        out.append(b)
    return out


def _epochs(make: Callable[[int], list], seed: int = 0) -> Callable[[], Any]:
    """A zero-argument batch source that reshuffles each epoch: make(epoch_seed) -> list of batches."""
    state = {"epoch": 0, "batches": make(seed), "i": 0}

    def next_batch() -> Any:
        if state["i"] >= len(state["batches"]):
            state["epoch"] += 1
            state["batches"], state["i"] = make(seed + 1000 * state["epoch"]), 0
        state["i"] += 1
        return state["batches"][state["i"] - 1]

    return next_batch


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ============================================================================= freezing
def freeze(module: nn.Module) -> nn.Module:
    """Set requires_grad=False on every parameter of `module` (returns it)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Set requires_grad=True on every parameter of `module` (returns it)."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _find_bert(model: nn.Module) -> BERT:
    if isinstance(model, BERT):
        return model
    bert = getattr(model, "bert", None)
    if isinstance(bert, BERT):
        return bert
    raise TypeError(f"expected a course_lib.models.BERT or a model with a .bert attribute, got {type(model).__name__}")


def freeze_bert_except_top(model: nn.Module, n_top: int, train_embeddings: bool = False) -> nn.Module:
    """Freeze a model's BERT encoder except its top `n_top` blocks (and the pooler); other parts stay trainable.

    n_top=0 freezes the whole encoder (a probe); n_top=n_layer trains every block.
    >>> # freeze_bert_except_top(clf, 2)  # blocks 4 and 5 of MiniLM's 6 train, 0-3 are frozen
    """
    bert = _find_bert(model)
    n = len(bert.blocks)
    if not isinstance(n_top, int) or not 0 <= n_top <= n:
        raise ValueError(f"n_top must be an int in [0, {n}] (the encoder has {n} blocks), got {n_top!r}")
    unfreeze(model)
    freeze(bert)
    for block in bert.blocks[n - n_top :]:
        unfreeze(block)
    if bert.pooler is not None and n_top > 0:
        unfreeze(bert.pooler)
    if train_embeddings:
        for m in (bert.tok_emb, bert.pos_emb, bert.seg_emb, bert.emb_norm):
            unfreeze(m)
    return model


def trainable_summary(model: nn.Module) -> dict[str, int | float]:
    """{'trainable': n, 'total': n, 'fraction': n / total} (shared tensors counted once)."""
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Set every dropout probability of a course model to `p` (nn.Dropout layers, attention, config).

    `set_dropout(model, 0.0)` makes training deterministic, e.g. to compare with transformers.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    from course_lib.attention import MultiHeadAttention

    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        elif isinstance(m, MultiHeadAttention):
            m.dropout = p
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "dropout"):
            cfg.dropout = p
    return model


# ============================================================================= heads
def mean_pool(h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the hidden states of the real tokens: h (B, T, d), mask (B, T) of 1/0 -> (B, d).

    >>> mean_pool(torch.tensor([[[1.], [3.], [9.]]]), torch.tensor([[1, 1, 0]]))
    tensor([[2.]])
    """
    if h.dim() != 3:
        raise ValueError(f"h must have shape (B, T, d), got {tuple(h.shape)}")
    if attention_mask is None:
        return h.mean(dim=1)
    if attention_mask.shape != h.shape[:2]:
        raise ValueError(f"attention_mask must have shape {tuple(h.shape[:2])}, got {tuple(attention_mask.shape)}")
    m = attention_mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, d)


class ClassificationHead(nn.Module):
    """Pool the token states ("cls": the first token; "mean": the average of real tokens), dropout, Linear.

    forward(h (B, T, d), attention_mask (B, T)) -> logits (B, num_labels). See notebook 08.
    """

    def __init__(self, d_model: int, num_labels: int = 2, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an int >= 2, got {num_labels!r}")
        self.pooling = pooling
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, num_labels)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return h[:, 0] if self.pooling == "cls" else mean_pool(h, attention_mask)  # (B, d)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.drop(self.pool(h, attention_mask)))  # (B, num_labels)


def _output(logits: torch.Tensor, labels: torch.Tensor | None, attentions: Any = None) -> ModelOutput:
    loss = None
    if labels is not None:
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
        loss = F.cross_entropy(logits, labels)
    return ModelOutput(logits, loss, attentions=attentions)


# ============================================================================= running the encoder in pieces
def embed(bert: BERT, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
          inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """BERT's input layer: (token or given vectors) + segment + position, LayerNorm, dropout -> (B, T, d)."""
    x = bert.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d)
    if token_type_ids is None:
        token_type_ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
    T = x.size(1)
    if T > bert.config.block_size:
        raise ValueError(f"{T} positions is longer than the model's {bert.config.block_size}")
    x = x + bert.seg_emb(token_type_ids) + bert.pos_emb(T)
    return bert.drop(bert.emb_norm(x))


def run_blocks(
    bert: BERT,
    x: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    start: int = 0,
    end: int | None = None,
    return_attentions: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run blocks[start:end] of `bert` on hidden states x (B, T, d) -> (x, attention weights per block)."""
    if x.dim() != 3 or x.size(-1) != bert.config.d_model:
        raise ValueError(f"x must have shape (B, T, d_model={bert.config.d_model}), got {tuple(x.shape)}")
    mask = None
    if attention_mask is not None:
        if attention_mask.shape != x.shape[:2]:
            raise ValueError(f"attention_mask must have shape {tuple(x.shape[:2])}, got {tuple(attention_mask.shape)}")
        mask = padding_mask(attention_mask)  # (B, 1, 1, T)
    weights = []
    for block in bert.blocks[start:end]:
        x, w = block(x, mask=mask, return_weights=return_attentions)
        if return_attentions:
            weights.append(w)
    return x, weights


class SoftPrompt(nn.Module):
    """Prompt tuning: `n_tokens` trainable vectors inserted right after [CLS] (Lester et al., 2021).

    insert(x (B, T, d), attention_mask (B, T)) -> (B, T + n, d), (B, T + n). Initialised from the
    embeddings of real words (`init_ids`), which trains faster than random vectors. See notebook 08.
    """

    def __init__(self, n_tokens: int, d_model: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(n_tokens, int) or n_tokens < 1:
            raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
        if init is not None:
            if init.shape != (n_tokens, d_model):
                raise ValueError(f"init must have shape ({n_tokens}, {d_model}), got {tuple(init.shape)}")
            vectors = init.detach().clone().float()
        else:
            vectors = torch.randn(n_tokens, d_model) * 0.02
        self.n_tokens = n_tokens
        self.vectors = nn.Parameter(vectors)  # (n, d)

    def insert(self, x: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = x.size(0)
        p = self.vectors.unsqueeze(0).expand(B, -1, -1).to(x.dtype)  # (B, n, d)
        x = torch.cat([x[:, :1], p, x[:, 1:]], dim=1)  # [CLS] p1..pn tokens...
        ones = torch.ones(B, self.n_tokens, dtype=attention_mask.dtype, device=attention_mask.device)
        return x, torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)


class BertClassifier(nn.Module):
    """A BERT encoder + a `ClassificationHead`, optionally with a `SoftPrompt` (prompt tuning).

    forward(input_ids (B, T), attention_mask (B, T), labels (B,) or None) -> ModelOutput(logits (B, C), loss).
    >>> # clf = BertClassifier(BERT.from_pretrained(), ClassificationHead(384))
    See notebook 08.
    """

    def __init__(self, bert: BERT, head: nn.Module, prompt: SoftPrompt | None = None) -> None:
        super().__init__()
        if not isinstance(bert, BERT):
            raise TypeError(f"bert must be a course_lib.models.BERT, got {type(bert).__name__}")
        self.bert, self.head, self.prompt = bert, head, prompt

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_attentions: bool = False,
        **_: Any,
    ) -> ModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.bert.tok_emb(input_ids)  # (B, T, d)
        if self.prompt is not None:
            x, attention_mask = self.prompt.insert(x, attention_mask)  # (B, T + n, d)
        x = embed(self.bert, input_ids, inputs_embeds=x)
        x, weights = run_blocks(self.bert, x, attention_mask, return_attentions=return_attentions)
        logits = self.head(x, attention_mask)
        return _output(logits, labels, tuple(weights) if return_attentions else None)


# ============================================================================= feature caching
@torch.no_grad()
def encode_hidden_states(
    bert: BERT,
    ids: Sequence[Sequence[int]],
    layers: Sequence[int] = (6,),
    batch_size: int = 64,
    progress: bool = False,
) -> dict[int, list[torch.Tensor]]:
    """Run the frozen encoder once: for each layer in `layers`, one (T_i, d) tensor per sequence.

    Layer 0 is the embeddings' output, layer k the output of block k (1-based), as
    `hidden_states` in Hugging Face. Runs only the blocks it needs, shortest sequences first.
    >>> # cache = encode_hidden_states(minilm, train_ids, layers=(4, 6))  # cache[4][i]: (T_i, 384)
    """
    n = len(bert.blocks)
    layers = sorted(set(layers))
    if not layers or layers[0] < 0 or layers[-1] > n:
        raise ValueError(f"layers must lie in [0, {n}], got {layers}")
    was_training = bert.training
    bert.eval()
    out: dict[int, list[torch.Tensor | None]] = {k: [None] * len(ids) for k in layers}
    batches = make_batches(ids, batch_size=batch_size, pad_id=bert.config.pad_id)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        batches = bar = tqdm(batches, desc="caching", mininterval=1.0)
    for b in batches:
        device = _device_of(bert)
        mask, lens = b["attention_mask"].to(device), b["attention_mask"].sum(1).tolist()
        x = embed(bert, b["input_ids"].to(device))
        done = 0
        for k in layers:
            x, _ = run_blocks(bert, x, mask, start=done, end=k)
            done = k
            for j, i in enumerate(b["index"].tolist()):
                out[k][i] = x[j, : lens[j]].cpu().clone()  # (T_i, d)
    close_progress(bar)
    bert.train(was_training)
    return out  # type: ignore[return-value]


def cached_batches(
    states: Sequence[torch.Tensor],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    bucket: int = 20,
) -> list[dict[str, torch.Tensor]]:
    """Padded batches of cached hidden states: `{hidden (B, T, d), attention_mask (B, T), labels, index}`."""
    if labels is not None and len(labels) != len(states):
        raise ValueError(f"states and labels must have the same length, got {len(states)} and {len(labels)}")
    out = []
    for rows in _batch_order([s.size(0) for s in states], batch_size, shuffle, seed, bucket):
        T, d = max(states[i].size(0) for i in rows), states[rows[0]].size(1)
        hidden = torch.zeros(len(rows), T, d)
        mask = torch.zeros(len(rows), T, dtype=torch.long)
        for j, i in enumerate(rows):
            hidden[j, : states[i].size(0)] = states[i].float()
            mask[j, : states[i].size(0)] = 1
        b = {"hidden": hidden, "attention_mask": mask}
        if labels is not None:
            b["labels"] = torch.tensor([int(labels[i]) for i in rows], dtype=torch.long)
        b["index"] = torch.tensor(rows, dtype=torch.long)
        out.append(b)
    return out


class TopLayersClassifier(nn.Module):
    """Blocks `start`.. of a BERT + a head, run on cached hidden states of layer `start`.

    forward(hidden (B, T, d), attention_mask (B, T), labels) -> ModelOutput. Shares the blocks with
    `bert`, so after training `BertClassifier(bert, head)` is the whole fine-tuned model.
    start = n_layer trains the head alone (a probe on the last layer's states). See notebook 08.
    """

    def __init__(self, bert: BERT, head: nn.Module, start: int) -> None:
        super().__init__()
        n = len(bert.blocks)
        if not isinstance(start, int) or not 0 <= start <= n:
            raise ValueError(f"start must be an int in [0, {n}], got {start!r}")
        self.start, self.head = start, head
        self.blocks = nn.ModuleList(bert.blocks[start:])  # shared with `bert`, not copied
        self._bert = [bert]  # a plain list: not registered twice as a submodule

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_: Any) -> ModelOutput:
        x, _w = run_blocks(self._bert[0], hidden, attention_mask, start=self.start)
        return _output(self.head(x, attention_mask), labels)


# ============================================================================= LoRA
class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: y = W x + b + (alpha / r) * B (A x).

    A (r, d_in) starts random, B (d_out, r) starts at zero, so training starts from the pretrained
    model exactly. `merge()` folds B A into W (no extra cost at inference); `unmerge()` undoes it.
    >>> lin = LoRALinear(nn.Linear(8, 4), r=2); lin(torch.zeros(3, 8)).shape
    torch.Size([3, 4])
    See notebook 08.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"rank r must be a positive int, got {r!r}")
        self.base = freeze(base)
        self.r, self.alpha, self.scaling = r, float(alpha), float(alpha) / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and the LoRA paper's code)
        self.drop = nn.Dropout(dropout)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / r) * B A, shape (d_out, d_in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(F.linear(self.drop(x), self.lora_A), self.lora_B)  # (..., d_out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def add_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    layers: Iterable[int] | None = None,
    dropout: float = 0.0,
) -> list[LoRALinear]:
    """Wrap the named linear layers of the chosen BERT blocks with `LoRALinear` (in place); returns the wrappers.

    targets: names inside a block: "q_proj", "k_proj", "v_proj", "out_proj" (attention) or
    "fc1", "fc2" (feed-forward). layers: block indices (default: all). The rest of the model is
    not frozen here: call `freeze` first to train LoRA only.
    """
    bert = _find_bert(model)
    n = len(bert.blocks)
    layers = list(range(n)) if layers is None else list(layers)
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < n]
    if bad:
        raise ValueError(f"layers must be block indices in [0, {n}), got {bad}")
    allowed = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "out_proj": "attn", "fc1": "ffn", "fc2": "ffn"}
    unknown = [t for t in targets if t not in allowed]
    if unknown or not targets:
        raise ValueError(f"targets must be names among {sorted(allowed)}, got {list(targets)}")
    wrapped = []
    for i in layers:
        for t in targets:
            parent = getattr(bert.blocks[i], allowed[t])
            lin = getattr(parent, t)
            if isinstance(lin, LoRALinear):
                raise ValueError(f"block {i} {t} already has LoRA")
            lora = LoRALinear(lin, r=r, alpha=alpha, dropout=dropout)
            setattr(parent, t, lora)
            wrapped.append(lora)
    return wrapped


def _loras(model: nn.Module) -> list[LoRALinear]:
    found = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not found:
        raise ValueError("the model has no LoRALinear layers: call add_lora first")
    return found


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight (W <- W + (alpha/r) B A); outputs do not change."""
    for m in _loras(model):
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo `merge_lora` (W <- W - (alpha/r) B A), back to the separate low-rank path."""
    for m in _loras(model):
        m.unmerge()
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices of every LoRALinear in `model`."""
    return [p for m in _loras(model) for p in (m.lora_A, m.lora_B)]


# ============================================================================= training and evaluation
@dataclass
class FitResult:
    """What `fit` returns: the training history, its seconds and the trainable parameter count."""

    history: Any
    seconds: float
    trainable: int


def fit(
    model: nn.Module,
    batches: Callable[[int], list] | list,
    steps: int,
    lr: float = 1e-3,
    warmup: int = 0,
    weight_decay: float = 0.01,
    max_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> FitResult:
    """Train the trainable parameters of `model` for `steps` AdamW steps with `course_lib.training.train`.

    batches: a list of batch dicts (cycled, reshuffled each epoch) or a function epoch_seed -> list.
    Linear warm-up then cosine decay to lr / 10; gradient norm clipped to 1.
    """
    from course_lib.training import TrainConfig, train

    if isinstance(batches, list):
        data = batches

        def reshuffle(s: int) -> list:
            order = list(range(len(data)))
            random.Random(s).shuffle(order)
            return [data[i] for i in order]

        source = _epochs(reshuffle, seed)
    elif callable(batches):
        source = _epochs(batches, seed)
    else:
        raise TypeError(f"batches must be a list of batch dicts or a function seed -> list, got {type(batches).__name__}")

    device = _device_of(model)

    def strip(b: dict) -> dict:
        return {k: v.to(device) for k, v in b.items() if k != "index"}

    cfg = TrainConfig(max_steps=steps, max_seconds=max_seconds, lr=lr, warmup_steps=warmup, weight_decay=weight_decay,
                      betas=(0.9, 0.999), eval_every=0, progress=progress, seed=seed)
    t0 = time.perf_counter()
    hist = train(model, lambda: strip(source()), cfg)
    return FitResult(hist, time.perf_counter() - t0, count_parameters(model, trainable_only=True))


def train_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, steps: int = 300, lr: float = 1e-2,
    weight_decay: float = 1e-4, seed: int = 0,
) -> nn.Linear:
    """Logistic regression on fixed features: features (N, d), labels (N,) -> a trained nn.Linear(d, C).

    Full-batch Adam on the cross-entropy; features are used as given (e.g. mean-pooled embeddings).
    """
    if features.dim() != 2:
        raise ValueError(f"features must have shape (N, d), got {tuple(features.shape)}")
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
    torch.manual_seed(seed)
    probe = nn.Linear(features.size(1), int(labels.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = features.detach().float(), labels.long()
    for _ in range(steps):
        loss = F.cross_entropy(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def predict(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, C), labels (N,)) in the original order of the data (batches carry `index`).

    Labels are -1 where the batches have none. Runs in eval mode.
    """
    was_training = model.training
    model.eval()
    n = sum(len(b["index"]) for b in batches)
    probs, labels = None, torch.full((n,), -1, dtype=torch.long)
    device = _device_of(model)
    for b in batches:
        inputs = {k: v.to(device) for k, v in b.items() if k not in ("labels", "index")}
        out = model(**inputs)
        logits = out.logits if hasattr(out, "logits") else out
        p = logits.float().softmax(-1).cpu()
        if probs is None:
            probs = torch.zeros(n, p.size(-1))
        probs[b["index"]] = p
        if "labels" in b:
            labels[b["index"]] = b["labels"]
    model.train(was_training)
    return probs, labels


def accuracy_of(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Fraction of correct argmax predictions over labelled batches."""
    probs, labels = predict(model, batches)
    if bool((labels < 0).any()):
        raise ValueError("every batch needs labels to compute an accuracy")
    return float((probs.argmax(-1) == labels).float().mean())


# ============================================================================= comparing methods on the same test sentences
def correct_of(probs: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Which items the argmax prediction gets right: probs (N, C), labels (N,) -> bool (N,)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if probs.dim() != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must have shape (N, C) with N = {labels.shape[0]} labels, got {tuple(probs.shape)}")
    return probs.argmax(-1).cpu() == labels.cpu()


def majority_baseline(train_labels: Sequence[int], test_labels: Sequence[int]) -> tuple[int, torch.Tensor]:
    """(the most frequent training label, which test items that constant guess gets right (bool (N,)))."""
    if len(train_labels) == 0 or len(test_labels) == 0:
        raise ValueError("need at least one training and one test label")
    counts = torch.bincount(torch.as_tensor(train_labels, dtype=torch.long))
    label = int(counts.argmax())
    return label, torch.as_tensor(test_labels, dtype=torch.long) == label


# ============================================================================= transformers
def to_transformers(model: BertForSequenceClassification) -> Any:
    """The same weights in `transformers.BertForSequenceClassification` (eager attention), same dropout.

    Used to check that our classifier trains exactly like Hugging Face's. See notebook 08.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    from course_lib.models import bert_key_map

    if not isinstance(model, BertForSequenceClassification):
        raise TypeError(f"expected course_lib.models.BertForSequenceClassification, got {type(model).__name__}")
    c = model.config
    hf_cfg = transformers.BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layer, num_attention_heads=c.n_head,
        intermediate_size=c.d_ff, max_position_embeddings=c.block_size, type_vocab_size=c.type_vocab_size,
        hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout, layer_norm_eps=c.eps,
        pad_token_id=c.pad_id, num_labels=c.num_labels, hidden_act="gelu", classifier_dropout=None,
    )
    hf = transformers.BertForSequenceClassification(hf_cfg)
    hf.config._attn_implementation = "eager"
    ours = model.state_dict()
    state = {"bert." + k: ours["bert." + v] for k, v in bert_key_map(c.n_layer).items() if not k.startswith("cls.")}
    state["classifier.weight"], state["classifier.bias"] = ours["classifier.weight"], ours["classifier.bias"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and not k.endswith("token_type_ids")]
    if missing or unexpected:
        raise ValueError(f"weights did not line up: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return hf.train(model.training)


# ============================================================================= [CLS] attention and the widget
@torch.no_grad()
def cls_attention(model: BertClassifier, tokenizer: Any, text: str, max_length: int = 64,
                  layer: int = -1) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(tokens, attention of [CLS] to each token (T,) averaged over heads, class probabilities (C,)).

    `layer` picks the block (-1: the last). Soft-prompt positions, if any, are dropped from the weights.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    ids = encode_texts(tokenizer, [text], max_length)[0]
    was_training = model.training
    model.eval()
    device = _device_of(model)
    x = torch.tensor([ids], device=device)
    out = model(x, torch.ones_like(x), return_attentions=True)
    model.train(was_training)
    w = out.attentions[layer][0, :, 0].mean(0).cpu()  # (T',) [CLS] row, mean over heads
    if getattr(model, "prompt", None) is not None:
        n = model.prompt.n_tokens
        w = torch.cat([w[:1], w[1 + n :]])
    tokens = tokenizer.convert_ids_to_tokens(ids) if hasattr(tokenizer, "convert_ids_to_tokens") else [str(i) for i in ids]
    return tokens, w, out.logits[0].softmax(-1).cpu()


def plot_cls_attention(tokens: Sequence[str], weights: torch.Tensor, probs: torch.Tensor | None = None,
                       ax: Any = None, label_names: Sequence[str] = LABEL_NAMES) -> Any:
    """A bar per token: how much the [CLS] token attends to it; the title gives the prediction."""
    import matplotlib.pyplot as plt

    if len(tokens) != len(weights):
        raise ValueError(f"need one weight per token, got {len(tokens)} tokens and {len(weights)} weights")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.45 * len(tokens)), 2.6))
    ax.bar(range(len(tokens)), [float(w) for w in weights], color="C0")
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(tokens, rotation=60, ha="right")
    ax.set_ylabel("[CLS] attention")
    if probs is not None:
        k = int(torch.as_tensor(probs).argmax())
        ax.set_title(f"predicted: {label_names[k]} (p = {float(probs[k]):.2f})")
    ax.figure.tight_layout()
    return ax


def sentiment_widget(model: BertClassifier, tokenizer: Any, text: str = "a gorgeous, witty, seductive movie.",
                     max_length: int = 64, label_names: Sequence[str] = LABEL_NAMES, layer: int = -1) -> Any:
    """A labelled text box: type a review, see the predicted sentiment, its probability and the [CLS] attention."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    box = widgets.Text(value=text, description="Review:", layout=widgets.Layout(width="90%"),
                       continuous_update=False, style={"description_width": "initial"})
    result = widgets.HTML()
    plot = widgets.Output()

    def update(*_: Any) -> None:
        if not box.value.strip():
            result.value = "<i>type a sentence</i>"
            return
        tokens, w, probs = cls_attention(model, tokenizer, box.value, max_length, layer)
        k = int(probs.argmax())
        result.value = f"<b>{label_names[k]}</b> with probability {float(probs[k]):.2f}"
        with plot:
            plot.clear_output(wait=True)
            ax = plot_cls_attention(tokens, w, probs, label_names=label_names)
            display(ax.figure)
            plt.close(ax.figure)

    box.observe(update, names="value")
    update()
    return widgets.VBox([box, result, plot])
