"""Notebook 08's learning rates, chosen on the validation split: `python benchmarks/finetune_sweep.py`.

Runs methods 2-4 of notebook 08 exactly as the notebook does (the same 2,000 training sentences, 100
steps of 32, warm-up and cosine schedule, MAX_LEN 64), for each learning rate of a small grid and each
training seed, and scores the 852 validation sentences (never the test split). Prints one line per run
and writes data/runs/finetune_sweep/results.json; benchmarks/notes/finetuning.md records the results and
the choices. About 10 minutes on the 2-core CPU machine.

`--methods full prompt top` and `--seeds 0 1` choose what runs; `--lrs-full` etc. change a grid.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.data import load_rotten_tomatoes, minilm_path  # noqa: E402
from course_lib.finetuning import (  # noqa: E402
    BertClassifier, ClassificationHead, SoftPrompt, TopLayersClassifier, accuracy_interval, cached_batches, correct_of,
    encode_hidden_states, encode_texts, fit, freeze, freeze_bert_except_top, make_batches, predict, unfreeze,
)
from course_lib.models import BERT  # noqa: E402
from course_lib.utils import set_seed  # noqa: E402

# notebook 08's parameters cell
SUBSET_SEED, MAX_LEN, N_TRAIN, TOP_LAYERS, BATCH, STEPS, PROMPT_TOKENS = 0, 64, 2000, 2, 32, 100, 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["full", "prompt", "top"], choices=["full", "prompt", "top"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--lrs-full", nargs="+", type=float, default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--lrs-prompt", nargs="+", type=float, default=[3e-3, 1e-2, 3e-2])
    parser.add_argument("--lrs-top", nargs="+", type=float, default=[5e-4, 1e-3])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "runs" / "finetune_sweep" / "results.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    splits = {s: load_rotten_tomatoes(s) for s in ("train", "validation")}
    ids = {s: encode_texts(tokenizer, [r.text for r in rows], MAX_LEN) for s, rows in splits.items()}
    labels = {s: [r.label for r in rows] for s, rows in splits.items()}
    subset = torch.randperm(len(ids["train"]), generator=torch.Generator().manual_seed(SUBSET_SEED))[:N_TRAIN].tolist()
    sub_ids, sub_labels = [ids["train"][i] for i in subset], [labels["train"][i] for i in subset]
    val_batches = make_batches(ids["validation"], labels["validation"], batch_size=128)
    minilm = BERT.from_pretrained(minilm_path())
    start = len(minilm.blocks) - TOP_LAYERS
    caches = {}
    if "top" in args.methods:
        caches = {"train": encode_hidden_states(minilm, sub_ids, layers=(start,))[start],
                  "validation": encode_hidden_states(minilm, ids["validation"], layers=(start,))[start]}

    results = json.loads(args.out.read_text()) if args.out.exists() else []
    grids = {"full": args.lrs_full, "prompt": args.lrs_prompt, "top": args.lrs_top}
    for method in args.methods:
        for lr in grids[method]:
            for seed in args.seeds:
                set_seed(seed)
                bert = copy.deepcopy(minilm)
                bert.pooler = None
                if method == "full":
                    model = BertClassifier(bert, ClassificationHead(384))
                    unfreeze(model)
                    batches = lambda s: make_batches(sub_ids, sub_labels, BATCH, shuffle=True, seed=s)
                    evaluate = val_batches
                elif method == "prompt":
                    freeze(bert)
                    words = tokenizer("this review of the movie says it is", add_special_tokens=False)["input_ids"][:PROMPT_TOKENS]
                    prompt = SoftPrompt(PROMPT_TOKENS, 384, init=bert.tok_emb.weight[words])
                    model = BertClassifier(bert, ClassificationHead(384), prompt=prompt)
                    batches = lambda s: make_batches(sub_ids, sub_labels, BATCH, shuffle=True, seed=s)
                    evaluate = val_batches
                else:
                    freeze_bert_except_top(BertClassifier(bert, ClassificationHead(384)), TOP_LAYERS)
                    model = TopLayersClassifier(bert, ClassificationHead(384), start)
                    batches = lambda s: cached_batches(caches["train"], sub_labels, BATCH, shuffle=True, seed=s)
                    evaluate = cached_batches(caches["validation"], labels["validation"], batch_size=128)
                t0 = time.perf_counter()
                run = fit(model, batches, steps=STEPS, lr=lr, warmup=STEPS // 10, seed=seed, progress=False)
                probs, _ = predict(model, evaluate)
                acc, low, high = accuracy_interval(correct_of(probs, labels["validation"]))
                row = {"method": method, "lr": lr, "seed": seed, "validation_accuracy": acc, "low": low, "high": high,
                       "steps": run.history.steps[-1], "seconds": time.perf_counter() - t0}
                results = [r for r in results if (r["method"], r["lr"], r["seed"]) != (method, lr, seed)] + [row]
                print(f"{method:>6} lr {lr:g} seed {seed}: validation {acc:.1%} [{low:.1%}, {high:.1%}], {row['seconds']:.0f} s",
                      flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1))
    print("\nmean over seeds (validation accuracy):")
    for method in args.methods:
        for lr in grids[method]:
            accs = [r["validation_accuracy"] for r in results if r["method"] == method and r["lr"] == lr]
            print(f"  {method:>6} lr {lr:g}: {sum(accs) / len(accs):.1%} over {len(accs)} seed(s): "
                  + ", ".join(f"{a:.1%}" for a in accs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
