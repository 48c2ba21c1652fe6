"""MoEfication, side by side in one run: the authors' call (k-means-constrained, ``reference``)
against ``moe.balanced_kmeans`` (``fast``): seconds per layer and within-cluster sum of squares
(WCSS, ``moe.inertia``: the same L2-normalised rows, the same formula, for both).

    .venv/bin/python bench/bench_moe.py                          # embedded sizes (2 cores: ~1 min)
    .venv/bin/python bench/bench_moe.py --size mistral --layers 1 --reference-n-init 1
    python bench/bench_moe.py --size mistral --device cuda --layers 3 --reference-n-jobs 16

Rows clustered (REFERENCE.md): each layer's W_in (``up_proj.weight`` of a gated MLP,
``intermediate.dense.weight`` of a ViT), one row per neuron, L2-normalised; k = choose_k(neurons,
cluster size). Sizes:

- ``embedded``: the embedded vision stand-in ``embedded-vit-glyphs`` (1024 x 64, clusters of 32,
  k = 32) and SmolLM2-135M (1536 x 576, the LM profile's ``moe_cluster_size`` 112 -> k = 16,
  clusters of 96): their real weights from ``data/models/`` when installed there (``make
  reproduce``), and default-init-like random rows of the same shapes.
- ``mistral``: random rows of Mistral-7B's size (14336 x 4096, k = 128, clusters of 112).
- ``vit-base``: random rows of ViT-Base's size (3072 x 768, k = 96, clusters of 32).

The reference is ``KMeansConstrained(n_clusters=k, size_min=size_max=neurons//k,
n_init=--reference-n-init, random_state=0, n_jobs=--reference-n-jobs)``; at Mistral size with the
authors' n_init=10 it takes about 16 minutes a layer on 2 cores, so on a small machine measure it
with ``--reference-n-init 1`` (the fast method is still run with ``--n-init``). k-means-constrained
is imported only for the reference: without it the script says so and times the fast method
alone (``--no-reference`` skips it on purpose). The numbers go to ``--out`` (default
``bench/results/bench_moe-<size>-<device>.json``) and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from modsep_utils import moe

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {  # name: (neurons, d_model, cluster size the profile asks for)
    "vit-embedded": (1024, 64, 32),        # 32 per cluster as ViT-Base in the paper
    "vit-base": (3072, 768, 32),           # k = 96 as in the paper
    "smollm2-135m": (1536, 576, 112),      # the LM profile's moe_cluster_size -> k = 16 (96)
    "mistral-7b": (14336, 4096, 112),      # k = 128 as in the paper
}


def random_w_in(neurons: int, d_model: int, seed: int) -> np.ndarray:
    """A default-init-like W_in ``[neurons, d_model]`` (the random model's weights)."""
    return np.random.default_rng(seed).normal(0.0, 0.02, size=(neurons, d_model))


def real_w_in(name: str, n_layers: int) -> list[np.ndarray] | None:
    """The first ``n_layers`` W_in of the converted embedded model (None when not converted)."""
    path, key = {
        "vit-embedded": ("embedded-vit-glyphs", "vit.encoder.layer.{}.intermediate.dense.weight"),
        "smollm2-135m": ("embedded-lm", "model.layers.{}.mlp.up_proj.weight"),
    }[name]
    file = ROOT / "data" / "models" / path / "model.safetensors"
    if not file.exists():
        return None
    from safetensors import safe_open
    with safe_open(str(file), "pt") as f:
        names = set(f.keys())
        return [f.get_tensor(key.format(i)).float().numpy() for i in range(n_layers)
                if key.format(i) in names]


def reference_available() -> str | None:
    """None when k-means-constrained imports, else why not."""
    try:
        import k_means_constrained  # noqa: F401
    except ImportError as e:
        return (f"k-means-constrained is not installed ({e}); install it (and ortools) to "
                f"measure the reference, e.g. pip install --no-deps .whl/*.whl")
    return None


def run_one(w: np.ndarray, k: int, method: str, n_init: int, device: str | None,
            n_jobs: int) -> dict:
    t0 = time.perf_counter()
    labels = moe.cluster_layer(w, k, seed=0, n_init=n_init, method=method, device=device,
                               n_jobs=n_jobs)
    sec = time.perf_counter() - t0
    sizes = np.bincount(labels, minlength=k)
    return {"seconds": sec, "wcss": moe.inertia(w, labels),
            "exact_sizes": bool((sizes == len(labels) // k).all())}


def bench_case(name: str, weights: list[np.ndarray], args, ref_missing: str | None) -> dict:
    d, m = weights[0].shape
    k = moe.choose_k(d, SHAPES[name.split(" ")[0]][2])
    layers = []
    for i, w in enumerate(weights):
        row = {"layer": i}
        row["fast"] = run_one(w, k, "fast", args.n_init, args.device, 1)
        if not (args.no_reference or ref_missing):
            row["reference"] = run_one(w, k, "reference", args.reference_n_init, None,
                                       args.reference_n_jobs)
            row["wcss_ratio"] = row["fast"]["wcss"] / row["reference"]["wcss"]
            row["speedup"] = row["reference"]["seconds"] / row["fast"]["seconds"]
        row["random_wcss"] = moe.random_inertia(w, k)
        layers.append(row)
        ref = row.get("reference")
        print(f"{name:26s} {f'{d}x{m}':>10s} {k:4d} {d // k:4d} {i:3d} "
              + (f"{ref['seconds']:9.2f} {ref['wcss']:11.3f} " if ref else f"{'-':>9s} {'-':>11s} ")
              + f"{row['fast']['seconds']:8.2f} {row['fast']['wcss']:11.3f} "
              + (f"{row['wcss_ratio']:7.4f} {row['speedup']:7.1f}x" if ref else ""), flush=True)
    out = {"shape": [d, m], "k": k, "cluster_size": d // k, "layers": layers}
    if layers and "reference" in layers[0]:
        out["wcss_ratio_max"] = max(r["wcss_ratio"] for r in layers)
        out["seconds_per_layer"] = {
            "reference": float(np.mean([r["reference"]["seconds"] for r in layers])),
            "fast": float(np.mean([r["fast"]["seconds"] for r in layers]))}
        out["speedup"] = out["seconds_per_layer"]["reference"] / out["seconds_per_layer"]["fast"]
    return out


def machine() -> dict:
    import torch
    info = {"platform": platform.platform(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["embedded", "mistral", "vit-base", "all"], default="embedded")
    parser.add_argument("--layers", type=int, default=2, help="layers per case")
    parser.add_argument("--device", default=None,
                        help="fast method's torch device (default: cuda when available)")
    parser.add_argument("--n-init", type=int, default=10, help="fast method's starts")
    parser.add_argument("--reference-n-init", type=int, default=10,
                        help="the reference's n_init (authors: 10; 1 on a small machine)")
    parser.add_argument("--reference-n-jobs", type=int, default=1,
                        help="the reference's n_jobs (its restarts in parallel processes)")
    parser.add_argument("--no-reference", action="store_true", help="time the fast method only")
    parser.add_argument("--no-real", action="store_true", help="random rows only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = str(moe.pick_device(args.device))
    ref_missing = None if args.no_reference else reference_available()
    if ref_missing:
        print(f"NOTE: {ref_missing}; timing the fast method alone")
    cases: dict[str, list[np.ndarray]] = {}
    if args.size in ("embedded", "all"):
        for name in ("vit-embedded", "smollm2-135m"):
            real = None if args.no_real else real_w_in(name, args.layers)
            if real:
                cases[f"{name} (trained)"] = real
            d, m, _ = SHAPES[name]
            cases[f"{name} (random)"] = [random_w_in(d, m, s) for s in range(args.layers)]
    for size, name in (("mistral", "mistral-7b"), ("vit-base", "vit-base")):
        if args.size in (size, "all"):
            d, m, _ = SHAPES[name]
            cases[f"{name} (random)"] = [random_w_in(d, m, s) for s in range(args.layers)]

    print(f"fast: n_init={args.n_init} on {device}; reference: n_init={args.reference_n_init}, "
          f"n_jobs={args.reference_n_jobs}")
    print(f"{'weights':26s} {'shape':>10s} {'k':>4s} {'size':>4s} {'lay':>3s} {'ref s':>9s} "
          f"{'ref WCSS':>11s} {'fast s':>8s} {'fast WCSS':>11s} {'ratio':>7s} {'speedup':>8s}")
    results = {"machine": machine(), "fast": {"n_init": args.n_init, "device": device,
                                              "version": moe.FAST_VERSION},
               "reference": None if ref_missing or args.no_reference else
               {"n_init": args.reference_n_init, "n_jobs": args.reference_n_jobs,
                "version": moe.method_version("reference")},
               "reference_missing": ref_missing, "cases": {}}
    for name, weights in cases.items():
        results["cases"][name] = bench_case(name, weights, args, ref_missing)

    out = args.out or ROOT / "bench" / "results" / f"bench_moe-{args.size}-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten: {out}")
    worst = [c["wcss_ratio_max"] for c in results["cases"].values() if "wcss_ratio_max" in c]
    if worst:
        print(f"worst WCSS ratio fast / reference: {max(worst):.4f}; speedup per case: "
              + ", ".join(f"{n} {c['speedup']:.1f}x" for n, c in results["cases"].items()
                          if "speedup" in c))


if __name__ == "__main__":
    main()
