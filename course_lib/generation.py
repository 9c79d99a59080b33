"""Decoding: turn a language model's next-token logits into text.

What is here:
- filters on a (B, V) row of logits: `apply_temperature`, `top_k_filter`, `top_p_filter`;
- `sample_next`: greedy (argmax) or sampling after those filters;
- `generate`: autoregressive decoding for a decoder-only model (our `GPT`), with or without a
  key/value cache; both give exactly the same tokens (see tests), the cache is just faster
  (for a GPT the cache is its `GPTDecoder`; `fast=False` uses `model(ids, cache=...)`);
- `seq2seq_generate`: the same for an encoder-decoder model (our `EncoderDecoder`);
- `beam_search`: keep the `beam_size` best partial sequences, with a length penalty
  (works for both kinds of model).

A model is used through a small protocol: `model.config.block_size` (its context length),
`model.new_cache()` (per-layer `KVCache`s), `model(idx, cache=...)` -> output with `.logits`
(decoder-only), and `model.encode(src, src_mask)` / `model.decode(tgt, memory, memory_mask, cache=...)`
(encoder-decoder).

Past the context length. A model with learned positions cannot see more than `block_size`
tokens. When the text outgrows it we keep only the last `keep` tokens (default
`block_size // 2`) and carry on; the cached and uncached paths apply the same rule, so they
still agree token for token. (nanoGPT slides the window by one token every step, which is
`keep = block_size - 1` here: a cache then has to be rebuilt every step and gives no speed-up.)

Leaves out: repetition penalties, speculative decoding, constrained decoding, batched beam search.
See notebooks 06 and 07.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from course_lib.utils import check_token_ids

__all__ = [
    "check_sampling_args",
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "sample_next",
    "generate",
    "stream",
    "seq2seq_generate",
    "beam_search",
]


# ----------------------------------------------------------------------------- filters
def check_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError for a non-positive temperature, top_k < 1 or top_p outside (0, 1]."""
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number > 0 (use greedy=True for argmax), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def _check_logits(logits: Any) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point or logits.dim() < 1:
        what = f"a {logits.dtype} tensor of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"logits must be a float tensor (..., V), got {what}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature: < 1 sharpens the distribution, > 1 flattens it.

    >>> apply_temperature(torch.tensor([2.0, 4.0]), 2.0).tolist()
    [1.0, 2.0]
    """
    check_sampling_args(temperature)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept too); the rest become -inf.

    >>> top_k_filter(torch.tensor([1.0, 3.0, 2.0]), 2).tolist()
    [-inf, 3.0, 2.0]
    """
    check_sampling_args(top_k=k)
    _check_logits(logits)
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest value
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probabilities sum to >= p.

    The most likely token is always kept. probs [0.5, 0.3, 0.2] with p=0.7 -> keep the first two.
    >>> torch.isinf(top_p_filter(torch.tensor([0.5, 0.3, 0.2]).log(), 0.7)).tolist()
    [False, False, True]
    """
    check_sampling_args(top_p=p)
    _check_logits(logits)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above this one
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of `logits` (B, V): argmax if `greedy`, else sample after the filters.

    Order: temperature, then top-k, then top-p (as Hugging Face does). Returns (B,) ids.
    """
    check_sampling_args(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
    if greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


# ----------------------------------------------------------------------------- helpers
def _check_ids(name: str, idx: Any) -> torch.Tensor:
    check_token_ids(idx, name)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"{name} must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
    return idx.long()


def _check_count(name: str, n: Any, minimum: int = 0) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {n!r}")
    return n


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, tuple) else out)


def _append_next(
    out: torch.Tensor,
    logits: torch.Tensor,
    done: torch.Tensor,
    eos_id: int | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, bool]:
    """Pick each row's next token from the last position of `logits` (B, T, V) and append it to `out` (B, t).

    With `eos_id`, a finished row keeps producing eos_id (`done` (B,) is updated in place); returns
    (out (B, t + 1), True once every row has finished).
    """
    nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)  # (B,)
    if eos_id is not None:
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        done |= nxt == eos_id
    return torch.cat([out, nxt[:, None]], dim=1), eos_id is not None and bool(done.all())


@contextmanager
def _decoding(model: torch.nn.Module) -> Iterator[None]:
    """For the length of one decoding call: eval mode, and each attention's q/k/v projections stacked
    into one matrix (`MultiHeadAttention.pack_qkv`; the weights cannot change meanwhile). Afterwards
    the stacked copies are dropped and the model's training mode is restored."""
    from course_lib.attention import MultiHeadAttention

    was_training = model.training
    model.eval()
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for m in attentions:
        m.pack_qkv(True)
    try:
        yield
    finally:
        for m in attentions:
            m.pack_qkv(False)
        model.train(was_training)


def _reorder(cache: Any, index: torch.Tensor) -> None:
    """Call .reorder(index) on every KVCache inside (nested lists/tuples of) `cache`."""
    if cache is None:
        return
    if isinstance(cache, (list, tuple)):
        for c in cache:
            _reorder(c, index)
    else:
        cache.reorder(index)


# ----------------------------------------------------------------------------- decoder-only
def generate(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    keep: int | None = None,
    fast: bool = True,
) -> torch.Tensor:
    """Extend the prompt `idx` (B, T) by `max_new_tokens` tokens; returns (B, T + new).

    Each step feeds the visible context (or, with the cache, only the newest token) to the model,
    takes the last position's logits and picks a token with `sample_next`. With `eos_id`, stops
    once every row has produced it (later tokens of a finished row are `eos_id`).
    `keep`: tokens kept when the context overflows (see the module docstring).
    `fast`: with the cache, decode a GPT with its `GPTDecoder` (`model.fast_decoder()`: the same
    logits with far fewer calls); False, or a model without one, runs `model(ids, cache=...)` with a
    `KVCache` per layer. Both give the same tokens.

    >>> # out = generate(model, torch.tensor([[0]]), 100, top_k=10)

    See notebook 06.
    """
    out = idx
    for out in _steps(model, idx, max_new_tokens, temperature, top_k, top_p, greedy, use_cache, generator, eos_id, keep, fast):
        pass
    return out.clone()  # a normal tensor again (inference tensors cannot enter autograd)


def stream(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    keep: int | None = None,
    fast: bool = True,
) -> Iterator[torch.Tensor]:
    """`generate`, one step at a time: yields each new token (B,) as soon as it is chosen (for a chat that types).

    The same tokens as `generate` with the same arguments and generator (tested).
    >>> # for t in stream(model, prompt, 50, eos_id=eos): print(tok.decode([int(t[0])]), end="")
    See notebook 13.
    """
    for out in _steps(model, idx, max_new_tokens, temperature, top_k, top_p, greedy, use_cache, generator, eos_id, keep, fast):
        yield out[:, -1].clone()


@torch.inference_mode()  # as a decorator it is on only while a step runs, not while the caller holds a yield
def _steps(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    greedy: bool,
    use_cache: bool,
    generator: torch.Generator | None,
    eos_id: int | None,
    keep: int | None,
    fast: bool,
) -> Iterator[torch.Tensor]:
    """The decoding loop of `generate` and `stream`: yields the sequence (B, T + i) after each new token."""
    idx = _check_ids("idx", idx)
    _check_count("max_new_tokens", max_new_tokens)
    check_sampling_args(temperature, top_k, top_p)
    block = int(model.config.block_size)
    vocab = getattr(model.config, "vocab_size", None)
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, int) or not 0 <= eos_id < (vocab or eos_id + 1)):
        raise ValueError(f"eos_id must be a token id in [0, vocab_size={vocab}), got {eos_id!r}")
    keep = block // 2 if keep is None else keep
    if not isinstance(keep, int) or not 1 <= keep < block:
        raise ValueError(f"keep must be an int in [1, block_size={block}), got {keep!r}")
    out = idx
    start = max(0, out.size(1) - block)  # first token the model sees
    # a GPT decodes with its GPTDecoder (same logits, fewer calls); other models with a KVCache per layer
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    make_decoder = getattr(model, "fast_decoder", None) if (use_cache and fast) else None
    decoder = make_decoder() if make_decoder is not None else None
    cache = model.new_cache() if (use_cache and decoder is None) else None
    done = torch.zeros(out.size(0), dtype=torch.bool, device=out.device)
    with _decoding(model):  # eval mode and stacked q/k/v until the last step (or until the caller drops a stream)
        for _ in range(max_new_tokens):
            if out.size(1) - start > block:  # context full: keep the last `keep` tokens
                start = out.size(1) - keep
                cache = model.new_cache() if cache is not None else None
                if decoder is not None:
                    decoder.reset()
            if decoder is not None:  # (B, V) logits of the last position
                logits = decoder(out[:, -1:] if decoder.length else out[:, start:])[:, None]
            elif cache is not None and cache[0].length > 0:
                logits = _logits(model(out[:, -1:], cache=cache))  # only the newest token
            else:
                logits = _logits(model(out[:, start:], cache=cache))  # (B, T, V)
            out, finished = _append_next(out, logits, done, eos_id, temperature, top_k, top_p, greedy, generator)
            yield out
            if finished:
                break


# ----------------------------------------------------------------------------- encoder-decoder
@torch.no_grad()
def seq2seq_generate(
    model: torch.nn.Module,
    src: torch.Tensor,
    max_new_tokens: int,
    bos_id: int,
    eos_id: int | None = None,
    src_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = True,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decode targets for `src` (B, S) starting from `bos_id`; greedy by default. Returns (B, 1 + new).

    `src_mask` (B, S) marks real source tokens with 1 (padding 0). Stops when every row has
    produced `eos_id` (or after `max_new_tokens`). See notebook 07.
    """
    src = _check_ids("src", src)
    _check_count("max_new_tokens", max_new_tokens)
    check_sampling_args(temperature, top_k, top_p)
    block = int(model.config.block_size)
    if max_new_tokens + 1 > block:
        raise ValueError(f"max_new_tokens + 1 = {max_new_tokens + 1} exceeds the decoder context block_size={block}")
    with _decoding(model):
        memory = model.encode(src, src_mask)  # (B, S, d)
        out = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
        cache = model.new_cache() if use_cache else None
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            tgt = out[:, -1:] if use_cache else out
            logits = _logits(model.decode(tgt, memory, src_mask, cache=cache))  # (B, t, V)
            out, finished = _append_next(out, logits, done, eos_id, temperature, top_k, top_p, greedy, generator)
            if finished:
                break
    return out


# ----------------------------------------------------------------------------- beam search
@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    beam_size: int = 4,
    max_new_tokens: int = 20,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    bos_id: int | None = None,
    src_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    return_all: bool = False,
) -> torch.Tensor | list[tuple[float, torch.Tensor]]:
    """Beam search for ONE sequence: keep the `beam_size` best partial outputs at every step.

    Decoder-only model: `inputs` (1, T) is the prompt and the result starts with it.
    Encoder-decoder model (has `.encode`): `inputs` (1, S) is the source, decoding starts from
    `bos_id` and the result starts with it.
    A finished hypothesis (it produced `eos_id`, or reached `max_new_tokens`) is scored by
    sum of log-probabilities / (number of new tokens) ** length_penalty  (as Hugging Face does):
    length_penalty = 0 is the raw sum (favours short outputs), 1 the mean log-probability.
    Returns the best sequence (1, T'), or with `return_all` every finished (score, tokens) pair, best first.
    With beam_size=1 this is greedy decoding. See notebook 07.
    """
    inputs = _check_ids("inputs", inputs)
    if inputs.size(0) != 1:
        raise ValueError(f"beam_search decodes one sequence at a time: inputs must be (1, T), got {tuple(inputs.shape)}")
    _check_count("beam_size", beam_size, 1)
    _check_count("max_new_tokens", max_new_tokens, 1)
    seq2seq = hasattr(model, "encode")
    block = int(model.config.block_size)
    with _decoding(model):
        if seq2seq:
            if bos_id is None:
                raise ValueError("beam_search on an encoder-decoder model needs bos_id")
            memory = model.encode(inputs, src_mask)  # (1, S, d)
            mem_mask = src_mask
            seqs = torch.full((1, 1), bos_id, dtype=torch.long, device=inputs.device)
        else:
            seqs = inputs
        prefix = seqs.size(1)
        if prefix + max_new_tokens > block:
            raise ValueError(
                f"beam_search needs prefix + max_new_tokens <= block_size: {prefix} + {max_new_tokens} > {block}"
            )
        scores = torch.zeros(1, device=inputs.device)  # (nb,) summed log-probs of the live beams
        cache = model.new_cache() if use_cache else None
        finished: list[tuple[float, torch.Tensor]] = []
        for step in range(max_new_tokens):
            nb = seqs.size(0)
            tokens = seqs[:, -1:] if (use_cache and step > 0) else seqs
            if seq2seq:
                mem = memory.expand(nb, -1, -1)
                mm = None if mem_mask is None else mem_mask.expand(nb, -1)
                logits = _logits(model.decode(tokens, mem, mm, cache=cache))
            else:
                logits = _logits(model(tokens, cache=cache))
            logp = F.log_softmax(logits[:, -1, :].float(), dim=-1)  # (nb, V)
            V = logp.size(-1)
            cand = (scores[:, None] + logp).view(-1)  # (nb * V,)
            top = torch.topk(cand, min(2 * beam_size, cand.numel()))
            keep_beam, keep_tok, keep_score = [], [], []
            n_new = step + 1
            for s, flat in zip(top.values.tolist(), top.indices.tolist()):
                b, t = divmod(flat, V)
                if eos_id is not None and t == eos_id:
                    finished.append((s / n_new**length_penalty, torch.cat([seqs[b], seqs.new_tensor([t])])))
                else:
                    keep_beam.append(b)
                    keep_tok.append(t)
                    keep_score.append(s)
                if len(keep_beam) == beam_size:
                    break
            best_live = keep_score[0] / n_new**length_penalty if keep_score else -math.inf
            if len(finished) >= beam_size and max(f[0] for f in finished) >= best_live:
                break
            if not keep_beam:
                break
            index = torch.tensor(keep_beam, device=seqs.device)
            seqs = torch.cat([seqs[index], torch.tensor(keep_tok, device=seqs.device)[:, None]], dim=1)
            scores = torch.tensor(keep_score, device=seqs.device)
            if cache is not None:
                _reorder(cache, index)
        else:  # ran out of steps: the live beams count as finished
            for s, seq in zip(scores.tolist(), seqs):
                finished.append((s / max_new_tokens**length_penalty, seq))
        if not finished:
            for s, seq in zip(scores.tolist(), seqs):
                finished.append((s / max(1, seqs.size(1) - prefix) ** length_penalty, seq))
    finished.sort(key=lambda f: -f[0])
    if return_all:
        return finished
    return finished[0][1][None, :]
