"""Step 01: neuron statistics of every subset, for the trained and the random model.

Statistics are collected per half of each collection split (their exact merge is the whole;
the halves give the split-half reliability) and cached under ``DATA/cache/stats/`` by the
content of every input (the weights' digest, the random-init model's own weights, the data's
digest, the code version and every parameter), so a re-run, or a run after an interruption,
computes only what is missing.
"""
from __future__ import annotations

from functools import lru_cache, reduce

import numpy as np
import torch

from .io import cached_tensors
from .neurons import NeuronStats, collect_stats

#: bump when the way statistics are computed changes, so old caches are not trusted
STATS_VERSION = 3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def get_model(name: str, random_init: bool = False, seed: int = 0, dtype: str = "float32"):
    """``(model, processor)``, loaded once per process for the same weights on disk (a model
    rebuilt or updated while the process runs is loaded again)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    return _load(name, bool(random_init), int(seed), dtype, _source_fingerprint(name))


@lru_cache(maxsize=4)
def _load(name: str, random_init: bool, seed: int, dtype: str, source: str):
    from .models import load_model
    return load_model(name, random_init=random_init, seed=seed, dtype=DTYPES[dtype])


def _source_fingerprint(name: str) -> str:
    """Digest of what ``name`` loads from: the files of a local or embedded model folder, or the
    resolved snapshot (commit) of a hub id."""
    from .models import model_source
    return model_source(name)


def model_fingerprint(name: str, random_init: bool = False, seed: int = 0,
                      dtype: str = "float32") -> str:
    """What identifies the weights a computation used: the content of the trained model's
    files, or, for a random-init model, a digest of its own initialised weights (they depend on
    the config, the seed and the library versions, not on the trained weights)."""
    if not random_init:
        return _source_fingerprint(name)
    return _random_fingerprint(name, int(seed), dtype, _source_fingerprint(name))


@lru_cache(maxsize=16)
def _random_fingerprint(name: str, seed: int, dtype: str, source: str) -> str:
    from .models import state_digest
    model, _ = get_model(name, True, seed, dtype)
    return state_digest(model)


def random_seeds(cfg: dict) -> list[int]:
    """Seeds of the random-init models of a profile (the first is the default one)."""
    return [int(s) for s in cfg["random_seeds"]]


def stats_inputs(cfg: dict, subset: str, random_init: bool, model_seed: int | None = None,
                 half: int | None = None) -> dict:
    """Every input that changes the statistics of one subset (or one half of it): the key."""
    from .data import subset_fingerprint
    model_seed = random_seeds(cfg)[0] if model_seed is None else int(model_seed)
    return {"model": cfg["model"],
            "weights": model_fingerprint(cfg["model"], random_init, model_seed, cfg["dtype"]),
            "random_init": bool(random_init), "data_seed": cfg["seed"], "subset": subset,
            "data": subset_fingerprint(subset), "n": cfg["collect_n"],
            "block_len": cfg["block_len"], "dtype": cfg["dtype"], "half": half,
            "version": STATS_VERSION}


def halves(subset) -> tuple:
    """The two halves of a loaded subset (first and second half of its blocks or images):
    statistics are collected per half, so their merge is the whole and the two halves give
    the split-half reliability of the scores at no extra cost."""
    from dataclasses import replace
    n = len(subset)
    if n < 2:
        raise ValueError(f"{subset.name}: {n} block(s) or image(s) cannot be split in halves; "
                         "raise collect_n")
    cut = n // 2
    if subset.kind == "text":
        return tuple(replace(subset, tokens=subset.tokens[a:b]) for a, b in ((0, cut), (cut, n)))
    return tuple(replace(subset, pixel_values=subset.pixel_values[a:b], labels=subset.labels[a:b])
                 for a, b in ((0, cut), (cut, n)))


def subset_half_stats(cfg: dict, subset: str, random_init: bool = False,
                      model_seed: int | None = None) -> tuple[NeuronStats, NeuronStats]:
    """Statistics of the two halves of the collection split of ``subset`` (each cached)."""
    model_seed = random_seeds(cfg)[0] if model_seed is None else int(model_seed)
    loaded = {}

    def half(i: int) -> NeuronStats:
        def compute():
            if "halves" not in loaded:
                from .data import load_subset
                _, processor = get_model(cfg["model"], random_init, model_seed, cfg["dtype"])
                data = load_subset(subset, processor, split="collect", n=cfg["collect_n"],
                                   seed=cfg["seed"], block_len=cfg["block_len"])
                loaded["halves"] = halves(data)
            model, _ = get_model(cfg["model"], random_init, model_seed, cfg["dtype"])
            label = f"{'random' if random_init else 'trained'} {subset} ({i + 1}/2)"
            return collect_stats(model, loaded["halves"][i].batches(cfg["batch_size"]),
                                 progress=label).to_dict()
        key = stats_inputs(cfg, subset, random_init, model_seed, half=i)
        return NeuronStats.from_dict(cached_tensors("stats", key, compute))
    return half(0), half(1)


def all_stats(cfg: dict, forget: list[str], random_init: bool = False,
              model_seed: int | None = None) -> tuple[dict[str, NeuronStats], NeuronStats]:
    """Statistics of every forget subset and of the retain set.

    ``cfg["retain"] == "merge"``: the retain set is the equal mixture of the forget subsets,
    whose statistics are the exact merge of theirs (no extra pass over the data).
    ``model_seed``: which random-init model (default: the first of ``cfg["random_seeds"]``).
    """
    halves_ = all_half_stats(cfg, forget, random_init, model_seed)
    stats = {name: NeuronStats.merge(*h) for name, h in halves_["forget"].items()}
    return stats, NeuronStats.merge(*halves_["retain"])


def all_half_stats(cfg: dict, forget: list[str], random_init: bool = False,
                   model_seed: int | None = None) -> dict:
    """``{"forget": {name: (half 1, half 2)}, "retain": (half 1, half 2)}``: the statistics
    of each half of every collection split (the retain mixture's halves are the merges of the
    forget subsets' halves)."""
    from tqdm.auto import tqdm
    kind = "random" if random_init else "trained"
    forget_h = {name: subset_half_stats(cfg, name, random_init, model_seed)
                for name in tqdm(forget, desc=f"statistics ({kind})")}
    if cfg["retain"] == "merge":
        retain_h = tuple(reduce(NeuronStats.merge, (h[i] for h in forget_h.values()))
                         for i in range(2))
    else:
        retain_h = subset_half_stats(cfg, cfg["retain"], random_init, model_seed)
    return {"forget": forget_h, "retain": retain_h}


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
