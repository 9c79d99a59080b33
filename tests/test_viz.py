"""Tests for course_lib.viz: heatmaps, the offline HTML attention view, the explorer widget."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_lib.viz import (
    as_attention_array,
    attention_explorer,
    attention_view,
    attention_view_html,
    plot_attention,
    plot_attention_grid,
    save_attention_view,
)

TOKENS = ["[CLS]", "the", "cat", "<sat>", "[SEP]"]


def _att(L=2, nh=3, T=5, B=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.softmax(torch.randn(B, nh, T, T, generator=g), -1) for _ in range(L))


def test_as_attention_array_layouts():
    att = _att()
    assert as_attention_array(att).shape == (2, 3, 5, 5)  # transformers' tuple of (B, nh, T, T)
    assert as_attention_array(torch.stack(att)).shape == (2, 3, 5, 5)  # (L, B, nh, T, T)
    assert as_attention_array([a[0] for a in att]).shape == (2, 3, 5, 5)  # list of (nh, T, T)
    assert as_attention_array(att[0][0]).shape == (1, 3, 5, 5)
    assert as_attention_array(np.eye(4)).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="cannot read attentions of shape"):
        as_attention_array(torch.zeros(5))
    with pytest.raises(ValueError, match="same shape"):
        as_attention_array([torch.zeros(2, 3, 3), torch.zeros(2, 4, 4)])


def test_plot_attention_and_grid():
    ax = plot_attention(_att()[0][0, 0], TOKENS, title="layer 0 head 0")
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
    assert ax.get_title() == "layer 0 head 0"
    assert len(ax.texts) == 25  # annotated: 5 x 5 <= 8 x 8
    plt.close(ax.figure)
    ax = plot_attention(torch.rand(2, 4), ["a", "b"], tokens_k=list("wxyz"), annotate=False)  # cross-attention
    assert len(ax.get_xticklabels()) == 4
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="3 tokens but the attention map has 5"):
        plot_attention(_att()[0][0, 0], TOKENS[:3])
    with pytest.raises(ValueError, match=r"one \(T_q, T_k\) map"):
        plot_attention(_att()[0][0])
    fig = plot_attention_grid(_att(), TOKENS, title="all")
    assert len(fig.axes) == 6
    plt.close(fig)
    fig = plot_attention_grid(_att(), layers=[1], heads=[0, 2])
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="head index"):
        plot_attention_grid(_att(), heads=[7])


def test_attention_view_is_offline_and_complete(tmp_path):
    page = attention_view_html(_att(), TOKENS, title="demo <b>")
    assert "<script" in page and "<style>" in page
    # nothing is loaded from the network: no src=, no href=, no require/d3, no http(s) except the SVG namespace
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "require(" not in page and "d3." not in page and "cdn" not in page.lower()
    assert set(re.findall(r"https?://[^\s\"']+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "&lt;sat&gt;" in page and "demo &lt;b&gt;" in page  # tokens and title are escaped
    assert page.count('class="cav-head') == 3 and page.count("<option") == 2
    assert "<line" in page  # a static picture even where scripts do not run
    a, b = attention_view_html(_att(), TOKENS), attention_view_html(_att(), TOKENS)
    assert re.search(r'id="(cav-\w+)"', a).group(1) != re.search(r'id="(cav-\w+)"', b).group(1)
    obj = attention_view(_att(), TOKENS, layer=1, heads=[0])
    assert "cav" in obj.data and 'value="1" selected' in obj.data
    path = save_attention_view(tmp_path / "view.html", _att(), TOKENS)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "cav-data" in text
    with pytest.raises(ValueError, match="layer 5 out of range"):
        attention_view_html(_att(), TOKENS, layer=5)
    with pytest.raises(ValueError, match="4 tokens"):
        attention_view_html(_att(), TOKENS[:4])


def test_attention_view_cross_attention_tokens():
    att = torch.softmax(torch.randn(1, 2, 3, 4), -1)
    page = attention_view_html(att, ["a", "b", "c"], tokens_k=["w", "x", "y", "z"])
    assert '"tokens_k": ["w", "x", "y", "z"]' in page


def test_attention_explorer_widget():
    calls = []

    def get(text):
        calls.append(text)
        toks = text.split()
        g = torch.Generator().manual_seed(len(toks))
        return toks, tuple(torch.softmax(torch.randn(1, 2, len(toks), len(toks), generator=g), -1) for _ in range(3))

    box = attention_explorer(get, ["a b c", "d e"], layer=1)
    c = box.controls
    assert c["layer"].max == 2 and c["layer"].value == 1 and c["layer"].description == "Layer:"
    assert [v for _, v in c["head"].options] == [-1, 0, 1]
    c["head"].value = -1
    c["sentence"].value = "d e"
    c["text"].value = "my own words here"
    c["layer"].value = 0
    c["sentence"].value = "a b c"  # cached: not computed again
    assert calls == ["a b c", "d e", "my own words here"]
    plt.close("all")
    with pytest.raises(ValueError, match="at least one sentence"):
        attention_explorer(get, [])


_DOM_STUB = r"""// minimal DOM stub: run the view's script, then poke its controls
const fs = require("fs");
const page = fs.readFileSync(process.argv[2], "utf8");
const data = page.match(/<script type="application\/json" class="cav-data">([\s\S]*?)<\/script>/)[1];
const code = page.match(/<script>([\s\S]*?)<\/script>/)[1];
const uid = page.match(/id="(cav-\w+)"/)[1];
function el(tag) {
  return { tag, attrs: {}, children: [], listeners: {}, textContent: "",
    setAttribute(k, v) { this.attrs[k] = v; }, getAttribute(k) { return this.attrs[k]; },
    addEventListener(t, f) { this.listeners[t] = f; },
    appendChild(c) { this.children.push(c); }, removeChild(c) { this.children.splice(this.children.indexOf(c), 1); },
    get firstChild() { return this.children[0] || null; },
    classList: { toggle() {} } };
}
const svg = el("svg"), select = el("select");
const nh = (page.match(/class="cav-head/g) || []).length;
const heads = [...Array(nh).keys()].map(h => { const s = el("span"); s.attrs["data-head"] = String(h); return s; });
const root = { querySelector(q) { return q === "script.cav-data" ? { textContent: data } : q === "svg" ? svg : q === "select.cav-layer" ? select : null; },
               querySelectorAll(q) { return heads; } };
global.document = { getElementById(id) { return id === uid ? root : null; }, createElementNS(ns, t) { return el(t); } };
eval(code);
const count = () => [svg.children.filter(c => c.tag === "line").length, svg.children.filter(c => c.tag === "text").length];
const out = { initial: count() };
select.value = "1"; select.listeners.change(); out.layer1 = count();
heads[0].listeners.click(); out.head0_off = count();
heads[1].listeners.dblclick(); out.only1 = count();
const firstText = svg.children.find(c => c.tag === "text"); firstText.listeners.mouseenter(); out.hover = count();
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the view's JavaScript")
def test_attention_view_javascript_runs_in_node(tmp_path):
    """Run the inline script against a tiny fake DOM: it draws, and the controls change the picture."""
    g = torch.Generator().manual_seed(0)
    att = tuple(torch.softmax(torch.randn(1, 3, 5, 5, generator=g) * 3, -1) for _ in range(2))
    page = save_attention_view(tmp_path / "v.html", att, TOKENS)
    (tmp_path / "stub.js").write_text(_DOM_STUB)
    res = subprocess.run(["node", str(tmp_path / "stub.js"), str(page)], capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr
    counts = json.loads(res.stdout)
    static_lines = page.read_text().count("<line")
    assert counts["initial"] == [static_lines, 10]  # JS draws what Python drew
    assert counts["head0_off"][0] < counts["layer1"][0] and counts["only1"][0] < counts["head0_off"][0]
    assert 0 < counts["hover"][0] <= 5  # hovering a query shows only its lines
