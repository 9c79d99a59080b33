"""Pictures of attention: heatmaps, an offline interactive head view and an explorer widget.

What it does:
- `plot_attention`: one (T_q, T_k) attention map as a heatmap with token labels (matplotlib);
- `plot_attention_grid`: a grid of maps, one row per layer and one column per head;
- `attention_view` / `attention_view_html` / `save_attention_view`: the course's own
  interactive view of attention between tokens (like bertviz's head view), written with inline
  JavaScript and CSS only, so it works offline and as a standalone .html file;
- `attention_explorer`: an ipywidgets explorer (pick or type a sentence, a layer, a head).

Leaves out: bertviz's neuron view, 3-D plots, anything that loads code from the network.

See notebook 03.
"""

from __future__ import annotations

import html
import json
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "as_attention_array",
    "plot_attention",
    "plot_attention_grid",
    "attention_view_html",
    "attention_view",
    "save_attention_view",
    "attention_explorer",
]

HEAD_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
]


# ----------------------------------------------------------------------------- input handling
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def as_attention_array(attentions: Any, batch_index: int = 0) -> np.ndarray:
    """Attentions in any common layout -> numpy (L, nh, T_q, T_k).

    Accepts transformers' `output.attentions` (a tuple of L tensors (B, nh, T, T)), a list of
    (nh, T, T), a tensor (L, B, nh, T, T), (L, nh, T, T), (nh, T, T) or (T, T).
    >>> as_attention_array(torch.ones(2, 2)).shape
    (1, 1, 2, 2)
    """
    if isinstance(attentions, (list, tuple)):
        if len(attentions) == 0:
            raise ValueError("attentions is empty: expected one (B, nh, T, T) or (nh, T, T) array per layer")
        layers = [_to_numpy(a) for a in attentions]
        shapes = {a.shape for a in layers}
        if len(shapes) != 1:
            raise ValueError(f"every layer's attention must have the same shape, got {sorted(shapes)}")
        arr = np.stack(layers)  # (L, ...)
        if arr.ndim == 5:
            arr = arr[:, batch_index]
        elif arr.ndim == 3:
            arr = arr[:, None]
    else:
        arr = _to_numpy(attentions)
        if arr.ndim == 5:
            arr = arr[:, batch_index]  # (L, B, nh, T, T) -> (L, nh, T, T)
        elif arr.ndim == 3:
            arr = arr[None]  # (nh, T, T) -> (1, nh, T, T)
        elif arr.ndim == 2:
            arr = arr[None, None]  # (T, T) -> (1, 1, T, T)
    if arr.ndim != 4:
        raise ValueError(
            f"cannot read attentions of shape {tuple(arr.shape)}: expected (L, nh, T_q, T_k), "
            f"(L, B, nh, T_q, T_k), (nh, T_q, T_k), (T_q, T_k) or a list of per-layer arrays"
        )
    return arr


def _check_tokens(tokens: Sequence[str], n: int, name: str) -> list[str]:
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} tokens but the attention map has {n} positions on that axis")
    return tokens


# ----------------------------------------------------------------------------- matplotlib
def plot_attention(
    weights: Any,
    tokens: Sequence[str] | None = None,
    tokens_k: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
    colorbar: bool = True,
) -> Any:
    """Heatmap of one (T_q, T_k) attention map: rows are queries, columns are keys; returns the Axes.

    `tokens` labels the rows (and the columns unless `tokens_k` is given, e.g. for
    cross-attention). `annotate` writes each weight in its cell (default: when T <= 8).
    """
    import matplotlib.pyplot as plt

    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"plot_attention expects one (T_q, T_k) map, got shape {tuple(w.shape)}; use plot_attention_grid for many")
    t_q, t_k = w.shape
    if ax is None:
        size = max(3.0, 0.45 * max(t_q, t_k) + 1.5)
        _, ax = plt.subplots(figsize=(size + (1.0 if colorbar else 0.0), size))
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(float(w.max()), 1e-9), aspect="auto")
    if tokens is not None:
        rows = _check_tokens(tokens, t_q, "tokens")
        cols = _check_tokens(tokens_k if tokens_k is not None else tokens, t_k, "tokens_k" if tokens_k is not None else "tokens")
        ax.set_yticks(range(t_q), rows)
        ax.set_xticks(range(t_k), cols, rotation=90)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = max(t_q, t_k) <= 8
    if annotate:
        for i in range(t_q):
            for j in range(t_k):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention_grid(
    attentions: Any,
    tokens: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    cell_size: float = 1.8,
    cmap: str = "viridis",
    title: str | None = None,
) -> Any:
    """A grid of attention maps, one row per layer and one column per head; returns the Figure.

    Tick labels (tokens) are drawn on the left column and bottom row only.
    """
    import matplotlib.pyplot as plt

    arr = as_attention_array(attentions)  # (L, nh, T_q, T_k)
    n_layers, n_heads, t_q, t_k = arr.shape
    layers = list(range(n_layers)) if layers is None else list(layers)
    heads = list(range(n_heads)) if heads is None else list(heads)
    for name, idx, n in (("layer", layers, n_layers), ("head", heads, n_heads)):
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise ValueError(f"{name} index {bad} out of range: the attentions have {n} {name}s")
    if tokens is not None:
        tokens = _check_tokens(tokens, t_q, "tokens")
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(cell_size * len(heads) + 1, cell_size * len(layers) + 0.6),
                             squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            ax.imshow(arr[layer, head], cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
                if tokens is not None and len(tokens) <= 24:
                    ax.set_yticks(range(t_q), tokens, fontsize=6)
            if r == len(layers) - 1 and tokens is not None and len(tokens) <= 24 and t_k == t_q:
                ax.set_xticks(range(t_k), tokens, rotation=90, fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- offline HTML view
_CSS = """
.cav{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;font-size:13px;color:#222;background:#fff;padding:6px;display:inline-block}
.cav .cav-controls{margin-bottom:6px;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.cav .cav-head{display:inline-block;width:16px;height:16px;margin-right:3px;border-radius:3px;cursor:pointer;border:2px solid transparent;vertical-align:middle}
.cav .cav-head.off{opacity:.2}
.cav svg text{font-size:13px;cursor:default;user-select:none}
.cav .cav-note{color:#777;font-size:11px;margin-top:4px}
"""

_JS = r"""
(function(){
  var root = document.getElementById("__UID__");
  if (!root) return;
  var D = JSON.parse(root.querySelector("script.cav-data").textContent);
  var svg = root.querySelector("svg");
  var NS = "http://www.w3.org/2000/svg";
  var sel = root.querySelector("select.cav-layer");
  var swatches = root.querySelectorAll(".cav-head");
  var active = D.active.slice();
  var layer = D.layer;
  var focus = null, side = null;
  function draw(){
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var tq = D.tokens_q, tk = D.tokens_k, W = D.width, rh = D.row_height, top = 10;
    var xl = D.text_width, xr = W - D.text_width;
    function label(t, x, y, anchor, i, s){
      var e = document.createElementNS(NS, "text");
      e.setAttribute("x", x); e.setAttribute("y", y); e.setAttribute("text-anchor", anchor);
      e.setAttribute("dominant-baseline", "middle"); e.textContent = t;
      if (focus === i && side === s) e.setAttribute("font-weight", "bold");
      e.addEventListener("mouseenter", function(){ focus = i; side = s; draw(); });
      e.addEventListener("mouseleave", function(){ focus = null; side = null; draw(); });
      svg.appendChild(e);
    }
    for (var i = 0; i < tq.length; i++) label(tq[i], xl - 6, top + i * rh + rh / 2, "end", i, "q");
    for (var j = 0; j < tk.length; j++) label(tk[j], xr + 6, top + j * rh + rh / 2, "start", j, "k");
    var n_on = 0; for (var h = 0; h < active.length; h++) if (active[h]) n_on++;
    for (var h = 0; h < active.length; h++){
      if (!active[h]) continue;
      var A = D.attn[layer][h];
      for (var i = 0; i < tq.length; i++){
        if (focus !== null && side === "q" && focus !== i) continue;
        for (var j = 0; j < tk.length; j++){
          if (focus !== null && side === "k" && focus !== j) continue;
          var a = A[i][j];
          if (a < 0.01) continue;
          var l = document.createElementNS(NS, "line");
          l.setAttribute("x1", xl); l.setAttribute("y1", top + i * rh + rh / 2);
          l.setAttribute("x2", xr); l.setAttribute("y2", top + j * rh + rh / 2);
          l.setAttribute("stroke", D.colours[h % D.colours.length]);
          l.setAttribute("stroke-width", 2);
          l.setAttribute("stroke-opacity", Math.min(1, a * (focus === null ? 1 : 1.5) / Math.sqrt(n_on)));
          svg.appendChild(l);
        }
      }
    }
  }
  if (sel) sel.addEventListener("change", function(){ layer = parseInt(sel.value); draw(); });
  swatches.forEach(function(s){
    s.addEventListener("click", function(){
      var h = parseInt(s.getAttribute("data-head")); active[h] = !active[h];
      s.classList.toggle("off", !active[h]); draw();
    });
    s.addEventListener("dblclick", function(){
      var h = parseInt(s.getAttribute("data-head"));
      for (var k = 0; k < active.length; k++){ active[k] = (k === h); swatches[k].classList.toggle("off", k !== h); }
      draw();
    });
  });
  draw();
})();
"""


def _static_svg_lines(arr: np.ndarray, layer: int, active: list[bool], width: int, text_width: int,
                      row_height: int, t_q: int, t_k: int, colours: list[str]) -> str:
    """The lines of the initial state, drawn in Python so the view shows even where scripts don't run."""
    top, xl, xr = 10, text_width, width - text_width
    n_on = max(1, sum(active))
    parts = []
    for h, on in enumerate(active):
        if not on:
            continue
        for i in range(t_q):
            for j in range(t_k):
                a = float(arr[layer, h, i, j])
                if a < 0.01:
                    continue
                parts.append(
                    f'<line x1="{xl}" y1="{top + i * row_height + row_height / 2}" x2="{xr}" '
                    f'y2="{top + j * row_height + row_height / 2}" stroke="{colours[h % len(colours)]}" '
                    f'stroke-width="2" stroke-opacity="{min(1.0, a / n_on ** 0.5):.3f}"/>'
                )
    return "".join(parts)


def attention_view_html(
    attentions: Any,
    tokens: Sequence[str],
    tokens_k: Sequence[str] | None = None,
    layer: int = 0,
    heads: Sequence[int] | None = None,
    title: str = "",
    width: int = 420,
) -> str:
    """HTML (inline CSS and JavaScript, nothing from the network) of an interactive head view.

    Queries on the left, keys on the right, a line per (query, key) whose opacity is the weight,
    one colour per head. Pick the layer in the menu; click a head's colour to toggle it,
    double-click to show it alone; hover a token to see only its lines.
    """
    arr = as_attention_array(attentions)  # (L, nh, T_q, T_k)
    n_layers, n_heads, t_q, t_k = arr.shape
    tq = _check_tokens(tokens, t_q, "tokens")
    tk = _check_tokens(tokens_k if tokens_k is not None else tokens, t_k, "tokens_k" if tokens_k is not None else "tokens")
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range: the attentions have {n_layers} layers")
    layer = layer % n_layers
    active = [True] * n_heads if heads is None else [h in set(heads) for h in range(n_heads)]
    uid = "cav-" + uuid.uuid4().hex[:12]
    longest = max(len(t) for t in tq + tk) if (tq or tk) else 1
    text_width = min(160, 12 + 8 * longest)
    width = max(width, 2 * text_width + 120)
    row_height = 22
    height = 20 + row_height * max(t_q, t_k)
    arr = np.round(arr.astype(np.float64), 3)  # what the page stores; the static picture uses the same numbers
    data = {
        "attn": arr.tolist(), "tokens_q": tq, "tokens_k": tk, "layer": layer, "active": active,
        "width": width, "row_height": row_height, "text_width": text_width, "colours": HEAD_COLOURS,
    }
    payload = json.dumps(data).replace("</", "<\\/")  # safe inside <script>
    options = "".join(f'<option value="{i}"{" selected" if i == layer else ""}>{i}</option>' for i in range(n_layers))
    swatches = "".join(
        f'<span class="cav-head{"" if active[h] else " off"}" data-head="{h}" title="head {h}" '
        f'style="background:{HEAD_COLOURS[h % len(HEAD_COLOURS)]}"></span>'
        for h in range(n_heads)
    )
    top = 10
    labels = "".join(
        f'<text x="{text_width - 6}" y="{top + i * row_height + row_height / 2}" text-anchor="end" dominant-baseline="middle">{html.escape(t)}</text>'
        for i, t in enumerate(tq)
    ) + "".join(
        f'<text x="{width - text_width + 6}" y="{top + j * row_height + row_height / 2}" text-anchor="start" dominant-baseline="middle">{html.escape(t)}</text>'
        for j, t in enumerate(tk)
    )
    lines = _static_svg_lines(arr, layer, active, width, text_width, row_height, t_q, t_k, HEAD_COLOURS)
    title_html = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return (
        f'<div class="cav" id="{uid}"><style>{_CSS}</style>{title_html}'
        f'<div class="cav-controls"><label>Layer: <select class="cav-layer">{options}</select></label>'
        f"<span>Heads: {swatches}</span></div>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{lines}{labels}</svg>'
        f'<div class="cav-note">Hover a token to focus on it; click a colour to toggle a head, double-click to show it alone. '
        f"No network needed (if nothing reacts, the notebook is not trusted: the picture is the layer-{layer} view).</div>"
        f'<script type="application/json" class="cav-data">{payload}</script>'
        f"<script>{_JS.replace('__UID__', uid)}</script></div>"
    )


def attention_view(attentions: Any, tokens: Sequence[str], **kwargs: Any) -> Any:
    """The offline head view as an `IPython.display.HTML` object (display it in a notebook).

    Same arguments as `attention_view_html`. See notebook 03.
    """
    from IPython.display import HTML

    return HTML(attention_view_html(attentions, tokens, **kwargs))


def save_attention_view(path: str | Path, attentions: Any, tokens: Sequence[str], **kwargs: Any) -> Path:
    """Write the offline head view as a standalone .html file that any browser opens offline."""
    path = Path(path)
    body = attention_view_html(attentions, tokens, **kwargs)
    title = html.escape(kwargs.get("title") or "Attention view")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>\n',
        encoding="utf-8",
    )
    return path


# ----------------------------------------------------------------------------- widget
def attention_explorer(
    get_attentions: Callable[[str], tuple[Sequence[str], Any]],
    sentences: Sequence[str],
    layer: int = 0,
    head: int = 0,
) -> Any:
    """An ipywidgets explorer: pick a sentence (or type one), a layer and a head -> heatmap.

    get_attentions(text) returns (tokens, attentions) with attentions in any layout that
    `as_attention_array` reads, e.g. a model's `output.attentions`. Results are cached per text.
    The head menu also offers "mean" (the average of the heads). Returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    sentences = [str(s) for s in sentences]
    if not sentences:
        raise ValueError("attention_explorer needs at least one sentence")
    cache: dict[str, tuple[list[str], np.ndarray]] = {}

    def compute(text: str) -> tuple[list[str], np.ndarray]:
        if text not in cache:
            toks, att = get_attentions(text)
            arr = as_attention_array(att)
            cache[text] = (_check_tokens(toks, arr.shape[-2], "tokens"), arr)
        return cache[text]

    toks0, arr0 = compute(sentences[0])
    n_layers, n_heads = arr0.shape[:2]
    style = {"description_width": "initial"}
    pick = widgets.Dropdown(options=sentences, value=sentences[0], description="Sentence:", style=style,
                            layout=widgets.Layout(width="95%"))
    typed = widgets.Text(value="", placeholder="or type your own sentence and press Enter", description="Your text:",
                         style=style, layout=widgets.Layout(width="95%"), continuous_update=False)
    layer_w = widgets.IntSlider(value=min(max(layer, 0), n_layers - 1), min=0, max=n_layers - 1, description="Layer:", style=style)
    head_w = widgets.Dropdown(options=[("mean of heads", -1)] + [(f"head {h}", h) for h in range(n_heads)],
                              value=min(max(head, 0), n_heads - 1), description="Head:", style=style)
    out = widgets.Output()
    state = {"text": sentences[0]}

    def redraw(*_: Any) -> None:
        toks, arr = compute(state["text"])
        w = arr[layer_w.value].mean(0) if head_w.value == -1 else arr[layer_w.value, head_w.value]
        name = "mean of heads" if head_w.value == -1 else f"head {head_w.value}"
        with out:
            out.clear_output(wait=True)
            ax = plot_attention(w, toks, title=f"layer {layer_w.value}, {name}", annotate=len(toks) <= 8)
            plt.show()
            plt.close(ax.figure)

    def on_pick(change: dict) -> None:
        state["text"] = change["new"]
        redraw()

    def on_type(change: dict) -> None:
        if change["new"].strip():
            state["text"] = change["new"].strip()
            redraw()

    pick.observe(on_pick, names="value")
    typed.observe(on_type, names="value")
    layer_w.observe(redraw, names="value")
    head_w.observe(redraw, names="value")
    box = widgets.VBox([pick, typed, widgets.HBox([layer_w, head_w]), out])
    box.redraw = redraw  # for tests and notebooks: draw again without touching a control
    box.controls = {"sentence": pick, "text": typed, "layer": layer_w, "head": head_w, "output": out}
    redraw()
    return box
