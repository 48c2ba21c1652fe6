"""Step 01: neuron statistics of every subset, for the trained and the random model.

Statistics are cached under ``DATA/cache/stats/`` by the content of their inputs (model and
its weights' fingerprint, trained or random, seed, subset, token/image count, block length,
dtype), so a re-run, or a run after an interruption, computes only what is missing.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache, reduce
from pathlib import Path

import numpy as np
import torch

from .io import cached_tensors
from .neurons import NeuronStats, collect_stats

#: bump when the way statistics are computed changes, so old caches are not trusted
STATS_VERSION = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@lru_cache(maxsize=4)
def get_model(name: str, random_init: bool = False, seed: int = 0, dtype: str = "float32"):
    """``(model, processor)``, loaded once per process."""
    from .models import load_model
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    return load_model(name, random_init=random_init, seed=seed, dtype=DTYPES[dtype])


@lru_cache(maxsize=None)
def model_fingerprint(name: str) -> str:
    """What identifies the weights behind ``name``: for a cached embedded model, a hash of its
    config and of the head and size of its weight file (it changes when the model is rebuilt);
    for a hub id, the id itself."""
    from .models import MODELS, cache_dir
    if name not in MODELS:
        return name
    folder = Path(cache_dir(name))
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def stats_inputs(cfg: dict, subset: str, random_init: bool) -> dict:
    """Every input that changes the statistics of one subset: the cache key."""
    return {"model": cfg["model"], "weights": model_fingerprint(cfg["model"]),
            "random_init": bool(random_init), "seed": cfg["seed"], "subset": subset,
            "n": cfg["collect_n"], "block_len": cfg["block_len"], "dtype": cfg["dtype"],
            "version": STATS_VERSION}


def subset_stats(cfg: dict, subset: str, random_init: bool = False) -> NeuronStats:
    """Statistics of the collection split of ``subset`` (cached)."""
    def compute():
        from .data import load_subset
        model, processor = get_model(cfg["model"], random_init, cfg["seed"], cfg["dtype"])
        data = load_subset(subset, processor, split="collect", n=cfg["collect_n"],
                           seed=cfg["seed"], block_len=cfg["block_len"])
        label = f"{'random' if random_init else 'trained'} {subset}"
        return collect_stats(model, data.batches(cfg["batch_size"]), progress=label).to_dict()
    return NeuronStats.from_dict(cached_tensors("stats", stats_inputs(cfg, subset, random_init),
                                                compute))


def all_stats(cfg: dict, forget: list[str], random_init: bool = False
              ) -> tuple[dict[str, NeuronStats], NeuronStats]:
    """Statistics of every forget subset and of the retain set.

    ``cfg["retain"] == "merge"``: the retain set is the equal mixture of the forget subsets,
    whose statistics are the exact merge of theirs (no extra pass over the data).
    """
    from tqdm.auto import tqdm
    stats = {name: subset_stats(cfg, name, random_init)
             for name in tqdm(forget, desc=f"statistics ({'random' if random_init else 'trained'})")}
    if cfg["retain"] == "merge":
        retain = reduce(NeuronStats.merge, stats.values())
    else:
        retain = subset_stats(cfg, cfg["retain"], random_init)
    return stats, retain


def layer_profile(stats: dict[str, NeuronStats]) -> np.ndarray:
    """Mean |activation| averaged over the neurons of each layer: ``[subsets, layers]``."""
    return np.stack([s.mean_abs().mean(1).numpy() for s in stats.values()])


def plot_layer_profile(trained: dict[str, NeuronStats], random: dict[str, NeuronStats]):
    """Figure: mean |activation| by layer for every subset, trained next to random, each
    relative to its own retain mean so the two models share a scale."""
    import matplotlib.pyplot as plt

    from .plots import heatmap
    names = list(trained)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.3 * len(names) + 2), constrained_layout=True)
    data = {}
    for ax, (label, st) in zip(axes, (("trained", trained), ("random", random))):
        prof = layer_profile(st)
        rel = prof / prof.mean(0, keepdims=True)
        data[label] = {"mean_abs": prof.tolist(), "relative": rel.tolist()}
        im = heatmap(ax, rel, names, [str(i) for i in range(rel.shape[1])], fmt="{:.2f}",
                     scale=1.0, cmap="coolwarm", vmin=0.5, vmax=1.5, annotate=rel.size <= 200,
                     title=f"{label} model: mean |activation| / mean over subsets",
                     xlabel="layer")
    fig.colorbar(im, ax=axes, shrink=0.7)
    data["subsets"] = names
    return fig, data
