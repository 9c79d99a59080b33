"""The longer run of notebook 08: full fine-tuning of MiniLM on all of Rotten Tomatoes' training split.

One command (about 15 minutes on a quiet 2-core CPU, under a minute on a GPU):

    .venv/bin/python benchmarks/finetune_long.py

What it does: all-MiniLM-L6-v2 + a mean-pooling classification head, every weight trained with
AdamW (lr 6e-5, 10% warm-up, cosine decay), sequences of at most 64 tokens with dynamic padding,
batches of 32, `--epochs` passes over the 6,824 training sentences. After each half epoch it
measures validation accuracy and keeps the best weights; at the end it reports the test accuracy
of those weights (the test split is touched once). Results and a log go to data/runs/finetune_long/
(results.json, log.txt). `--max-minutes` stops early (the best weights so far are tested).

Published figures on this data set (the MR / Rotten Tomatoes sentence polarity data of Pang and
Lee, 2005) for comparison: about 81% for a CNN on word vectors (Kim, 2014), about 85-88% for
fine-tuned BERT-base (110M parameters); MiniLM here has 22.7M.
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

from course_lib.data import load_rotten_tomatoes, minilm_path  # noqa: E402
from course_lib.finetuning import BertClassifier, ClassificationHead, accuracy_of, encode_texts, make_batches  # noqa: E402
from course_lib.models import BERT  # noqa: E402
from course_lib.training import TrainConfig, train  # noqa: E402
from course_lib.utils import get_device, set_seed  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=float, default=3.0, help="passes over the training split")
    ap.add_argument("--lr", type=float, default=6e-5, help="peak learning rate")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64, help="tokens per sentence, [CLS] and [SEP] included")
    ap.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget for training")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: COURSE_DEVICE or auto)")
    ap.add_argument("--out", default=str(ROOT / "data" / "runs" / "finetune_long"))
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "w")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    set_seed(args.seed)
    device = get_device(args.device)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    splits = {s: load_rotten_tomatoes(s) for s in ("train", "validation", "test")}
    ids = {s: encode_texts(tok, [r.text for r in rows], args.max_length) for s, rows in splits.items()}
    labels = {s: [r.label for r in rows] for s, rows in splits.items()}

    def to_device(batches: list[dict]) -> list[dict]:
        return [{k: v.to(device) for k, v in b.items()} for b in batches]

    val_batches = to_device(make_batches(ids["validation"], labels["validation"], batch_size=128))
    test_batches = to_device(make_batches(ids["test"], labels["test"], batch_size=128))
    epoch_state = {"epoch": 0, "queue": []}

    def next_batch() -> dict:
        if not epoch_state["queue"]:
            bs = make_batches(ids["train"], labels["train"], args.batch_size, shuffle=True, seed=args.seed + epoch_state["epoch"])
            epoch_state["queue"] = to_device(bs)
            epoch_state["epoch"] += 1
        b = epoch_state["queue"].pop()
        return {k: v for k, v in b.items() if k != "index"}

    model = BertClassifier(BERT.from_pretrained(minilm_path()), ClassificationHead(384, pooling=args.pooling)).to(device)
    steps_per_epoch = -(-len(ids["train"]) // args.batch_size)
    steps = int(args.epochs * steps_per_epoch)
    best = {"val_acc": -1.0, "step": 0, "state": None}
    evals: list[dict] = []
    t_start = time.perf_counter()

    def eval_fn(m: torch.nn.Module) -> float:
        acc = accuracy_of(m, val_batches)
        step = len(evals) * (steps_per_epoch // 2)
        evals.append({"seconds": round(time.perf_counter() - t_start, 1), "val_acc": acc})
        if acc > best["val_acc"]:
            best.update(val_acc=acc, step=step, state={k: v.detach().clone() for k, v in m.state_dict().items()})
        log(f"eval {len(evals)}: validation accuracy {acc:.4f} after {evals[-1]['seconds']:.0f} s")
        return 1.0 - acc  # stored as the "validation loss" of the History

    cfg = TrainConfig(max_steps=steps, max_seconds=args.max_minutes * 60, lr=args.lr, warmup_steps=steps // 10,
                      weight_decay=0.01, betas=(0.9, 0.999), eval_every=steps_per_epoch // 2, progress=True,
                      seed=args.seed)
    log(f"device {device}; {len(ids['train'])} training sentences, {steps} steps of {args.batch_size}; "
        f"threads {torch.get_num_threads()}")
    hist = train(model, next_batch, cfg, eval_fn=eval_fn)
    train_seconds = time.perf_counter() - t_start
    model.load_state_dict(best["state"])
    test_acc = accuracy_of(model, test_batches)
    results = {
        "test_accuracy": test_acc,
        "best_validation_accuracy": best["val_acc"],
        "steps_run": hist.steps[-1] if hist.steps else 0,
        "steps_planned": steps,
        "stopped_by": hist.stopped_by,
        "train_seconds": round(train_seconds, 1),
        "evals": evals,
        "device": str(device),
        "args": vars(args),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"test accuracy {test_acc:.4f} (best validation {best['val_acc']:.4f}); training {train_seconds / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
