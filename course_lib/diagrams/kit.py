"""The drawing kit behind the course's concept diagrams: boxes, arrows, token rows and number grids.

What it does:
- `canvas(name, title, width, height)`: an empty matplotlib figure whose axes count in "units"
  (1 unit = 0.5 inch), origin bottom left, no axis lines, ready for the helpers below;
- `box`, `arrow`, `label`, `token_row`, `grid`, `bracket`: the shapes every diagram is made of, in one
  palette (`COLOURS`), so that all pictures of the course look alike and restyle in one place;
- `Diagram`: the finished picture. Jupyter shows it as inline SVG (`_repr_svg_`), whose root `<svg>`
  carries `id="diagram-<name>"` and a `<title>`, so the static site and the browser test can find it;
  `Diagram.svg()` is byte-for-byte the same on every run (no date, fixed ids), `Diagram.save(path)`
  writes it to a file.

Leaves out: animation and interaction; the diagrams are static pictures of a concept, the notebooks'
plots show the data.

See notebook 00 and `course_lib.diagrams`.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["COLOURS", "UNIT", "Diagram", "svg_texts", "canvas", "box", "arrow", "label", "token_row", "grid", "bracket"]

#: inches per drawing unit: a canvas of width 16 units is 8 inches wide.
UNIT = 0.5

#: one palette for every diagram: what a colour means stays the same across the course.
COLOURS: dict[str, str] = {
    "text": "#fdf6e3",        # raw text, characters
    "token": "#fde2c8",       # tokens and token ids
    "vector": "#d9f0d3",      # vectors, embeddings, hidden states
    "attention": "#e3dcf5",   # queries, keys, values, attention
    "block": "#dbe9f6",       # layers and blocks of a model
    "norm": "#f6f1c1",        # normalisation
    "loss": "#f9d5d3",        # losses, targets, labels
    "output": "#cfe8ef",      # logits, probabilities, predictions
    "muted": "#eeeeee",       # masked, padded, unused, frozen
    "highlight": "#ffd54f",   # the one thing the picture is about
    "edge": "#444444",        # outlines and arrows
    "ink": "#222222",         # text
    "soft_ink": "#777777",    # captions and notes
}


def svg_texts(svg: str) -> list[str]:
    """The text of every <text> element of an SVG, in drawing order (one per line of a label), unescaped.

    >>> svg_texts('<svg><text x="0">a &amp; b</text><text>c</text></svg>')
    ['a & b', 'c']
    """
    return [html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)]


class Diagram:
    """A finished concept picture; shows itself in Jupyter as inline SVG with `id="diagram-<name>"`."""

    def __init__(self, name: str, figure: Figure, title: str):
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
            raise ValueError(f"a diagram name is lower-case letters, digits, '-' and '_' (it becomes an HTML id), got {name!r}")
        self.name, self.figure, self.title = name, figure, title
        self._svg: str | None = None

    def svg(self) -> str:
        """The picture as SVG text: text kept as text, no date, ids fixed by the name (the same on every run)."""
        if self._svg is None:
            buffer = io.StringIO()
            with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"course-{self.name}"}):
                self.figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
            text = buffer.getvalue()
            text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is inlined in HTML
            title = self.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            text = re.sub(r"<svg\b", f'<svg id="diagram-{self.name}" class="course-diagram" role="img" aria-label="{title}"',
                          text, count=1)
            text = re.sub(r"(<svg\b[^>]*>)", rf"\1\n <title>{title}</title>", text, count=1)
            self._svg = text
        return self._svg

    def _repr_svg_(self) -> str:
        return self.svg()

    def file_text(self) -> str:
        """The SVG as a standalone file: the XML prolog, then `svg()`."""
        return '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + self.svg()

    def save(self, path: str | Path) -> Path:
        """Write `file_text()` to `path` and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.file_text(), encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"Diagram({self.name!r}: {self.title})"


def canvas(name: str, title: str, width: float, height: float) -> tuple[Diagram, "matplotlib.axes.Axes"]:
    """An empty diagram `width` x `height` units (x to the right, y up, origin bottom left) and its axes.

    >>> d, ax = canvas("demo", "A demo", 4, 2); ax.get_xlim()
    (0.0, 4.0)
    """
    if not (0 < width <= 40 and 0 < height <= 40):
        raise ValueError(f"width and height are in units of {UNIT} inch, each in (0, 40], got {width} x {height}")
    figure = Figure(figsize=(width * UNIT, height * UNIT))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return Diagram(name, figure, title), ax


def box(ax, x: float, y: float, w: float, h: float, text: str = "", *, colour: str = "block", size: float = 10,
        bold: bool = False, round: bool = True, dashed: bool = False, text_colour: str = "ink") -> tuple[float, float, float, float]:
    """A box with its lower-left corner at (x, y), centred text; `colour` is a key of COLOURS or a hex code.

    Returns (x, y, w, h), so arrows can be attached to its sides.
    """
    face = COLOURS.get(colour, colour)
    style = "round,pad=0,rounding_size=0.15" if round else "square,pad=0"
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=face, edgecolor=COLOURS["edge"],
                                linewidth=1.0, linestyle="--" if dashed else "-"))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
                color=COLOURS.get(text_colour, text_colour), fontweight="bold" if bold else "normal")
    return (x, y, w, h)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", *, colour: str = "edge",
          size: float = 9, curve: float = 0.0, dashed: bool = False, width: float = 1.2, text_offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """An arrow from `start` to `end` (points in units), with an optional label beside its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=COLOURS.get(colour, colour),
                                 linewidth=width, linestyle="--" if dashed else "-",
                                 connectionstyle=f"arc3,rad={curve}", shrinkA=0, shrinkB=0))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=size, color=COLOURS["ink"],
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))


def label(ax, x: float, y: float, text: str, *, size: float = 10, colour: str = "ink", ha: str = "center",
          va: str = "center", bold: bool = False, italic: bool = False, rotation: float = 0) -> None:
    """Free text at (x, y); `colour` 'soft_ink' for captions."""
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=COLOURS.get(colour, colour), rotation=rotation,
            fontweight="bold" if bold else "normal", fontstyle="italic" if italic else "normal")


def token_row(ax, x: float, y: float, tokens: Sequence[str], *, w: float = 1.2, h: float = 0.7, gap: float = 0.15,
              colour: str | Sequence[str] = "token", size: float = 10) -> list[tuple[float, float, float, float]]:
    """A row of boxes, one per token, starting at (x, y); `colour` one for all or one per token.

    Returns each box's (x, y, w, h), so arrows can leave from a token.
    """
    colours = [colour] * len(tokens) if isinstance(colour, str) else list(colour)
    if len(colours) != len(tokens):
        raise ValueError(f"token_row: one colour per token expected, got {len(colours)} colours for {len(tokens)} tokens")
    return [box(ax, x + i * (w + gap), y, w, h, t, colour=c, size=size) for i, (t, c) in enumerate(zip(tokens, colours))]


def grid(ax, x: float, y: float, values: Sequence[Sequence[object]], *, cell: float = 0.7, colours=None,
         fmt: str = "{}", size: float = 9, row_labels: Sequence[str] = (), col_labels: Sequence[str] = ()) -> None:
    """A matrix of cells with its top-left corner at (x, y); row 0 is drawn at the top.

    `values` is a list of rows (numbers or strings; None leaves a cell empty); `colours` a same-shaped list
    of COLOURS keys or hex codes (default all white); `fmt` formats numbers ("{:.2f}").
    """
    rows = [list(r) for r in values]
    if rows and any(len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"grid: every row needs the same length, got lengths {[len(r) for r in rows]}")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            face = "white" if colours is None else COLOURS.get(colours[i][j], colours[i][j])
            ax.add_patch(Rectangle((x + j * cell, y - (i + 1) * cell), cell, cell, facecolor=face,
                                   edgecolor=COLOURS["edge"], linewidth=0.6))
            if v is not None and v != "":
                text = fmt.format(v) if isinstance(v, (int, float)) else str(v)
                ax.text(x + (j + 0.5) * cell, y - (i + 0.5) * cell, text, ha="center", va="center", fontsize=size,
                        color=COLOURS["ink"])
    for i, t in enumerate(row_labels):
        ax.text(x - 0.12, y - (i + 0.5) * cell, t, ha="right", va="center", fontsize=size, color=COLOURS["ink"])
    for j, t in enumerate(col_labels):
        ax.text(x + (j + 0.5) * cell, y + 0.12, t, ha="center", va="bottom", fontsize=size, color=COLOURS["ink"])


def bracket(ax, x0: float, x1: float, y: float, text: str = "", *, below: bool = True, size: float = 9) -> None:
    """A horizontal bracket from x0 to x1 at height y, with a caption under (or over) it."""
    tick = -0.15 if below else 0.15
    ax.plot([x0, x0, x1, x1], [y - tick, y, y, y - tick], color=COLOURS["edge"], linewidth=0.9)
    if text:
        ax.text((x0 + x1) / 2, y + (tick * 2 if not below else -0.3), text, ha="center", va="top" if below else "bottom",
                fontsize=size, color=COLOURS["soft_ink"])
