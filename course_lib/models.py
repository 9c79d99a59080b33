"""The three transformer families: GPT (decoder-only), BERT (encoder) and an encoder-decoder.

What is here:
- `GPTConfig` / `GPT`: a causal language model (pre-LN blocks, learned positions, optional
  weight tying), small enough to train on a CPU in minutes. See notebook 06.
- `GPTDecoder`: the GPT's cached forward pass for decoding, written straight on its weights
  (same logits, far fewer calls); `generate` uses it. See notebook 06, section 5.
- `BertConfig` / `BERT`: token + segment + position embeddings and post-LN blocks, exactly
  Hugging Face's `BertModel` layout; `BERT.from_pretrained()` loads the shipped all-MiniLM-L6-v2
  and gives the same hidden states and attention weights as `transformers` (see tests).
  `BertForMaskedLM` adds the MLM head, `BertForSequenceClassification` a classifier. See
  notebooks 05 and 08.
- `EncoderDecoderConfig` / `EncoderDecoder`: the original Transformer with cross-attention for
  sequence-to-sequence tasks. See notebook 07.
- `ModelOutput`: what every head returns (`logits, loss = model(...)` also works).

Every model is configured by one dataclass with a comment per field and named presets
(`GPTConfig.preset("char-shakespeare", vocab_size=65)`), serialisable with `dataclasses.asdict`.
`fused=True` runs PyTorch's fused attention kernel (fast path); `fused=False` or asking for
attention weights runs the from-scratch attention of `course_lib.attention` (teaching path).

Leaves out: rotary positions in the models (see `course_lib.embeddings`), grouped-query
attention, mixture-of-experts (see `course_lib.moe`), mixed precision.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, MultiHeadAttention, causal_mask, padding_mask
from course_lib.embeddings import LearnedPositionalEmbedding, TokenEmbedding, sinusoidal_positions
from course_lib.layers import DecoderBlock, FeedForward, LayerNorm, RMSNorm, TransformerBlock, gelu, make_norm
from course_lib.utils import check_token_ids

__all__ = [
    "ModelOutput",
    "EncoderOutput",
    "GPTConfig",
    "GPT",
    "GPTDecoder",
    "decoding_call_counts",
    "BertConfig",
    "BERT",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "EncoderDecoderConfig",
    "EncoderDecoder",
    "count_parameters",
    "use_fast_kernels",
    "bert_key_map",
]


# ----------------------------------------------------------------------------- outputs and config helpers
@dataclass
class ModelOutput:
    """Logits (B, T, V) or (B, num_labels), the loss if targets were given, and optional extras.

    Unpacks as `logits, loss = model(x, y)`.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, nh, T, T) self-attention weights
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # per decoder layer (B, nh, T, S)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings output, then each layer's (B, T, d)

    def __iter__(self) -> Iterator[torch.Tensor | None]:
        return iter((self.logits, self.loss))


@dataclass
class EncoderOutput:
    """What `BERT` returns: as Hugging Face's BertModel output."""

    last_hidden_state: torch.Tensor  # (B, T, d)
    pooler_output: torch.Tensor | None = None  # (B, d) tanh(dense(h[CLS]))
    hidden_states: tuple[torch.Tensor, ...] | None = None  # n_layer + 1 tensors (B, T, d)
    attentions: tuple[torch.Tensor, ...] | None = None  # n_layer tensors (B, nh, T, T)


class _Preset:
    """Mixin: named presets and JSON round-trips for the config dataclasses."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def preset(cls, name: str, **overrides: Any):
        """A named configuration, with any field overridden: GPTConfig.preset("tiny", vocab_size=10)."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r} for {cls.__name__}; choose from {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


def _check_positive(cfg: Any, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be a positive int, got {v!r}")
    if cfg.d_model % cfg.n_head:
        raise ValueError(f"{type(cfg).__name__}: d_model={cfg.d_model} must be divisible by n_head={cfg.n_head}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"{type(cfg).__name__}.dropout must be in [0, 1), got {cfg.dropout}")


def _check_ids(name: str, ids: Any, vocab_size: int, max_len: int, past: int = 0) -> None:
    """Clear errors for wrong token ids: type, shape and range (course_lib.utils.check_token_ids), then length (context)."""
    check_token_ids(ids, name, vocab_size, dims=2)
    T = ids.size(1)
    if T + past > max_len:
        extra = f" plus {past} cached" if past else ""
        raise ValueError(f"{name} has {T} tokens{extra} = {T + past}, longer than the model's context of {max_len}")


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor | None, ids_shape: torch.Size) -> torch.Tensor | None:
    if targets is None:
        return None
    if targets.shape != ids_shape:
        raise ValueError(f"targets must have the shape of the inputs {tuple(ids_shape)}, got {tuple(targets.shape)}")
    check_token_ids(targets, "targets")  # type and dtype; the range allows -100, so it is checked below
    V = logits.size(-1)
    # one host sync per step (a single bool), not three; the numbers for the message only on the error path
    if bool(((targets != -100) & ((targets < 0) | (targets >= V))).any()):
        scored = targets[targets != -100]
        lo, hi = (int(t) for t in torch.aminmax(scored))
        raise ValueError(f"targets must lie in [0, vocab_size={V}) or be -100 (ignored), got min {lo}, max {hi}")
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) for linear and embedding weights, zeros for biases (GPT-2 and BERT)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)


# ----------------------------------------------------------------------------- fast kernels
class _FastLayerNorm(LayerNorm):
    """`course_lib.layers.LayerNorm` (same parameters) computed by PyTorch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.d,), self.weight, self.bias, self.eps)


class _FastRMSNorm(RMSNorm):
    """`course_lib.layers.RMSNorm` (same parameters) computed by PyTorch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.d,), self.weight, self.eps)


class _FastFeedForward(FeedForward):
    """`course_lib.layers.FeedForward` (same parameters) with PyTorch's fused exact GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation != "gelu":
            return super().forward(x)
        h = self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as layers.gelu
        return self.dropout(h) if self.training else h

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h) if self.activation == "gelu" else super()._activate(h)


def use_fast_kernels(model: nn.Module) -> nn.Module:
    """Run the from-scratch LayerNorm / RMSNorm / GELU of `course_lib.layers` with PyTorch's fused kernels.

    Same parameters and state_dict, same numbers to ~1e-6, about 2-3x faster training on a CPU
    (the from-scratch versions launch 5-10 small kernels each, forward and backward). The models
    call this when `config.fused` is True; `fused=False` keeps every piece from scratch.
    """
    swaps = {LayerNorm: _FastLayerNorm, RMSNorm: _FastRMSNorm, FeedForward: _FastFeedForward}
    for m in model.modules():
        if type(m) in swaps:
            m.__class__ = swaps[type(m)]
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared/tied tensors counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


# ============================================================================= GPT
@dataclass
class GPTConfig(_Preset):
    """A decoder-only transformer (GPT-2 layout, pre-LN). See notebook 06."""

    vocab_size: int = 65  # number of token ids (65 characters for char-level Shakespeare)
    block_size: int = 64  # context length: the most tokens the model can see at once
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    d_model: int = 128  # width of the residual stream
    d_ff: int | None = None  # feed-forward width; None = 4 * d_model
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches
    bias: bool = True  # biases in linear layers and LayerNorms
    tie_weights: bool = True  # share the token embedding with the output layer (saves V * d parameters)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    activation: str = "gelu"  # feed-forward activation: "gelu", "relu" or "swiglu"
    fused: bool = True  # PyTorch's fused attention kernel (False: the from-scratch attention)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, d_model=32),  # tests
        "char-shakespeare": dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128),  # CPU minutes
        "char-shakespeare-gpu": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, d_model=384, dropout=0.2),
        "gpt2-small": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, d_model=768),  # 124M
    }

    def __post_init__(self) -> None:
        _check_positive(self, "vocab_size", "block_size", "n_layer", "n_head", "d_model")


class GPT(nn.Module):
    """A GPT: token + position embeddings, `n_layer` causal pre-LN blocks, final norm, LM head.

    forward(idx (B, T), targets (B, T) or None) -> ModelOutput(logits (B, T, V), loss).
    >>> model = GPT(GPTConfig.preset("tiny")); logits, loss = model(torch.zeros(1, 5, dtype=torch.long))
    >>> logits.shape
    torch.Size([1, 5, 32])

    See notebook 06.
    """

    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        d_ff = c.d_ff or 4 * c.d_model
        self.tok_emb = TokenEmbedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_head, d_ff, c.dropout, c.norm, True, c.activation, c.bias, 1e-5, c.fused)
            for _ in range(c.n_layer)
        )
        self.norm_f = make_norm(c.norm, c.d_model, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        _init_weights(self)
        for block in self.blocks:  # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer)
            for lin in (block.attn.out_proj, block.ffn.fc2):
                nn.init.normal_(lin.weight, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one (V, d) matrix for input and output
        if c.fused:
            use_fast_kernels(self)

    def new_cache(self) -> list[KVCache]:
        """One empty KVCache per block, for step-by-step generation."""
        return [KVCache() for _ in self.blocks]

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: list[KVCache] | None = None,
        return_attentions: bool = False,
    ) -> ModelOutput:
        """idx (B, T) token ids -> logits (B, T, V); with targets (B, T) also the mean cross-entropy (-100 ignored)."""
        past = cache[0].length if cache else 0
        _check_ids("idx", idx, self.config.vocab_size, self.config.block_size, past)
        x = self.tok_emb(idx) + self.pos_emb(idx.size(1), offset=past)  # (B, T, d)
        if self.training:
            x = self.drop(x)
        causal = idx.size(1) > 1 or not past  # one new token after a cache may see every cached key
        attentions = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, is_causal=causal, cache=cache[i] if cache else None, return_weights=return_attentions)
            attentions.append(w)
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        loss = _lm_loss(logits, targets, idx.shape)
        return ModelOutput(logits, loss, attentions=tuple(attentions) if return_attentions else None)

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
        """Shortcut for `course_lib.generation.generate(self, idx, max_new_tokens, **kwargs)`."""
        from course_lib.generation import generate

        return generate(self, idx, max_new_tokens, **kwargs)

    def fast_decoder(self) -> "GPTDecoder | None":
        """A `GPTDecoder` for this model, or None if the model has parts it does not cover.

        It covers the GPT as built here with `fused=True`. Anything else gets None: a subclass (e.g.
        MoEGPT), a swapped module (e.g. a LoRA layer), the from-scratch kernels of `fused=False`,
        or a forward hook (the decoder calls no modules, so a hook would silently not run).
        `course_lib.generation.generate` then uses `forward` with a `KVCache` per layer.
        """
        return GPTDecoder(self) if GPTDecoder.covers(self) else None


def decoding_call_counts(model: "GPT", context: int = 5) -> tuple[Any, Any]:
    """What one cached token costs in calls: (`GPT.forward` with a KVCache, `GPTDecoder`), each a
    `course_lib.utils.CallCount` of module calls and ATen operations, after a `context`-token prompt.

    >>> # readable, fast = decoding_call_counts(gpt); readable.module_calls, fast.torch_ops
    """
    from course_lib.attention import KVCache
    from course_lib.utils import count_calls

    model = model.eval()
    ctx = torch.zeros(1, context, dtype=torch.long)
    with torch.inference_mode():
        cache = [KVCache() for _ in model.blocks]
        model(ctx, cache=cache)
        readable = count_calls(lambda: model(ctx[:, :1], cache=cache))
        decoder = GPTDecoder(model)
        decoder(ctx)
        fast = count_calls(lambda: decoder(ctx[:, :1]))
    return readable, fast


class GPTDecoder:
    """Cached decoding for a `GPT`: its forward pass for the newest tokens, written straight on its weights.

    `GPT.forward(idx, cache=...)` is the version to read: modules, input checks, a `KVCache` per
    layer. Decoding one token at a time, a small model spends most of that call on the calls
    themselves, not on arithmetic: for the 4-layer notebook GPT, one token takes 49 module calls,
    each with its own input checks, and 119 PyTorch operations of a few microseconds each
    (ATen kernels, counted with `course_lib.utils.count_calls`; tested).
    This class does the same arithmetic with the same PyTorch kernels, in the same order, and so
    gives the same logits, bit for bit on a CPU (see tests), while it
    - calls no modules (83 PyTorch operations a token) and checks the input once per call;
    - runs q, k and v as one stacked matrix product;
    - keeps each layer's keys and values in one buffer of `block_size` positions (one copy per
      step writes both) and makes the views of its first t positions once, not every step.
    `course_lib.generation.generate` uses it when `model.fast_decoder()` gives one.

    dec = GPTDecoder(model.eval()); logits = dec(prompt)  # (B, V): next-token logits
    logits = dec(next_ids[:, None])  # one more token per row; dec.length counts the cached positions

    The weights are read when the decoder is made (q, k, v are stacked then): make a new decoder
    after training or moving the model. The model must be in eval mode; no gradients are kept.
    """

    NORM_KINDS: ClassVar[tuple[str, ...]] = ("layernorm", "rmsnorm")

    @staticmethod
    def covers(model: nn.Module) -> bool:
        """True if `model` is a plain `GPT` with `fused=True` whose every module this class reproduces."""
        if type(model) is not GPT or not model.config.fused or model.config.norm not in GPTDecoder.NORM_KINDS:
            return False
        from torch.nn.modules import module as torch_module

        if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
            return False
        if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
            return False
        norm = _FastLayerNorm if model.config.norm == "layernorm" else _FastRMSNorm
        for b in model.blocks:
            a = b.attn
            parts_ok = (
                type(b) is TransformerBlock and b.pre_norm and type(a) is MultiHeadAttention and a.fused
                and type(b.ffn) is _FastFeedForward and type(b.norm1) is norm and type(b.norm2) is norm
            )
            linears = (a.q_proj, a.k_proj, a.v_proj, a.out_proj, b.ffn.fc1, b.ffn.fc2) if parts_ok else ()
            if not parts_ok or not all(type(lin) is nn.Linear for lin in linears):
                return False
        return (
            type(model.norm_f) is norm and type(model.lm_head) is nn.Linear and type(model.tok_emb) is TokenEmbedding
            and type(model.pos_emb) is LearnedPositionalEmbedding
        )

    def __init__(self, model: "GPT") -> None:
        if not GPTDecoder.covers(model):
            raise ValueError(
                "GPTDecoder needs a plain GPT with fused=True, norm in ('layernorm', 'rmsnorm'), plain nn.Linear "
                f"layers and no forward hooks; got {type(model).__name__} (use model.fast_decoder(), which "
                "returns None for such models, or GPT.forward with a cache)"
            )
        c = model.config
        self.model, self.config = model, c
        self.n_head, self.head_dim = c.n_head, c.d_model // c.n_head
        # per block: the norms' and the activation's own functions (`forward` skips the module call), the
        # stacked q/k/v (weight (3 d, d), bias) and the other weights
        self.layers = [
            (b.norm1.forward, *b.attn._stacked_qkv(), b.attn.out_proj.weight, b.attn.out_proj.bias,
             b.norm2.forward, b.ffn.fc1.weight, b.ffn.fc1.bias, b.ffn._activate, b.ffn.fc2.weight, b.ffn.fc2.bias)
            for b in model.blocks
        ]
        self.norm_f = model.norm_f.forward
        self._kv: list[torch.Tensor] = []  # per layer (2, B, nh, block_size, hs): keys [0] and values [1]
        self._views: list[list[tuple[torch.Tensor, torch.Tensor]]] = []  # per layer, t -> (keys, values)[:t]
        self.length = 0  # cached positions

    def reset(self) -> None:
        """Forget the cached positions (the buffers are kept and overwritten)."""
        self.length = 0

    def _buffers(self, batch: int) -> None:
        """Allocate the key/value buffers for `batch` rows, and the views of their first t positions."""
        c, like = self.config, self.model.pos_emb.weight
        self._kv = [like.new_empty(2, batch, self.n_head, c.block_size, self.head_dim) for _ in self.layers]
        self._views = [[(kv[0, :, :, :t], kv[1, :, :, :t]) for t in range(c.block_size + 1)] for kv in self._kv]

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Feed idx (B, T) after the cached positions; returns the logits (B, V) at the last new position."""
        c, past = self.config, self.length
        _check_ids("idx", idx, c.vocab_size, c.block_size, past)
        if idx.size(1) == 0:
            raise ValueError(f"idx must hold at least one new token per row, got shape {tuple(idx.shape)}")
        if self.model.training:
            raise RuntimeError("GPTDecoder skips dropout: call model.eval() first")
        B, T = idx.shape
        if past == 0 and (not self._kv or self._kv[0].size(1) != B):
            self._buffers(B)
        elif past and B != self._kv[0].size(1):
            raise ValueError(f"idx has {B} rows but the decoder caches {self._kv[0].size(1)}; call reset() for a new batch")
        nh, hs, d = self.n_head, self.head_dim, c.d_model
        # as MultiHeadAttention: is_causal when the new tokens are all there is, the offset mask after a cache
        mask = causal_mask(T, past + T, device=idx.device) if T > 1 and past else None
        x = F.embedding(idx, self.model.tok_emb.weight) + self.model.pos_emb.weight[past : past + T]  # (B, T, d)
        for (norm1, w_qkv, b_qkv, w_o, b_o, norm2, w_1, b_1, act, w_2, b_2), kv, views in zip(self.layers, self._kv, self._views):
            qkv = F.linear(norm1(x), w_qkv, b_qkv).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
            kv[:, :, :, past : past + T] = qkv[1:]  # this step's keys and values, in one copy
            k, v = views[past + T]  # (B, nh, past + T, hs) each
            a = F.scaled_dot_product_attention(qkv[0], k, v, attn_mask=mask, is_causal=T > 1 and not past)
            x = x + F.linear(a.transpose(1, 2).contiguous().view(B, T, d), w_o, b_o)  # (B, T, d)
            x = x + F.linear(act(F.linear(norm2(x), w_1, b_1)), w_2, b_2)
        self.length = past + T
        return F.linear(self.norm_f(x), self.model.lm_head.weight, self.model.lm_head.bias)[:, -1]  # (B, V)


# ============================================================================= BERT
@dataclass
class BertConfig(_Preset):
    """A BERT encoder (post-LN, as Hugging Face's BertModel). See notebooks 05 and 08."""

    vocab_size: int = 30522  # WordPiece vocabulary size
    block_size: int = 512  # max_position_embeddings: the longest input
    n_layer: int = 6  # encoder blocks
    n_head: int = 12  # attention heads per block
    d_model: int = 384  # hidden size
    d_ff: int = 1536  # intermediate (feed-forward) size
    type_vocab_size: int = 2  # segments (sentence A / sentence B)
    dropout: float = 0.1  # hidden and attention dropout
    eps: float = 1e-12  # LayerNorm epsilon
    pad_id: int = 0  # id of [PAD]
    num_labels: int = 2  # classes of BertForSequenceClassification
    add_pooler: bool = True  # tanh(dense(h[CLS])), used by the classifier
    fused: bool = True  # PyTorch's fused attention unless attention weights are asked for
    pre_ln: bool = False  # False: post-LN blocks (BERT, MiniLM); True: pre-LN blocks + a final LayerNorm
    init_std: float = 0.02  # std of the normal init of weights and embeddings (HF: initializer_range)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32, d_ff=64, dropout=0.0),  # tests
        "mini": dict(vocab_size=30522, block_size=128, n_layer=4, n_head=4, d_model=128, d_ff=512),  # notebook 05
        "minilm-l6": dict(),  # all-MiniLM-L6-v2 (the defaults)
        "bert-base": dict(block_size=512, n_layer=12, n_head=12, d_model=768, d_ff=3072),
    }

    def __post_init__(self) -> None:
        _check_positive(self, "vocab_size", "block_size", "n_layer", "n_head", "d_model", "d_ff", "type_vocab_size")
        if not isinstance(self.pre_ln, bool):
            raise TypeError(f"BertConfig.pre_ln must be a bool, got {type(self.pre_ln).__name__}")
        if not isinstance(self.init_std, (int, float)) or isinstance(self.init_std, bool) or not self.init_std > 0:
            raise ValueError(f"BertConfig.init_std must be a positive float, got {self.init_std!r}")

    @classmethod
    def from_hf(cls, hf: dict, **overrides: Any) -> "BertConfig":
        """Translate a Hugging Face BERT config.json dict."""
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' is supported, got {hf.get('hidden_act')!r}")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"only absolute position embeddings are supported, got {hf.get('position_embedding_type')!r}")
        fields = dict(
            vocab_size=hf["vocab_size"],
            block_size=hf["max_position_embeddings"],
            n_layer=hf["num_hidden_layers"],
            n_head=hf["num_attention_heads"],
            d_model=hf["hidden_size"],
            d_ff=hf["intermediate_size"],
            type_vocab_size=hf.get("type_vocab_size", 2),
            dropout=hf.get("hidden_dropout_prob", 0.1),
            eps=hf.get("layer_norm_eps", 1e-12),
            pad_id=hf.get("pad_token_id", 0) or 0,
            init_std=hf.get("initializer_range", 0.02),
        )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"unknown BertConfig field(s) {unknown}; expected some of {names}")
        return cls(**{**fields, **overrides})  # an override wins over the Hugging Face value


def bert_key_map(n_layer: int) -> dict[str, str]:
    """Hugging Face BERT parameter names -> ours (encoder, pooler and MLM head)."""
    m = {
        "embeddings.word_embeddings.weight": "tok_emb.weight",
        "embeddings.position_embeddings.weight": "pos_emb.weight",
        "embeddings.token_type_embeddings.weight": "seg_emb.weight",
        "embeddings.LayerNorm.weight": "emb_norm.weight",
        "embeddings.LayerNorm.bias": "emb_norm.bias",
        "pooler.dense.weight": "pooler.weight",
        "pooler.dense.bias": "pooler.bias",
    }
    parts = {
        "attention.self.query": "attn.q_proj",
        "attention.self.key": "attn.k_proj",
        "attention.self.value": "attn.v_proj",
        "attention.output.dense": "attn.out_proj",
        "attention.output.LayerNorm": "norm1",
        "intermediate.dense": "ffn.fc1",
        "output.dense": "ffn.fc2",
        "output.LayerNorm": "norm2",
    }
    for i in range(n_layer):
        for hf, ours in parts.items():
            for p in ("weight", "bias"):
                m[f"encoder.layer.{i}.{hf}.{p}"] = f"blocks.{i}.{ours}.{p}"
    return m


_MLM_KEYS = {
    "cls.predictions.transform.dense.weight": "mlm_dense.weight",
    "cls.predictions.transform.dense.bias": "mlm_dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlm_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlm_norm.bias",
    "cls.predictions.bias": "mlm_bias",
}


def _read_pretrained(path: str | Path | None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(Hugging Face config dict, state dict with any 'bert.' prefix removed) from a checkpoint folder."""
    from safetensors.torch import load_file

    if path is None:
        from course_lib.data import minilm_path

        path = minilm_path()
    path = Path(path)
    for f in ("config.json", "model.safetensors"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path} has no {f}: expected a Hugging Face BERT folder (config.json + model.safetensors)")
    hf = json.loads((path / "config.json").read_text())
    state = load_file(str(path / "model.safetensors"))
    state = {(k[len("bert.") :] if k.startswith("bert.") else k): v for k, v in state.items()}
    return hf, state


class BERT(nn.Module):
    """BERT encoder: forward(input_ids (B, T), token_type_ids, attention_mask) -> EncoderOutput.

    Embeddings: token + segment + position, then LayerNorm and dropout; then `n_layer` post-LN blocks
    (with `config.pre_ln`: pre-LN blocks and a final LayerNorm `final_norm`, which trains faster from scratch).
    `return_attentions=True` returns each layer's weights (B, nh, T, T) (from-scratch attention).
    See notebooks 05 and 08.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = c = config
        self.tok_emb = TokenEmbedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.d_model)
        self.seg_emb = nn.Embedding(c.type_vocab_size, c.d_model)
        self.emb_norm = make_norm("layernorm", c.d_model, eps=c.eps)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_head, c.d_ff, c.dropout, "layernorm", c.pre_ln, "gelu", True, c.eps, c.fused)
            for _ in range(c.n_layer)
        )
        self.final_norm = make_norm("layernorm", c.d_model, eps=c.eps) if c.pre_ln else None  # pre-LN only
        self.pooler = nn.Linear(c.d_model, c.d_model) if c.add_pooler else None
        _init_weights(self, std=c.init_std)
        if c.fused:
            use_fast_kernels(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_attentions: bool = False,
        return_hidden_states: bool = False,
    ) -> EncoderOutput:
        """input_ids (B, T); token_type_ids (B, T) of 0/1 (default 0); attention_mask (B, T), 1 = real token."""
        c = self.config
        _check_ids("input_ids", input_ids, c.vocab_size, c.block_size)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            _check_ids("token_type_ids", token_type_ids, c.type_vocab_size, c.block_size)
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(f"token_type_ids must have shape {tuple(input_ids.shape)}, got {tuple(token_type_ids.shape)}")
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask must have shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
            mask = padding_mask(attention_mask)  # (B, 1, 1, T), True = real token
        x = self.tok_emb(input_ids) + self.seg_emb(token_type_ids) + self.pos_emb(input_ids.size(1))  # (B, T, d)
        x = self.drop(self.emb_norm(x))
        hidden, attentions = [x], []
        for block in self.blocks:
            x, w = block(x, mask=mask, return_weights=return_attentions)
            hidden.append(x)
            attentions.append(w)
        if self.final_norm is not None:  # pre-LN: the residual stream is normalised once at the end
            x = hidden[-1] = self.final_norm(x)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None  # (B, d)
        return EncoderOutput(
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if return_hidden_states else None,
            attentions=tuple(attentions) if return_attentions else None,
        )

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **overrides: Any) -> "BERT":
        """Load a Hugging Face BERT checkpoint folder (default: the course's all-MiniLM-L6-v2), in eval mode."""
        hf, state = _read_pretrained(path)
        model = cls(BertConfig.from_hf(hf, **overrides))
        model._load_hf_state(state)
        return model.eval()

    @torch.no_grad()
    def _load_hf_state(self, state: dict[str, torch.Tensor], prefix: str = "") -> set[str]:
        """Copy Hugging Face tensors into this encoder; returns the HF keys used. Errors list what is missing."""
        if self.config.pre_ln:
            raise ValueError("Hugging Face BERT checkpoints are post-LN: load them with pre_ln=False, got pre_ln=True")
        own = self.state_dict()
        used, missing = set(), []
        for hf_key, our_key in bert_key_map(self.config.n_layer).items():
            if our_key.startswith("pooler") and self.pooler is None:
                continue
            if hf_key not in state:
                if not our_key.startswith("pooler"):  # a checkpoint without a pooler keeps ours random
                    missing.append(hf_key)
                continue
            if own[our_key].shape != state[hf_key].shape:
                raise ValueError(f"{hf_key}: checkpoint shape {tuple(state[hf_key].shape)} != model {tuple(own[our_key].shape)}")
            own[our_key].copy_(state[hf_key])
            used.add(hf_key)
        if missing:
            raise ValueError(f"the checkpoint lacks {len(missing)} BERT weights, e.g. {missing[:5]}")
        return used


class BertForMaskedLM(nn.Module):
    """BERT + the masked-language-model head: dense -> GELU -> LayerNorm -> tied decoder + bias.

    forward(input_ids, labels=None, ...) -> ModelOutput(logits (B, T, V), loss over labels != -100).
    See notebook 05.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.bert = BERT(config)
        self.mlm_dense = nn.Linear(c.d_model, c.d_model)
        self.mlm_norm = make_norm("layernorm", c.d_model, eps=c.eps)
        self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        _init_weights(self.mlm_dense, std=c.init_std)
        if c.fused:
            use_fast_kernels(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_attentions: bool = False,
    ) -> ModelOutput:
        enc = self.bert(input_ids, token_type_ids, attention_mask, return_attentions=return_attentions)
        h = self.mlm_norm(gelu(self.mlm_dense(enc.last_hidden_state)))  # (B, T, d)
        logits = F.linear(h, self.bert.tok_emb.weight, self.mlm_bias)  # (B, T, V), decoder tied to the embeddings
        loss = _lm_loss(logits, labels, input_ids.shape)
        return ModelOutput(logits, loss, attentions=enc.attentions)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **overrides: Any) -> "BertForMaskedLM":
        """Load a BERT checkpoint; the MLM head too if it has one (MiniLM has not: the head stays random)."""
        hf, state = _read_pretrained(path)
        model = cls(BertConfig.from_hf(hf, **overrides))
        model.bert._load_hf_state(state)
        own = model.state_dict()
        with torch.no_grad():
            for hf_key, our_key in _MLM_KEYS.items():
                if hf_key in state:
                    own[our_key].copy_(state[hf_key])
        model.has_pretrained_head = all(k in state for k in _MLM_KEYS)
        return model.eval()


class BertForSequenceClassification(nn.Module):
    """BERT + classifier on the pooled [CLS] vector: dropout -> Linear(d, num_labels).

    forward(input_ids, labels=None, ...) -> ModelOutput(logits (B, num_labels), cross-entropy loss).
    See notebook 08.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not config.add_pooler:
            raise ValueError("BertForSequenceClassification needs config.add_pooler=True")
        self.config = config
        self.bert = BERT(config)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        _init_weights(self.classifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_attentions: bool = False,
    ) -> ModelOutput:
        enc = self.bert(input_ids, token_type_ids, attention_mask, return_attentions=return_attentions)
        logits = self.classifier(self.drop(enc.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            if labels.shape != (input_ids.size(0),):
                raise ValueError(f"labels must have shape ({input_ids.size(0)},), got {tuple(labels.shape)}")
            if labels.numel() and (int(labels.min()) < -100 or int(labels.max()) >= self.config.num_labels):
                raise ValueError(f"labels must lie in [0, num_labels={self.config.num_labels}) (or -100), got {labels.tolist()[:10]}")
            loss = F.cross_entropy(logits, labels, ignore_index=-100)
        return ModelOutput(logits, loss, attentions=enc.attentions)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, num_labels: int = 2, **overrides: Any) -> "BertForSequenceClassification":
        """Pretrained encoder (and pooler) + a fresh classifier with `num_labels` outputs."""
        hf, state = _read_pretrained(path)
        model = cls(BertConfig.from_hf(hf, num_labels=num_labels, **overrides))
        model.bert._load_hf_state(state)
        return model.eval()


# ============================================================================= encoder-decoder
@dataclass
class EncoderDecoderConfig(_Preset):
    """The original Transformer for sequence-to-sequence tasks (pre-LN by default). See notebook 07."""

    src_vocab_size: int = 32  # source token ids (e.g. letters)
    tgt_vocab_size: int = 32  # target token ids (e.g. phonemes), including BOS/EOS/PAD
    src_block_size: int = 32  # longest source sequence
    block_size: int = 32  # longest target sequence (decoder context)
    n_encoder_layer: int = 2  # encoder blocks
    n_decoder_layer: int = 2  # decoder blocks
    n_head: int = 4  # attention heads
    d_model: int = 128  # width
    d_ff: int | None = None  # feed-forward width; None = 4 * d_model
    dropout: float = 0.1  # dropout in both stacks
    pre_norm: bool = True  # pre-LN (stable, modern) or post-LN (as in the 2017 paper)
    positions: str = "sinusoidal"  # "sinusoidal" (fixed, as the paper) or "learned"
    tie_weights: bool = True  # share the target embedding with the output layer
    fused: bool = True  # PyTorch's fused attention unless attention weights are asked for

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(src_vocab_size=16, tgt_vocab_size=16, src_block_size=12, block_size=12, n_encoder_layer=1,
                     n_decoder_layer=1, n_head=2, d_model=32, dropout=0.0),  # tests
        "g2p": dict(src_vocab_size=32, tgt_vocab_size=80, src_block_size=32, block_size=32, n_encoder_layer=2,
                    n_decoder_layer=2, n_head=4, d_model=128, dropout=0.1),  # spelling -> pronunciation
        "transformer-base": dict(src_block_size=512, block_size=512, n_encoder_layer=6, n_decoder_layer=6, n_head=8,
                                 d_model=512, d_ff=2048),
    }

    def __post_init__(self) -> None:
        _check_positive(self, "src_vocab_size", "tgt_vocab_size", "src_block_size", "block_size",
                        "n_encoder_layer", "n_decoder_layer", "n_head", "d_model")
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {self.positions!r}")


class EncoderDecoder(nn.Module):
    """Encoder (bidirectional) + decoder (causal self-attention and cross-attention to the encoder).

    forward(src (B, S), tgt (B, T), labels (B, T) or None, src_mask (B, S)) -> ModelOutput(logits (B, T, V), loss).
    Teacher forcing: `tgt` is [BOS] + y, `labels` is y + [EOS] (padding -100).
    `return_attentions=True` also returns the cross-attention weights (B, nh, T, S) per layer
    (alignment maps). See notebook 07.
    """

    config_class = EncoderDecoderConfig

    def __init__(self, config: EncoderDecoderConfig) -> None:
        super().__init__()
        if not isinstance(config, EncoderDecoderConfig):
            raise TypeError(f"config must be an EncoderDecoderConfig, got {type(config).__name__}")
        self.config = c = config
        d_ff = c.d_ff or 4 * c.d_model
        self.src_emb = TokenEmbedding(c.src_vocab_size, c.d_model)
        self.tgt_emb = TokenEmbedding(c.tgt_vocab_size, c.d_model)
        if c.positions == "learned":
            self.src_pos = LearnedPositionalEmbedding(c.src_block_size, c.d_model)
            self.tgt_pos = LearnedPositionalEmbedding(c.block_size, c.d_model)
        else:
            n = max(c.src_block_size, c.block_size)
            self.register_buffer("pos_table", sinusoidal_positions(n, c.d_model), persistent=False)  # (n, d)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_head, d_ff, c.dropout, "layernorm", c.pre_norm, "gelu", True, 1e-5, c.fused)
            for _ in range(c.n_encoder_layer)
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(c.d_model, c.n_head, d_ff, c.dropout, "layernorm", c.pre_norm, "gelu", True, 1e-5, c.fused)
            for _ in range(c.n_decoder_layer)
        )
        self.enc_norm = make_norm("layernorm", c.d_model) if c.pre_norm else nn.Identity()
        self.dec_norm = make_norm("layernorm", c.d_model) if c.pre_norm else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        _init_weights(self)
        if c.tie_weights:
            self.lm_head.weight = self.tgt_emb.weight
        if c.fused:
            use_fast_kernels(self)

    def _embed(self, ids: torch.Tensor, emb: nn.Module, which: str, offset: int = 0) -> torch.Tensor:
        T = ids.size(1)
        if self.config.positions == "learned":
            pos = (self.src_pos if which == "src" else self.tgt_pos)(T, offset=offset)
        else:
            pos = self.pos_table[offset : offset + T]  # (T, d)
        scale = math.sqrt(self.config.d_model) if self.config.positions == "sinusoidal" else 1.0
        # with N(0, 0.02) embeddings, sqrt(d) * 0.02 keeps tokens and the +-1 sinusoids on similar scales
        return self.drop(emb(ids) * scale + pos)  # (B, T, d)

    def new_cache(self) -> list[KVCache]:
        """One empty self-attention KVCache per decoder block."""
        return [KVCache() for _ in self.decoder]

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) 1 = real token -> memory (B, S, d)."""
        c = self.config
        _check_ids("src", src, c.src_vocab_size, c.src_block_size)
        mask = self._memory_mask(src, src_mask)
        x = self._embed(src, self.src_emb, "src")
        for block in self.encoder:
            x, _ = block(x, mask=mask)
        return self.enc_norm(x)

    @staticmethod
    def _memory_mask(src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor | None:
        if src_mask is None:
            return None
        if src_mask.shape != src.shape:
            raise ValueError(f"src_mask must have the shape of src {tuple(src.shape)}, got {tuple(src_mask.shape)}")
        return padding_mask(src_mask)  # (B, 1, 1, S)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: list[KVCache] | None = None,
        return_attentions: bool = False,
    ) -> ModelOutput:
        """tgt (B, T) ids and encoder memory (B, S, d) -> ModelOutput(logits (B, T, V), loss, attentions, cross_attentions)."""
        c = self.config
        past = cache[0].length if cache else 0
        _check_ids("tgt", tgt, c.tgt_vocab_size, c.block_size, past)
        mem_mask = None if src_mask is None else padding_mask(src_mask)
        x = self._embed(tgt, self.tgt_emb, "tgt", offset=past)
        self_w, cross_w = [], []
        for i, block in enumerate(self.decoder):
            x, w = block(x, memory, memory_mask=mem_mask, cache=cache[i] if cache else None, return_weights=return_attentions)
            if w is not None:
                self_w.append(w[0])
                cross_w.append(w[1])
        logits = self.lm_head(self.dec_norm(x))  # (B, T, V)
        loss = _lm_loss(logits, labels, tgt.shape)
        if return_attentions:
            return ModelOutput(logits, loss, attentions=tuple(self_w), cross_attentions=tuple(cross_w))
        return ModelOutput(logits, loss)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        labels: torch.Tensor | None = None,
        src_mask: torch.Tensor | None = None,
        return_attentions: bool = False,
    ) -> ModelOutput:
        memory = self.encode(src, src_mask)
        return self.decode(tgt, memory, src_mask, labels=labels, return_attentions=return_attentions)

    def generate(self, src: torch.Tensor, max_new_tokens: int, bos_id: int, eos_id: int | None = None, **kwargs: Any) -> torch.Tensor:
        """Shortcut for `course_lib.generation.seq2seq_generate` (greedy by default)."""
        from course_lib.generation import seq2seq_generate

        return seq2seq_generate(self, src, max_new_tokens, bos_id, eos_id, **kwargs)
