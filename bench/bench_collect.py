"""Benchmark: the cost of collecting neuron statistics on embedded-lm (fp32), and its memory.

    python bench/bench_collect.py [--batches 6] [--batch-size 8] [--block-len 128]

1. tokens/s of a bare forward pass against one that collects statistics, on identical
   batches (interleaved, best of several rounds: the machine is shared and noisy);
   target: collection costs at most 5% over the bare forward pass.
2. peak memory (RSS growth over the loaded model) for 1e3 against 1e4 tokens;
   target: it does not grow with the number of tokens.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from modsep_utils.models import load_model
from modsep_utils.neurons import collect_stats


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--block-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mem-tokens", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_tokens:
        return memory_run(args.mem_tokens, args.block_len)
    model, tok = load_model("embedded-lm", dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, tok.vocab_size, (args.batch_size, args.block_len),
                                           generator=g),
                "attention_mask": torch.ones(args.batch_size, args.block_len, dtype=torch.long)}
               for _ in range(args.batches)]
    n_tokens = args.batches * args.batch_size * args.block_len

    def bare():
        with torch.inference_mode():
            for b in batches:
                model(**b)

    def collect():
        collect_stats(model, batches)

    bare()  # warm-up
    best = {"bare": float("inf"), "collect": float("inf")}
    for _ in range(args.rounds):
        for name, fn in (("bare", bare), ("collect", collect)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    tps = {k: n_tokens / v for k, v in best.items()}
    overhead = best["collect"] / best["bare"] - 1
    print(f"tokens per pass: {n_tokens}  threads: {torch.get_num_threads()}")
    print(f"bare forward:       {tps['bare']:8.0f} tokens/s")
    print(f"with collection:    {tps['collect']:8.0f} tokens/s")
    print(f"collection overhead: {overhead:+.1%}  (target <= +5%)")

    # memory: each count in a fresh process, so one run's peak does not hide the other's
    import subprocess
    import sys
    for n in (1_000, 10_000):
        out = subprocess.run([sys.executable, __file__, "--mem-tokens", str(n),
                              "--block-len", str(args.block_len)],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(out)


def memory_run(n_tokens: int, block_len: int) -> None:
    model, tok = load_model("embedded-lm", dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    blocks = max(1, n_tokens // block_len)
    one = {"input_ids": torch.randint(0, tok.vocab_size, (4, block_len), generator=g),
           "attention_mask": torch.ones(4, block_len, dtype=torch.long)}
    collect_stats(model, [one])  # warm-up: allocator pools and the stats buffers exist
    before = peak_rss_mb()
    data = ({"input_ids": torch.randint(0, tok.vocab_size, (4, block_len), generator=g),
             "attention_mask": torch.ones(4, block_len, dtype=torch.long)}
            for _ in range(max(1, blocks // 4)))
    stats = collect_stats(model, data)
    print(f"{int(stats.count[0]):>6} tokens: peak RSS {peak_rss_mb():7.0f} MB, "
          f"growth during collection {peak_rss_mb() - before:+.0f} MB")

if __name__ == "__main__":
    main()
