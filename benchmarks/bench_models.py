"""Benchmark the course GPT on the CPU: training speed, a 2,000-step Shakespeare run, KV-cache speed-up.

Targets (issue 5, on the 2-core CPU machine, nothing else running):
- training at 4 layers, 4 heads, width 128, context 64, batch 12: >= 20,000 tokens/s;
- 2,000 steps on character-level Shakespeare: validation loss <= 2.0;
- generating 256 tokens with that model: the KV cache is >= 3x faster, with the same tokens
  (generate's cache for a GPT is `GPTDecoder`; the readable `GPT.forward` with a KVCache is timed too).

Usage:
    python benchmarks/bench_models.py            # everything (about 2 minutes alone on 2 cores)
    python benchmarks/bench_models.py --quick    # 200 training steps, for a smoke test
    python benchmarks/bench_models.py --json out.json

Timings depend on what else runs on the machine: measure alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib.data import load_shakespeare  # noqa: E402
from course_lib.generation import generate  # noqa: E402
from course_lib.models import GPT, GPTConfig, count_parameters  # noqa: E402
from course_lib.training import TrainConfig, lm_batch, train  # noqa: E402

BATCH, CONTEXT = 12, 64


def char_data() -> tuple[torch.Tensor, torch.Tensor, int]:
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    chars = sorted(set(train_text) | set(val_text))
    stoi = {c: i for i, c in enumerate(chars)}
    encode = lambda s: torch.tensor([stoi[c] for c in s], dtype=torch.long)  # noqa: E731
    return encode(train_text), encode(val_text), len(chars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps of the Shakespeare run")
    ap.add_argument("--quick", action="store_true", help="200 steps and a shorter speed test")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's choice)")
    ap.add_argument("--gen-tokens", type=int, default=256)
    ap.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 200 if args.quick else args.steps
    results: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    t = time.perf_counter()
    train_ids, val_ids, vocab = char_data()
    print(f"data: {len(train_ids):,} train / {len(val_ids):,} val characters, vocabulary {vocab} ({time.perf_counter() - t:.1f} s)")

    torch.manual_seed(1337)
    config = GPTConfig.preset("char-shakespeare", vocab_size=vocab)
    model = GPT(config)
    print(f"model: {config}\nparameters: {count_parameters(model):,}")
    g = torch.Generator().manual_seed(0)
    gv = torch.Generator().manual_seed(1)

    # 1. Throughput of the training loop itself (no evaluation), after a short warm-up.
    speed_model = GPT(config)
    warm = TrainConfig(max_steps=10, eval_every=0, progress=False)
    train(speed_model, lambda: lm_batch(train_ids, BATCH, CONTEXT, g), warm)
    n_speed = 50 if args.quick else 150
    hist = train(speed_model, lambda: lm_batch(train_ids, BATCH, CONTEXT, g), TrainConfig(max_steps=n_speed, eval_every=0, progress=False))
    results["train_tokens_per_s"] = hist.tokens_per_second
    print(f"\n[1] training speed: {hist.tokens_per_second:,.0f} tokens/s ({n_speed} steps of {BATCH}x{CONTEXT}; target >= 20,000)")

    # 2. The Shakespeare run: nanoGPT's quick CPU recipe.
    cfg = TrainConfig(max_steps=steps, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1, grad_clip=1.0,
                      eval_every=max(steps // 4, 1), eval_steps=50, progress=True)
    hist = train(model, lambda: lm_batch(train_ids, BATCH, CONTEXT, g), cfg,
                 val_batches=lambda: lm_batch(val_ids, BATCH, CONTEXT, gv))
    results.update(run_steps=hist.steps[-1], val_loss=hist.last_val_loss, run_seconds=hist.seconds,
                   run_tokens_per_s=hist.tokens_per_second)
    print(f"[2] {hist.steps[-1]} steps in {hist.seconds:.1f} s ({hist.tokens_per_second:,.0f} tokens/s incl. evaluation): "
          f"validation loss {hist.last_val_loss:.3f} (target <= 2.0); val losses {[round(v, 3) for v in hist.val_loss]}")

    # 3. Generation with and without the KV cache: same tokens, time. generate's cache for a GPT is its
    #    GPTDecoder; fast=False times the readable path too (GPT.forward with a KVCache per layer).
    model.eval()
    ways = {"no_cache": dict(use_cache=False), "forward_cache": dict(fast=False), "cache": dict()}
    for batch in (1, 8):
        prompt = torch.zeros(batch, 1, dtype=torch.long)
        times, outs = {}, {}
        for _ in range(3):  # three times each, alternating; keep the fastest
            for way, kw in ways.items():
                t = time.perf_counter()
                outs[way] = generate(model, prompt, args.gen_tokens, greedy=True, **kw)
                times[way] = min(times.get(way, float("inf")), time.perf_counter() - t)
        same = all(torch.equal(outs[w], outs["no_cache"]) for w in ways)
        speedup = times["no_cache"] / times["cache"]
        results[f"gen_b{batch}"] = dict(no_cache_s=times["no_cache"], forward_cache_s=times["forward_cache"],
                                        cache_s=times["cache"], speedup=speedup,
                                        forward_cache_speedup=times["no_cache"] / times["forward_cache"], same_tokens=same)
        print(f"[3] generate {args.gen_tokens} tokens, batch {batch}: no cache {times['no_cache']:.3f} s, "
              f"cache {times['cache']:.3f} s -> {speedup:.1f}x (target >= 3x); GPT.forward with a KVCache "
              f"{times['forward_cache']:.3f} s ({times['no_cache'] / times['forward_cache']:.1f}x); same tokens: {same}")
    # 4. What one cached token costs in calls: module calls and ATen operations, readable path vs GPTDecoder.
    from course_lib.models import decoding_call_counts

    readable, fast = decoding_call_counts(model)
    results["calls_per_token"] = dict(forward_modules=readable.module_calls, forward_ops=readable.torch_ops,
                                      decoder_modules=fast.module_calls, decoder_ops=fast.torch_ops)
    print(f"[4] one cached token: GPT.forward makes {readable.module_calls} module calls and {readable.torch_ops} "
          f"PyTorch operations; GPTDecoder {fast.module_calls} and {fast.torch_ops}")
    stoi_inv = sorted(set(load_shakespeare("train")) | set(load_shakespeare("val")))
    sample = generate(model, torch.zeros(1, 1, dtype=torch.long), 200, temperature=0.8, top_k=20,
                      generator=torch.Generator().manual_seed(0))
    print("\nsample (temperature 0.8, top-k 20):\n" + "".join(stoi_inv[i] for i in sample[0].tolist()))

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
