"""Write every concept diagram of the course to docs/diagrams/<name>.svg: `python tools/draw_diagrams.py`.

The README shows the pipeline from these files; the notebooks draw the same pictures live (course_lib.diagrams).
`--check` writes nothing and exits 1 when a file is missing or differs from what the code draws now
(the unit tests run it, so the files never drift from the code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.diagrams import DIAGRAMS, draw  # noqa: E402

OUT = ROOT / "docs" / "diagrams"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare the files with the code's drawings")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the SVG files (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    stale = []
    for name in sorted(DIAGRAMS):
        path = args.out / f"{name}.svg"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != draw(name).file_text():
                stale.append(str(path))
        else:
            draw(name).save(path)
            print(f"wrote {path}")
    if stale:
        print("out of date (run `python tools/draw_diagrams.py`):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
