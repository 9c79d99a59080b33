"""Interactive playgrounds for the notebooks (ipywidgets), and the HTML helpers behind them.

What is here:
- `segment(tokenizer, text)`: the pieces and ids any of the course's tokenizers (or tiktoken /
  Hugging Face ones) gives for a text, in one common shape;
- `tokens_html(pieces, ids)` / `show_tokens(tokenizer, text)`: coloured tokens with their ids as
  static HTML, which also shows on a web page where widgets do not run;
- `tokenizer_playground(tokenizers)`: type text, pick a tokenizer, see coloured tokens and their ids.

Leaves out: anything that needs a running server or the network; plots (see `course_lib.viz`).
See notebook 01.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, NamedTuple

__all__ = ["Segmentation", "segment", "tokens_html", "show_tokens", "tokenizer_playground", "TOKEN_COLOURS"]

#: Pastel background colours, cycled token by token (readable on light and dark themes).
TOKEN_COLOURS = ("#ffd8a8", "#b2f2bb", "#a5d8ff", "#fcc2d7", "#ffec99", "#d0bfff", "#99e9f2", "#e9ecef")


class Segmentation(NamedTuple):
    """A text cut into tokens: display strings, ids, and whether each piece is a whole character string."""

    pieces: list[str]
    ids: list[int]
    complete: list[bool]  # False where a token holds only part of a multi-byte character


def _bytes_pieces(token_bytes: list[bytes]) -> tuple[list[str], list[bool]]:
    from course_lib.tokenization import render_token

    pieces, complete = [], []
    for b in token_bytes:
        try:
            pieces.append(b.decode("utf-8"))
            complete.append(True)
        except UnicodeDecodeError:
            pieces.append(render_token(b))
            complete.append(False)
    return pieces, complete


def segment(tokenizer: Any, text: str) -> Segmentation:
    """Cut `text` with any supported tokenizer and return display pieces and ids.

    Supports the course's `BPETokenizer`, `WordPieceTokenizer`, `CharTokenizer`, `WordTokenizer`,
    a `tiktoken.Encoding` and a Hugging Face tokenizer. Special-token strings are encoded as special tokens.
    >>> from course_lib.tokenization import CharTokenizer
    >>> segment(CharTokenizer.train("ab"), "abc").pieces
    ['a', 'b', '<unk>']
    """
    from course_lib import tokenization as tz

    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(tokenizer, tz.BPETokenizer):
        ids = tokenizer.encode(text, allowed_special="all")
        pieces, complete = _bytes_pieces([tokenizer.token_bytes(i) for i in ids])
        return Segmentation(pieces, ids, complete)
    if isinstance(tokenizer, tz.WordPieceTokenizer):
        ids = tokenizer.encode(text)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        return Segmentation(pieces, ids, [True] * len(ids))
    if isinstance(tokenizer, (tz.CharTokenizer, tz.WordTokenizer)):
        ids = tokenizer.encode(text)
        return Segmentation([tokenizer.itos[i] for i in ids], ids, [True] * len(ids))
    if hasattr(tokenizer, "decode_single_token_bytes"):  # tiktoken.Encoding
        ids = tokenizer.encode(text, allowed_special="all")
        pieces, complete = _bytes_pieces([tokenizer.decode_single_token_bytes(i) for i in ids])
        return Segmentation(pieces, ids, complete)
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # Hugging Face
        ids = tokenizer(text)["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        return Segmentation(pieces, ids, [True] * len(ids))
    raise TypeError(
        f"unsupported tokenizer {type(tokenizer).__name__}; expected a course_lib.tokenization tokenizer, "
        "a tiktoken.Encoding or a Hugging Face tokenizer"
    )


def _visible(piece: str) -> str:
    """Make whitespace visible: space as ·, newline as ↵, tab as →."""
    return piece.replace(" ", "·").replace("\r", "␍").replace("\n", "↵").replace("\t", "→")


def tokens_html(pieces: list[str], ids: list[int] | None = None, complete: list[bool] | None = None, show_ids: bool = True) -> str:
    """HTML with one coloured box per token (hover for the id); ids under each box when `show_ids`.

    Pieces that are only part of a character (a byte of a UTF-8 sequence) get a dashed border.
    >>> tokens_html(["he", "llo"], [258, 301]).count("<span")
    4
    """
    if ids is not None and len(ids) != len(pieces):
        raise ValueError(f"pieces and ids must have the same length, got {len(pieces)} and {len(ids)}")
    complete = complete or [True] * len(pieces)
    boxes = []
    for k, piece in enumerate(pieces):
        colour = TOKEN_COLOURS[k % len(TOKEN_COLOURS)]
        border = "1px solid #868e96" if complete[k] else "1px dashed #e03131"
        title = f"id {ids[k]}" if ids is not None else f"token {k}"
        label = html.escape(_visible(piece)) or "&#8203;"
        id_line = (
            f'<span style="display:block;font-size:9px;color:#495057;text-align:center">{ids[k]}</span>'
            if show_ids and ids is not None
            else ""
        )
        boxes.append(
            f'<span title="{html.escape(title)}" style="display:inline-block;margin:1px;padding:1px 3px;'
            f'background:{colour};color:#212529;border:{border};border-radius:3px;font-family:monospace;'
            f'white-space:pre;vertical-align:top">{label}{id_line}</span>'
        )
    return '<div style="line-height:1.9">' + "".join(boxes) + "</div>"


def show_tokens(tokenizer: Any, text: str, show_ids: bool = True, title: str | None = None):
    """Display the coloured tokens of `text` (an IPython HTML object; it renders on a static web page too)."""
    from IPython.display import HTML

    seg = segment(tokenizer, text)
    head = f"<b>{html.escape(title)}</b>: " if title else ""
    summary = f'<div style="font-size:12px">{head}{len(seg.ids)} tokens for {len(text)} characters</div>'
    return HTML(summary + tokens_html(seg.pieces, seg.ids, seg.complete, show_ids=show_ids))


def tokenizer_playground(tokenizers: Mapping[str, Any], text: str = "Hello world! 你好，世界！ 🍕 def f(x): return x**2"):
    """Type text, pick a tokenizer, see its coloured tokens, their ids and the token count.

    `tokenizers` maps a display name to a tokenizer (anything `segment` supports).
    Returns an ipywidgets VBox; display it as the last line of a cell. See notebook 01.
    """
    import ipywidgets as W

    if not tokenizers:
        raise ValueError("tokenizers must map at least one name to a tokenizer")
    names = list(tokenizers)
    text_box = W.Textarea(value=text, description="Text", layout=W.Layout(width="98%", height="80px"))
    choice = W.Dropdown(options=names, value=names[0], description="Tokenizer")
    ids_box = W.Checkbox(value=True, description="show ids")
    out = W.HTML()

    def refresh(_=None):
        try:
            seg = segment(tokenizers[choice.value], text_box.value)
        except Exception as exc:  # show the error in the widget, never crash the notebook
            out.value = f'<pre style="color:#c92a2a">{html.escape(type(exc).__name__ + ": " + str(exc))}</pre>'
            return
        n_chars = max(len(text_box.value), 1)
        stats = (
            f'<div style="font-size:12px;margin:4px 0"><b>{len(seg.ids)}</b> tokens, {len(text_box.value)} characters, '
            f"{len(seg.ids) / n_chars:.2f} tokens per character</div>"
        )
        ids_text = f'<div style="font-family:monospace;font-size:11px;color:#495057">ids: {html.escape(str(seg.ids))}</div>'
        out.value = stats + tokens_html(seg.pieces, seg.ids, seg.complete, show_ids=ids_box.value) + (ids_text if ids_box.value else "")

    for w in (text_box, choice, ids_box):
        w.observe(refresh, names="value")
    refresh()
    return W.VBox([text_box, W.HBox([choice, ids_box]), out])
