"""Where the sweep's time goes: `python benchmarks/bench_scaling.py` (about 1 minute on the 2-core CPU).

For shapes of notebook 12's grid, times `--steps` training steps of the sweep's loop (`train_run`'s recipe)
phase by phase: sampling the batch, forward, backward, the optimizer (gradient clipping + AdamW step +
zeroing), setting the learning rate. Prints the throughput of the plain loop (tokens per second, and
achieved GFLOP/s from `flops_per_token`) and the share of time outside the forward and backward passes.
Writes data/runs/bench_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.models import GPT  # noqa: E402
from course_lib.scaling import SweepConfig, flops_per_token, gpt_config, shakespeare_ids, train_run  # noqa: E402
from course_lib.training import lm_batch, lr_at, make_optimizer  # noqa: E402


def phases(shape: tuple[int, int], steps: int, config: SweepConfig, train_ids: torch.Tensor, vocab: int) -> dict:
    """Seconds per phase over `steps` steps of the sweep's loop, each phase timed on its own."""
    torch.manual_seed(0)
    model = GPT(gpt_config(*shape, vocab, config.block_size))
    opt = make_optimizer(model, config.lr, 0.1, (0.9, 0.99))
    g = torch.Generator().manual_seed(0)
    t = dict.fromkeys(("schedule", "batch", "forward", "backward", "optimizer"), 0.0)
    for step in range(steps + 3):
        if step == 3:  # the first steps warm up the allocator; they are not counted
            t = dict.fromkeys(t, 0.0)
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, config.lr, 2)
        t1 = time.perf_counter()
        x, y = lm_batch(train_ids, config.batch_size, config.block_size, g)
        t2 = time.perf_counter()
        loss = model(x, y).loss
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t5 = time.perf_counter()
        for k, a, b in (("schedule", t0, t1), ("batch", t1, t2), ("forward", t2, t3), ("backward", t3, t4), ("optimizer", t4, t5)):
            t[k] += b - a
    return t


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--shapes", default="1x32,4x128", help="n_layer x d_model, comma separated")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "runs" / "bench_scaling.json")
    args = parser.parse_args(argv)
    config = SweepConfig()
    tok, train_ids, val_ids = shakespeare_ids()
    report = {"threads": torch.get_num_threads(), "steps": args.steps, "shapes": {}}
    for text in args.shapes.split(","):
        shape = tuple(int(v) for v in text.split("x"))
        step_tokens = config.batch_size * config.block_size
        plain = train_run(shape, args.steps * step_tokens, config, train_ids, val_ids, tok.vocab_size)
        t = phases(shape, args.steps, config, train_ids, tok.vocab_size)
        total = sum(t.values())
        fpt = flops_per_token(gpt_config(*shape, tok.vocab_size, config.block_size))
        row = {
            "tokens_per_second": plain.tokens / plain.seconds,
            "gflops_per_second": plain.tokens * fpt / plain.seconds / 1e9,
            "share": {k: v / total for k, v in t.items()},
            "outside_forward_backward": 1 - (t["forward"] + t["backward"]) / total,
        }
        report["shapes"][text] = row
        print(f"{text}: {row['tokens_per_second']:,.0f} tokens/s, {row['gflops_per_second']:.1f} GFLOP/s; "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in row["share"].items())
              + f"; outside forward+backward {100 * row['outside_forward_backward']:.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
