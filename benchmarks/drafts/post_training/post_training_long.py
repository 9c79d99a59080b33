"""The longer run of notebook 14: the same experiment with more seeds and a bigger extra budget.

It executes notebooks/14_post_training.ipynb itself (so no code is copied), with a cell after the
`parameters` cell that overrides the budgets, and writes the executed notebook (tables, plots, the
measured run time) to --out. About 20 minutes on a 2-core CPU with the defaults:

    .venv/bin/python benchmarks/post_training_long.py --seeds 0 1 2 3 --extra-steps 600

Leaves out: anything the notebook does not do (it is the notebook, with other numbers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "14_post_training.ipynb"


def override_cell(args: argparse.Namespace) -> str:
    """The code of the cell inserted after the parameters cell."""
    return (
        "# injected by benchmarks/post_training_long.py\n"
        f"SEEDS = {tuple(args.seeds)!r}\n"
        f"EXTRA_STEPS = {args.extra_steps}\n"
        f"N_TEST = {args.n_test}\n"
        f"DPO_PROMPTS = {args.dpo_prompts}\n"
    )


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--extra-steps", type=int, default=600, help="GRPO steps = control SFT steps")
    p.add_argument("--n-test", type=int, default=1000, help="held-out test problems")
    p.add_argument("--dpo-prompts", type=int, default=512)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "runs" / "post_training_long.ipynb")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--notebook", type=Path, default=NOTEBOOK, help="the notebook to run (a draft, say)")
    args = p.parse_args(argv)
    if len(args.seeds) < 1 or args.extra_steps < 1 or args.n_test < 10:
        p.error("need at least one seed, --extra-steps >= 1 and --n-test >= 10")
    nb = nbformat.read(args.notebook, as_version=4)
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            nb.cells.insert(i + 1, nbformat.v4.new_code_cell(override_cell(args)))
            break
    else:
        raise SystemExit(f"{args.notebook} has no cell tagged 'parameters'")
    t0 = time.time()
    NotebookClient(nb, timeout=args.timeout, resources={"metadata": {"path": str(args.notebook.parent)}}).execute()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, args.out)
    print(f"ran in {time.time() - t0:.0f} s; executed notebook written to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
