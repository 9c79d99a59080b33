"""Tests of course_lib.diagrams.foundations: names, ids, key labels, and the numbers each picture shows."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.diagrams import foundations as fd
from course_lib.diagrams.kit import Diagram, svg_texts

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = {  # function -> diagram name
    "pipeline": "pipeline",
    "tokens_to_vectors": "tokens-to-vectors",
    "queries_keys_values": "queries-keys-values",
    "multi_head_attention": "multi-head-attention",
    "transformer_block": "transformer-block",
}


@pytest.fixture(scope="module")
def svgs() -> dict[str, str]:
    return {fn: getattr(fd, fn)().svg() for fn in DIAGRAMS}


texts = svg_texts  # every piece of text of an SVG (the kit keeps text as <text>)


@pytest.mark.parametrize("fn, name", DIAGRAMS.items())
def test_diagram_name_and_id(fn, name, svgs):
    d = getattr(fd, fn)()
    assert isinstance(d, Diagram) and d.name == name
    assert f'id="diagram-{name}"' in svgs[fn]
    assert svgs[fn] == d.svg()  # the same picture on every call


def test_svg_is_the_same_in_a_fresh_process(svgs):
    code = ("import hashlib, course_lib.diagrams.foundations as fd\n"
            f"for fn in {list(DIAGRAMS)!r}: print(hashlib.sha256(getattr(fd, fn)().svg().encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert out == [hashlib.sha256(svgs[fn].encode()).hexdigest() for fn in DIAGRAMS]


# ----------------------------------------------------------------------------- pipeline
def test_pipeline_labels_and_token_ids(svgs):
    from course_lib.data import get_encoding

    t = texts(svgs["pipeline"])
    for key in ["raw text", "tokens", "token ids", "logits", "next token", "attention", f'"{fd.PIPELINE_TEXT}"']:
        assert key in t, key
    enc = get_encoding("cl100k_base")
    ids = enc.encode(fd.PIPELINE_TEXT)
    assert len(ids) == 3
    for i in ids:
        assert str(i) in t                                      # the ids shown are the tokenizer's
    assert any(f"V = {enc.n_vocab:,}" in s for s in t)
    assert f"T = {len(ids)} tokens" in t


def test_pipeline_notebooks_exist(svgs):
    here = {p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    named = {nb for rows in fd.PIPELINE_NOTEBOOKS.values() for nb, _ in rows if nb}
    assert named <= here, f"the pipeline names notebooks that do not exist: {sorted(named - here)}"
    assert {"01", "02", "03", "04", "06", "13"} <= named
    t = texts(svgs["pipeline"])
    assert all(nb in t for nb in named)                         # every badge is drawn


# ----------------------------------------------------------------------------- tokens to vectors
def test_embedding_example_equals_the_library(svgs):
    from course_lib.embeddings import one_hot_embed, sinusoidal_positions

    ex = fd.embedding_example()
    ids = torch.tensor(ex["ids"])
    W = torch.tensor(ex["W"], dtype=torch.float64)
    E = one_hot_embed(ids, W)                                   # the lookup as one-hot x matrix (notebook 02)
    assert torch.allclose(E, torch.tensor(ex["E"], dtype=torch.float64))
    X = E + sinusoidal_positions(len(ids), W.shape[1]).double()
    assert torch.allclose(X, torch.tensor(ex["X"], dtype=torch.float64), atol=1e-6)
    # the two "the" tokens: equal embeddings, different inputs once positions are added
    assert ex["E"][0] == ex["E"][4] and ex["X"][0] != ex["X"][4]
    t = texts(svgs["tokens_to_vectors"])
    for key in ["tokens", "ids", "embedding matrix W", "W[ids]", "+ P", "= X", "(T, d) = (6, 4)"]:
        assert key in t, key
    assert all(f"{v:.2f}" in t for row in ex["X"] + ex["P"] for v in row)   # every number of X and P is drawn
    assert all(f"{v:.1f}" in t for row in ex["W"] for v in row)


# ----------------------------------------------------------------------------- queries, keys, values
def _notebook_example() -> dict[str, list]:
    """tokens, Q, K, V as written in notebook 03's worked-example cell."""
    nb = json.loads((ROOT / "notebooks" / "03_attention.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        code = "\n".join(line for line in src.splitlines() if not line.startswith("#"))
        if cell["cell_type"] == "code" and code.startswith("tokens = ["):
            found = {}
            for node in ast.parse(src).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in "tokens Q K V".split():
                    found[node.targets[0].id] = ast.literal_eval(node.value)
            return found
    raise AssertionError("notebook 03's worked example cell not found")


def test_worked_example_is_notebook_03s():
    nb = _notebook_example()
    assert nb == {"tokens": fd.QKV_TOKENS, "Q": fd.QKV_Q, "K": fd.QKV_K, "V": fd.QKV_V}


def test_worked_example_equals_course_attention(svgs):
    from course_lib.attention import scaled_dot_product_attention

    ex = fd.worked_example()
    Q, K, V = (torch.tensor(m, dtype=torch.float64) for m in (fd.QKV_Q, fd.QKV_K, fd.QKV_V))
    out, w = scaled_dot_product_attention(Q, K, V, return_weights=True)   # full attention, no mask, as in notebook 03
    assert torch.allclose(w, torch.tensor(ex["weights"], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out, torch.tensor(ex["out"], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(w.sum(-1), torch.ones(4, dtype=torch.float64))
    i = ex["query"]
    assert fd.QKV_TOKENS[i] == "sat" and max(range(4), key=ex["row_weights"].__getitem__) == 1   # "sat" looks at "cat"
    t = texts(svgs["queries_keys_values"])
    for key in ["Q  queries", "K  keys", "V  values", "scores / √d_k", "weights = softmax(row)", "output = weights · V"]:
        assert key in t, key
    assert "[" + ", ".join(f"{v:.3f}" for v in ex["row_weights"]) + "]" in t
    assert "[" + ", ".join(f"{v:.3f}" for v in ex["row_out"]) + "]" in t
    assert all(f"{v:.2f}" in t for row in ex["weights"] for v in row)        # every weight of the grid is drawn


# ----------------------------------------------------------------------------- multi-head attention
def test_mha_shapes_equal_the_module(svgs):
    from course_lib.attention import MultiHeadAttention

    s = fd.mha_shapes()
    B, T, d, h = (fd.MHA_SIZES[k] for k in ("B", "T", "d", "h"))
    y, w = MultiHeadAttention(d, h).eval()(torch.randn(B, T, d), return_weights=True)
    assert s["y"] == tuple(y.shape) == (B, T, d) and s["weights"] == tuple(w.shape) == (B, h, T, T)
    assert s["split"] == s["heads"] == (B, h, T, d // h)
    t = " | ".join(texts(svgs["multi_head_attention"]))
    for key in ["1. project", "2. split into h heads", "3. attention per head", "4. concatenate", "W_O",
                "(2, 3, 5, 4)", "(2, 3, 5, 5)", "(2, 5, 12)", "head 3"]:
        assert key in t, key


# ----------------------------------------------------------------------------- transformer block
def test_transformer_block_labels(svgs):
    t = texts(svgs["transformer_block"])
    assert any(s.startswith("pre-LN") for s in t) and any(s.startswith("post-LN") for s in t)
    assert t.count("LayerNorm") == 4                             # two norms in each variant
    assert t.count("multi-head attention") == 2 and t.count("feed-forward (MLP)") == 2
    assert t.count("+") == 4                                     # two residual additions in each variant
    assert "x ← x + Attn(LN(x)),   x ← x + MLP(LN(x))" in t and "x ← LN(x + Attn(x)),   x ← LN(x + MLP(x))" in t
    assert "TransformerBlock(..., pre_norm=True)" in t and "TransformerBlock(..., pre_norm=False)" in t
