"""Benchmark the course's SmolLM2-135M against transformers on the same GGUF file, side by side in one run.

What it measures (issue 18), each way in its own fresh process so that memory and caches do not mix:
- load time: GGUF file -> a model ready in float32 (the course: `Llama.from_gguf`; transformers:
  `AutoModelForCausalLM.from_pretrained(..., gguf_file=...)`); target: the course at least 5x faster;
- generation: tokens per second for 128 new tokens at batch 1, greedy, both with their KV cache, after
  one warm-up; the tokens must be the same; target: the course at least as fast. transformers is timed
  with its default attention ("sdpa", which for grouped-query heads passes enable_gqa=True to PyTorch's
  kernel, slow on a CPU for one query) and with "eager" (repeat the heads, then matmuls), both shown;
- memory: the resident memory (RSS) the loaded model adds to the process, float32 vs the weights kept
  in their Q4_1 / Q8_0 blocks (`Llama.from_gguf(quantized=True)`), and that version's speed.

Usage:
    python benchmarks/bench_llama.py                 # about 2 minutes alone on 2 cores
    python benchmarks/bench_llama.py --json out.json
    python benchmarks/bench_llama.py --tokens 16     # a smoke test

Timings depend on what else runs on the machine: measure alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(which: str, tokens: int) -> dict:
    """Load one model in this process, then time its generation; returns the measurements."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    sys.path.insert(0, str(ROOT))
    from course_lib.data import smollm2_gguf_path
    from course_lib.gguf import GGUFFile
    from course_lib.tokenization import BPETokenizer

    path = smollm2_gguf_path()
    ids = torch.tensor([BPETokenizer.from_gguf_metadata(GGUFFile(path).metadata).encode(PROMPT, allowed_special="all")])
    import transformers  # imported by both, so that its import time and memory count for neither  # noqa: F401
    from course_lib.llama import Llama

    before = _rss_mb()
    t = time.perf_counter()
    if which.startswith("transformers"):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        attn = "eager" if which == "transformers-eager" else "sdpa"  # sdpa is its default
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                     attn_implementation=attn).eval()

        def run(n: int) -> list[int]:
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2)
            return out[0, ids.size(1):].tolist()
    else:
        model = Llama.from_gguf(path, quantized=which == "course-quantized")
        from course_lib.generation import generate

        def run(n: int) -> list[int]:
            return generate(model, ids, n, greedy=True)[0, ids.size(1):].tolist()
    load_s = time.perf_counter() - t
    rss = _rss_mb() - before
    run(4)  # warm-up
    t = time.perf_counter()
    new = run(tokens)
    gen_s = time.perf_counter() - t
    return {"which": which, "load_s": load_s, "rss_mb": rss, "gen_s": gen_s, "tokens_per_s": len(new) / gen_s,
            "tokens": new, "threads": torch.get_num_threads(), "prompt_tokens": ids.size(1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="new tokens to generate (default 128)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.tokens)))
        return {}
    results = {}
    for which in ("course", "transformers", "transformers-eager", "course-quantized"):
        out = subprocess.run([sys.executable, __file__, "--worker", which, "--tokens", str(args.tokens)],
                             capture_output=True, text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[which] = r
        print(f"{which:>17}: load {r['load_s']:6.2f} s, +{r['rss_mb']:6.0f} MB resident, "
              f"{r['tokens_per_s']:5.1f} tokens/s ({len(r['tokens'])} greedy tokens after a {r['prompt_tokens']}-token prompt, "
              f"{r['threads']} threads)")
    c, h, e, q = results["course"], results["transformers"], results["transformers-eager"], results["course-quantized"]
    same = c["tokens"] == h["tokens"] == e["tokens"] == q["tokens"]
    summary = {"load_speedup": h["load_s"] / c["load_s"], "generation_ratio": c["tokens_per_s"] / h["tokens_per_s"],
               "generation_ratio_eager": c["tokens_per_s"] / e["tokens_per_s"],
               "memory_ratio_quantized": q["rss_mb"] / c["rss_mb"], "same_tokens": same}
    print(f"load: the course is {summary['load_speedup']:.1f}x faster than transformers (target >= 5x)")
    print(f"generation: the course makes {summary['generation_ratio']:.2f}x transformers' tokens per second with its default "
          f"attention (sdpa), {summary['generation_ratio_eager']:.2f}x with attn_implementation='eager' (target >= 1)")
    print(f"memory: quantized weights take {summary['memory_ratio_quantized']:.2f} of the float32 model's resident memory")
    print(f"same greedy tokens from all three: {same}")
    results["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
