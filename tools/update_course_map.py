"""Copy the notebooks' measured run times from .test-durations.json into the README's course map and
into each notebook's header.

Run it after `make test`, which writes .test-durations.json (each notebook's duration under nbval, in a
fresh kernel):

    python tools/update_course_map.py             README course map and every header in notebooks/
    python tools/update_course_map.py --gpu       the same from a `make test` run on a GPU machine
    python tools/update_course_map.py --no-readme notebooks/06_causal_language_modeling.ipynb
                                                  only that notebook's header
    python tools/update_course_map.py --dry-run   print what would change, write nothing

The README: each row of the course map (between <!-- course-map:start --> and <!-- course-map:end -->)
gets "95 s (+12 s solutions)" in its CPU column (with --gpu, its GPU column).

A notebook's header (its first markdown cell): the lines between <!-- run-time:start --> and
<!-- run-time:end --> become one sentence, for example

    **Run time:** 95 s on a 2-core CPU (+12 s for the solutions), measured under `make test` on 2026-12-03; not yet measured on a GPU.

A CPU run rewrites the CPU half and keeps the GPU half (--gpu: the other way round). Times are whole
seconds; the date is --date, else the durations file's "date" field, else the day the file was last
written. A header without the markers gets them around its hand-written sentence that starts with
`**Run time` (up to the end of the first sentence of that paragraph that mentions a GPU, or else of its
first sentence); the tool prints the text it replaced. A notebook without a measured time keeps its text
(inside the markers). Apart from adding the markers, nothing outside them changes.

Notebook 00 shows the course map by reading README.md when it runs, so its stored output is the map of
its last execution: re-execute notebook 00 after updating the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- run-time:start -->", "<!-- run-time:end -->"
MARKED = re.compile(re.escape(START) + r"\n?(.*?)\n?" + re.escape(END), re.S)
LABEL = "**Run time:** "
NOT_MEASURED = {"cpu": "not yet measured on a CPU", "gpu": "not yet measured on a GPU"}


def whole_seconds(seconds: float) -> str:
    """A duration as whole seconds, halves rounded up: 86.5 -> '87 s'."""
    return f"{math.floor(seconds + 0.5)} s"


def time_text(files: dict[str, float], notebook: str) -> tuple[float, float | None] | None:
    """(notebook seconds, solutions seconds or None) for 'notebooks/NAME.ipynb', or None if not measured."""
    if notebook not in files:
        return None
    solutions = f"notebooks/solutions/{Path(notebook).stem}_solutions.ipynb"
    return files[notebook], files.get(solutions)


def clause(times: tuple[float, float | None], kind: str, machine: str, date: str) -> str:
    """One half of the run-time sentence: '95 s on a 2-core CPU (+12 s for the solutions), measured ...'."""
    own, solutions = times
    text = f"{whole_seconds(own)} on {machine}"
    if solutions is not None:
        text += f" (+{whole_seconds(solutions)} for the solutions)"
    return text + f", measured under `make test` on {date}"


def split_sentence(content: str) -> dict[str, str] | None:
    """The CPU and GPU halves of a sentence this tool wrote, or None for any other text."""
    if not (content.startswith(LABEL) and content.endswith(".")):
        return None
    halves = content[len(LABEL) : -1].split("; ")
    if len(halves) != 2 or "CPU" not in halves[0] or "GPU" not in halves[1]:
        return None
    return {"cpu": halves[0], "gpu": halves[1]}


def find_old_sentence(text: str) -> tuple[int, int] | None:
    """Where the hand-written run-time text of a header starts and ends, or None if there is none.

    From `**Run time` to the end of the first sentence of its paragraph that mentions a GPU, or of its
    first sentence if none does. '**Run time.** 20 s on a CPU. Not on a GPU.\\nMore.' -> up to 'GPU.'.
    """
    match = re.search(r"\*\*Run time\b", text)
    if match is None:
        return None
    start = match.start()
    paragraph_end = text.find("\n\n", start)
    paragraph_end = len(text) if paragraph_end < 0 else paragraph_end
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text[start:paragraph_end])] or [paragraph_end - start]
    sentence_start = 0
    for end in ends:
        if "GPU" in text[start + sentence_start : start + end]:
            return start, start + end
        sentence_start = end
    return start, start + ends[0]


def update_header(text: str, new: str | None, kind: str) -> tuple[str, str]:
    """The header cell's text with the run-time sentence updated, and what happened, in words.

    `new` is this run's clause for `kind` ("cpu" or "gpu"), or None if the notebook was not measured.
    """
    marked = MARKED.search(text)
    if marked is not None:
        old = marked.group(1).strip("\n")
        if new is None:
            return text, "no measured time: kept"
        halves = split_sentence(old) or dict(NOT_MEASURED)
        halves[kind] = new
        sentence = f"{LABEL}{halves['cpu']}; {halves['gpu']}."
        block = f"{START}\n{sentence}\n{END}"
        if block == marked.group(0):
            return text, "unchanged"
        note = "updated" if split_sentence(old) else f"updated; replaced {old!r}"
        return text[: marked.start()] + block + text[marked.end() :], note
    found = find_old_sentence(text)
    if found is None:
        return text, "no `**Run time` sentence and no markers: skipped"
    start, end = found
    old = text[start:end]
    if new is None:
        sentence, note = old, "no measured time: markers added around the old text"
    else:
        halves = dict(NOT_MEASURED)
        halves[kind] = new
        sentence, note = f"{LABEL}{halves['cpu']}; {halves['gpu']}.", f"markers added; replaced {old!r}"
    before, after = text[:start], text[end:]
    if before and not before.endswith("\n"):
        before = before.rstrip(" ") + "\n"
    if after and not after.startswith("\n"):
        after = "\n" + after.lstrip(" ")
    return before + f"{START}\n{sentence}\n{END}" + after, note


def update_notebook(path: Path, new: str | None, kind: str, write: bool) -> str:
    """Update the run-time sentence in the first markdown cell of the notebook at `path`; say what happened."""
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    cell = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
    if cell is None:
        return "no markdown cell: skipped"
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    text, note = update_header(source, new, kind)
    if text != source:
        cell["source"] = text.splitlines(keepends=True)
        if write:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return note


def update_readme(readme: str, files: dict[str, float], gpu: bool) -> str:
    """The README with the course map's CPU (or GPU) column filled from the durations."""
    column = 4 if gpu else 3  # | # | notebook | what | CPU | GPU |

    def fill(match: re.Match) -> str:
        cells = match.group(0).strip().strip("|").split("|")
        number = cells[0].strip()
        own = [p for p in files if re.fullmatch(rf"notebooks/{number}_[^/]+\.ipynb", p)]
        if own:
            times = time_text(files, own[0])
            text = whole_seconds(times[0]) + (f" (+{whole_seconds(times[1])} solutions)" if times[1] is not None else "")
            cells[column] = f" {text} "
            name = Path(own[0]).stem
            cells[1] = f" [{name[3:]}](notebooks/{name}.ipynb) "
        return "|" + "|".join(cells) + "|"

    start, end = readme.index("<!-- course-map:start -->"), readme.index("<!-- course-map:end -->")
    table = re.sub(r"^\| \d\d \|.*\|$", fill, readme[start:end], flags=re.M)
    return readme[:start] + table + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="update_course_map.py",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK",
                        help="notebooks whose header to update (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: %(default)s)")
    parser.add_argument("--durations", type=Path, help="the durations file (default: ROOT/.test-durations.json)")
    parser.add_argument("--gpu", action="store_true", help="the times were measured on a GPU machine: fill the GPU column and GPU half")
    parser.add_argument("--date", help="the day of the measurement, YYYY-MM-DD (default: the file's \"date\", else its last change)")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--no-headers", action="store_true", help="leave the notebooks alone")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    durations = args.durations or root / ".test-durations.json"
    record = json.loads(durations.read_text(encoding="utf-8"))
    files = record["files"]
    date = args.date or record.get("date") or dt.date.fromtimestamp(durations.stat().st_mtime).isoformat()
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", date):
        parser.error(f"--date must be YYYY-MM-DD, got {date!r}")
    cores = re.search(r"(\d+) cores?", record.get("machine", ""))
    machine = "a GPU" if args.gpu else (f"a {cores.group(1)}-core CPU" if cores else "a CPU")
    kind = "gpu" if args.gpu else "cpu"
    write = not args.dry_run

    if not args.no_readme:
        readme_path = root / "README.md"
        readme = readme_path.read_text(encoding="utf-8")
        new_readme = update_readme(readme, files, args.gpu)
        if new_readme != readme and write:
            readme_path.write_text(new_readme, encoding="utf-8")
        print(f"README.md: {'updated' if new_readme != readme else 'unchanged'} course map")

    if not args.no_headers:
        paths = [p.resolve() for p in args.notebooks] or sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        for path in paths:
            try:
                key = path.relative_to(root).as_posix()
            except ValueError:
                parser.error(f"{path} is not inside {root}")
            if not re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", key):
                parser.error(f"{key} is not a course notebook (notebooks/NN_name.ipynb)")
            times = time_text(files, key)
            new = None if times is None else clause(times, kind, machine, date)
            print(f"{key}: {update_notebook(path, new, kind, write)}")
        if not args.no_readme:
            print("Notebook 00 reads the course map from README.md when it runs: re-execute it to store the new map.")
    if args.dry_run:
        print("(dry run: nothing written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
