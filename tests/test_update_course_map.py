"""tools/update_course_map.py: run times from .test-durations.json into the README and the notebook headers.

Each test builds a small copy of the repository in a temporary folder (a README with a course map, two
notebooks, a durations file) and runs the tool on it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("update_course_map", ROOT / "tools" / "update_course_map.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

README = """# The course

<!-- course-map:start -->
| # | notebook | what you build and see | CPU (2 cores) | GPU |
|---|---|---|---|---|
| 01 | [tokenization](notebooks/01_tokenization.ipynb) | BPE | 11 s (+3 s solutions) | not measured |
| 02 | [embeddings](notebooks/02_embeddings.ipynb) | vectors | 8 s | not measured |

CPU times: see below.
<!-- course-map:end -->

More text, 12 s.
"""

HEADER_01 = """# 01 · Tokenization

**Prerequisites:** notebook 00.
**Run time:** about 1 minute on a laptop CPU; a GPU does not help here (tokenizers run on the CPU).

Everything you build is in `course_lib.tokenization`."""

HEADER_02 = """# 02 · Embeddings

**Run time.** 30 s on the 2-core CPU (measured
under `make test`). Not yet measured on a GPU.
Everything is offline."""

SENTENCE_01 = ("**Run time:** 87 s on a 2-core CPU (+2 s for the solutions), measured under `make test` on 2026-12-03; "
               "not yet measured on a GPU.")


def notebook(header: str) -> dict:
    md = {"cell_type": "markdown", "id": "a1", "metadata": {}, "source": header.splitlines(keepends=True)}
    code = {"cell_type": "code", "execution_count": 1, "id": "b2", "metadata": {}, "outputs": [],
            "source": ["print('**Run time:** not this one')"]}
    return {"cells": [md, code], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "notebooks" / "solutions").mkdir(parents=True)
    (tmp_path / "README.md").write_text(README, encoding="utf-8")
    for name, header in [("01_tokenization", HEADER_01), ("02_embeddings", HEADER_02)]:
        text = json.dumps(notebook(header), indent=1, ensure_ascii=False) + "\n"
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text(text, encoding="utf-8")
    durations = {"machine": "x86_64, 2 cores", "files": {
        "notebooks/01_tokenization.ipynb": 86.5,
        "notebooks/solutions/01_tokenization_solutions.ipynb": 2.4,
        "tests/test_tokenization.py": 26.9,
    }}
    (tmp_path / ".test-durations.json").write_text(json.dumps(durations), encoding="utf-8")
    return tmp_path


def run(repo: Path, *args: str) -> None:
    assert tool.main(["--root", str(repo), "--date", "2026-12-03", *args]) == 0


def header(repo: Path, name: str) -> str:
    nb = json.loads((repo / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return "".join(nb["cells"][0]["source"])


def snapshot(repo: Path) -> dict[str, str]:
    return {p.relative_to(repo).as_posix(): p.read_text(encoding="utf-8") for p in repo.rglob("*") if p.is_file()}


def test_readme_course_map_gets_the_measured_times(repo):
    run(repo)
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert "| 01 | [tokenization](notebooks/01_tokenization.ipynb) | BPE | 87 s (+2 s solutions) | not measured |" in readme
    assert "| 02 | [embeddings](notebooks/02_embeddings.ipynb) | vectors | 8 s | not measured |" in readme  # no duration
    assert readme.endswith("More text, 12 s.\n")  # outside the map: untouched


def test_header_sentence_replaced_between_markers(repo):
    run(repo)
    text = header(repo, "01_tokenization")
    assert text == HEADER_01.replace(
        "**Run time:** about 1 minute on a laptop CPU; a GPU does not help here (tokenizers run on the CPU).",
        f"<!-- run-time:start -->\n{SENTENCE_01}\n<!-- run-time:end -->",
    )
    nb = json.loads((repo / "notebooks" / "01_tokenization.ipynb").read_text(encoding="utf-8"))
    assert nb["cells"][1] == notebook(HEADER_01)["cells"][1]  # other cells untouched


def test_notebook_without_a_duration_keeps_its_text(repo):
    run(repo)
    text = header(repo, "02_embeddings")
    old = "**Run time.** 30 s on the 2-core CPU (measured\nunder `make test`). Not yet measured on a GPU."
    assert text == HEADER_02.replace(old, f"<!-- run-time:start -->\n{old}\n<!-- run-time:end -->")


def test_second_run_changes_nothing(repo):
    run(repo)
    first = snapshot(repo)
    run(repo)
    assert snapshot(repo) == first


def test_new_durations_rewrite_only_between_the_markers(repo):
    run(repo)
    durations = json.loads((repo / ".test-durations.json").read_text())
    durations["files"]["notebooks/01_tokenization.ipynb"] = 95.2
    del durations["files"]["notebooks/solutions/01_tokenization_solutions.ipynb"]
    (repo / ".test-durations.json").write_text(json.dumps(durations))
    run(repo, "--date", "2026-12-05")
    text = header(repo, "01_tokenization")
    assert ("<!-- run-time:start -->\n**Run time:** 95 s on a 2-core CPU, measured under `make test` on 2026-12-05; "
            "not yet measured on a GPU.\n<!-- run-time:end -->") in text
    assert text.startswith("# 01 · Tokenization\n\n**Prerequisites:** notebook 00.\n<!-- run-time:start -->")
    assert text.endswith("<!-- run-time:end -->\n\nEverything you build is in `course_lib.tokenization`.")


def test_gpu_times_fill_the_gpu_half_and_keep_the_cpu_half(repo):
    run(repo)
    gpu = {"machine": "x86_64, 16 cores", "files": {"notebooks/01_tokenization.ipynb": 12.2}}
    (repo / "gpu.json").write_text(json.dumps(gpu))
    run(repo, "--gpu", "--durations", str(repo / "gpu.json"), "--date", "2026-12-06")
    expected = SENTENCE_01.replace(
        "not yet measured on a GPU", "12 s on a GPU, measured under `make test` on 2026-12-06"
    )
    assert f"\n{expected}\n" in header(repo, "01_tokenization")
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert "| BPE | 87 s (+2 s solutions) | 12 s |" in readme


def test_selected_notebooks_only_and_no_readme(repo):
    before = snapshot(repo)
    run(repo, "--no-readme", str(repo / "notebooks" / "02_embeddings.ipynb"))
    after = snapshot(repo)
    changed = {p for p in after if after[p] != before[p]}
    assert changed == {"notebooks/02_embeddings.ipynb"}


def test_dry_run_writes_nothing(repo, capsys):
    before = snapshot(repo)
    run(repo, "--dry-run")
    assert snapshot(repo) == before
    out = capsys.readouterr().out
    assert "markers added; replaced '**Run time:** about 1 minute" in out  # says what it would replace
    assert "dry run" in out


def test_date_defaults_to_the_file_date_field(repo):
    durations = json.loads((repo / ".test-durations.json").read_text())
    durations["date"] = "2026-11-30"
    (repo / ".test-durations.json").write_text(json.dumps(durations))
    assert tool.main(["--root", str(repo), "--no-readme"]) == 0
    assert "measured under `make test` on 2026-11-30;" in header(repo, "01_tokenization")


@pytest.mark.parametrize(
    "text, expected",
    [
        # one sentence with the GPU in it
        ("**Run time:** 20 s on a CPU; not on a GPU.\nNext.", "**Run time:** 20 s on a CPU; not on a GPU."),
        # the GPU sentence is the second one and the first spans two lines (notebook 07's header)
        ("**Run time:** 157 s on the CPU (measured on\n2026-12-01); 214 s when slow. Not yet measured on a GPU.",
         "**Run time:** 157 s on the CPU (measured on\n2026-12-01); 214 s when slow. Not yet measured on a GPU."),
        # no GPU in the paragraph: the first sentence only; what follows is kept
        ("A.\n**Run time.** 1 to 1.5 minutes (66 s). Everything is offline.\n\nMore about a GPU.",
         "**Run time.** 1 to 1.5 minutes (66 s)."),
        # the sentence continues after the GPU clause (notebook 08's header)
        ("**Run time.** 111 s; not yet measured on a GPU; the last code\ncell prints the time. The budget.",
         "**Run time.** 111 s; not yet measured on a GPU; the last code\ncell prints the time."),
    ],
)
def test_find_old_sentence(text, expected):
    start, end = tool.find_old_sentence(text)
    assert text[start:end] == expected


def test_text_after_the_old_sentence_starts_a_new_line():
    text = "**Prerequisites:** 06.\n**Run time:** 26 s; not yet measured on a GPU. Every run is\ntiny."
    new, note = tool.update_header(text, "26 s on a 2-core CPU, measured under `make test` on 2026-12-03", "cpu")
    assert new == ("**Prerequisites:** 06.\n<!-- run-time:start -->\n**Run time:** 26 s on a 2-core CPU, measured under "
                   "`make test` on 2026-12-03; not yet measured on a GPU.\n<!-- run-time:end -->\nEvery run is\ntiny.")
    assert note.startswith("markers added; replaced '**Run time:** 26 s;")


def test_header_without_run_time_is_skipped():
    text = "# 12 · Title\n\nNo time here."
    assert tool.update_header(text, "1 s on a CPU", "cpu") == (text, "no `**Run time` sentence and no markers: skipped")


def test_markers_render_as_a_bold_paragraph():
    mistune = pytest.importorskip("nbconvert.filters.markdown_mistune")
    text, _ = tool.update_header(HEADER_01, "87 s on a 2-core CPU, measured under `make test` on 2026-12-03", "cpu")
    html = mistune.markdown2html_mistune(text)
    assert "<p><strong>Run time:</strong> 87 s on a 2-core CPU" in html
    assert "**" not in html


def test_whole_seconds():
    assert [tool.whole_seconds(s) for s in (0.4, 2.5, 86.49, 86.5, 388.5)] == ["0 s", "3 s", "86 s", "87 s", "389 s"]


def test_help_explains_the_markers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "<!-- run-time:start -->" in out and "--gpu" in out and "re-execute notebook 00" in out


def test_rejects_a_file_that_is_not_a_course_notebook(repo):
    with pytest.raises(SystemExit):
        run(repo, str(repo / "README.md"))
