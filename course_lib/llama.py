"""A modern LLM: the Llama architecture (SmolLM2, Llama 2/3, Mistral, Qwen 2 without biases) from the course's blocks.

What changed since GPT-2, and where each piece lives:
- RMSNorm instead of LayerNorm (`course_lib.layers.RMSNorm`): no centring, no bias;
- SwiGLU feed-forward (`course_lib.layers.FeedForward(activation="swiglu")`): silu(gate) * up;
- rotary positions instead of learned ones (`course_lib.embeddings.rotary_angles`, `apply_rotary`),
  with a large base (100,000 for SmolLM2) so that slow-turning pairs can tell far positions apart;
- grouped-query attention (`course_lib.attention.MultiHeadAttention(n_kv_heads=...)`): 9 query heads
  share 3 key/value heads, so the KV cache is a third of the multi-head one;
- no biases anywhere, tied input and output embeddings.

The block is `course_lib.layers.TransformerBlock`, the same class the GPT of notebook 06 uses, here
with norm="rmsnorm", activation="swiglu", bias=False and n_kv_heads < n_heads.

- `LlamaConfig` / `Llama`: the model; `LlamaConfig.from_gguf_metadata` reads a GGUF file's settings.
- `Llama.from_gguf(path)`: SmolLM2-135M-Instruct's weights from its GGUF file (the course's own reader,
  `course_lib.gguf`), dequantized to float32, or kept 4-/8-bit in `QuantizedLinear` layers.
- `llama_state_from_gguf`: the name map from llama.cpp's tensor names to this model's, and the
  undoing of the rows permutation that GGUF applies to the query and key weights (see
  `course_lib.gguf.unpermute_qk`).
- `QuantizedLinear`: a linear layer whose weight stays in GGUF's Q8_0 / Q4_1 blocks and is
  dequantized at each call: a quarter to an eighth of the memory, slower.

Tested against `transformers`' `LlamaForCausalLM` loaded from the same GGUF file (logits, greedy
generation). Leaves out: rope scaling for long contexts, sliding windows, attention biases (Qwen),
training recipes. See notebook 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache
from course_lib.embeddings import TokenEmbedding, apply_rotary, rotary_angles
from course_lib.layers import RMSNorm, TransformerBlock
from course_lib.models import ModelOutput, _check_ids, _init_weights, _lm_loss, _Preset, use_fast_kernels

__all__ = ["LlamaConfig", "Llama", "llama_state_from_gguf", "QuantizedLinear", "kv_cache_bytes_per_token"]


# ============================================================================= config
@dataclass
class LlamaConfig(_Preset):
    """A Llama-style decoder (pre-RMSNorm, rotary positions, SwiGLU, grouped-query attention). See notebook 13."""

    vocab_size: int = 49152  # token ids
    block_size: int = 8192  # context length the model was trained for
    n_layer: int = 30  # transformer blocks
    n_head: int = 9  # query heads per block
    n_kv_head: int = 3  # key/value heads (grouped-query attention); = n_head is multi-head attention
    d_model: int = 576  # width of the residual stream; head_dim = d_model / n_head
    d_ff: int = 1536  # SwiGLU width (the gate and the up projection are each d_model -> d_ff)
    rope_base: float = 100000.0  # rotary base: pair i turns by pos * rope_base^(-2i/head_dim)
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_weights: bool = True  # the output layer reuses the token embedding
    fused: bool = True  # PyTorch's fused attention and norm kernels (False: the from-scratch ones)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64, rope_base=10000.0),
        "smollm2-135m": dict(),  # the defaults: SmolLM2-135M(-Instruct)
    }

    def __post_init__(self) -> None:
        for n in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "d_model", "d_ff"):
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"LlamaConfig.{n} must be a positive int, got {v!r}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"LlamaConfig: d_model={self.d_model} must split into n_head={self.n_head} heads of even width (rotary pairs)"
            )
        if self.n_head % self.n_kv_head:
            raise ValueError(f"LlamaConfig: n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        if not self.rope_base > 0 or not self.norm_eps > 0:
            raise ValueError(f"LlamaConfig: rope_base and norm_eps must be > 0, got {self.rope_base}, {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any], **overrides: Any) -> "LlamaConfig":
        """The config of a GGUF file whose `general.architecture` is "llama" (keys `llama.block_count`, ...)."""
        arch = metadata.get("general.architecture")
        if arch != "llama":
            raise ValueError(f"expected a GGUF file of architecture 'llama', got general.architecture={arch!r}")
        get = lambda key: metadata[f"llama.{key}"]  # noqa: E731
        try:
            n_embd = len(metadata["tokenizer.ggml.tokens"]) if "llama.vocab_size" not in metadata else get("vocab_size")
            fields = dict(
                vocab_size=int(n_embd),
                block_size=int(get("context_length")),
                n_layer=int(get("block_count")),
                n_head=int(get("attention.head_count")),
                n_kv_head=int(metadata.get("llama.attention.head_count_kv", get("attention.head_count"))),
                d_model=int(get("embedding_length")),
                d_ff=int(get("feed_forward_length")),
                rope_base=float(metadata.get("llama.rope.freq_base", 10000.0)),
                norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            )
        except KeyError as e:
            raise ValueError(f"the GGUF metadata lacks the key {e.args[0]!r}, which a llama model needs") from None
        return cls(**{**fields, **overrides})


def kv_cache_bytes_per_token(config: LlamaConfig, bytes_per_value: int = 4, n_kv_head: int | None = None) -> int:
    """Bytes the KV cache needs per token: 2 (k and v) x layers x kv heads x head_dim x bytes per value.

    >>> kv_cache_bytes_per_token(LlamaConfig(), 2)  # SmolLM2-135M in 16-bit: 2 * 30 * 3 * 64 * 2
    23040
    See notebook 13.
    """
    n_kv = config.n_kv_head if n_kv_head is None else n_kv_head
    return 2 * config.n_layer * n_kv * config.head_dim * bytes_per_value


# ============================================================================= model
class Llama(nn.Module):
    """Token embedding, `n_layer` pre-RMSNorm blocks with rotary GQA and SwiGLU, final RMSNorm, (tied) LM head.

    forward(idx (B, T), targets (B, T) or None, cache=list of KVCache) -> ModelOutput(logits (B, T, V), loss).
    >>> model = Llama(LlamaConfig.preset("tiny")); model(torch.zeros(1, 5, dtype=torch.long)).logits.shape
    torch.Size([1, 5, 64])

    Rotary embeddings pair feature i with feature i + head_dim/2 of each head, as Hugging Face's Llama
    (`interleaved=False`); `Llama.from_gguf` undoes the permutation that GGUF files store for llama.cpp's
    neighbouring pairs. See notebook 13.
    """

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig, init: bool = True) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = c = config
        self.tok_emb = TokenEmbedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_head, c.d_ff, 0.0, "rmsnorm", True, "swiglu", False, c.norm_eps, c.fused, c.n_kv_head)
            for _ in range(c.n_layer)
        )
        self.norm_f = RMSNorm(c.d_model, eps=c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if init:
            _init_weights(self)
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        if c.fused:
            use_fast_kernels(self)

    def new_cache(self) -> list[KVCache]:
        """One empty KVCache per block; each holds (B, n_kv_head, T, head_dim) keys and values."""
        return [KVCache() for _ in self.blocks]

    def rotary(self, past: int, T: int, device: torch.device) -> Any:
        """The `rotary=` function for positions past .. past + T - 1 (cos and sin computed once for all layers)."""
        cos, sin = rotary_angles(torch.arange(past, past + T, device=device), self.config.head_dim, self.config.rope_base)

        def rotate(q: torch.Tensor, k: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
            return apply_rotary(q, cos, sin, interleaved=False), apply_rotary(k, cos, sin, interleaved=False)

        return rotate

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: list[KVCache] | None = None) -> ModelOutput:
        """idx (B, T) -> logits (B, T, V); after a cache, idx holds only the new tokens."""
        past = cache[0].length if cache else 0
        _check_ids("idx", idx, self.config.vocab_size, self.config.block_size, past)
        T = idx.size(1)
        x = self.tok_emb(idx)  # (B, T, d): no position embedding, positions enter through the rotation
        rotate = self.rotary(past, T, idx.device)
        causal = T > 1 or not past
        for i, block in enumerate(self.blocks):
            x, _ = block(x, is_causal=causal, cache=cache[i] if cache else None, rotary=rotate)
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        return ModelOutput(logits, _lm_loss(logits, targets, idx.shape))

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
        """Shortcut for `course_lib.generation.generate(self, idx, max_new_tokens, **kwargs)`."""
        from course_lib.generation import generate

        return generate(self, idx, max_new_tokens, **kwargs)

    @classmethod
    def from_gguf(cls, path: str | Path | None = None, quantized: bool = False, **overrides: Any) -> "Llama":
        """Load a llama-architecture GGUF file (default: SmolLM2-135M-Instruct from `course_lib.data`), in eval mode.

        quantized=False dequantizes every weight to float32; True keeps the blocks' Q8_0 / Q4_1 matrices
        in `QuantizedLinear` layers (the embedding is dequantized: a lookup needs rows).
        """
        from course_lib.gguf import GGUFFile

        if path is None:
            from course_lib.data import smollm2_gguf_path

            path = smollm2_gguf_path()
        gf = GGUFFile(path)
        config = LlamaConfig.from_gguf_metadata(gf.metadata, **overrides)
        with torch.device("meta"):  # no memory and no random init for weights that are replaced next
            model = cls(config, init=False)
        state, layers = llama_state_from_gguf(gf, config, quantized=quantized)
        for name, layer in layers.items():  # "blocks.0.attn.q_proj" -> QuantizedLinear
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, layer)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        missing = [k for k in missing if not (config.tie_weights and k == "lm_head.weight") and k.rpartition(".")[0] not in layers]
        if missing or unexpected:
            raise ValueError(f"{path}: the GGUF tensors do not fill the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if config.tie_weights:
            model.lm_head.weight = model.tok_emb.weight
        return model.eval()


# ============================================================================= loading
#: Per block, this model's norms <- llama.cpp's tensor names.
GGUF_NORMS = {"norm1": "attn_norm", "norm2": "ffn_norm"}
#: Per block, this model's linear layers <- llama.cpp's matrices, stacked in this order (SwiGLU's gate and up
#: become the one fc1 of `course_lib.layers.FeedForward`).
GGUF_LINEARS = {
    "attn.q_proj": ("attn_q",),
    "attn.k_proj": ("attn_k",),
    "attn.v_proj": ("attn_v",),
    "attn.out_proj": ("attn_output",),
    "ffn.fc1": ("ffn_gate", "ffn_up"),
    "ffn.fc2": ("ffn_down",),
}


def llama_state_from_gguf(
    gf: Any, config: LlamaConfig, quantized: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, "QuantizedLinear"]]:
    """This model's state dict (float32) from an open `course_lib.gguf.GGUFFile`, and, with quantized=True,
    the blocks' linear layers as `QuantizedLinear` modules by name (their weights then stay out of the state).

    Each name is mapped (`GGUF_NORMS`, `GGUF_LINEARS`), each shape checked against the config, the query and key
    rows un-permuted (`course_lib.gguf.unpermute_qk`, see its docstring), the SwiGLU gate and up
    matrices stacked into fc1.
    """
    from course_lib.gguf import unpermute_qk

    c, path, tensors = config, getattr(gf, "path", "the GGUF file"), gf.tensors
    kv = c.n_kv_head * c.head_dim
    shapes = {
        "attn_norm": (c.d_model,), "ffn_norm": (c.d_model,), "attn_q": (c.d_model, c.d_model), "attn_k": (kv, c.d_model),
        "attn_v": (kv, c.d_model), "attn_output": (c.d_model, c.d_model), "ffn_gate": (c.d_ff, c.d_model),
        "ffn_up": (c.d_ff, c.d_model), "ffn_down": (c.d_model, c.d_ff),
    }

    def info(name: str, shape: tuple[int, ...]) -> Any:
        if name not in tensors:
            raise ValueError(f"{path}: tensor {name!r} is missing (the file has {len(tensors)} tensors)")
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, but the config needs {tuple(shape)}")
        return tensors[name]

    def floats(name: str, shape: tuple[int, ...], heads: int | None = None) -> torch.Tensor:
        info(name, shape)
        w = gf.tensor(name)  # (out, in) float32
        return torch.from_numpy(np.ascontiguousarray(unpermute_qk(w, heads) if heads else w))

    def blocks(name: str, shape: tuple[int, ...], heads: int | None = None) -> torch.Tensor | None:
        """The raw bytes (out, in / 32 * bytes per block) of a matrix QuantizedLinear can hold, else None."""
        if not quantized or info(name, shape).qtype not in QuantizedLinear.QTYPES:
            return None
        raw = gf.raw(name).reshape(shape[0], -1)  # one row of blocks per output feature (a read-only view of the file)
        return torch.from_numpy(np.array(unpermute_qk(raw, heads) if heads else raw))  # a copy PyTorch may own

    state = {"tok_emb.weight": floats("token_embd.weight", (c.vocab_size, c.d_model)),
             "norm_f.weight": floats("output_norm.weight", (c.d_model,))}
    if not c.tie_weights:
        state["lm_head.weight"] = floats("output.weight", (c.vocab_size, c.d_model))
    layers: dict[str, QuantizedLinear] = {}
    heads = {"attn_q": c.n_head, "attn_k": c.n_kv_head}  # the matrices whose rows GGUF permuted
    for i in range(c.n_layer):
        pre, out = f"blk.{i}.", f"blocks.{i}."
        for ours, g in GGUF_NORMS.items():
            state[out + ours + ".weight"] = floats(pre + g + ".weight", shapes[g])
        for ours, names in GGUF_LINEARS.items():
            raws = [blocks(pre + g + ".weight", shapes[g], heads.get(g)) for g in names]
            qtypes = {tensors[pre + g + ".weight"].qtype for g in names}
            if all(r is not None for r in raws) and len(qtypes) == 1:  # stays in its blocks
                layers[out + ours] = QuantizedLinear(torch.cat(raws), qtypes.pop(), shapes[names[0]][1])
            else:  # float32, e.g. fc1 = [gate; up] (2 d_ff, d) as FeedForward expects
                state[out + ours + ".weight"] = torch.cat([floats(pre + g + ".weight", shapes[g], heads.get(g)) for g in names])
    return state, layers


# ============================================================================= quantized weights
class QuantizedLinear(nn.Module):
    """y = x W^T with W kept in GGUF blocks of 32 (Q8_0: 34 bytes, Q4_1: 20 bytes) and dequantized at each call.

    Memory per weight: 8.5 bits (Q8_0) or 5 bits (Q4_1) instead of 32; each call pays a dequantization.
    The dequantized matrix equals `course_lib.gguf.dequantize` of the same bytes exactly (tested).
    See notebook 13.
    """

    QTYPES: ClassVar[dict[str, int]] = {"Q8_0": 34, "Q4_1": 20}  # bytes per block of 32 weights

    def __init__(self, raw: torch.Tensor, qtype: str, in_features: int) -> None:
        super().__init__()
        if qtype not in self.QTYPES:
            raise ValueError(f"QuantizedLinear supports {sorted(self.QTYPES)}, got {qtype!r}")
        if raw.dtype != torch.uint8 or raw.dim() != 2 or in_features % 32 or raw.shape[1] != in_features // 32 * self.QTYPES[qtype]:
            raise ValueError(
                f"raw must be uint8 of shape (out_features, in_features / 32 * {self.QTYPES[qtype]}) = "
                f"(*, {in_features // 32 * self.QTYPES[qtype]}), got {raw.dtype} {tuple(raw.shape)}"
            )
        self.qtype, self.in_features, self.out_features = qtype, in_features, raw.shape[0]
        self.register_buffer("raw", raw)

    def weight_float(self) -> torch.Tensor:
        """The weight (out, in) as float32: scale d (and minimum m) from each block's header, times its codes."""
        blocks = self.raw.view(self.out_features, -1, self.QTYPES[self.qtype])  # (out, in/32, bytes)
        d = blocks[..., 0:2].contiguous().view(torch.float16).float()  # (out, in/32, 1)
        if self.qtype == "Q8_0":
            q = blocks[..., 2:].view(torch.int8).float()  # (out, in/32, 32)
            w = d * q
        else:  # Q4_1: fp16 d, fp16 m, then 16 bytes: low nibbles are weights 0..15, high nibbles 16..31
            m = blocks[..., 2:4].contiguous().view(torch.float16).float()
            qs = blocks[..., 4:]
            q = torch.cat([qs & 0x0F, qs >> 4], dim=-1).float()  # (out, in/32, 32)
            w = d * q + m
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        return F.linear(x, self.weight_float().to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}"
