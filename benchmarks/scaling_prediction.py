"""Notebook 12's test of the law: `python benchmarks/scaling_prediction.py` (about 25 minutes on the 2-core CPU).

1. Runs the sweep of notebook 12 (`course_lib.scaling.run_sweep`), or reads it from its cache
   data/scaling/sweep.json when that was written with the same settings.
2. Fits L(N, D) = E + A/N^alpha + B/D^beta to the sweep and writes the predicted validation loss of a
   model bigger than any in the sweep, trained longer than any, to data/scaling/prediction.json,
   *before* that model is trained.
3. Trains that model with the sweep's recipe and adds its measured validation loss and the error.

Both files are committed, so the notebook reads them instead of spending 25 minutes. A prediction file
written from another fit or for another target is not reused: the script predicts and trains again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.scaling import SweepConfig, fit_joint, run_sweep, shakespeare_ids, train_run  # noqa: E402

SWEEP_FILE = ROOT / "data" / "scaling" / "sweep.json"
PREDICTION_FILE = ROOT / "data" / "scaling" / "prediction.json"
TARGET_SHAPE, TARGET_TOKENS = (5, 160), 4_194_304  # ~2x the sweep's biggest N, 2x its longest D


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", type=Path, default=SWEEP_FILE)
    parser.add_argument("--out", type=Path, default=PREDICTION_FILE)
    parser.add_argument("--shape", type=int, nargs=2, default=list(TARGET_SHAPE), metavar=("N_LAYER", "D_MODEL"))
    parser.add_argument("--tokens", type=int, default=TARGET_TOKENS)
    parser.add_argument("--config", type=Path, default=None, help="a JSON SweepConfig (default: the notebook's)")
    args = parser.parse_args(argv)
    config = SweepConfig(**json.loads(args.config.read_text())) if args.config else SweepConfig()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))  # as the notebook: its re-trained runs must agree

    t0 = time.perf_counter()
    results = run_sweep(config, cache=args.sweep)
    print(f"sweep: {len(results)} runs ({time.perf_counter() - t0:.0f} s here)")
    fit = fit_joint([r.params for r in results], [r.tokens for r in results], [r.val_loss for r in results])
    print("fit:", fit)

    tok, train_ids, val_ids = shakespeare_ids()
    from course_lib.models import GPT
    from course_lib.scaling import gpt_config, non_embedding_parameters

    shape = tuple(args.shape)
    n_target = non_embedding_parameters(GPT(gpt_config(*shape, tok.vocab_size, config.block_size)))
    predicted = float(fit(n_target, args.tokens))
    record = {
        "settings": config.to_dict(),
        "fit": dataclasses.asdict(fit),
        "target": {"n_layer": shape[0], "d_model": shape[1], "params": n_target, "tokens": args.tokens},
        "predicted_val_loss": predicted,
    }
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if "measured_val_loss" in old and all(old.get(k) == v for k, v in record.items() if k != "fit") \
                and abs(old["predicted_val_loss"] - predicted) < 1e-9:
            print(f"{args.out} already holds this prediction and its measurement: {old['measured_val_loss']:.4f}")
            return old
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"predicted before training: L = {predicted:.4f} for N = {n_target:,}, D = {args.tokens:,}")

    result = train_run(shape, args.tokens, config, train_ids, val_ids, tok.vocab_size)
    record.update(measured_val_loss=result.val_loss, seconds=result.seconds, flops=result.flops,
                  relative_error=(predicted - result.val_loss) / result.val_loss,
                  threads=torch.get_num_threads())
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"measured: L = {result.val_loss:.4f} in {result.seconds:.0f} s; "
          f"prediction error {100 * record['relative_error']:+.2f}%")
    return record


if __name__ == "__main__":
    main()
