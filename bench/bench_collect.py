"""Benchmark: the cost of collecting neuron statistics on embedded-lm, and its memory.

    python bench/bench_collect.py [--dtype bfloat16] [--batches 6] [--batch-size 8] [--block-len 128]
    python bench/bench_collect.py --dtypes      # float32 against bfloat16, side by side

1. tokens/s of a bare forward pass against one that collects statistics, on identical
   batches (interleaved, best of several rounds: the machine is shared and noisy);
   target: collection at >= 1.2x the bare forward's tokens/s (it stops after the last
   neuron site: no last down-projection, final norm or LM head).
2. peak memory (RSS growth over the loaded model) for 1e3 against 1e4 tokens;
   target: it does not grow with the number of tokens.
3. ``--cold``: where the embedded LM profile's cold time goes, estimated from component
   timings (collection and evaluation tokens/s, seconds per multiple-choice question) and the
   number of each computation the profile makes (the search lengths from the committed
   ``results/embedded/lm/03_fractions_*.json``), instead of a 50-minute cold run.
4. ``--dtypes``: tokens/s of the evaluation forward (logits, 2% of the neurons pruned) in
   float32 and in bfloat16 on identical batches, interleaved; written to
   ``bench/results/bench_dtype-cpu.json``. CPUs with AVX512-BF16 multiply bf16 at about twice
   the fp32 rate; without it bf16 is emulated and slower.
5. ``--sums``: the statistics' four per-neuron sums over tokens of one real ``[tokens,
   neurons]`` activation (layer 15, after the float32 copy the hook makes), as column sums
   (``sum(0)``, the GPU path) against products of a row of ones (the CPU path); written to
   ``bench/results/bench_sums-cpu.json`` with the largest relative difference of the sums.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from modsep_utils.activations import DTYPES
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
    ap.add_argument("--cold", action="store_true", help="estimate the embedded LM cold run")
    ap.add_argument("--dtype", default="float32", choices=list(DTYPES))
    ap.add_argument("--dtypes", action="store_true", help="float32 against bfloat16")
    ap.add_argument("--sums", action="store_true", help="column sums against ones-row products")
    args = ap.parse_args()
    if args.mem_tokens:
        return memory_run(args.mem_tokens, args.block_len, args.dtype)
    if args.cold:
        return cold_estimate()
    if args.dtypes:
        return dtype_compare(args.batches, args.batch_size, args.block_len, args.rounds)
    if args.sums:
        return sums_compare(args.batch_size, args.block_len, args.dtype)
    model, tok = load_model("embedded-lm", dtype=DTYPES[args.dtype])
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, tok.vocab_size, (args.batch_size, args.block_len),
                                           generator=g),
                "attention_mask": torch.ones(args.batch_size, args.block_len, dtype=torch.long)}
               for _ in range(args.batches)]
    from bench_gpu import collection_vs_bare  # the same measurement as on the GPU
    r = collection_vs_bare(model, batches, args.batch_size * args.block_len, torch.device("cpu"),
                           args.rounds)
    print(f"{args.dtype}, tokens per pass: {r['tokens_timed']}  threads: {torch.get_num_threads()}")
    print(f"bare forward:       {r['bare_tokens_per_s']:8.0f} tokens/s")
    print(f"with collection:    {r['collect_tokens_per_s']:8.0f} tokens/s")
    print(f"collection / bare forward: {r['collect_over_bare']:.2f}x tokens/s (target >= 1.2x)")

    # memory: each count in a fresh process, so one run's peak does not hide the other's
    import subprocess
    import sys
    for n in (1_000, 10_000):
        out = subprocess.run([sys.executable, __file__, "--mem-tokens", str(n),
                              "--block-len", str(args.block_len), "--dtype", args.dtype],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(out)


def memory_run(n_tokens: int, block_len: int, dtype: str) -> None:
    model, tok = load_model("embedded-lm", dtype=DTYPES[dtype])
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

def cold_estimate() -> None:
    """Seconds of each computing step of the embedded LM profile, cold (no cache): counts of
    each computation x its measured unit time on this machine."""
    import json

    from modsep_utils import pruning
    from modsep_utils.config import load_profile
    from modsep_utils.data import load_subset
    from modsep_utils.io import ROOT
    cfg = load_profile("embedded", "lm")
    model, tok = load_model("embedded-lm", dtype=DTYPES[cfg["dtype"]])
    t0 = time.perf_counter()
    ev = load_subset(cfg["forget"][0], tok, split="eval", n=cfg["eval_n"], seed=cfg["seed"],
                     block_len=cfg["block_len"])
    load_s = time.perf_counter() - t0
    few = type(ev)(ev.name, "text", ev.family, tokens=ev.tokens[:2 * cfg["batch_size"]])
    t0 = time.perf_counter()
    pruning.text_counts(model, few, cfg["batch_size"])
    eval_tps = few.n_tokens / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    collect_stats(model, few.batches(cfg["batch_size"]))
    collect_tps = few.n_tokens / (time.perf_counter() - t0)
    quiz = load_subset(cfg["extra_eval"][0], tok, split="eval", n=24, seed=cfg["seed"])
    t0 = time.perf_counter()
    pruning.mc_counts(model, tok, quiz, cfg["mc_method"], cfg["batch_size"])
    mc_s = (time.perf_counter() - t0) / len(quiz)
    n_forget, n_mc, models = len(cfg["forget"]), len(cfg["extra_eval"]), 1 + len(cfg["random_seeds"])
    searches = sum(len(f["history"]) for path in (ROOT / "results/embedded/lm").glob(
        "03_fractions_*.json") for f in json.loads(path.read_text())["fractions"].values())
    text_evals = n_forget + searches + n_forget * (n_forget - 1)  # unpruned, search, off-diagonal
    mc_evals = n_mc * (1 + n_forget) + n_mc  # unpruned + each mask; the other format once
    steps = {
        "01 collection": models * n_forget * cfg["collect_n"] / collect_tps,
        "03 text evaluations": text_evals * cfg["eval_n"] / eval_tps,
        "03 multiple choice": mc_evals * cfg["mc_n"] * mc_s,
        "data loading (per subset, x splits and models)": load_s * n_forget * 2,
    }
    print(f"{cfg['dtype']}; units: collection {collect_tps:.0f} tokens/s, evaluation {eval_tps:.0f} tokens/s, "
          f"multiple choice {mc_s:.3f} s/question, {text_evals} text evaluations of "
          f"{cfg['eval_n']} tokens ({searches} search steps), {mc_evals} quiz evaluations")
    for name, sec in steps.items():
        print(f"{name:<48} {sec:7.0f} s")
    print(f"{'total (MoEfication: bench_moe.py)':<48} {sum(steps.values()):7.0f} s")


def dtype_compare(n_batches: int, batch_size: int, block_len: int, rounds: int) -> None:
    """The evaluation forward (logits; 2% of the neurons pruned, as in 03) in float32 and
    bfloat16 on identical batches, interleaved, best of ``rounds``."""
    import platform

    from modsep_utils.io import write_json
    from modsep_utils.neurons import n_neurons, pruned
    g = torch.Generator().manual_seed(0)
    models = {d: load_model("embedded-lm", dtype=DTYPES[d])[0] for d in ("float32", "bfloat16")}
    vocab = models["float32"].config.vocab_size
    batches = [torch.randint(0, vocab, (batch_size, block_len), generator=g)
               for _ in range(n_batches)]
    mask = torch.zeros(n_neurons(models["float32"]), dtype=torch.bool)
    mask[:, : mask.shape[1] // 50] = True
    best = {d: float("inf") for d in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for d, model in models.items():
                with pruned(model, mask):
                    model(input_ids=batches[0][:2])  # warm-up
                    t0 = time.perf_counter()
                    for ids in batches:
                        model(input_ids=ids)
                    best[d] = min(best[d], time.perf_counter() - t0)
    tokens = n_batches * batch_size * block_len
    from pathlib import Path
    flags = Path("/proc/cpuinfo").read_text() if platform.system() == "Linux" else ""
    out = {"tokens_timed": tokens, "threads": torch.get_num_threads(), "rounds": rounds,
           "avx512_bf16": "avx512_bf16" in flags,
           "tokens_per_s": {d: tokens / s for d, s in best.items()},
           "bf16_over_fp32": best["float32"] / best["bfloat16"]}
    for d, tps in out["tokens_per_s"].items():
        print(f"{d:<9} {tps:8.0f} tokens/s")
    print(f"bfloat16 / float32: {out['bf16_over_fp32']:.2f}x (AVX512-BF16: {out['avx512_bf16']})")
    write_json("bench/results/bench_dtype-cpu.json", out)


def sums_compare(batch_size: int, block_len: int, dtype: str, layer: int = 15,
                 repeats: int = 50) -> None:
    """The hook's four sums over tokens (|x|, x, x^2, x > 0) of one layer's activation on
    ``batch_size`` blocks of real text, computed both ways, best of 3 rounds of ``repeats``."""
    from modsep_utils.config import load_profile
    from modsep_utils.data import load_subset
    from modsep_utils.io import write_json
    from modsep_utils.neurons import neuron_sites
    cfg = load_profile("embedded", "lm")
    model, tok = load_model("embedded-lm", dtype=DTYPES[dtype])
    ev = load_subset(cfg["forget"][0], tok, split="eval", n=batch_size * block_len,
                     seed=cfg["seed"], block_len=block_len)
    got = {}
    site = neuron_sites(model)[layer]

    def keep(module, args):  # returns None: the forward goes on unchanged
        got["x"] = args[0].reshape(-1, args[0].shape[-1]).float()

    h = site.out_proj.register_forward_pre_hook(keep)
    with torch.inference_mode():
        model(**next(iter(ev.batches(batch_size))))
    h.remove()
    x = got["x"]

    def column_sums():
        a, pos = x.abs(), x.sign().clamp_(min=0)
        return torch.stack([a.sum(0), x.sum(0), (a * a).sum(0), pos.sum(0)])

    def ones_products():
        a, pos = x.abs(), x.sign().clamp_(min=0)
        ones = torch.ones(1, x.shape[0], dtype=x.dtype)
        return torch.cat([ones @ a, ones @ x, ones @ (a * a), ones @ pos])

    best = {}
    for _ in range(3):
        for name, f in (("column_sums", column_sums), ("ones_products", ones_products)):
            f()
            t0 = time.perf_counter()
            for _ in range(repeats):
                f()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / repeats)
    a, b = column_sums().double(), ones_products().double()
    out = {"shape": list(x.shape), "layer": layer, "dtype": dtype,
           "threads": torch.get_num_threads(), "ms": {k: v * 1e3 for k, v in best.items()},
           "speedup": best["column_sums"] / best["ones_products"],
           "max_rel_diff": float(((a - b).abs() / a.abs().clamp_min(1e-6)).max())}
    print(f"[{x.shape[0]} tokens, {x.shape[1]} neurons], {dtype} model: column sums "
          f"{out['ms']['column_sums']:.2f} ms, ones-row products {out['ms']['ones_products']:.2f} ms "
          f"({out['speedup']:.1f}x); largest relative difference {out['max_rel_diff']:.1e}")
    write_json("bench/results/bench_sums-cpu.json", out)


if __name__ == "__main__":
    main()
