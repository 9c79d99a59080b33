"""The concept diagrams (issue 21): every registered diagram draws, is the same on every run, and is
stored in the notebook that shows it; the kit rejects bad input with a clear message.

Each drawing module has its own tests of what its pictures show (test_diagrams_foundations.py,
test_diagrams_architectures.py); the browser test checks that the static site shows every diagram.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_lib.diagrams import DIAGRAMS, Diagram, draw
from course_lib.diagrams.kit import canvas, grid, token_row

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _stored_svgs(notebook: str) -> list[str]:
    nb = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    return ["".join(out["data"]["image/svg+xml"]) for cell in nb["cells"] if cell["cell_type"] == "code"
            for out in cell.get("outputs", []) if "image/svg+xml" in out.get("data", {})]


def test_every_notebook_of_the_course_has_a_diagram():
    numbered = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    shown = {notebook for _, notebooks in DIAGRAMS.values() for notebook in notebooks}
    assert set(numbered) - shown == set(), "notebooks without a concept diagram"
    assert shown - set(numbered) == set(), "DIAGRAMS names a notebook that does not exist"


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_diagram_draws_the_same_svg_every_time(name):
    first, second = draw(name), draw(name)
    assert isinstance(first, Diagram) and first.name == name and first.title
    svg = first.svg()
    assert svg.startswith("<svg") and f'id="diagram-{name}"' in svg and f"<title>{first.title}" in svg.replace("&amp;", "&")
    assert svg == second.svg(), "two drawings differ: the SVG must be the same on every run"
    assert "<text" in svg, "text must stay text (searchable, and rendered with the reader's fonts)"


@pytest.mark.parametrize("name, notebook", [(n, nb) for n, (_, nbs) in sorted(DIAGRAMS.items()) for nb in nbs])
def test_notebook_stores_its_diagram(name, notebook):
    stored = _stored_svgs(notebook)
    assert any(f'id="diagram-{name}"' in svg for svg in stored), (
        f"{notebook}.ipynb has no stored output of diagram {name!r}: add a cell `draw({name!r})` "
        "(or its function) and re-execute the notebook")


def test_draw_names_the_diagrams_on_a_wrong_name():
    with pytest.raises(ValueError, match=r"no diagram called 'nope'; the diagrams are \["):
        draw("nope")


@pytest.mark.parametrize("name", ["", "Has Space", "UPPER", "-lead", "a/b"])
def test_a_diagram_name_must_be_an_html_id(name):
    with pytest.raises(ValueError, match="a diagram name is lower-case letters"):
        canvas(name, "title", 4, 2)


def test_canvas_token_row_and_grid_reject_bad_sizes():
    with pytest.raises(ValueError, match=r"each in \(0, 40\], got 0 x 2"):
        canvas("x", "t", 0, 2)
    _, ax = canvas("x", "t", 10, 4)
    with pytest.raises(ValueError, match="one colour per token expected, got 1 colours for 2 tokens"):
        token_row(ax, 0, 0, ["a", "b"], colour=["token"])
    with pytest.raises(ValueError, match=r"every row needs the same length, got lengths \[2, 1\]"):
        grid(ax, 0, 4, [[1, 2], [3]])


def test_title_is_escaped_and_saved_file_is_standalone(tmp_path):
    d, ax = canvas("demo", "Q & K <tiny>", 4, 2)
    token_row(ax, 0.2, 0.5, ["a"])
    svg = d.svg()
    assert "<title>Q &amp; K &lt;tiny&gt;</title>" in svg and re.search(r'<svg id="diagram-demo"', svg)
    path = d.save(tmp_path / "sub" / "demo.svg")
    assert path.read_text(encoding="utf-8").startswith("<?xml") and path.read_text(encoding="utf-8").endswith(svg)


def test_the_svg_files_of_the_readme_are_up_to_date():
    import subprocess
    import sys

    tool = Path(__file__).resolve().parent.parent / "tools" / "draw_diagrams.py"
    done = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_svg_texts_reads_every_label_unescaped_in_order():
    from course_lib.diagrams.kit import svg_texts

    assert svg_texts('<svg><text x="1">a &amp; b</text><g><text>c &lt; d</text></g><title>not me</title></svg>') == ["a & b", "c < d"]
    assert "queries" in " ".join(svg_texts(draw("queries-keys-values").svg())).lower()
