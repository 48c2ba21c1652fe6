"""GPU benchmark at paper scale, no downloads: full-size random-weight Mistral-7B (bf16) and
ViT-Base (100 labels, 224 px, patch 16) built from their configs on the device, then

1. tokens/s of statistics collection (our hooks, NeuronStats on the device) against a bare
   full forward of the same batches (interleaved rounds, best of each);
2. seconds per bisection step: one pruned evaluation (1% of the neurons zeroed) of the paper
   profile's evaluation set (LM: ``eval_n`` tokens in ``block_len`` blocks; ViT: ``eval_n``
   images), through ``pruning.counts`` as notebook 03 runs it;
3. the estimated hours of the whole paper profile from those (formula in :func:`estimate`).

    python bench/bench_gpu.py --out bench_gpu.json          # a GPU machine (about 2 minutes)
    python bench/bench_gpu.py --tiny --out /tmp/b.json      # the same code at toy size, on CPU

Writes JSON to ``--out`` and prints a short table.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from modsep_utils import pruning
from modsep_utils.config import load_profile
from modsep_utils.data import Subset
from modsep_utils.neurons import collect_stats, n_neurons

# mistralai/Mistral-7B-Instruct-v0.2's config (= MistralConfig's defaults but rope/window)
MISTRAL = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
               num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               max_position_embeddings=32768, rope_theta=1e6, sliding_window=None)
MISTRAL_TINY = dict(MISTRAL, vocab_size=512, hidden_size=64, intermediate_size=224,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VIT = dict(num_labels=100, image_size=224, patch_size=16)  # ViTConfig defaults: ViT-Base
VIT_TINY = dict(VIT, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, image_size=32, patch_size=16)
#: MMLU test questions (cais/mmlu, all 57 subjects), and the mean prompt length in Mistral
#: tokens assumed for the authors' letter format (header, question, four choices, "Answer:")
MMLU_QUESTIONS = 14042
MMLU_PROMPT_TOKENS = 200


#: the fast MoEfication's measured seconds per layer at paper size (bench/bench_moe.py runs)
MOE_RESULTS = {"lm": Path(__file__).parent / "results" / "bench_moe-mistral-cpu.json",
               "vit": Path(__file__).parent / "results" / "bench_moe-vit-base-cpu.json"}


def measured_moe_seconds(name: str) -> float:
    """Seconds per layer of the fast method in the committed bench_moe.py run for ``name``."""
    path = MOE_RESULTS[name]
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run bench/bench_moe.py --size "
                         f"{'mistral' if name == 'lm' else 'vit-base'} --out {path}, or pass "
                         f"--moe-s-per-layer-{name}")
    cases = json.loads(path.read_text())["cases"]
    return float(np.mean([c["seconds_per_layer"]["fast"] for c in cases.values()]))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def build(kind: str, tiny: bool, device, dtype):
    from transformers import (MistralConfig, MistralForCausalLM, ViTConfig,
                              ViTForImageClassification)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        if kind == "lm":
            model = MistralForCausalLM._from_config(MistralConfig(**(MISTRAL_TINY if tiny
                                                                     else MISTRAL)),
                                                    dtype=dtype)
        else:
            model = ViTForImageClassification._from_config(ViTConfig(**(VIT_TINY if tiny
                                                                        else VIT)),
                                                           dtype=dtype)
    model.eval()
    sync(device)
    return model, time.perf_counter() - t0


def collection_vs_bare(model, batches, tokens_per_batch, device, rounds) -> dict:
    """Tokens/s of a bare forward and of collection on the same batches, interleaved."""
    def bare():
        with torch.inference_mode():
            for b in batches:
                model(**b)

    def collect():
        collect_stats(model, batches)
    bare()
    collect()  # warm-up (kernels, allocator)
    best = {"bare": math.inf, "collect": math.inf}
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("collect", collect)):
            best[name] = min(best[name], timed(fn, device))
    n = tokens_per_batch * len(batches)
    return {"tokens_timed": n, "bare_tokens_per_s": n / best["bare"],
            "collect_tokens_per_s": n / best["collect"],
            "collect_over_bare": best["bare"] / best["collect"]}


def bisection_step(model, subset, batch_size, device) -> float:
    """Seconds of one pruned evaluation (1% of the neurons, the top of a random score)."""
    from modsep_utils.scoring import top_fraction
    layers, width = n_neurons(model)
    mask = top_fraction(torch.rand(layers, width, generator=torch.Generator().manual_seed(0)),
                        0.01)

    def step():
        with pruning.pruned(model, mask):
            pruning.counts(model, subset, batch_size=batch_size)
    step()  # warm-up
    return min(timed(step, device) for _ in range(2))


def bench_lm(args, device, dtype, cfg) -> dict:
    model, build_s = build("lm", args.tiny, device, dtype)
    bs, L = cfg["batch_size"], (64 if args.tiny else cfg["block_len"])
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(0, vocab, (bs, L), generator=g).to(device),
                "attention_mask": torch.ones(bs, L, dtype=torch.long, device=device)}
               for _ in range(args.batches)]
    out = {"build_s": build_s, "batch": [bs, L],
           **collection_vs_bare(model, batches, bs * L, device, args.rounds)}
    eval_tokens = (1024 if args.tiny else cfg["eval_n"])
    blocks = max(1, eval_tokens // L)
    subset = Subset("bench:text", "text", "bench",
                    tokens=torch.randint(0, vocab, (blocks, L), generator=g))
    out["eval_tokens"] = blocks * L
    out["bisection_step_s"] = bisection_step(model, subset, bs, device)
    if device.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    del model
    return out


def bench_vit(args, device, dtype, cfg) -> dict:
    model, build_s = build("vit", args.tiny, device, dtype)
    c = model.config
    tokens = (c.image_size // c.patch_size) ** 2 + 1  # patches + CLS
    bs = cfg["batch_size"]
    g = torch.Generator().manual_seed(0)
    batches = [{"pixel_values": torch.randn(bs, 3, c.image_size, c.image_size,
                                            generator=g).to(device, dtype)}
               for _ in range(args.batches)]
    out = {"build_s": build_s, "batch": [bs, tokens],
           **collection_vs_bare(model, batches, bs * tokens, device, args.rounds)}
    n = 64 if args.tiny else cfg["eval_n"]
    subset = Subset("bench:images", "image", "bench",
                    pixel_values=torch.randn(n, 3, c.image_size, c.image_size,
                                             generator=g).to(dtype),
                    labels=torch.randint(0, c.num_labels, (n,), generator=g))
    out["eval_images"] = n
    out["tokens_per_image"] = tokens
    out["bisection_step_s"] = bisection_step(model, subset, bs, device)
    del model
    return out


def estimate(lm: dict, vit: dict, lm_cfg: dict, vit_cfg: dict, args) -> dict:
    """Hours of the paper profile on one device of this kind (N data-parallel processes:
    about hours / N, the collection and evaluation terms being sharded). Per experiment:

    collection = subsets x models x tokens per subset / collect tokens/s, with subsets = the
        forget subsets + the retain set, models = the trained one + each random seed;
    search     = drops x forget subsets x steps per search x seconds per bisection step;
    cross-eval = drops x (forget subsets + 1 unpruned) x (text/image evaluation subsets x
        seconds per bisection step + MMLU tokens / bare tokens/s), MMLU tokens = questions x
        mean prompt tokens (LM only);
    MoEfication = models x layers x seconds per layer (given: --moe-s-per-layer-*; bench_moe);
    """
    steps = args.steps_per_search
    out = {}
    for name, r, cfg, layers, per_item in (
            ("lm", lm, lm_cfg, MISTRAL["num_hidden_layers"], 1),
            ("vit", vit, vit_cfg, 12, vit and vit["tokens_per_image"])):
        if not r:
            continue
        n_forget = 19 if name == "lm" else 20
        models = 1 + len(cfg["random_seeds"])
        drops = len(cfg["drops"])
        collect_tokens = (n_forget + 1) * models * cfg["collect_n"] * per_item
        t_collect = collect_tokens / r["collect_tokens_per_s"]
        # the benchmark measured eval_tokens/eval_images; scale to the profile's eval set
        measured = r.get("eval_tokens") or r.get("eval_images")
        step_s = r["bisection_step_s"] * cfg["eval_n"] / measured if args.tiny \
            else r["bisection_step_s"]
        t_search = drops * n_forget * steps * step_s
        t_cross = drops * (n_forget + 1) * n_forget * step_s
        if name == "lm":
            t_cross += drops * (n_forget + 1) * (args.mmlu_questions * args.mmlu_prompt_tokens
                                                 / r["bare_tokens_per_s"])
        moe_s = args.moe_s_per_layer_lm if name == "lm" else args.moe_s_per_layer_vit
        t_moe = models * layers * moe_s
        total = t_collect + t_search + t_cross + t_moe
        out[name] = {"collection_h": t_collect / 3600, "search_h": t_search / 3600,
                     "cross_eval_h": t_cross / 3600, "moefication_h": t_moe / 3600,
                     "total_h": total / 3600}
    out["total_h"] = sum(v["total_h"] for v in out.values() if isinstance(v, dict))
    out["assumptions"] = {"steps_per_search": steps, "mmlu_questions": args.mmlu_questions,
                          "mmlu_prompt_tokens": args.mmlu_prompt_tokens,
                          "moe_s_per_layer_lm": args.moe_s_per_layer_lm,
                          "moe_s_per_layer_vit": args.moe_s_per_layer_vit,
                          "not_counted": "model loading, data download and tokenising"}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (a CPU check of the code)")
    ap.add_argument("--batches", type=int, default=4, help="timed batches per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=("lm", "vit"), help="one model only")
    ap.add_argument("--steps-per-search", type=float, default=10,
                    help="evaluations per fraction search (grid walk + bisection)")
    ap.add_argument("--mmlu-questions", type=int, default=MMLU_QUESTIONS)
    ap.add_argument("--mmlu-prompt-tokens", type=int, default=MMLU_PROMPT_TOKENS)
    ap.add_argument("--moe-s-per-layer-lm", type=float, default=None,
                    help="MoEfication seconds per Mistral layer (default: the fast method's, "
                         f"as bench_moe.py measured it in {MOE_RESULTS['lm'].name})")
    ap.add_argument("--moe-s-per-layer-vit", type=float, default=None,
                    help="the same per ViT-Base layer (default: from "
                         f"{MOE_RESULTS['vit'].name})")
    ap.add_argument("--estimate-from", type=Path, default=None,
                    help="recompute only the estimate of a saved run (e.g. other MoE seconds)")
    args = ap.parse_args(argv)
    for name in ("lm", "vit"):
        key = f"moe_s_per_layer_{name}"
        if getattr(args, key) is None:
            setattr(args, key, measured_moe_seconds(name))
    if args.estimate_from:
        res = json.loads(args.estimate_from.read_text())
        lm_cfg, vit_cfg = load_profile("paper", "lm"), load_profile("paper", "vit")
        res["estimate"] = estimate(res["lm"], res["vit"], lm_cfg, vit_cfg, args)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"paper profile, estimated: {res['estimate']['total_h']:.1f} h "
              f"(MoE {args.moe_s_per_layer_lm:.1f} / {args.moe_s_per_layer_vit:.1f} s a layer)")
        return res
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    t0 = time.perf_counter()
    lm_cfg, vit_cfg = load_profile("paper", "lm"), load_profile("paper", "vit")
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU ({platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} threads)",
           "torch": torch.__version__, "tiny": args.tiny, "dtype": str(dtype)}
    import transformers
    res["transformers"] = transformers.__version__
    res["lm"] = bench_lm(args, device, dtype, lm_cfg) if args.only != "vit" else None
    if device.type == "cuda":
        torch.cuda.empty_cache()
    res["vit"] = bench_vit(args, device, torch.float32, vit_cfg) if args.only != "lm" else None
    res["estimate"] = estimate(res["lm"], res["vit"], lm_cfg, vit_cfg, args)
    res["wall_s"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"device: {res['device']}  (torch {res['torch']}, wall {res['wall_s']:.0f} s)")
    print(f"{'model':<6} {'bare tok/s':>12} {'collect tok/s':>14} {'ratio':>6} "
          f"{'step s':>8} {'est. h':>7}")
    for name in ("lm", "vit"):
        r = res[name]
        if r:
            print(f"{name:<6} {r['bare_tokens_per_s']:>12.0f} {r['collect_tokens_per_s']:>14.0f} "
                  f"{r['collect_over_bare']:>6.2f} {r['bisection_step_s']:>8.3f} "
                  f"{res['estimate'][name]['total_h']:>7.2f}")
    print(f"paper profile, estimated: {res['estimate']['total_h']:.1f} h on one device "
          "(N data-parallel processes: about 1/N of collection and evaluation)")
    return res


if __name__ == "__main__":
    main()
