"""The longer run of notebook 08: fine-tuning MiniLM on all of Rotten Tomatoes' training split.

One command, at most 30 minutes on a 2-core CPU (about 25 minutes):

    .venv/bin/python benchmarks/finetune_long.py

What it does (the defaults): an ensemble of 3 fine-tuned all-MiniLM-L6-v2 models (seeds 0, 1, 2),
each with a mean-pooling classification head and every weight trained, whose predicted
probabilities are averaged. Each model: AdamW with layer-wise learning-rate decay (peak lr 2e-4 for
the head, times 0.85 per block going down, 0.85**7 = 0.32 of it for the embeddings), weight decay
0.01 on matrices, gradient norm clipped to 1, 10% linear warm-up then linear decay to 0, batches of
32 sentences of similar lengths with dynamic padding, at most 64 tokens (99% of the sentences have at
most 55), dropout 0.1, 3 epochs (642 steps) over the 6,824 training sentences, one thread.
Validation accuracy (852 sentences) is measured twice per epoch and the best weights of each model
are kept; at the end the TEST accuracy (854 sentences) is measured once. `--ensemble 1` trains a
single model, `--layer-decay 1 --lr 1e-4` gives the earlier one-learning-rate recipe,
`--freeze-bottom K` freezes the embeddings and blocks 0..K-1 and trains the rest on their cached
outputs, `--average-last K` also tries the average of the last K evaluated weights.

The schedule is a function of progress = max(step / planned steps, seconds / budget), the budget
being `--max-minutes` (27) shared equally by the models: on a quiet machine the step budget decides
(the same numbers on every run); on a loaded one the wall clock does, and the learning rate still
decays to 0 before the time is up, so training ends within `--max-minutes`, plus the test passes.

Measured on this course's 2-core machine on 2026-12-01 (one thread; the other core busy with another
one-thread job until the last model, load average 1-2):
- this default command: TEST 85.4% for the ensemble (validation 85.0%); its three models alone:
  84.8%, 83.3%, 84.8% (validation 84.0%, 84.6%, 84.6%); every model ran all 642 steps (8.1-8.4
  minutes each), 25.2 minutes in all;
- `--ensemble 1` is the first of those models alone (84.8%); a single model of the same recipe whose
  dropout draws were seeded differently got 84.7% in 10.3 minutes;
- the one-learning-rate recipe (`--ensemble 1 --layer-decay 1 --lr 1e-4`), at load 4-9: TEST 84.4%
  (630 of 642 steps, time cap, 27.7 minutes); with `--lr 5e-5 --epochs 4`: 84.1%; with
  `--evals-per-epoch 4 --average-last 4`: 84.1%.
With 854 test sentences one standard error is about 1.2 points: the ensemble is at the issue's
85% target, not clearly above it.

Results and a log go to data/runs/finetune_long/ (results.json, log.txt).

Published figures on this data set (the MR / Rotten Tomatoes sentence polarity data of Pang and
Lee, 2005), approximate: about 81% for a CNN on word vectors (Kim, 2014) and roughly 85-88% for
fine-tuned BERT-base (110M parameters); MiniLM here has 22.7M. Those use other splits (10-fold
cross-validation or the 8,530 / 1,066 / 1,066 split), so compare with care.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.data import load_rotten_tomatoes, minilm_path  # noqa: E402
from course_lib.finetuning import (  # noqa: E402
    BertClassifier, ClassificationHead, TopLayersClassifier, accuracy_of, cached_batches, encode_hidden_states,
    encode_texts, freeze, make_batches, predict, unfreeze,
)
from course_lib.models import BERT, count_parameters  # noqa: E402
from course_lib.training import make_optimizer, optimizer_step  # noqa: E402
from course_lib.utils import get_device, set_seed  # noqa: E402


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` fraction of progress, then linear decay to 0."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    return max(0.0, (1.0 - progress) / (1.0 - warmup))


def layer_decay_groups(model: torch.nn.Module, decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with a learning-rate `scale` per depth: 1 for the head and the pooler,
    decay**(n_blocks - i) for block i, decay**(n_blocks + 1) for the embeddings. Weight decay on matrices only."""
    n_blocks = 6
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".blocks." in f".{name}":
            depth = n_blocks - int(name.split("blocks.")[1].split(".")[0])
        elif "_emb" in name or "emb_norm" in name:
            depth = n_blocks + 1
        else:  # head, pooler
            depth = 0
        groups.setdefault((decay**depth, p.dim() >= 2), []).append(p)
    return [{"params": ps, "scale": scale, "weight_decay": weight_decay if is_matrix else 0.0}
            for (scale, is_matrix), ps in groups.items()]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=float, default=3.0, help="passes over the training split")
    ap.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (of the head, with --layer-decay)")
    ap.add_argument("--layer-decay", type=float, default=0.85,
                    help="layer-wise learning-rate decay: the head trains at lr, block i of 6 at lr * decay**(6 - i), "
                         "the embeddings at lr * decay**7 (1.0: one learning rate for all)")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the run spent warming up")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64, help="tokens per sentence, [CLS] and [SEP] included")
    ap.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--freeze-bottom", type=int, default=0, help="freeze embeddings + this many lower blocks (0: all train)")
    ap.add_argument("--evals-per-epoch", type=int, default=2)
    ap.add_argument("--average-last", type=int, default=0,
                    help="also try the average of the last K evaluated weights; validation picks it or the best single")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ensemble", type=int, default=3,
                    help="train this many models (seeds seed, seed+1, ...), each with max-minutes / N, and average "
                         "their predicted probabilities")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: on a shared CPU two threads can be several times slower)")
    ap.add_argument("--max-minutes", type=float, default=27.0, help="wall-clock budget for training (and evaluations)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: COURSE_DEVICE or auto)")
    ap.add_argument("--out", default=str(ROOT / "data" / "runs" / "finetune_long"))
    args = ap.parse_args(argv)
    if args.ensemble < 1:
        raise ValueError(f"--ensemble must be >= 1, got {args.ensemble}")
    if not 0 <= args.freeze_bottom < 6:
        raise ValueError(f"--freeze-bottom must be in [0, 5] (MiniLM has 6 blocks), got {args.freeze_bottom}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "w")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    splits = {s: load_rotten_tomatoes(s) for s in ("train", "validation", "test")}
    ids = {s: encode_texts(tok, [r.text for r in rows], args.max_length) for s, rows in splits.items()}
    labels = {s: [r.label for r in rows] for s, rows in splits.items()}
    seeds = [args.seed + i for i in range(args.ensemble)]
    budget_each = args.max_minutes * 60 / len(seeds)  # wall-clock budget of each member
    runs = []
    for i, seed in enumerate(seeds):
        log(f"--- model {i + 1} of {len(seeds)} (seed {seed}), budget {budget_each / 60:.1f} min")
        runs.append(train_one(args, seed, ids, labels, device, budget_each, log))
    y_val, y_test = torch.tensor(labels["validation"]), torch.tensor(labels["test"])
    acc = lambda probs, y: float((probs.argmax(-1) == y).float().mean())  # noqa: E731
    val_probs = sum(r["val_probs"] for r in runs) / len(runs)
    test_probs = sum(r["test_probs"] for r in runs) / len(runs)  # the test split, touched once per member
    total_seconds = time.perf_counter() - t_start
    results = {
        "test_accuracy": acc(test_probs, y_test),
        "validation_accuracy": acc(val_probs, y_val),
        "kind": "single model" if len(runs) == 1 else f"ensemble of {len(runs)} (mean of their probabilities)",
        "members": [{k: v for k, v in r.items() if not k.endswith("_probs")} | {"test_accuracy": acc(r["test_probs"], y_test)}
                    for r in runs],
        "total_seconds": round(total_seconds, 1),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "args": vars(args),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    for i, m in enumerate(results["members"]):
        log(f"model {i + 1} (seed {m['seed']}): test {m['test_accuracy']:.4f}, validation {m['best_validation_accuracy']:.4f} "
            f"at step {m['best_step']} of {m['steps_run']} ({m['train_seconds'] / 60:.1f} min)")
    log(f"TEST accuracy {results['test_accuracy']:.4f} ({results['kind']}; validation {results['validation_accuracy']:.4f}); "
        f"total {total_seconds / 60:.1f} min; load average {os.getloadavg()[0]:.1f}")
    return results


def train_one(args: argparse.Namespace, seed: int, ids: dict, labels: dict, device: torch.device, budget: float,
              log) -> dict:
    """Fine-tune one model; keep the weights that validation prefers; return their validation and test probabilities."""
    set_seed(seed)
    bert = BERT.from_pretrained(minilm_path(), dropout=args.dropout).to(device)
    head = ClassificationHead(384, pooling=args.pooling, dropout=args.dropout)
    K = args.freeze_bottom
    if K == 0:
        model = BertClassifier(bert, head).to(device)
        unfreeze(model)

        def batches(split: str, bs: int, shuffle: bool = False, seed: int = 0) -> list[dict]:
            return make_batches(ids[split], labels[split], bs, shuffle=shuffle, seed=seed)
    else:
        freeze(bert)
        for block in bert.blocks[K:]:
            unfreeze(block)
        model = TopLayersClassifier(bert, head, K).to(device)
        t0 = time.perf_counter()
        cache = {s: encode_hidden_states(bert, ids[s], layers=(K,), batch_size=128)[K] for s in ids}
        log(f"cached the outputs of the frozen blocks 0-{K - 1} in {time.perf_counter() - t0:.0f} s")

        def batches(split: str, bs: int, shuffle: bool = False, seed: int = 0) -> list[dict]:
            return cached_batches(cache[split], labels[split], bs, shuffle=shuffle, seed=seed)

    def to_device(bs: list[dict]) -> list[dict]:
        return [{k: v.to(device) for k, v in b.items()} for b in bs]

    val_batches = to_device(batches("validation", 128))
    test_batches = to_device(batches("test", 128))
    steps_per_epoch = -(-len(ids["train"]) // args.batch_size)
    steps = int(args.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    if args.layer_decay == 1.0:
        opt = make_optimizer(model, args.lr, weight_decay=0.01, betas=(0.9, 0.999))
        for g in opt.param_groups:
            g["scale"] = 1.0
    else:
        opt = torch.optim.AdamW(layer_decay_groups(model, args.layer_decay, weight_decay=0.01), lr=args.lr,
                                betas=(0.9, 0.999))
    n_trainable = count_parameters(model, trainable_only=True)
    log(f"device {device}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"{len(ids['train'])} training sentences, {steps} steps of {args.batch_size}; "
        f"{n_trainable:,} trainable parameters; args {vars(args)}")

    from tqdm.auto import tqdm

    best = {"val_acc": -1.0, "step": 0, "state": None, "kind": "best single checkpoint"}
    recent: list[dict] = []  # the last `--average-last` evaluated weights
    evals: list[dict] = []
    losses: list[float] = []
    t_train = time.perf_counter()
    step, epoch, queue, progress = 0, 0, [], 0.0
    bar = tqdm(total=steps, desc="fine-tune", unit="step", mininterval=5.0)
    model.train()
    while progress < 1.0:
        if not queue:
            queue = to_device(batches("train", args.batch_size, shuffle=True, seed=seed + 1000 * epoch))[::-1]
            epoch += 1
        b = queue.pop()
        f = lr_factor(progress, args.warmup)
        for g in opt.param_groups:
            g["lr"] = args.lr * f * g["scale"]
        loss = model(**{k: v for k, v in b.items() if k != "index"}).loss
        optimizer_step(model, opt, loss, grad_clip=1.0)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        elapsed = time.perf_counter() - t_train
        progress = max(step / steps, elapsed / budget)
        if step % eval_every == 0 or progress >= 1.0:
            acc = accuracy_of(model, val_batches)
            model.train()
            elapsed = time.perf_counter() - t_train
            progress = max(step / steps, elapsed / budget)
            evals.append({"step": step, "epoch": round(step / steps_per_epoch, 2), "seconds": round(elapsed, 1),
                          "val_acc": acc, "train_loss": sum(losses[-eval_every:]) / len(losses[-eval_every:]),
                          "load_average": round(os.getloadavg()[0], 1)})
            if acc > best["val_acc"]:
                best.update(val_acc=acc, step=step, state={k: v.detach().clone() for k, v in model.state_dict().items()})
            if args.average_last > 1:
                recent.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                recent = recent[-args.average_last :]
            log(f"step {step} (epoch {step / steps_per_epoch:.2f}): validation accuracy {acc:.4f}, "
                f"train loss {evals[-1]['train_loss']:.3f}, lr {args.lr * f:.1e}, {elapsed:.0f} s, "
                f"load {evals[-1]['load_average']}")
    bar.close()
    train_seconds = time.perf_counter() - t_train
    averaged_val = None
    if len(recent) > 1:
        avg = {k: (sum(r[k].float() for r in recent) / len(recent)).to(recent[0][k].dtype) for k in recent[0]}
        model.load_state_dict(avg)
        averaged_val = accuracy_of(model, val_batches)
        log(f"average of the last {len(recent)} evaluated weights: validation accuracy {averaged_val:.4f}")
        if averaged_val > best["val_acc"]:
            best.update(val_acc=averaged_val, step=step, state=avg, kind=f"average of the last {len(recent)} checkpoints")
    model.load_state_dict(best["state"])
    return {
        "seed": seed,
        "best_validation_accuracy": best["val_acc"],
        "best_step": best["step"],
        "selected": best["kind"],
        "averaged_validation_accuracy": averaged_val,
        "steps_run": step,
        "steps_planned": steps,
        "stopped_by": "steps" if step >= steps else "time",
        "train_seconds": round(train_seconds, 1),
        "trainable_parameters": n_trainable,
        "evals": evals,
        "val_probs": predict(model, val_batches)[0],
        "test_probs": predict(model, test_batches)[0],
    }


if __name__ == "__main__":
    main()
