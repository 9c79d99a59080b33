"""Compare training recipes of notebook 07 on the VALIDATION split (never the test split).

Each run trains notebook 07's model (2+2 layers, width 128, learned positions, Xavier init, no
dropout, batches of 128 as 4 micro-batches, peak lr 4e-3 after 100 warm-up steps) for the
notebook's own step budget with one recipe change, then greedily decodes ALL validation words and
writes their scores (and the per-word right/wrong vector, for paired comparisons) to a JSON file.

Usage (one thread, so that it leaves room on a shared machine; a run of 1,600 steps takes about
3 minutes on the quiet 2-core machine):

    .venv/bin/python benchmarks/g2p_recipe_search.py --recipe base --seed 0
    .venv/bin/python benchmarks/g2p_recipe_search.py --summary   # the table of benchmarks/notes/g2p_recipe.md

Recipes: `base` (post-LN, weight decay 0.1, linear decay to zero: notebook 07's recipe), and one
change each: `preln` (LayerNorm before each sub-layer), `wd001` (weight decay 0.01), `cosine`
(cosine decay to zero instead of a straight line), and `dff256` (a feed-forward width of 256 instead
of 512: cheaper steps). Results: data/runs/g2p_recipe/<recipe>_s<seed>_<steps>.json.
See benchmarks/notes/g2p_recipe.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.pronunciation import (  # noqa: E402
    G2PBatches, evaluate_g2p, load_g2p_pairs, make_g2p_model, predict_batch, references,
)
from course_lib.training import TrainConfig, train  # noqa: E402
from course_lib.utils import set_seed  # noqa: E402

OUT = ROOT / "data" / "runs" / "g2p_recipe"
BASE = dict(pre_norm=False, weight_decay=0.1, decay="linear", final_lr=0.0, d_ff=None)
RECIPES = {
    "base": {},
    "preln": dict(pre_norm=True),
    "wd001": dict(weight_decay=0.01),
    "cosine": dict(decay="cosine"),
    "dff256": dict(d_ff=256),
}


def run(recipe: str, seed: int, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    r = BASE | RECIPES[recipe]
    train_pairs = load_g2p_pairs("train")
    val_refs = references(load_g2p_pairs("validation"))
    set_seed(seed)
    extra = {"d_ff": r["d_ff"]} if r["d_ff"] else {}
    model = make_g2p_model(2, 128, 4, 0.0, pre_norm=r["pre_norm"], **extra)
    batches = G2PBatches(train_pairs, 128, seed=seed, chunks=4)
    cfg = TrainConfig(max_steps=steps, lr=4e-3, min_lr=4e-3 * r["final_lr"], decay=r["decay"], warmup_steps=100,
                      weight_decay=r["weight_decay"], eval_every=0, seed=seed, progress=False)
    t0 = time.perf_counter()
    hist = train(model, batches, cfg)
    seconds = time.perf_counter() - t0
    model.eval()
    words = sorted(val_refs)
    preds = predict_batch(model, words)
    scores = evaluate_g2p(preds, [val_refs[w] for w in words])
    right = [int(p in val_refs[w]) for p, w in zip(preds, words)]
    out = dict(recipe=recipe, seed=seed, steps=steps, threads=threads, train_seconds=round(seconds, 1),
               last_train_loss=hist.train_loss[-1], val_wer=scores["wer"], val_per=scores["per"],
               val_bleu=scores["bleu"], n_words=len(words), right="".join(map(str, right)), settings=r)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{recipe}_s{seed}_{steps}.json").write_text(json.dumps(out))
    print(f"{recipe} seed {seed}: val WER {scores['wer']:.2%} PER {scores['per']:.2%} ({seconds:.0f} s)", flush=True)
    return out


def paired_interval(a: list[int], b: list[int], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Difference of WER (b - a, in points) on the same words, with a 95% paired bootstrap interval."""
    x = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)  # right_a - right_b = wer_b - wer_a
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(x), (n_boot, len(x)), generator=g)
    boots = x[idx].mean(1)
    lo, hi = torch.quantile(boots, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return 100 * x.mean().item(), 100 * lo, 100 * hi


def summary(steps: int) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob(f"*_{steps}.json"))]
    by = {}
    for r in runs:
        by.setdefault(r["recipe"], {})[r["seed"]] = r
    print(f"| recipe (one change from base) | seeds | validation WER per seed | mean WER | mean PER | "
          f"WER minus base, same seeds (95% paired bootstrap) |")
    print("|---|---|---|---|---|---|")
    for name in RECIPES:
        if name not in by:
            continue
        rs = by[name]
        seeds = sorted(rs)
        wer = sum(rs[s]["val_wer"] for s in seeds) / len(seeds)
        per = sum(rs[s]["val_per"] for s in seeds) / len(seeds)
        diff = "-"
        if name != "base" and "base" in by:
            common = [s for s in seeds if s in by["base"]]
            if common:
                a = [int(c) for s in common for c in by["base"][s]["right"]]
                b = [int(c) for s in common for c in rs[s]["right"]]
                d, lo, hi = paired_interval(a, b)
                diff = f"{d:+.2f} points [{lo:+.2f}, {hi:+.2f}]" + (" (not significant)" if lo < 0 < hi else "")
        per_seed = ", ".join(f"{100 * rs[s]['val_wer']:.2f}%" for s in seeds)
        print(f"| {name} | {len(seeds)} | {per_seed} | {100 * wer:.2f}% | {100 * per:.2f}% | {diff} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=list(RECIPES), default="base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="print the comparison table of the runs made so far")
    args = ap.parse_args()
    if args.summary:
        summary(args.steps)
    else:
        run(args.recipe, args.seed, args.steps, args.threads)


if __name__ == "__main__":
    main()
