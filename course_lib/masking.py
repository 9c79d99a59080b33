"""BERT's masked-language-model (MLM) inputs: the 80/10/10 masking rule and what surrounds it.

What is here:
- `mask_tokens`: choose `mask_prob` (15%) of the ordinary tokens; of those, 80% become `[MASK]`,
  10% a random ordinary token, 10% stay as they are; labels hold the original id at chosen
  positions and -100 (ignored by the loss) everywhere else. Special and padding tokens are never
  chosen. Seeded with a `torch.Generator` or an int, so a result can be reproduced.
- `special_tokens_mask`: which positions hold special tokens.
- `bert_inputs`: `[CLS] A [SEP] B [SEP]` with segment ids and attention mask, truncated and padded.
- `pack_for_mlm`: documents -> fixed-length `[CLS] ... [SEP]` rows for pretraining (no padding).
- `GatheredMLM`: computes BERT's MLM head only at the chosen positions (as the original BERT's
  `masked_lm_positions`): the same loss as `BertForMaskedLM`, several times less work in the head.
- `masking_html` / `masking_widget`: show which tokens the rule changes and how (ipywidgets).
- `clean_review`, `save_tiny_bert`, `load_tiny_bert`: the tiny BERT that notebook 05 pretrains on
  IMDB reviews, saved under `data/checkpoints/tiny_bert/` for notebook 08.

Leaves out: whole-word masking, span masking (SpanBERT, T5), dynamic padding collators and the
next-sentence-prediction data pipeline (notebook 05 builds a small one by hand).
See notebook 05.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.utils import check_token_ids

__all__ = [
    "SPECIAL_TOKENS",
    "KIND_NAMES",
    "MaskedInputs",
    "special_tokens_mask",
    "mask_tokens",
    "bert_inputs",
    "pack_for_mlm",
    "GatheredMLM",
    "masking_rows",
    "masking_html",
    "masking_widget",
    "clean_review",
    "TINY_BERT_DIR",
    "TOKENIZER_FILE",
    "save_tiny_bert",
    "load_tiny_bert",
    "tiny_bert_available",
]

#: The special tokens of the course's tiny BERT tokenizer (BERT's names).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: What `MaskedInputs.kinds` holds at each position.
KIND_NAMES = {0: "not chosen", 1: "[MASK]", 2: "random", 3: "kept"}
NOT_CHOSEN, MASKED, RANDOM, KEPT = 0, 1, 2, 3

IGNORE_INDEX = -100


class MaskedInputs(NamedTuple):
    """What `mask_tokens` returns: the model's input, the loss targets and what happened where."""

    input_ids: torch.Tensor  # (..., T) ids after masking
    labels: torch.Tensor  # (..., T) original id at chosen positions, -100 elsewhere
    kinds: torch.Tensor  # (..., T) 0 not chosen, 1 [MASK], 2 random token, 3 kept (see KIND_NAMES)


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def special_tokens_mask(input_ids: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """True where `input_ids` holds one of `special_ids`.

    >>> special_tokens_mask(torch.tensor([2, 7, 8, 3, 0]), [0, 2, 3]).tolist()
    [True, False, False, True, True]
    """
    ids = check_token_ids(input_ids, "input_ids")
    special = torch.tensor(sorted({int(i) for i in special_ids}), dtype=ids.dtype, device=ids.device)
    return torch.isin(ids, special)


def mask_tokens(
    input_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    mask_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | int | None = None,
) -> MaskedInputs:
    """BERT's masking: choose `mask_prob` of the ordinary tokens; 80% -> [MASK], 10% -> random, 10% kept.

    Each ordinary token is chosen independently with probability `mask_prob` (as Hugging Face's
    collator; the original BERT rounded to an exact count per sequence). Tokens in `special_ids`
    and positions where `attention_mask` is 0 (padding) are never chosen. Random replacements are
    drawn uniformly from the ordinary ids (never a special token). `generator` (a torch.Generator
    or an int seed) makes the result reproducible.
    >>> out = mask_tokens(torch.tensor([[2, 10, 11, 12, 3]]), mask_id=4, vocab_size=20,
    ...                   special_ids=[0, 1, 2, 3, 4], mask_prob=1.0, mask_frac=1.0, random_frac=0.0)
    >>> out.input_ids.tolist(), out.labels.tolist()
    ([[2, 4, 4, 4, 3]], [[-100, 10, 11, 12, -100]])

    See notebook 05.
    """
    ids = check_token_ids(input_ids, "input_ids")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not isinstance(mask_id, int) or not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be an int in [0, vocab_size={vocab_size}), got {mask_id!r}")
    for name, p in (("mask_prob", mask_prob), ("mask_frac", mask_frac), ("random_frac", random_frac)):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    if mask_frac + random_frac > 1.0 + 1e-9:
        raise ValueError(f"mask_frac + random_frac must be <= 1 (the rest is kept), got {mask_frac} + {random_frac}")
    check_token_ids(ids, "input_ids", vocab_size)
    special = sorted({int(i) for i in special_ids} | {mask_id})
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != ids.shape:
            got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must be a tensor of shape {tuple(ids.shape)} (1 = real token), got {got}")
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[[i for i in special if 0 <= i < vocab_size]] = False
    candidates = ordinary.nonzero().squeeze(1)  # (V_ordinary,) ids a random replacement may take
    if random_frac > 0 and candidates.numel() == 0:
        raise ValueError("every id is special: there is no ordinary token to use as a random replacement")

    g = _generator(generator)
    u_choose = torch.rand(ids.shape, generator=g)  # (..., T) which tokens are chosen
    u_kind = torch.rand(ids.shape, generator=g)  # (..., T) what happens to a chosen token
    r = torch.randint(max(1, candidates.numel()), ids.shape, generator=g)  # (..., T) random replacements
    u_choose, u_kind, r = u_choose.to(ids.device), u_kind.to(ids.device), r.to(ids.device)

    eligible = ~special_tokens_mask(ids, special)
    if attention_mask is not None:
        eligible &= attention_mask.to(ids.device).bool()
    chosen = eligible & (u_choose < mask_prob)
    to_mask = chosen & (u_kind < mask_frac)
    to_random = chosen & (u_kind >= mask_frac) & (u_kind < mask_frac + random_frac)
    kept = chosen & ~to_mask & ~to_random

    out = ids.clone()
    out[to_mask] = mask_id
    if candidates.numel():
        out[to_random] = candidates.to(ids.device)[r][to_random].to(ids.dtype)
    labels = torch.full_like(ids, IGNORE_INDEX, dtype=torch.long)
    labels[chosen] = ids[chosen].long()
    kinds = torch.zeros_like(ids, dtype=torch.long)
    kinds[to_mask], kinds[to_random], kinds[kept] = MASKED, RANDOM, KEPT
    return MaskedInputs(out, labels, kinds)


# ----------------------------------------------------------------------------- input layouts
def bert_inputs(
    ids_a: Sequence[int],
    ids_b: Sequence[int] | None = None,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int = 0,
    max_len: int | None = None,
) -> dict[str, torch.Tensor]:
    """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` -> input_ids, token_type_ids (0 for A, 1 for B), attention_mask.

    With `max_len`, the longer of A and B is shortened until the pair fits (BERT's rule), then
    [PAD] fills the rest. Returns 1-D tensors of equal length.
    >>> bert_inputs([7, 8], [9], cls_id=2, sep_id=3)["token_type_ids"].tolist()
    [0, 0, 0, 0, 1, 1]

    See notebooks 05 and 08.
    """
    a, b = [int(i) for i in ids_a], None if ids_b is None else [int(i) for i in ids_b]
    n_special = 2 if b is None else 3
    if max_len is not None:
        if not isinstance(max_len, int) or max_len < n_special + (0 if b is None else 1):
            raise ValueError(f"max_len must be an int >= {n_special} (room for the special tokens), got {max_len!r}")
        while len(a) + len(b or []) + n_special > max_len:  # truncate the longer segment first
            if b is not None and len(b) > len(a):
                b.pop()
            else:
                a.pop()
    ids = [cls_id] + a + [sep_id]
    types = [0] * len(ids)
    if b is not None:
        ids += b + [sep_id]
        types += [1] * (len(b) + 1)
    attn = [1] * len(ids)
    if max_len is not None:
        pad = max_len - len(ids)
        ids, types, attn = ids + [pad_id] * pad, types + [0] * pad, attn + [0] * pad
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "token_type_ids": torch.tensor(types, dtype=torch.long),
        "attention_mask": torch.tensor(attn, dtype=torch.long),
    }


def pack_for_mlm(docs: Iterable[Sequence[int]], block_size: int, cls_id: int, sep_id: int) -> torch.Tensor:
    """Join documents with [SEP] into one stream and cut it into rows `[CLS] (block_size - 2 ids) [SEP]`.

    No padding (as RoBERTa's "full sentences" packing); the incomplete last row is dropped.
    >>> pack_for_mlm([[5, 6], [8, 9]], block_size=5, cls_id=2, sep_id=3).tolist()
    [[2, 5, 6, 3, 3], [2, 8, 9, 3, 3]]

    See notebook 05.
    """
    if not isinstance(block_size, int) or block_size < 3:
        raise ValueError(f"block_size must be an int >= 3 ([CLS], at least one token, [SEP]), got {block_size!r}")
    stream: list[int] = []
    for doc in docs:
        stream.extend(int(i) for i in doc)
        stream.append(sep_id)
    n = block_size - 2
    rows = len(stream) // n
    if rows == 0:
        return torch.empty(0, block_size, dtype=torch.long)
    body = torch.tensor(stream[: rows * n], dtype=torch.long).view(rows, n)  # (N, T - 2)
    cls = torch.full((rows, 1), cls_id, dtype=torch.long)
    sep = torch.full((rows, 1), sep_id, dtype=torch.long)
    return torch.cat([cls, body, sep], dim=1)  # (N, T)


# ----------------------------------------------------------------------------- the MLM loss, gathered
class GatheredMLM(nn.Module):
    """Wrap a `BertForMaskedLM` so that its MLM head runs only where labels != -100.

    forward(input_ids, labels, token_type_ids=None, attention_mask=None) -> (logits (N_chosen, V), loss).
    The loss equals `model(input_ids, labels).loss`; the vocabulary projection, the largest matrix
    product of a small BERT, is done for about 15% of the positions instead of all of them.
    The wrapped model is `self.mlm` (save that one). See notebook 05.
    """

    def __init__(self, mlm: nn.Module) -> None:
        super().__init__()
        for attr in ("bert", "mlm_dense", "mlm_norm", "mlm_bias"):
            if not hasattr(mlm, attr):
                raise TypeError(f"GatheredMLM wraps a course_lib.models.BertForMaskedLM; {type(mlm).__name__} has no `{attr}`")
        self.mlm = mlm

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(labels, torch.Tensor) or labels.shape != input_ids.shape:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {got}")
        m = self.mlm
        h = m.bert(input_ids, token_type_ids, attention_mask).last_hidden_state  # (B, T, d)
        chosen = labels != IGNORE_INDEX  # (B, T)
        h = m.mlm_norm(F.gelu(m.mlm_dense(h[chosen])))  # (N, d) only the chosen positions
        logits = F.linear(h, m.bert.tok_emb.weight, m.mlm_bias)  # (N, V)
        loss = F.cross_entropy(logits, labels[chosen]) if logits.size(0) else logits.sum() * 0.0
        return logits, loss


# ----------------------------------------------------------------------------- showing the rule
_KIND_STYLE = {
    NOT_CHOSEN: "background:#f2f2f2;color:#333",
    MASKED: "background:#d62728;color:white",
    RANDOM: "background:#ff7f0e;color:white",
    KEPT: "background:#2ca02c;color:white",
}


def masking_rows(original: Sequence[int], result: MaskedInputs, id_to_token: Callable[[int], str]) -> list[dict]:
    """One dict per chosen position of a 1-D masking result: position, original token, shown token, kind.

    See notebook 05.
    """
    ids_in, ids_out, kinds = (torch.as_tensor(x).reshape(-1).tolist() for x in (original, result.input_ids, result.kinds))
    if not len(ids_in) == len(ids_out) == len(kinds):
        raise ValueError(f"original has {len(ids_in)} ids but the masking result has {len(ids_out)}: pass one sequence")
    return [
        {"position": i, "original": id_to_token(a), "model sees": id_to_token(b), "what happened": KIND_NAMES[k]}
        for i, (a, b, k) in enumerate(zip(ids_in, ids_out, kinds))
        if k != NOT_CHOSEN
    ]


def masking_html(original: Sequence[int], result: MaskedInputs, id_to_token: Callable[[int], str]) -> str:
    """HTML: the tokens the model sees, coloured by what happened (grey untouched, red [MASK],
    orange random, green kept), with the original token as a tooltip, and a count line. See notebook 05."""
    ids_in, ids_out, kinds = (torch.as_tensor(x).reshape(-1).tolist() for x in (original, result.input_ids, result.kinds))
    spans = []
    for a, b, k in zip(ids_in, ids_out, kinds):
        shown = html.escape(id_to_token(b)).replace(" ", "&nbsp;") or "&nbsp;"
        tip = html.escape(f"{KIND_NAMES[k]}; original: {id_to_token(a)!r}")
        spans.append(f'<span title="{tip}" style="{_KIND_STYLE[k]};padding:1px 3px;margin:1px;border-radius:3px;'
                     f'font-family:monospace;display:inline-block">{shown}</span>')
    counts = {name: sum(1 for k in kinds if k == code) for code, name in KIND_NAMES.items()}
    chosen = len(kinds) - counts["not chosen"]
    legend = " · ".join(
        f'<span style="{_KIND_STYLE[c]};padding:0 4px">{n}</span> {counts[n]}' for c, n in KIND_NAMES.items()
    )
    return (f'<div style="line-height:1.9">{"".join(spans)}</div>'
            f"<div>{legend} &nbsp;|&nbsp; chosen {chosen} of {len(kinds)} tokens</div>")


def masking_widget(
    ids: Sequence[int],
    id_to_token: Callable[[int], str],
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    mask_prob: float = 0.15,
    seed: int = 0,
) -> Any:
    """An ipywidgets box: sliders for the mask rate, the [MASK] share and the seed; shows which tokens change and how.

    >>> # display(masking_widget(ids, lambda i: tok.decode([i]), mask_id=..., vocab_size=tok.vocab_size))
    See notebook 05.
    """
    import ipywidgets as w

    original = torch.as_tensor(list(ids), dtype=torch.long)
    special = list(special_ids)
    rate = w.FloatSlider(value=mask_prob, min=0.0, max=1.0, step=0.05, description="mask rate", readout_format=".2f",
                         continuous_update=False, style={"description_width": "initial"})
    share = w.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.1, description="share → [MASK]", readout_format=".1f",
                          continuous_update=False, style={"description_width": "initial"})
    seed_box = w.IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    out = w.HTML()

    def update(*_: Any) -> None:
        random_frac = min(0.5 * (1.0 - share.value), 1.0 - share.value)  # the rest split evenly: random / kept
        res = mask_tokens(original, mask_id, vocab_size, special, mask_prob=rate.value, mask_frac=share.value,
                          random_frac=random_frac, generator=seed_box.value)
        out.value = masking_html(original, res, id_to_token)

    for control in (rate, share, seed_box):
        control.observe(update, names="value")
    update()
    box = w.VBox([w.HBox([rate, share, seed_box]), out])
    box.update = update  # handy for tests and for re-drawing
    return box


# ----------------------------------------------------------------------------- the tiny BERT of notebook 05
_ROOT = Path(__file__).resolve().parent.parent
#: Where notebook 05 saves its tiny BERT (git-ignored); notebook 08 loads it when present.
TINY_BERT_DIR = _ROOT / "data" / "checkpoints" / "tiny_bert"
#: The tokenizer's file inside the checkpoint folder (written by `BPETokenizer.save`).
TOKENIZER_FILE = "tokenizer.bpe"
_INFO_FILE = "tiny_bert_info.json"


def clean_review(text: str) -> str:
    """An IMDB review as the tiny BERT reads it: `<br />` removed, whitespace collapsed, lower-cased.

    >>> clean_review("Great  film!<br /><br />Loved IT.")
    'great film! loved it.'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return " ".join(re.sub(r"<br\s*/?>", " ", text).split()).lower()


def save_tiny_bert(model: nn.Module, tokenizer: Any, path: str | Path = TINY_BERT_DIR, info: dict | None = None) -> Path:
    """Save a BertForMaskedLM (model.safetensors + config.json) and its BPE tokenizer (tokenizer.bpe) in `path`.

    `info` (JSON) is stored in tiny_bert_info.json, e.g. the held-out masked-token accuracy. See notebook 05.
    """
    from course_lib.training import save_checkpoint

    path = Path(path)
    save_checkpoint(path, model)
    tokenizer.save(path / TOKENIZER_FILE)
    meta = {"preprocessing": "course_lib.masking.clean_review", "special_tokens": list(SPECIAL_TOKENS), **(info or {})}
    (path / _INFO_FILE).write_text(json.dumps(meta, indent=2))
    return path


def tiny_bert_available(path: str | Path = TINY_BERT_DIR) -> bool:
    """True if notebook 05's tiny BERT (weights, config and tokenizer) is in `path`."""
    p = Path(path)
    return all((p / f).is_file() for f in ("model.safetensors", "config.json", TOKENIZER_FILE))


def load_tiny_bert(path: str | Path = TINY_BERT_DIR) -> tuple[nn.Module, Any, dict]:
    """(BertForMaskedLM in eval mode, BPETokenizer, info dict) saved by notebook 05.

    Raises FileNotFoundError naming the notebook to run when the checkpoint is absent.
    >>> # model, tok, info = load_tiny_bert(); ids = tok.encode(clean_review("A fine film."))
    See notebooks 05 and 08.
    """
    from course_lib.models import BertForMaskedLM
    from course_lib.tokenization import BPETokenizer
    from course_lib.training import load_checkpoint

    p = Path(path)
    if not tiny_bert_available(p):
        raise FileNotFoundError(
            f"no tiny BERT in {p}: run notebooks/05_masked_language_modeling.ipynb to pretrain and save it "
            f"(it writes model.safetensors, config.json and {TOKENIZER_FILE})"
        )
    model = load_checkpoint(p, BertForMaskedLM)["model"].eval()
    tokenizer = BPETokenizer.load(p / TOKENIZER_FILE)
    info = json.loads((p / _INFO_FILE).read_text()) if (p / _INFO_FILE).is_file() else {}
    return model, tokenizer, info
