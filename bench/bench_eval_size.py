"""Benchmark: how large the embedded LM's evaluation must be for a paired standard error of
at most 0.7 points at the target drop, and what each size costs.

    python bench/bench_eval_size.py            # after notebook 03 of the embedded LM profile

For every forget domain, the unpruned and the pruned (at 03's fraction) measurements of the
profile's evaluation (``eval_n`` tokens in blocks of ``block_len``) come from the cache; the
paired standard error of their difference is recomputed on the first n blocks, for growing n.
The seconds a measurement takes are timed on a bare unpruned forward of the same blocks
(best of 2; nothing cached is reused for the timing).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from modsep_utils import activations, config, pruning, scoring
from modsep_utils.pruning import measurement, paired

SIZES = (1024, 2048, 4096, 8192, 16384)


def main():
    cfg = config.load_profile("embedded", "lm")
    names = config.subset_list(cfg["forget"])
    drop = float(cfg["drops"][0])
    fractions = pruning.load_fractions(cfg, drop, names)  # checked against the profile
    stats, retain = activations.all_stats(cfg, names)
    model, tok = activations.get_model(cfg["model"], False, cfg["seed"], cfg["dtype"])
    ev = pruning.Evaluator(cfg, model, tok)
    per_block = cfg["block_len"]
    sizes = [s for s in SIZES if s <= cfg["eval_n"]]
    print(f"paired standard error (points) of pruned - unpruned accuracy at the {drop:.0%} "
          f"target, on the first n tokens of the {cfg['eval_n']}-token evaluation")
    print(f"{'domain':16s}" + "".join(f"{s:>9d}" for s in sizes))
    for name in names:
        mask = scoring.top_fraction(scoring.score(stats[name], retain, cfg["eps"]),
                                    fractions[name]["frac"])
        base, cut = ev(name), ev(name, mask)  # both from the cache
        row = []
        for s in sizes:
            n = s // per_block
            b = measurement(base["correct"][:n], base["total"][:n])
            p = measurement(cut["correct"][:n], cut["total"][:n])
            row.append(100 * paired(p, b)["diff_se"])
        print(f"{name.split(':')[1]:16s}" + "".join(f"{x:9.2f}" for x in row))
    subset = ev.subset(names[0])
    blocks = subset.tokens[:8]
    with torch.inference_mode():
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            for i in range(0, len(blocks), cfg["batch_size"]):
                ids = blocks[i:i + cfg["batch_size"]]
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
            best = min(best, time.perf_counter() - t0)
    rate = blocks.numel() / best
    print(f"\nevaluation speed: {rate:.0f} tokens/s ({torch.get_num_threads()} threads); "
          "seconds per measurement: "
          + ", ".join(f"{s} tokens {s / rate:.1f} s" for s in sizes))


if __name__ == "__main__":
    main()
