"""Concept diagrams of the model families and recipes of notebooks 05-13, drawn with the course's kit.

What it does: eight pictures, each a function with no arguments that returns a `Diagram`:
`bert_input_stack` (05), `causal_mask_and_kv_cache` (06), `encoder_decoder` (07), `lora_and_prompt_tuning`
(08), `moe_routing` (09), `chat_template_loss_mask` (10), `project_flow` (11) and
`grouped_query_attention` (13). Every number or token a picture shows is computed here from the
course's own code (masking rates, segment ids, the causal mask, the G2P encoding, LoRA and soft-prompt
sizes, router decisions, the chat template and its loss mask, KV-cache sizes), so a change in
`course_lib` changes the picture. `moe_example` and `chat_example` return the data behind two of them.

Leaves out: the numbers of the notebooks' trained models (the notebooks' plots show those); example
sentences that need a downloaded corpus (notebook 05's pair) are replaced by short ones, labelled.

See notebooks 05, 06, 07, 08, 09, 10, 11 and 13.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import torch

from course_lib.diagrams.kit import COLOURS, Diagram, arrow, box, bracket, canvas, grid, label, token_row

__all__ = ["bert_input_stack", "causal_mask_and_kv_cache", "encoder_decoder", "lora_and_prompt_tuning", "moe_routing",
           "moe_example", "chat_template_loss_mask", "chat_example", "project_flow", "grouped_query_attention"]

SPECIAL = "#444444"  # special tokens: dark boxes with white text, as notebook 10's token stream shows them


def _show(piece: str) -> str:
    """A token's text as drawn: a visible space and newline."""
    return piece.replace("\n", "↵").replace(" ", "␣")


# ----------------------------------------------------------------------------- 05 BERT inputs
def bert_input_stack() -> Diagram:
    """BERT's input: token + segment + position embeddings per position, and the 15 / 80-10-10 masking rule (notebook 05)."""
    from course_lib.masking import bert_inputs as layout, mask_tokens

    defaults = {k: p.default for k, p in inspect.signature(mask_tokens).parameters.items()}
    p_choose, p_mask, p_random = defaults["mask_prob"], defaults["mask_frac"], defaults["random_frac"]
    p_keep = 1 - p_mask - p_random
    words_a, words_b = ["the", "cat", "sat"], ["it", "purred"]
    vocab = ["[CLS]", "[SEP]"] + words_a + words_b
    pair = layout([vocab.index(w) for w in words_a], [vocab.index(w) for w in words_b], cls_id=0, sep_id=1)
    tokens = [vocab[i] for i in pair["input_ids"].tolist()]
    segments = pair["token_type_ids"].tolist()

    d, ax = canvas("bert-inputs", "BERT's input embeddings and the masking rule", 20.6, 9.4)
    label(ax, 6.2, 9.0, "What BERT reads: [CLS] A [SEP] B [SEP]", size=11, bold=True)
    x0, w, gap = 1.9, 1.05, 0.12
    rows = [("input", tokens, "token", 7.3),
            ("token", [f"E[{t.strip('[]')}]" for t in tokens], "vector", 5.9),
            ("segment", [f"E_{'AB'[s]}" for s in segments], "vector", 4.7),
            ("position", [f"E_{i}" for i in range(len(tokens))], "vector", 3.5)]
    for name, texts, colour, y in rows:
        token_row(ax, x0, y, texts, w=w, h=0.7, gap=gap, colour=colour, size=8 if name == "token" else 9)
        label(ax, x0 - 0.15, y + 0.35, name, size=9, ha="right", colour="soft_ink")
    for y in (5.5, 4.3):
        for i in range(len(tokens)):
            label(ax, x0 + i * (w + gap) + w / 2, y + 0.02, "+", size=10, bold=True)
    right = x0 + len(tokens) * (w + gap) - gap
    for i in range(len(tokens)):
        cx = x0 + i * (w + gap) + w / 2
        arrow(ax, (cx, 7.3), (cx, 6.62), width=0.8)
    bracket(ax, x0, x0 + 4 * (w + gap) - gap, 3.2, "segment A (0)")
    bracket(ax, x0 + 4 * (w + gap), right, 3.2, "segment B (1)")
    box(ax, x0, 1.1, right - x0, 0.9, "sum, then LayerNorm  →  x  (T, d): the input of block 1", colour="norm", size=9)
    arrow(ax, ((x0 + right) / 2, 2.55), ((x0 + right) / 2, 2.02))
    label(ax, (x0 + right) / 2, 0.45, "a short illustrative pair; notebook 05 uses two sentences of a real review",
          size=8, colour="soft_ink", italic=True)

    # the masking rule
    cx = 16.3
    label(ax, cx, 9.0, "The masking rule (mask_tokens defaults)", size=11, bold=True)
    box(ax, cx - 3.0, 7.4, 6.0, 0.8, "ordinary tokens (never [CLS], [SEP], [PAD])", colour="token", size=9)
    box(ax, cx - 4.1, 5.6, 3.6, 0.9, f"{p_choose:.0%} chosen\nlabel = original token", colour="highlight", size=9)
    box(ax, cx + 0.5, 5.6, 3.6, 0.9, f"{1 - p_choose:.0%} not chosen\nlabel = -100 (no loss)", colour="muted", size=9)
    arrow(ax, (cx - 0.8, 7.4), (cx - 2.3, 6.52))
    arrow(ax, (cx + 0.8, 7.4), (cx + 2.3, 6.52))
    kinds = [(f"{p_mask:.0%}", "[MASK]", "attention"), (f"{p_random:.0%}", "random\ntoken", "output"),
             (f"{p_keep:.0%}", "kept\nunchanged", "vector")]
    for j, (pct, what, colour) in enumerate(kinds):
        bx = cx - 4.6 + j * 1.65
        box(ax, bx, 3.3, 1.45, 1.1, what, colour=colour, size=9)
        arrow(ax, (cx - 2.3, 5.6), (bx + 0.72, 4.42), pct, size=8)
        arrow(ax, (bx + 0.72, 3.3), (bx + 0.72, 2.57), width=0.9)
    box(ax, cx - 4.6, 1.1, 8.7, 1.45, "loss only at the chosen positions:\n"
        "predict the original token, whatever the input shows there", colour="loss", size=9)
    return d


# ----------------------------------------------------------------------------- 06 causal mask and KV cache
def causal_mask_and_kv_cache() -> Diagram:
    """The causal mask as a T x T grid, and one decoding step with a key/value cache (notebook 06)."""
    from course_lib.attention import causal_mask
    from course_lib.models import GPTConfig

    chars = [_show(c) for c in "But soft"]  # the start of notebook 06's demo text
    T = len(chars)
    allowed = causal_mask(T).tolist()
    d, ax = canvas("causal-mask-kv-cache", "The causal mask and the key/value cache", 20, 9.6)
    label(ax, 4.6, 9.2, "Causal mask (T × T)", size=11, bold=True)
    cell, gx, gy = 0.7, 1.9, 7.7
    grid(ax, gx, gy, [[None if a else "−∞" for a in row] for row in allowed], cell=cell, size=8,
         colours=[["attention" if a else "muted" for a in row] for row in allowed], row_labels=chars, col_labels=chars)
    label(ax, gx + T * cell / 2, gy + 0.62, "key j (attended to)", size=9, colour="soft_ink")
    label(ax, gx - 0.75, gy - T * cell / 2, "query i (predicts the next character)", size=9, colour="soft_ink", rotation=90)
    box(ax, gx, 0.75, 1.6, 0.55, "may attend", colour="attention", size=8, round=False)
    box(ax, gx + 1.8, 0.75, 2.3, 0.55, "blocked: score −∞", colour="muted", size=8, round=False)
    label(ax, gx + T * cell / 2, 0.3, "row i keeps keys j ≤ i; softmax gives the rest weight 0", size=8, colour="soft_ink")

    # the KV cache
    cfg = GPTConfig.preset("char-shakespeare", vocab_size=65)
    n_old, x0, cw = 5, 9.6, 0.75
    col = x0 + n_old * (cw + 0.05)  # the new token's column in the cache
    label(ax, 14.6, 9.2, f"Decoding with a KV cache: step {n_old + 1}", size=11, bold=True)
    box(ax, col - 0.4, 7.3, 1.55, 0.7, f"new: {chars[n_old]}", colour="highlight", size=9)
    label(ax, x0 - 0.2, 7.65, "only the newest token goes\nthrough the model: (B, 1)", size=8, ha="left", colour="soft_ink")
    box(ax, col + 2.2, 7.35, 1.2, 0.6, f"q{n_old + 1}", colour="highlight", size=9)
    arrow(ax, (col + 1.15, 7.65), (col + 2.18, 7.65), width=0.9)
    for name, y in (("K", 5.0), ("V", 3.4)):
        label(ax, x0 - 0.15, y + 0.3, f"cached {name}", size=9, ha="right")
        token_row(ax, x0, y, [f"{name.lower()}{i + 1}" for i in range(n_old)], w=cw, h=0.6, gap=0.05, colour="attention", size=8)
        box(ax, col, y, cw, 0.6, f"{name.lower()}{n_old + 1}", colour="highlight", size=8)
        arrow(ax, (col + cw, y + 0.3), (col + 2.18, 4.65 if name == "K" else 4.25), width=0.9)
    arrow(ax, (col + 0.3, 7.3), (col + 0.3, 5.62), width=0.9)
    arrow(ax, (col + 0.95, 7.3), (col + 0.6, 4.02), width=0.9, curve=-0.35)
    label(ax, col - 0.05, 6.45, "append k, v", size=8, colour="soft_ink", italic=True, ha="right")
    bracket(ax, x0, col - 0.05, 3.25, "kept from earlier steps, never recomputed")
    box(ax, col + 2.2, 3.8, 3.2, 1.3, f"softmax(q{n_old + 1} Kᵀ / √d) V\n→ output of step {n_old + 1}", colour="attention", size=9)
    arrow(ax, (col + 2.8, 7.35), (col + 2.8, 5.12), width=0.9)
    floats = 2 * cfg.n_layer * cfg.d_model
    label(ax, x0 - 1.4, 1.5, f"cache per layer: (B, n_head, T, head_size) for K and for V; notebook 06's GPT stores\n"
          f"2 × {cfg.n_layer} layers × {cfg.d_model} = {floats} floats per token. Without a cache step t runs all t tokens again.",
          size=8, ha="left", colour="soft_ink")
    return d


# ----------------------------------------------------------------------------- 07 encoder-decoder
def encoder_decoder() -> Diagram:
    """The G2P encoder-decoder: letters in, phonemes out, cross-attention between the two stacks (notebook 07)."""
    from course_lib.pronunciation import encode_pairs, g2p_config, source_vocab, target_vocab

    word, phones = "knight", ["N", "AY", "T"]  # notebook 07's running example (CMU dictionary)
    src_vocab, tgt_vocab = source_vocab(), target_vocab()
    batch = encode_pairs([(word, phones)], src_vocab, tgt_vocab)
    src, tgt, labels = (batch[k][0].tolist() for k in ("src", "tgt", "labels"))
    n_enc, n_dec = g2p_config().n_encoder_layer, g2p_config().n_decoder_layer

    d, ax = canvas("encoder-decoder", "The encoder-decoder Transformer from spelling to pronunciation", 20, 10.8)

    def ids_row(x, y, ids, itos, w, colour):
        boxes = token_row(ax, x, y, [itos[i] for i in ids], w=w, h=0.65, gap=0.1, colour=colour, size=9)
        for (bx, by, bw, _), i in zip(boxes, ids):
            label(ax, bx + bw / 2, by - 0.22, str(i), size=7, colour="soft_ink")
        return boxes

    # encoder
    ex, ew = 1.6, 6.2
    ids_row(ex + 0.25, 0.75, src, src_vocab.itos, 0.85, "token")
    label(ax, ex + ew / 2, 0.12, f"letters of '{word}' (source ids below), no <bos>/<eos>", size=8, colour="soft_ink")
    box(ax, ex, 1.9, ew, 0.65, "letter embedding + position   (B, S, d)", colour="vector", size=9)
    arrow(ax, (ex + ew / 2, 1.42), (ex + ew / 2, 1.88))
    box(ax, ex, 3.05, ew, 2.6, "", colour="block")
    label(ax, ex + 0.15, 5.4, "encoder block", size=9, ha="left", bold=True)
    label(ax, ex + ew - 0.15, 5.4, f"× {n_enc}", size=10, ha="right", bold=True)
    box(ax, ex + 0.3, 3.25, ew - 0.6, 0.8, "bidirectional self-attention\n(every letter sees every letter)", colour="attention", size=9)
    box(ax, ex + 0.3, 4.35, ew - 0.6, 0.6, "feed-forward", colour="block", size=9)
    arrow(ax, (ex + ew / 2, 2.55), (ex + ew / 2, 3.03))
    box(ax, ex, 6.25, ew, 0.7, "encoder output: one vector per letter  (B, S, d)", colour="vector", size=9)
    arrow(ax, (ex + ew / 2, 5.65), (ex + ew / 2, 6.23))
    label(ax, ex + ew / 2, 7.5, "Encoder: reads the spelling", size=11, bold=True)

    # decoder
    dx, dw = 11.4, 6.6
    ids_row(dx + 0.95, 0.75, tgt, tgt_vocab.itos, 1.1, "token")
    label(ax, dx + dw / 2, 0.12, "decoder input: <bos> + phonemes (shifted right by one)", size=8, colour="soft_ink")
    box(ax, dx, 1.9, dw, 0.65, "phoneme embedding + position   (B, T, d)", colour="vector", size=9)
    arrow(ax, (dx + dw / 2, 1.42), (dx + dw / 2, 1.88))
    box(ax, dx, 3.05, dw, 3.9, "", colour="block")
    label(ax, dx + 0.15, 6.7, "decoder block", size=9, ha="left", bold=True)
    label(ax, dx + dw - 0.15, 6.7, f"× {n_dec}", size=10, ha="right", bold=True)
    box(ax, dx + 0.3, 3.25, dw - 0.6, 0.75, "causal self-attention\n(a phoneme sees earlier phonemes only)", colour="attention", size=9)
    box(ax, dx + 0.3, 4.3, dw - 0.6, 0.95, "cross-attention\nqueries: decoder · keys, values: encoder", colour="highlight", size=9)
    box(ax, dx + 0.3, 5.55, dw - 0.6, 0.6, "feed-forward", colour="block", size=9)
    arrow(ax, (dx + dw / 2, 2.55), (dx + dw / 2, 3.03))
    arrow(ax, (ex + ew, 6.6), (dx + 0.28, 4.78), "keys, values", size=9, curve=-0.15)
    box(ax, dx, 7.55, dw, 0.7, "linear (tied to the phoneme embedding) + softmax", colour="output", size=9)
    arrow(ax, (dx + dw / 2, 6.95), (dx + dw / 2, 7.53))
    ids_row(dx + 0.95, 8.85, labels, tgt_vocab.itos, 1.1, "loss")
    arrow(ax, (dx + dw / 2, 8.25), (dx + dw / 2, 8.83))
    label(ax, dx + dw / 2, 9.85, "labels: phonemes + <eos> (ids below); loss at every position", size=8, colour="soft_ink")
    label(ax, dx + dw / 2, 10.4, "Decoder: writes the pronunciation", size=11, bold=True)
    return d


# ----------------------------------------------------------------------------- 08 LoRA and prompt tuning
D_MINILM, LORA_RANK, LORA_ALPHA, PROMPT_TOKENS = 384, 8, 16, 8  # notebook 08: MiniLM's width, r, alpha, soft tokens


def lora_and_prompt_tuning() -> Diagram:
    """LoRA (frozen W beside a trainable B·A) and prompt tuning (trainable soft tokens after [CLS]) (notebook 08)."""
    from torch import nn

    from course_lib.finetuning import LoRALinear, SoftPrompt

    with torch.random.fork_rng():  # built only to count their parameters; the caller's random state is left alone
        lora = LoRALinear(nn.Linear(D_MINILM, D_MINILM), r=LORA_RANK, alpha=LORA_ALPHA)
        n_prompt = SoftPrompt(PROMPT_TOKENS, D_MINILM).vectors.numel()
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in lora.parameters() if not p.requires_grad)
    d, ax = canvas("lora-prompt-tuning", "LoRA and prompt tuning: what is frozen, what is trained", 20, 10)

    # LoRA
    label(ax, 4.9, 9.55, "LoRA: a low-rank update beside a frozen weight", size=11, bold=True)
    box(ax, 3.3, 0.5, 2.6, 0.7, f"x   (d = {D_MINILM})", colour="vector", size=9)
    box(ax, 0.4, 2.4, 3.6, 3.6, f"W\n{D_MINILM} × {D_MINILM}\nfrozen", colour="muted", size=10)
    box(ax, 5.2, 2.4, 3.6, 0.8, f"A   {lora.r} × {D_MINILM}", colour="highlight", size=9)
    box(ax, 6.6, 3.6, 0.8, 2.4, "", colour="highlight")
    label(ax, 7.0, 4.8, f"B\n{D_MINILM}\n×\n{lora.r}", size=9)
    label(ax, 7.55, 4.8, "starts\nat 0", size=8, ha="left", colour="soft_ink")
    arrow(ax, (4.0, 1.2), (2.2, 2.38))
    arrow(ax, (5.2, 1.2), (7.0, 2.38))
    arrow(ax, (7.0, 3.2), (7.0, 3.58))
    box(ax, 2.6, 7.0, 4.0, 0.7, "y = W x + b + (α/r) B A x", colour="vector", size=9)
    arrow(ax, (2.2, 6.0), (3.8, 6.98))
    arrow(ax, (7.0, 6.0), (5.4, 6.98), f"× α/r = {lora.alpha:g}/{lora.r}", size=8, text_offset=(0.9, 0))
    label(ax, 4.6, 8.55, f"trained: r·(d_in + d_out) = {trainable:,}"
          f"   frozen: {frozen:,} (W and b)", size=9)
    label(ax, 4.6, 8.1, "after training, W + (α/r) B A is merged into one matrix", size=8, colour="soft_ink")

    # prompt tuning
    px = 10.6
    label(ax, 15.3, 9.55, "Prompt tuning: trainable vectors, frozen model", size=11, bold=True)
    real = ["[CLS]", "a", "joy", "[SEP]"]
    words = real[:1] + [f"p{i + 1}" for i in range(PROMPT_TOKENS)] + real[1:]
    colours = ["vector"] + ["highlight"] * PROMPT_TOKENS + ["vector"] * 3
    row = token_row(ax, px, 2.55, words, w=0.66, h=0.65, gap=0.05, colour=colours, size=8)
    right = row[-1][0] + 0.66
    mid = (px + right) / 2
    token_row(ax, mid - 2.0, 0.35, real, w=0.9, h=0.6, gap=0.13, colour="token", size=8)
    box(ax, px, 1.4, right - px, 0.6, "frozen token embeddings of the real tokens", colour="muted", size=9)
    label(ax, mid, 7.95, f"trained: the head, and p1-p{PROMPT_TOKENS} inserted after [CLS]: "
          f"{PROMPT_TOKENS} × {D_MINILM} = {n_prompt:,} numbers", size=8, colour="soft_ink")
    box(ax, px, 3.85, right - px, 0.6, "+ positions, LayerNorm (frozen)   (B, T + n, d)", colour="muted", size=9)
    box(ax, px, 4.95, right - px, 1.4, "frozen MiniLM encoder: every block\n(gradients flow through it to the prompt)",
        colour="muted", size=9)
    box(ax, px + 2.0, 6.85, right - px - 4.0, 0.7, "classification head", colour="highlight", size=9)
    for y0, y1 in ((0.95, 1.38), (3.2, 3.83), (4.45, 4.93), (6.35, 6.83)):
        arrow(ax, (mid, y0), (mid, y1))
    for bx, _, bw, _ in (row[0], row[-3], row[-2], row[-1]):  # the real tokens' vectors; the p's are the prompt's own
        arrow(ax, (bx + bw / 2, 2.0), (bx + bw / 2, 2.53), width=0.9)
    box(ax, mid - 1.4, 8.45, 1.2, 0.5, "trained", colour="highlight", size=8)
    box(ax, mid + 0.2, 8.45, 1.2, 0.5, "frozen", colour="muted", size=8)
    label(ax, 0.3, 0.2, "sizes of notebook 08: MiniLM's width, r, α and the number of soft tokens", size=8, colour="soft_ink",
          ha="left", italic=True)
    return d


# ----------------------------------------------------------------------------- 09 MoE routing
def moe_example(n_tokens: int = 12, n_experts: int = 4, k: int = 2, seed: int = 0) -> dict:
    """Notebook 09's toy router (seeded scores, tokens x experts) routed both ways by `course_lib.moe`."""
    from course_lib.moe import expert_capacity, expert_choice_route, token_choice_route

    logits = torch.randn(n_tokens, n_experts, generator=torch.Generator().manual_seed(seed)) * 1.5  # (N, E)
    tc = token_choice_route(logits, k=k, capacity=expert_capacity(n_tokens, n_experts, 1.0, k))
    ec = expert_choice_route(logits, capacity=expert_capacity(n_tokens, n_experts, float(k)))
    return {"logits": logits, "probs": tc.probs, "k": k, "token_choice": tc, "expert_choice": ec}


def moe_routing() -> Diagram:
    """Token-choice routing (top-k experts per token, capacity, drops) beside expert choice (top-C tokens per expert) (notebook 09)."""
    ex = moe_example()
    probs, k, tc, ec = ex["probs"], ex["k"], ex["token_choice"], ex["expert_choice"]
    N, E = probs.shape
    picked = torch.zeros(N, E, dtype=torch.bool).scatter(1, probs.topk(k, dim=-1).indices, True)  # each row's top-k
    d, ax = canvas("moe-routing", "Token-choice and expert-choice routing of a mixture of experts", 20, 10.7)
    values = [[float(v) for v in row] for row in probs]
    rows, cols = [f"token {i}" for i in range(N)], [f"e{j}" for j in range(E)]
    cell, top = 0.62, 9.0
    panels = [
        (1.5, "Token choice: each token picks its top-k", tc,
         [["highlight" if tc.dispatch[i, j] else "loss" if picked[i, j] else "white" for j in range(E)] for i in range(N)],
         [f"each row: its top {k} experts (k = {k})",
          f"capacity C = {tc.capacity} tokens per expert",
          "first choices are served first;",
          "what does not fit is dropped (red)",
          f"dropped: {tc.dropped} of {N * k} choices",
          f"tokens with no expert: {tc.unrouted_tokens}"]),
        (11.0, "Expert choice: each expert picks its top-C", ec,
         [["highlight" if ec.dispatch[i, j] else "white" for j in range(E)] for i in range(N)],
         [f"each column: its top C = {ec.capacity} tokens",
          "every expert exactly full: no drops",
          f"same compute: {int(ec.dispatch.sum())} (token, expert) pairs",
          "a token may get 0, 1 or several experts:",
          f"0 experts: {int((ec.experts_per_token == 0).sum())} tokens, "
          f"3 or more: {int((ec.experts_per_token >= 3).sum())}"])]
    for gx, title, routing, colours, notes in panels:
        label(ax, gx + 3.6, 10.2, title, size=11, bold=True)
        grid(ax, gx, top, values, cell=cell, colours=colours, fmt="{:.2f}", size=7, row_labels=rows, col_labels=cols)
        ax.text(gx + E * cell + 0.35, top + 0.12, "experts", ha="center", va="bottom", fontsize=7, color=COLOURS["soft_ink"])
        for i, n in enumerate(routing.experts_per_token.tolist()):
            label(ax, gx + E * cell + 0.35, top - (i + 0.5) * cell, str(n), size=8)
        label(ax, gx - 0.12, top - N * cell - 0.3, "tokens", size=7, ha="right", colour="soft_ink")
        for j, n in enumerate(routing.tokens_per_expert.tolist()):
            label(ax, gx + (j + 0.5) * cell, top - N * cell - 0.3, str(n), size=8)
        for i, line in enumerate(notes):
            label(ax, gx + E * cell + 0.9, top - 0.5 - i * 0.5, line, size=8.5, ha="left")
    box(ax, 1.7, 0.35, 1.7, 0.5, "routed", colour="highlight", size=8, round=False)
    box(ax, 3.6, 0.35, 2.9, 0.5, "chosen, dropped (full)", colour="loss", size=8, round=False)
    label(ax, 6.8, 0.6, "cells: router probability (softmax over experts); seeded toy scores of notebook 09",
          size=8, ha="left", colour="soft_ink")
    return d


# ----------------------------------------------------------------------------- 10 chat template and loss mask
#: the first three messages of notebook 10's conversation
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": 'How is the word "cat" pronounced?'},
    {"role": "assistant", "content": "K AE1 T"},
]


def chat_example(style: str = "chatml") -> dict:
    """The conversation rendered and encoded by `course_lib.chat.encode_chat`, with a BPE trained on it alone."""
    from course_lib.chat import add_special_tokens, encode_chat, masked_targets, render
    from course_lib.tokenization import BPETokenizer

    text = render(CONVERSATION, style)
    with warnings.catch_warnings():  # "no pairs left": every word of this tiny text becomes one token, as wanted
        warnings.simplefilter("ignore", UserWarning)
        tok = add_special_tokens(BPETokenizer.train(text, 256 + len(text)))
    ids, mask = encode_chat(CONVERSATION, tok, style)
    x, y = masked_targets(ids, mask)
    return {"text": text, "tokenizer": tok, "ids": ids, "mask": mask, "pieces": [tok.decode([i]) for i in ids],
            "specials": set(tok.special_tokens.values()), "targets": tok.decode(y[y != -100].tolist())}


def chat_template_loss_mask() -> Diagram:
    """A ChatML token stream of one short conversation and its loss mask: 1 only on the assistant's reply and end token (notebook 10)."""
    from course_lib.chat import IM_START

    ex = chat_example()
    lines: list[list[int]] = []  # token positions, one line per turn (a turn starts at <|im_start|>)
    for k, piece in enumerate(ex["pieces"]):
        if piece == IM_START or not lines:
            lines.append([])
        lines[-1].append(k)
    unit, gap, x0 = 0.15, 0.08, 1.9
    width = lambda p: max(0.42, unit * len(p) + 0.22)  # noqa: E731
    d, ax = canvas("chat-template-loss-mask", "A chat template's token stream and its loss mask", 20, 2.8 + 1.9 * len(lines))
    label(ax, 10, 2.4 + 1.9 * len(lines), "ChatML token stream (top) and loss mask m (below each token)", size=11, bold=True)
    for r, line in enumerate(lines):
        y, x = 1.9 * (len(lines) - r) + 0.75, x0
        role = CONVERSATION[r]["role"] if r < len(CONVERSATION) else ""
        label(ax, x0 - 0.2, y + 0.35, role, size=9, ha="right", bold=role == "assistant")
        label(ax, x0 - 0.2, y - 0.3, "m", size=8, ha="right", colour="soft_ink", italic=True)
        for k in line:
            piece, m, w = ex["pieces"][k], ex["mask"][k], width(ex["pieces"][k])
            special = ex["ids"][k] in ex["specials"]
            box(ax, x, y, w, 0.65, _show(piece), colour=SPECIAL if special else "loss" if m else "token",
                text_colour="white" if special else "ink", size=8, bold=special)
            box(ax, x, y - 0.5, w, 0.38, str(m), colour="loss" if m else "muted", size=8, round=False)
            x += w + gap
    y = 0.95
    box(ax, x0, y, 1.6, 0.45, "<|special|>", colour=SPECIAL, text_colour="white", size=8, bold=True)
    box(ax, x0 + 1.8, y, 2.2, 0.45, "m = 1: trained on", colour="loss", size=8)
    box(ax, x0 + 4.2, y, 3.2, 0.45, "m = 0: label -100, no loss", colour="muted", size=8)
    label(ax, x0 + 7.7, y + 0.22, f"trained targets: {ex['targets']!r} (the reply and its end token)", size=9, ha="left")
    label(ax, x0, 0.35, "tokens: the course's BPE trained on this conversation alone, so words stay whole "
          "(notebook 10's tokenizer splits them finer); ↵ newline, ␣ space", size=8, ha="left", colour="soft_ink", italic=True)
    return d


# ----------------------------------------------------------------------------- 11 project flow
PROJECT_COMMANDS = ("prepare", "train", "evaluate", "generate")  # course_lib.cli.COMMANDS


def project_flow() -> Diagram:
    """The stages of an LLM project and the command that runs each, as `course_lib.cli` does them (notebook 11)."""
    from course_lib.training import CONFIG_FILE, MODEL_FILE

    # the command line is a layer above the pictures, so its commands are written here (the tests compare them
    # with cli.COMMANDS) and the config is read as the file it is
    prepare, train, evaluate, generate = PROJECT_COMMANDS
    cfg = json.loads((Path(__file__).resolve().parent.parent / "project_configs" / "gpt_char.json").read_text())
    order = ["data", "tokenizer", "model", "train", "evaluate", "generate"]  # the stages' order
    sections = sorted((k for k in cfg if isinstance(cfg[k], dict)), key=lambda k: order.index(k) if k in order else len(order))
    d, ax = canvas("project-flow", "The anatomy of an LLM project: stages, commands and files", 20, 9.2)
    label(ax, 10, 8.8, "One project, six stages, four commands (python -m course_lib COMMAND --config gpt_char)", size=11, bold=True)
    box(ax, 2.0, 7.2, 16.0, 0.95, f"config file {cfg['name']}.json, one section per stage: " + " · ".join(sections) +
        "\nload_config fills the defaults, applies --set section.key=value and refuses a wrong key or type",
        colour="norm", size=9)
    stages = [
        ("data", "load the corpus\nsplit train / val", "token", prepare),
        ("tokenizer", "learn a vocabulary\nencode the splits", "token", prepare),
        ("batches", "seeded random\nwindows (BERT:\npacked rows); under\ntorchrun one slice\nper process", "vector", train),
        ("training loop", "the model of the\nconfig; loss, AdamW,\nwarm-up + cosine,\nclipping, logging", "block", train),
        ("evaluation", "held-out metrics:\nperplexity,\naccuracy,\nWER / PER", "output", evaluate),
        ("use", "sample text, fill\n[MASK], pronounce", "output", generate),
    ]
    w, gap, y = 2.85, 0.38, 3.5
    xs = [0.35 + i * (w + gap) for i in range(len(stages))]
    for x, (name, what, colour, _) in zip(xs, stages):
        box(ax, x, y, w, 2.4, "", colour=colour)
        label(ax, x + w / 2, y + 2.05, name, size=10, bold=True)
        label(ax, x + w / 2, y + 0.9, what, size=8)
        arrow(ax, (x + w / 2, 7.2), (x + w / 2, y + 2.42), dashed=True, width=0.8, colour="soft_ink")
    for x0, x1 in zip(xs, xs[1:]):
        arrow(ax, (x0 + w, y + 1.2), (x1 - 0.02, y + 1.2))
    for cmd in (prepare, train, evaluate, generate):
        idx = [i for i, s in enumerate(stages) if s[3] == cmd]
        bracket(ax, xs[idx[0]] + 0.1, xs[idx[-1]] + w - 0.1, 3.3, "")
        label(ax, (xs[idx[0]] + xs[idx[-1]] + w) / 2, 2.85, cmd, size=10, bold=True, colour="#1f4e79")
    files = [(0, 1, f"prepared/: tokenizer, data.safetensors,\nmeta.json"),
             (2, 3, f"checkpoint/: {MODEL_FILE} + {CONFIG_FILE}\nhistory.json (losses), config.json (as run)"),
             (4, 4, "eval.json"), (5, 5, "text / fills /\npronunciations")]
    for i, j, text in files:
        box(ax, xs[i] + 0.1, 1.3, xs[j] + w - xs[i] - 0.2, 1.0, text, colour="muted", size=8, round=False)
    label(ax, 10, 0.75, "every file lands in one run folder, data/runs/<name>/; weights as safetensors, settings as JSON",
          size=8.5, colour="soft_ink")
    label(ax, 10, 0.3, "then the report: one table of every model and metric, with 95% intervals (notebook 11, section 6)",
          size=8.5, colour="soft_ink")
    return d


# ----------------------------------------------------------------------------- 13 grouped-query attention
def grouped_query_attention() -> Diagram:
    """Multi-head, grouped-query and multi-query attention: which key/value head each query head reads, and the KV cache each needs (notebook 13)."""
    from course_lib.llama import LlamaConfig, kv_cache_bytes_per_token

    cfg = LlamaConfig()  # SmolLM2-135M
    kinds = [("multi-head", cfg.n_head), ("grouped-query", cfg.n_kv_head), ("multi-query", 1)]
    d, ax = canvas("grouped-query-attention", "Multi-head, grouped-query and multi-query attention", 20, 8.6)
    label(ax, 10, 8.2, f"{cfg.n_head} query heads per block, and the key/value heads they share (SmolLM2-135M's sizes)",
          size=11, bold=True)
    w, gap = 0.5, 0.13
    for p, (name, n_kv) in enumerate(kinds):
        x0 = 0.8 + p * 6.6
        group = cfg.n_head // n_kv
        ours = n_kv == cfg.n_kv_head
        label(ax, x0 + 2.8, 7.3, f"{name}: {n_kv} kv head{'s' if n_kv > 1 else ''}", size=10, bold=ours)
        if ours:
            box(ax, x0 + 1.2, 6.55, 3.2, 0.45, "SmolLM2-135M uses this", colour="highlight", size=8)
        heads = token_row(ax, x0, 5.3, [f"q{h}" for h in range(cfg.n_head)], w=w, h=0.6, gap=gap, colour="attention", size=7)
        for g in range(n_kv):
            gx = x0 + g * group * (w + gap)
            box(ax, gx, 2.9, group * (w + gap) - gap, 0.7, f"k{g}, v{g}" if group * (w + gap) > 0.9 else f"kv{g}",
                colour="vector", size=7 if group == 1 else 8)
        for h in range(cfg.n_head):
            g = h // group
            kx = x0 + g * group * (w + gap) + (group * (w + gap) - gap) / 2
            ax.plot([heads[h][0] + w / 2, kx], [5.3, 3.6], color=COLOURS["edge"], linewidth=0.7)
        per_tok = kv_cache_bytes_per_token(cfg, 2, n_kv)
        label(ax, x0 + 2.8, 2.2, f"KV cache, 16-bit: {per_tok:,} bytes per token", size=9, bold=ours)
        label(ax, x0 + 2.8, 1.7, f"{per_tok * cfg.block_size / 2**20:,.0f} MiB for {cfg.block_size:,} tokens",
              size=9, colour="soft_ink")
    label(ax, 10, 0.8, f"cache per token = 2 (k and v) × {cfg.n_layer} layers × kv heads × head_dim {cfg.head_dim} × 2 bytes; "
          "query head h reads kv head h // group;\nthe keys and values are repeated for their group on the fly (repeat_kv), not stored twice", size=8.5, colour="soft_ink")
    return d
