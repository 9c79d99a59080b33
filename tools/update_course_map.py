"""Copy the notebooks' measured run times from .test-durations.json into the README's course map.

Run after `make test` on the 2-core CPU machine: `python tools/update_course_map.py`. A solutions
notebook's time is shown after the notebook's own, e.g. "95 s (+12 s solutions)".
With --gpu, the times go into the GPU column instead (run `make test` on the GPU machine first).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=Path, default=ROOT / ".test-durations.json")
    parser.add_argument("--gpu", action="store_true", help="fill the GPU column")
    args = parser.parse_args()
    files = json.loads(args.durations.read_text())["files"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    column = 4 if args.gpu else 3  # | # | notebook | what | CPU | GPU |

    def fill(match: re.Match) -> str:
        cells = match.group(0).strip().strip("|").split("|")
        number = cells[0].strip()
        own = [p for p in files if re.fullmatch(rf"notebooks/{number}_[^/]+\.ipynb", p)]
        sol = [p for p in files if re.fullmatch(rf"notebooks/solutions/{number}_[^/]+_solutions\.ipynb", p)]
        if own:
            text = f"{files[own[0]]:.0f} s" + (f" (+{files[sol[0]]:.0f} s solutions)" if sol else "")
            cells[column] = f" {text} "
            name = Path(own[0]).stem
            cells[1] = f" [{name[3:]}](notebooks/{name}.ipynb) "
        return "|" + "|".join(cells) + "|"

    start, end = readme.index("<!-- course-map:start -->"), readme.index("<!-- course-map:end -->")
    table = re.sub(r"^\| \d\d \|.*\|$", fill, readme[start:end], flags=re.M)
    (ROOT / "README.md").write_text(readme[:start] + table + readme[end:], encoding="utf-8")
    print("updated the course map from", args.durations)


if __name__ == "__main__":
    main()
