"""Speed of the course's pure-Python tokenizers, against the targets of issue 3 and Hugging Face `tokenizers`.

    python benchmarks/bench_tokenization.py            # about 20 s
    python benchmarks/bench_tokenization.py --naive    # also the recount-every-merge trainer (minutes)

Measures, on the first 1 MB of Shakespeare:
- training 1,000 merges (target <= 10 s), against Hugging Face's BpeTrainer on the same text and split;
- encoding 1 MB with the trained tokenizer, cold cache (target <= 5 s), against Hugging Face `tokenizers`;
- encoding 1 MB with GPT-4's cl100k_base merges, cold cache (target <= 10 s), against tiktoken.
Timings are wall-clock, best of `--repeat` runs; on a shared machine they are inflated by other work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import data  # noqa: E402
from course_lib.tokenization import GPT4_SPLIT_PATTERN, BPETokenizer, get_stats, merge  # noqa: E402

TARGETS = {"train_1000_merges": 10.0, "encode_trained": 5.0, "encode_cl100k": 10.0}


def best_of(repeat: int, fn):
    """Run fn() `repeat` times; return (best seconds, last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_train(text: str, num_merges: int) -> dict:
    """The slow way, for comparison: recount every pair of the whole (de-duplicated) corpus after each merge."""
    import regex

    words = [list(c.encode("utf-8")) for c in regex.findall(GPT4_SPLIT_PATTERN, text)]
    merges = {}
    for step in range(num_merges):
        stats: dict = {}
        for w in words:
            get_stats(w, stats)
        pair = min(stats, key=lambda p: (-stats[p], p))
        merges[pair] = 256 + step
        words = [merge(w, pair, 256 + step) for w in words]
    return merges


def hf_tokenizer():
    """A byte-level BPE in Hugging Face `tokenizers` with the same GPT-4 split as ours."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + 1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False, min_frequency=0
    )
    return tok, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=1.0, help="megabytes (millions of characters) of Shakespeare")
    ap.add_argument("--merges", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    ap.add_argument("--naive", action="store_true", help="also time the recount-per-merge trainer (256 merges)")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    args = ap.parse_args()

    text = data.load_shakespeare()[: int(args.mb * 1_000_000)]
    nbytes = len(text.encode("utf-8"))
    print(f"text: {len(text):,} characters, {nbytes:,} bytes of Shakespeare; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}")
    results: dict = {"chars": len(text), "bytes": nbytes, "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}

    # 1. training
    t_train, ours = best_of(args.repeat, lambda: BPETokenizer.train(text, vocab_size=256 + args.merges))
    results["train_1000_merges"] = t_train

    # 2. encoding with the trained tokenizer, cold cache each time
    def encode_trained():
        ours._cache.clear()
        return ours.encode_ordinary(text)

    t_enc, ids = best_of(args.repeat, encode_trained)
    assert ours.decode(ids) == text
    results["encode_trained"] = t_enc
    results["tokens_trained"] = len(ids)

    # 3. GPT-4's merges in our class
    t_load, gpt4 = best_of(1, lambda: BPETokenizer.from_tiktoken("cl100k_base"))
    results["load_cl100k"] = t_load

    def encode_gpt4():
        gpt4._cache.clear()
        return gpt4.encode_ordinary(text)

    t_gpt4, ids4 = best_of(args.repeat, encode_gpt4)
    enc = data.get_encoding("cl100k_base")
    t_tiktoken, ref4 = best_of(args.repeat, lambda: enc.encode_ordinary(text))
    assert ids4 == ref4, "our cl100k encoder disagrees with tiktoken"
    results.update(encode_cl100k=t_gpt4, encode_cl100k_tiktoken=t_tiktoken, tokens_cl100k=len(ids4))

    # 4. Hugging Face tokenizers on the same text and split
    def hf_train():
        tok, trainer = hf_tokenizer()
        tok.train_from_iterator([text], trainer=trainer)
        return tok

    t_hf_train, hf = best_of(args.repeat, hf_train)
    t_hf_enc, hf_ids = best_of(args.repeat, lambda: hf.encode(text).ids)
    lines = text.splitlines(keepends=True)
    t_hf_batch, _ = best_of(args.repeat, lambda: hf.encode_batch(lines))
    results.update(train_hf=t_hf_train, encode_hf=t_hf_enc, encode_hf_batch_lines=t_hf_batch, tokens_hf=len(hf_ids))

    if args.naive:
        t_naive, _ = best_of(1, lambda: naive_train(text, 256))
        results["train_naive_256_merges"] = t_naive
    results["loadavg_end"] = os.getloadavg()[0]

    rows = [
        ("train 1,000 merges", "train_1000_merges", "train_hf", "HF tokenizers"),
        ("encode 1 MB, trained", "encode_trained", "encode_hf", "HF tokenizers"),
        ("encode 1 MB, cl100k_base", "encode_cl100k", "encode_cl100k_tiktoken", "tiktoken"),
    ]
    print(f"\n{'task':<26}{'ours (s)':>10}{'target':>9}{'ok':>5}{'reference (s)':>16}{'ours / ref':>12}")
    for label, key, ref, ref_name in rows:
        ok = "yes" if results[key] <= TARGETS[key] else "NO"
        print(f"{label:<26}{results[key]:>10.2f}{TARGETS[key]:>8.0f}s{ok:>5}{results[ref]:>10.3f} {ref_name:<14}"
              f"{results[key] / results[ref]:>8.2f}x")
    print(f"\nHF tokenizers encoding the same 1 MB as a batch of lines (its parallel fast path): "
          f"{results['encode_hf_batch_lines']:.3f} s")
    print(f"load cl100k_base merges into BPETokenizer: {results['load_cl100k']:.2f} s (100,000 merges recovered)")
    print(f"tokens for 1 MB: ours {results['tokens_trained']:,} (1,000 merges), HF {results['tokens_hf']:,} "
          f"(same vocabulary size, its own tie rule), cl100k {results['tokens_cl100k']:,}")
    if "train_naive_256_merges" in results:
        print(f"recount-per-merge trainer, 256 merges: {results['train_naive_256_merges']:.1f} s")
    print(f"load average at the end: {results['loadavg_end']:.2f} (timings on a shared machine are inflated)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
