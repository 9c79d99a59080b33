"""Concept diagrams of the foundations: the text-to-logits pipeline, embeddings, attention and the block.

What it does: five functions, each returning a `Diagram` (inline SVG in Jupyter) drawn with the course's
kit (`course_lib.diagrams.kit`):
- `pipeline()`: raw text -> tokens -> ids -> vectors -> N blocks -> logits -> next token, with the
  notebooks that teach each stage (the course map's picture, notebook 00);
- `tokens_to_vectors()`: a sentence -> tokens -> ids -> rows of the embedding matrix + positions (01, 02);
- `queries_keys_values()`: notebook 03's 4-token worked example, scores, weights and outputs (03);
- `multi_head_attention()`: the split into heads and the merge, with every shape (03);
- `transformer_block()`: pre-LN beside post-LN around the residual stream (04).

Every number a picture shows is computed here: token ids by the course's GPT-4 tokenizer, positions by
`course_lib.embeddings`, the attention example the way notebook 03 computes it by hand, shapes by running the
course's `MultiHeadAttention`. `embedding_example()`, `worked_example()` and `mha_shapes()` return those
numbers, so the tests compare them with the library.

Leaves out: training, decoding strategies and model variants (MoE, encoder-decoder); the notebooks
draw those with data. The logits and probabilities in `pipeline()` are an illustration, not a model's output.

See notebooks 00, 01, 02, 03 and 04.
"""

from __future__ import annotations

import math

from matplotlib.patches import Circle, Rectangle

from course_lib.diagrams.kit import COLOURS, Diagram, arrow, box, bracket, canvas, grid, label

__all__ = ["pipeline", "tokens_to_vectors", "queries_keys_values", "multi_head_attention", "transformer_block",
           "embedding_example", "worked_example", "mha_shapes", "PIPELINE_TEXT", "PIPELINE_NOTEBOOKS",
           "QKV_TOKENS", "QKV_Q", "QKV_K", "QKV_V"]

#: the example string that flows through `pipeline()`.
PIPELINE_TEXT = "The cat sat"

#: notebook 03's worked example (section 2): 4 tokens, queries and keys of width 4, values of width 3.
QKV_TOKENS = ["the", "cat", "sat", "down"]
QKV_Q = [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]]
QKV_K = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
QKV_V = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]
QKV_QUERY = 2  # the highlighted query: "sat"

#: the notebooks under each group of stages of `pipeline()`: (notebook, what it teaches there); "" continues a line.
PIPELINE_NOTEBOOKS = {
    "raw text": [("00", "data sets"), ("10", "chat format")],
    "tokens and ids": [("01", "BPE, WordPiece, GPT-4's"), ("", "tokenizer rebuilt"), ("05", "[CLS], [SEP], [MASK]"),
                       ("10", "chat special tokens")],
    "embeddings": [("02", "embeddings and"), ("", "positions, RoPE"), ("08", "prompt tuning")],
    "blocks": [("03", "attention"), ("04", "the block"), ("07", "cross-attention"), ("09", "mixture of experts"),
               ("13", "Llama-style block")],
    "logits and next token": [("05", "BERT: fill the mask"), ("06", "GPT: sampling, KV cache"),
                              ("07", "encoder-decoder, beam"), ("08", "fine-tuned classifier"), ("10", "instruction tuning")],
    "whole pipelines": [("11", "the whole pipeline as a command-line project: data → tokenizer → model → train → evaluate → use"),
                        ("13", "a real modern LLM (SmolLM2-135M) loaded from its file, through every stage")],
}


def _visible(piece: str) -> str:
    """Show a token's spaces as '·', as the tokenizer playground of notebook 01 does."""
    return piece.replace(" ", "·")


def _mix(colour: str, amount: float) -> str:
    """`colour` (a COLOURS key or hex) blended with white: amount 0 -> white, 1 -> the colour itself."""
    hex_code = COLOURS.get(colour, colour).lstrip("#")
    rgb = [int(hex_code[i:i + 2], 16) for i in (0, 2, 4)]
    return "#" + "".join(f"{round(255 + (c - 255) * amount):02x}" for c in rgb)


def _line(ax, xs, ys, *, width: float = 1.2, dashed: bool = False) -> None:
    """A plain polyline in the edge colour (arrows without a head)."""
    ax.plot(xs, ys, color=COLOURS["edge"], linewidth=width, linestyle="--" if dashed else "-", solid_capstyle="butt")


def _outline(ax, x: float, y: float, w: float, h: float, *, width: float = 2.2) -> None:
    """A thick frame (lower-left corner x, y) that marks the part of a grid the picture is about."""
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=COLOURS["edge"], linewidth=width, zorder=5))


# ----------------------------------------------------------------------------- 1. the pipeline
def pipeline() -> Diagram:
    """The course's pipeline from raw text to the next token, each stage with its notebooks (notebook 00)."""
    from course_lib.data import get_encoding

    enc = get_encoding("cl100k_base")  # GPT-4's tokenizer, rebuilt in notebook 01
    ids = enc.encode(PIPELINE_TEXT)
    pieces = [enc.decode([i]) for i in ids]
    # illustrative logits of the last position for a few candidate next tokens; the bars beside them are their softmax
    candidates = [" on", " down", " up", " still", " there"]
    logits = [3.1, 2.2, 1.0, 0.6, 0.2]
    exps = [math.exp(z) for z in logits]
    probs = [e / sum(exps) for e in exps]
    best = max(range(len(probs)), key=probs.__getitem__)

    d, ax = canvas("pipeline", "From text to the next token: the course's pipeline", 20, 10.2)
    stages = [  # (x, width, title, colour)
        (0.2, 2.2, "raw text", "text"), (3.0, 1.8, "tokens", "token"), (5.4, 1.8, "token ids", "token"),
        (7.8, 2.4, "embeddings\n+ positions", "vector"), (10.8, 3.0, "N transformer\nblocks", "block"),
        (14.4, 2.3, "logits", "output"), (17.3, 2.5, "next token", "output")]
    top = 8.1
    for k, (x, w, title, colour) in enumerate(stages):
        box(ax, x, top, w, 0.9, title, colour=colour, size=10, bold=True)
        if k:
            px, pw = stages[k - 1][:2]
            arrow(ax, (px + pw + 0.05, top + 0.45), (x - 0.05, top + 0.45))
    # the generation loop: the chosen token is appended and the whole pipeline runs again
    lx0, lx1 = stages[6][0] + stages[6][1] / 2, stages[1][0] + stages[1][1] / 2
    _line(ax, [lx0, lx0, lx1], [top + 0.9, 9.65, 9.65], dashed=True)
    arrow(ax, (lx1, 9.65), (lx1, top + 0.92), dashed=True)
    label(ax, (lx0 + lx1) / 2, 9.9, "append the new token to the text and run again: that is generation (06)",
          size=9, colour="soft_ink", italic=True)

    # the example flowing through: one row per token
    ys = [6.8, 5.95, 5.1]
    h = 0.6
    box(ax, 0.2, ys[1] - 0.05, 2.2, 0.7, f'"{PIPELINE_TEXT}"', colour="text", size=10)
    arrow(ax, (2.45, ys[1] + 0.3), (3.15, ys[1] + 0.3), width=0.8)
    for t, (piece, i, y) in enumerate(zip(pieces, ids, ys)):
        box(ax, 3.2, y, 1.4, h, _visible(piece), colour="token", size=10)
        box(ax, 5.6, y, 1.4, h, f"{i}", colour="token", size=10)
        arrow(ax, (4.65, y + h / 2), (5.55, y + h / 2), width=0.8)
        arrow(ax, (7.05, y + h / 2), (7.95, y + h / 2), width=0.8)
        for c in range(4):
            ax.add_patch(Rectangle((8.0 + c * 0.32, y + 0.1), 0.32, 0.4, facecolor=COLOURS["vector"],
                                   edgecolor=COLOURS["edge"], linewidth=0.6))
        label(ax, 9.38, y + 0.3, f"+ pos {t}", size=8, ha="left")
    # the stack of blocks: two shadows behind the front block
    for s in (2, 1):
        box(ax, 11.0 + 0.18 * s, 4.65 + 0.18 * s, 2.4, 2.6, colour=_mix("block", 0.5 + 0.2 * (2 - s)))
    box(ax, 11.0, 4.65, 2.4, 2.6, colour="block")
    box(ax, 11.2, 6.05, 2.0, 0.8, "attention\n(03)", colour="attention", size=9)
    box(ax, 11.2, 4.85, 2.0, 0.8, "feed-forward\n(04)", colour="vector", size=9)
    arrow(ax, (12.2, 5.65), (12.2, 6.05), width=0.8)
    label(ax, 13.75, 4.85, "× N", size=10, bold=True, ha="left")
    arrow(ax, (10.3, 5.95), (10.95, 5.95), width=0.8)
    arrow(ax, (13.85, 5.95), (14.4, 5.95), width=0.8)
    # logits of the last position, then softmax -> probabilities; both bar charts drawn from the numbers above
    base = 5.3
    for j, (z, p) in enumerate(zip(logits, probs)):
        bx, px = 14.55 + j * 0.42, 17.6 + j * 0.43
        ax.add_patch(Rectangle((bx, base), 0.3, z * 0.45, facecolor=COLOURS["output"], edgecolor=COLOURS["edge"], linewidth=0.6))
        ax.add_patch(Rectangle((px, base), 0.34, p * 3.0, linewidth=0.6, edgecolor=COLOURS["edge"],
                               facecolor=COLOURS["highlight" if j == best else "output"]))
        for xx in (bx + 0.15, px + 0.17):
            label(ax, xx, base - 0.1, _visible(candidates[j]), size=7, rotation=90, va="top")
    _line(ax, [14.45, 16.6], [base, base], width=0.8)
    _line(ax, [17.5, 19.75], [base, base], width=0.8)
    arrow(ax, (16.7, 6.2), (17.5, 6.2))
    label(ax, 17.1, 6.45, "softmax", size=7.5)
    label(ax, 15.55, 7.6, "last position (illustrative)", size=7.5, colour="soft_ink")
    label(ax, 18.6, 7.6, f"pick or sample → {_visible(candidates[best])}", size=7.5, colour="soft_ink")

    shapes = ["a string", f"T = {len(ids)} tokens", "(T,) integers", "(T, d)", "(T, d) → (T, d)",
              f"(T, V), V = {enc.n_vocab:,}", "p(next | text)"]
    for (x, w, _, _), s in zip(stages, shapes):
        label(ax, x + w / 2, 4.2, s, size=8, colour="soft_ink")

    # the notebooks that teach each stage
    for (x0, x1), rows in zip([(0.2, 2.4), (3.0, 7.2), (7.65, 10.45), (10.8, 13.8), (14.4, 19.8), (0.2, 19.8)],
                              PIPELINE_NOTEBOOKS.values()):
        y_top, n = (3.85, 5) if x1 - x0 < 10 else (1.15, 2)
        box(ax, x0, y_top - 0.46 * n - 0.06, x1 - x0, 0.46 * n + 0.06, colour="white", dashed=True)
        for r, (nb, what) in enumerate(rows):
            y = y_top - 0.26 - r * 0.46
            if nb:
                box(ax, x0 + 0.12, y - 0.18, 0.5, 0.36, nb, colour="highlight", size=8, bold=True)
            label(ax, x0 + 0.72, y, what, size=8, ha="left")
    return d


# ----------------------------------------------------------------------------- 2. tokens to vectors
#: notebook 02's toy sentence and vocabulary (section 1).
T2V_VOCAB = ["the", "cat", "sat", "on", "mat"]
T2V_SENTENCE = "the cat sat on the mat"
T2V_D = 4


def embedding_example() -> dict:
    """The numbers of `tokens_to_vectors()`: tokens, ids, W (V, d), E = W[ids], P (T, d) sinusoidal, X = E + P.

    >>> embedding_example()["ids"]
    [0, 1, 2, 3, 0, 4]
    """
    from course_lib.embeddings import sinusoidal_positions

    tokens = T2V_SENTENCE.split()                                  # a word tokenizer, as in notebook 01
    ids = [T2V_VOCAB.index(t) for t in tokens]
    V, T, d = len(T2V_VOCAB), len(tokens), T2V_D
    W = [[(r * d + c) / 10 for c in range(d)] for r in range(V)]  # (V, d) a readable stand-in for a trained table
    E = [W[i] for i in ids]                                        # (T, d) the lookup W[ids]
    P = sinusoidal_positions(T, d).tolist()                        # (T, d) sinusoidal positions
    X = [[e + p for e, p in zip(er, pr)] for er, pr in zip(E, P)]  # (T, d) the input of the first block
    return {"tokens": tokens, "ids": ids, "W": W, "E": E, "P": P, "X": X}


def tokens_to_vectors() -> Diagram:
    """A sentence -> tokens -> ids -> rows of the embedding matrix, plus position vectors: the (T, d) input (notebooks 01, 02)."""
    ex = embedding_example()
    tokens, ids, W, E, P, X = (ex[k] for k in ("tokens", "ids", "W", "E", "P", "X"))
    V, T, d = len(W), len(tokens), len(W[0])
    focus = ids[0]                                                 # "the": it comes twice
    rows = [t for t in range(T) if ids[t] == focus]

    d_, ax = canvas("tokens-to-vectors", "From tokens to vectors: ids pick rows of the embedding matrix, positions are added",
                    20, 8.4)
    cell, top = 0.75, 6.3
    ys = [top - (t + 0.5) * cell for t in range(T)]                # centre of row t
    box(ax, 0.3, 7.3, 4.6, 0.7, f'"{T2V_SENTENCE}"', colour="text", size=10)
    label(ax, 5.2, 7.65, "→ split into tokens (one per word here; notebook 01 builds subword tokenizers);"
          " each token → its id", size=8.5, colour="soft_ink", ha="left")
    label(ax, 0.9, top + 0.3, "tokens", size=9, bold=True)
    label(ax, 2.25, top + 0.3, "ids", size=9, bold=True)
    for t, (tok, i) in enumerate(zip(tokens, ids)):
        on = i == focus
        box(ax, 0.3, ys[t] - 0.28, 1.2, 0.56, tok, colour="highlight" if on else "token", size=10)
        box(ax, 1.85, ys[t] - 0.28, 0.8, 0.56, str(i), colour="highlight" if on else "token", size=10)
        arrow(ax, (2.7, ys[t]), (3.75, top - (i + 0.5) * cell), colour="edge" if on else "soft_ink",
              width=1.3 if on else 0.7)
    wx = 4.7
    grid(ax, wx, top, W, cell=cell, fmt="{:.1f}", size=8, row_labels=[f"{r}: {w}" for r, w in enumerate(T2V_VOCAB)],
         colours=[["highlight" if r == focus else "vector"] * d for r in range(V)])
    label(ax, wx + d * cell / 2, top + 0.55, "embedding matrix W", size=9, bold=True)
    label(ax, wx + d * cell / 2, top + 0.2, f"(V, d) = ({V}, {d}), one row per token", size=8, colour="soft_ink")
    label(ax, wx + d * cell / 2, top - V * cell - 0.3, "trained with the model", size=8, colour="soft_ink", italic=True)

    blocks = [(8.9, E, "W[ids]", "{:.1f}", "the rows of the ids"), (12.7, P, "+ P", "{:.2f}", "sinusoidal positions"),
              (16.5, X, "= X", "{:.2f}", "input of the first block")]
    arrow(ax, (wx + d * cell + 0.15, top - 1.5), (blocks[0][0] - 0.15, top - 1.5), "copy", size=8, text_offset=(0, 0.25))
    for k, (x, M, name, fmt, note) in enumerate(blocks):
        colours = [[("highlight" if t in rows and k != 1 else _mix("vector", 0.45) if k == 1 else "vector")] * d
                   for t in range(T)]
        grid(ax, x, top, M, cell=cell, fmt=fmt, size=8, colours=colours)
        label(ax, x + d * cell / 2, top + 0.55, name, size=10, bold=True)
        label(ax, x + d * cell / 2, top + 0.2, note, size=8, colour="soft_ink")
        bracket(ax, x, x + d * cell, top - T * cell - 0.3, f"(T, d) = ({T}, {d})", size=8)
        if k == 1:
            for t in rows:
                _outline(ax, x, top - (t + 1) * cell, d * cell, cell, width=1.6)
    for x, sign in ((12.1, "+"), (15.9, "=")):
        label(ax, x, top - T * cell / 2, sign, size=16, bold=True)
    for t in range(T):
        label(ax, 19.65, ys[t], f"{t}", size=8, colour="soft_ink", ha="left")
    label(ax, 19.75, top + 0.2, "pos", size=8, colour="soft_ink")
    label(ax, 2.25, ys[-1] - 0.6, f"T = {T}", size=8, colour="soft_ink")
    same = E[rows[0]] == E[rows[1]]
    differ = X[rows[0]] != X[rows[1]]
    assert same and differ, "the two 'the' rows: equal embeddings, different inputs"
    label(ax, 0.3, 0.45, f'Both "{T2V_VOCAB[focus]}" tokens (positions {rows[0]} and {rows[1]}) pick row {focus} of W, so their '
          f"embeddings are equal; the position vectors make their rows of X differ.", size=9, ha="left", colour="soft_ink")
    return d_


# ----------------------------------------------------------------------------- 3. queries, keys and values
def worked_example(query: int = QKV_QUERY) -> dict:
    """Notebook 03's worked example computed the notebook's way: scores, scaled scores, weights, outputs.

    Returns plain lists: "scores" (T, T) = Q K^T, "scaled" = scores / sqrt(d_k), "weights" = row-wise softmax,
    "out" (T, d_v) = weights V, and the same four for the one `query` row ("row_*").
    >>> round(sum(worked_example()["row_weights"]), 12)
    1.0
    """
    T, d_k, d_v = len(QKV_Q), len(QKV_Q[0]), len(QKV_V[0])
    scores = [[sum(QKV_Q[i][c] * QKV_K[j][c] for c in range(d_k)) for j in range(T)] for i in range(T)]
    scaled = [[s / math.sqrt(d_k) for s in row] for row in scores]
    weights = []
    for row in scaled:
        exps = [math.exp(s) for s in row]
        weights.append([e / sum(exps) for e in exps])
    out = [[sum(w[j] * QKV_V[j][c] for j in range(T)) for c in range(d_v)] for w in weights]
    return {"tokens": QKV_TOKENS, "d_k": d_k, "scores": scores, "scaled": scaled, "weights": weights, "out": out,
            "query": query, "row_scores": scores[query], "row_scaled": scaled[query], "row_weights": weights[query],
            "row_out": out[query]}


def queries_keys_values() -> Diagram:
    """Notebook 03's 4-token worked example: Q, K, V -> scores -> softmax weights -> weighted sum of values."""
    ex = worked_example()
    toks, i, d_k = ex["tokens"], ex["query"], ex["d_k"]
    T, d_v = len(toks), len(QKV_V[0])
    d, ax = canvas("queries-keys-values", f"Queries, keys and values: the worked example of notebook 03, query {toks[i]!r}",
                   20, 9.8)

    # inputs: Q, K, V (picked by hand in notebook 03; in a model Q = X W_Q, K = X W_K, V = X W_V)
    c1, top1 = 0.55, 8.5
    inputs = [(1.2, QKV_Q, "Q  queries", "what a token looks for", "attention"),
              (4.9, QKV_K, "K  keys", "what a token offers", "attention"),
              (8.6, QKV_V, "V  values", "what it hands over", "vector")]
    for x, M, name, note, colour in inputs:
        colours = [["highlight" if (M is QKV_Q and r == i) else colour] * len(M[0]) for r in range(T)]
        grid(ax, x, top1, M, cell=c1, size=9, colours=colours, row_labels=toks)
        label(ax, x + len(M[0]) * c1 / 2, top1 + 0.75, name, size=10, bold=True)
        label(ax, x + len(M[0]) * c1 / 2, top1 + 0.35, note, size=8, colour="soft_ink")

    # the steps for the one query, printed from the computation
    def fmt(v, n):
        return "[" + ", ".join(f"{x:.{n}f}" if isinstance(x, float) else f"{x}" for x in v) + "]"
    px, py = 11.2, top1 + 0.75
    box(ax, px - 0.2, py - 3.55, 8.9, 3.85, colour="white", dashed=True)
    label(ax, px, py, f"the query of {toks[i]!r}, step by step", size=10, bold=True, ha="left")
    steps = [("1. scores  q · k_j", fmt(ex["row_scores"], 0)),
             (f"2. scale  ÷ √d_k = ÷ {math.sqrt(d_k):g}", fmt(ex["row_scaled"], 2)),
             ("3. softmax: weights ≥ 0, sum 1", fmt(ex["row_weights"], 3)),
             ("4. output  Σ_j w_j v_j", fmt(ex["row_out"], 3))]
    for r, (what, value) in enumerate(steps):
        y = py - 0.7 - r * 0.7
        label(ax, px, y, what, size=9, ha="left")
        label(ax, px + 8.5, y, value, size=9, ha="right", bold=r == 3)
    label(ax, px, py - 3.3, "keys in the order " + ", ".join(toks), size=8, colour="soft_ink", ha="left")

    # all queries at once: scores, weights (shaded by size), outputs
    c2, top2 = 0.75, 4.4
    wmax = max(max(r) for r in ex["weights"])
    panels = [(1.2, ex["scaled"], "scores / √d_k", "{:.1f}", [["attention"] * T for _ in range(T)], toks),
              (6.9, ex["weights"], "weights = softmax(row)", "{:.2f}",
               [[_mix("attention", 0.25 + 0.75 * w / wmax) for w in r] for r in ex["weights"]], toks),
              (12.6, ex["out"], "output = weights · V", "{:.2f}", [["vector"] * d_v for _ in range(T)], None)]
    for x, M, name, fmt_, colours, cols in panels:
        grid(ax, x, top2, M, cell=c2, fmt=fmt_, size=9, colours=colours, row_labels=toks, col_labels=cols or ())
        w = len(M[0]) * c2
        label(ax, x + w / 2, top2 + 0.75, name, size=10, bold=True)
        _outline(ax, x, top2 - (i + 1) * c2, w, c2)
    label(ax, 0.15, top2 - T * c2 / 2, "queries", size=8, colour="soft_ink", rotation=90)
    for x in (1.2, 6.9):
        label(ax, x + T * c2 / 2, top2 - T * c2 - 0.3, "keys →", size=8, colour="soft_ink")
    arrow(ax, (4.35, top2 - 1.5), (6.05, top2 - 1.5), "softmax\neach row", size=8, text_offset=(0, 0.5))
    arrow(ax, (10.05, top2 - 1.5), (11.75, top2 - 1.5), "× V", size=9, text_offset=(0, 0.3))
    label(ax, 15.45, top2 - 0.9, "each output row is a mix of\nthe value rows, weighted by\nits row of weights", size=8.5,
          colour="soft_ink", ha="left")
    label(ax, 0.15, 0.35, f"Every query sees every key here (no mask). {toks[i]!r} attends most to "
          f"{toks[max(range(T), key=ex['row_weights'].__getitem__)]!r}, the key most like its query; "
          "darker cells are larger weights.", size=9, colour="soft_ink", ha="left")
    return d


# ----------------------------------------------------------------------------- 4. multi-head attention
#: the sizes of notebook 03, section 5.
MHA_SIZES = {"B": 2, "T": 5, "d": 12, "h": 3}


def mha_shapes(B: int = MHA_SIZES["B"], T: int = MHA_SIZES["T"], d: int = MHA_SIZES["d"], h: int = MHA_SIZES["h"]) -> dict:
    """The shapes of multi-head attention's steps, measured by running the course's `MultiHeadAttention` (notebook 03).

    >>> mha_shapes()["split"]
    (2, 3, 5, 4)
    """
    import torch

    from course_lib.attention import MultiHeadAttention

    torch.manual_seed(0)
    mha = MultiHeadAttention(d, h).eval()
    x = torch.zeros(B, T, d)
    with torch.no_grad():
        q = mha.q_proj(x)                                            # (B, T, d)
        split = q.view(B, T, h, d // h).transpose(1, 2)              # (B, h, T, d/h)
        weights = torch.softmax(split @ split.transpose(-2, -1), -1)  # (B, h, T, T)
        heads = weights @ split                                      # (B, h, T, d/h)
        merged = heads.transpose(1, 2).reshape(B, T, d)              # (B, T, d)
        y, w = mha(x, return_weights=True)
    assert tuple(w.shape) == tuple(weights.shape) and y.shape == merged.shape
    return {"x": tuple(x.shape), "q": tuple(q.shape), "view": (B, T, h, d // h), "split": tuple(split.shape),
            "weights": tuple(w.shape), "heads": tuple(heads.shape), "merged": tuple(merged.shape), "y": tuple(y.shape)}


def multi_head_attention() -> Diagram:
    """Multi-head attention: project, split into h heads, attend per head, concatenate, project (notebook 03)."""
    S = mha_shapes()
    B, T, dm, h = (MHA_SIZES[k] for k in ("B", "T", "d", "h"))
    hs = dm // h
    shades = ["#f1edfb", "#d9cff3", "#b9a8e6"]  # one shade of the attention colour per head
    sub = "₁₂₃₄₅₆₇₈₉"
    dg, ax = canvas("multi-head-attention", "Multi-head attention: split into heads, attend per head, concatenate, project",
                    20, 9.0)

    def bar(x, y, cell):
        for c in range(dm):
            ax.add_patch(Rectangle((x + c * cell, y), cell, 0.42, facecolor=shades[c // hs], edgecolor=COLOURS["edge"],
                                   linewidth=0.5))
        return x + dm * cell

    def shape(t):
        return "(" + ", ".join(str(n) for n in t) + ")"

    ys, mid = [6.6, 4.6, 2.6], 4.6  # rows of Q, K, V and of the heads (centres)
    box(ax, 0.2, mid - 0.5, 1.2, 1.0, "x", colour="vector", size=12, bold=True)
    for r, (name, y) in enumerate(zip("QKV", ys)):
        box(ax, 2.1, y - 0.45, 1.6, 0.9, f"W_{name}\n{name.lower()}_proj", colour="block", size=9)
        arrow(ax, (1.45, mid), (2.05, y), width=0.9)
        arrow(ax, (3.75, y), (4.15, y), width=0.9)
        label(ax, 4.3, y, name, size=10, bold=True)
        end = bar(4.55, y - 0.21, 0.28)
    for k in range(h):
        label(ax, 4.55 + (k + 0.5) * hs * 0.28, ys[0] + 0.45, f"head {k + 1}", size=7)
    # a brace: every head takes its slice of Q, K and V
    bx = end + 0.2
    _line(ax, [bx, bx + 0.25, bx + 0.25, bx], [ys[0] + 0.3, ys[0] + 0.3, ys[2] - 0.3, ys[2] - 0.3], width=0.9)
    hx, hw = 9.1, 3.3
    for k, y in enumerate(ys):
        n = sub[k]
        box(ax, hx, y - 0.65, hw, 1.3, f"head {k + 1}\nsoftmax(Q{n} K{n}ᵀ / √{hs}) V{n}", colour=shades[k], size=9)
        arrow(ax, (bx + 0.25, mid), (hx - 0.05, y), width=0.9)
    # concatenate, then the output projection mixes the heads
    cx = 13.2
    for y in ys:
        arrow(ax, (hx + hw + 0.05, y), (cx - 0.1, mid), width=0.9)
    end = bar(cx, mid - 0.21, 0.2)
    box(ax, 16.0, mid - 0.45, 1.5, 0.9, "W_O\nout_proj", colour="block", size=9)
    arrow(ax, (end + 0.05, mid), (15.95, mid), width=0.9)
    box(ax, 18.2, mid - 0.5, 1.2, 1.0, "y", colour="vector", size=12, bold=True)
    arrow(ax, (17.55, mid), (18.15, mid), width=0.9)

    columns = [  # (centre, step title, shape lines)
        (0.8, "input", ["(B, T, d)", shape(S["x"])]),
        (2.9, "1. project", ["(B, T, d) each", shape(S["q"])]),
        (6.23, "2. split into h heads", ["view (B, T, h, d/h)", "transpose (B, h, T, d/h)", shape(S["split"])]),
        (10.75, "3. attention per head", ["weights (B, h, T, T) " + shape(S["weights"]),
                                          "out (B, h, T, d/h) " + shape(S["heads"])]),
        (14.4, "4. concatenate", ["transpose, view", "(B, T, d) " + shape(S["merged"])]),
        (16.75, "5. mix", ["(B, T, d)", shape(S["y"])]),
        (18.8, "output", ["(B, T, d)", shape(S["y"])]),
    ]
    for x, title, lines in columns:
        label(ax, x, 8.15, title, size=9, bold=True)
        for r, text in enumerate(lines):  # a shape in numbers in grey, the symbols in ink
            label(ax, x, 1.55 - r * 0.35, text, size=8, colour="soft_ink" if text[:2].strip("(").isdigit() else "ink")
    label(ax, 0.2, 0.3, f"B = {B} sentences of T = {T} tokens, width d = {dm}, h = {h} heads of d/h = {hs} (notebook 03, "
          "section 5). No loop over heads: one projection, then a reshape.", size=9, colour="soft_ink", ha="left")
    return dg


# ----------------------------------------------------------------------------- 5. the transformer block
def _add(ax, x: float, y: float) -> None:
    """The residual addition: a circled plus on the stream."""
    ax.add_patch(Circle((x, y), 0.24, facecolor="white", edgecolor=COLOURS["edge"], linewidth=1.2, zorder=4))
    ax.text(x, y, "+", ha="center", va="center", fontsize=12, fontweight="bold", color=COLOURS["ink"], zorder=6)


def _stream(ax, x: float, y0: float, y1: float) -> None:
    """The residual stream: a wide pipe in the vector colour from y0 up to y1."""
    ax.add_patch(Rectangle((x - 0.14, y0), 0.28, y1 - y0, facecolor=COLOURS["vector"], edgecolor=COLOURS["edge"],
                           linewidth=0.8, zorder=1))


def _branch(ax, sx: float, y_from: float, y_to: float, bx: float, parts: list[tuple[float, str, str]], h: float = 0.6) -> None:
    """A sub-layer beside the stream at sx: leave it at y_from, run through `parts` (y, text, colour) at bx, add back at y_to."""
    _line(ax, [sx + 0.14, bx], [y_from, y_from], width=1.0)
    y = y_from
    for y_box, text, colour in parts:
        arrow(ax, (bx, y), (bx, y_box - 0.02), width=1.0)
        box(ax, bx - 1.5, y_box, 3.0, h, text, colour=colour, size=9)
        y = y_box + h
    _line(ax, [bx, bx], [y, y_to], width=1.0)
    arrow(ax, (bx, y_to), (sx + 0.26, y_to), width=1.0)
    _add(ax, sx, y_to)


def transformer_block() -> Diagram:
    """One transformer block, pre-LN beside post-LN: where the norms sit on the residual stream (notebook 04)."""
    d, ax = canvas("transformer-block", "The transformer block: pre-LN beside post-LN, around the residual stream", 18, 10)
    for sx, pre in [(2.2, True), (11.2, False)]:
        bx = sx + 3.2                                   # centre of the branch boxes
        _stream(ax, sx, 1.1, 7.3)
        box(ax, sx - 1.3, 0.45, 2.6, 0.65, "x (B, T, d)", colour="vector", size=9)
        box(ax, sx - 1.3, 7.3, 2.6, 0.65, "to the next block", colour="vector", size=9)
        label(ax, sx - 0.42, 2.3, "residual stream", size=8, colour="soft_ink", rotation=90)
        arrow(ax, (sx, 7.0), (sx, 7.28), width=1.0)    # the stream flows up
        if pre:
            _branch(ax, sx, 1.6, 3.95, bx, [(2.0, "LayerNorm", "norm"), (2.9, "multi-head attention", "attention")])
            _branch(ax, sx, 4.4, 6.75, bx, [(4.8, "LayerNorm", "norm"), (5.7, "feed-forward (MLP)", "vector")])
            title, formula = "pre-LN  (GPT-2, Llama, most recent models)", "x ← x + Attn(LN(x)),   x ← x + MLP(LN(x))"
            notes = ["a norm at the start of each branch; the stream is never normalised",
                     "(one more LayerNorm after the last block)"]
        else:
            _branch(ax, sx, 1.6, 3.05, bx, [(2.0, "multi-head attention", "attention")])
            box(ax, sx - 1.0, 3.45, 2.0, 0.55, "LayerNorm", colour="norm", size=9)
            _branch(ax, sx, 4.4, 5.85, bx, [(4.8, "feed-forward (MLP)", "vector")])
            box(ax, sx - 1.0, 6.25, 2.0, 0.55, "LayerNorm", colour="norm", size=9)
            title, formula = "post-LN  (original Transformer, BERT)", "x ← LN(x + Attn(x)),   x ← LN(x + MLP(x))"
            notes = ["a norm after each addition, on the stream itself:", "every sub-layer's sum is normalised"]
        cx = sx + 2.1
        label(ax, cx, 9.65, title, size=10, bold=True)
        label(ax, cx, 9.15, formula, size=9.5)
        for r, text in enumerate(notes):
            label(ax, cx, 8.65 - r * 0.33, text, size=8, colour="soft_ink")
        label(ax, bx + 0.35, 0.78, f"TransformerBlock(..., pre_norm={pre})", size=8, colour="soft_ink")
    _line(ax, [8.9, 8.9], [0.3, 9.9], width=0.6, dashed=True)
    return d
