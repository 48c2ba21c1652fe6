"""Step 02: how specific each neuron is to a forget subset, and which neurons to select.

``S = mean|act| on D_forget / (eps + mean|act| on D_retain)``, eps = 1e-3 (REFERENCE.md: the
paper's Eq. 1 prints the ratio upside down; the authors' code, and the meaning "important for
the forget set", is forget over retain).
"""
from __future__ import annotations

import torch

from .neurons import NeuronStats

EPS = 1e-3


def score(forget: NeuronStats, retain: NeuronStats, eps: float = EPS) -> torch.Tensor:
    """Importance of every neuron for ``forget`` relative to ``retain``: ``[layers, neurons]``."""
    if forget.shape != retain.shape:
        raise ValueError(f"forget statistics {forget.shape} and retain statistics "
                         f"{retain.shape} come from different models")
    return forget.mean_abs() / (eps + retain.mean_abs())


def n_select(n_total: int, frac: float) -> int:
    """How many neurons ``frac`` of ``n_total`` selects (rounded to the nearest neuron)."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must lie in [0, 1], got {frac}")
    return int(round(frac * n_total))


def top_fraction(scores: torch.Tensor, frac: float, per_layer: bool = False) -> torch.Tensor:
    """Bool mask ``[layers, neurons]`` of the top ``frac`` of neurons by score.

    ``per_layer=False``: one global top-k over all layers together (the authors' selection).
    ``per_layer=True``: the same fraction of every layer (used for the Lorenz/AUC analysis,
    where a global selection could pile all neurons into one layer). Ties break by index, so
    the selection is deterministic.
    """
    scores = torch.as_tensor(scores)
    if scores.dim() != 2:
        raise ValueError(f"scores must be [layers, neurons], got shape {tuple(scores.shape)}")
    mask = torch.zeros(scores.shape, dtype=torch.bool)
    if per_layer:
        k = n_select(scores.shape[1], frac)
        if k:
            idx = torch.argsort(-scores.double(), dim=1, stable=True)[:, :k]
            mask.scatter_(1, idx, True)
        return mask
    k = n_select(scores.numel(), frac)
    if k:
        idx = torch.argsort(-scores.double().flatten(), stable=True)[:k]
        mask.view(-1)[idx] = True
    return mask


def layer_distribution(mask: torch.Tensor) -> torch.Tensor:
    """Share of the selected neurons in each layer: ``[layers]`` summing to 1."""
    counts = mask.sum(1).double()
    total = counts.sum()
    if total == 0:
        raise ValueError("the mask selects no neuron")
    return counts / total


# -- notebook 02 -------------------------------------------------------------------------------

def all_scores(stats: dict, retain: NeuronStats, eps: float = EPS) -> dict[str, torch.Tensor]:
    """Scores of every forget subset against the retain set: name -> ``[layers, neurons]``."""
    return {name: score(s, retain, eps) for name, s in stats.items()}


def plot_top_layers(trained: dict[str, torch.Tensor], random: dict[str, torch.Tensor],
                    frac: float):
    """Figure: where the top ``frac`` neurons (global selection) sit by layer, trained against
    random, mean +- std over subsets. Returns ``(figure, numbers)``."""
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    data = {"frac": frac, "subsets": list(trained)}
    for label, scores, color in (("trained", trained, "C0"), ("random", random, "C3")):
        dist = np.stack([layer_distribution(top_fraction(s, frac)).numpy()
                         for s in scores.values()])
        mean, std = dist.mean(0), dist.std(0)
        layers = np.arange(dist.shape[1])
        ax.plot(layers, mean, "-o", ms=3, color=color, label=f"{label} model")
        ax.fill_between(layers, mean - std, mean + std, color=color, alpha=0.2)
        data[label] = {"share_by_layer": dist.tolist(), "mean": mean.tolist(), "std": std.tolist()}
    ax.axhline(1 / dist.shape[1], color="grey", ls=":", label="uniform")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"share of the top {frac:.1%} neurons")
    ax.legend(fontsize=8)
    return fig, data


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two score tensors of the same shape (ties ranked by
    index: scores are continuous, ties are rare)."""
    if a.shape != b.shape:
        raise ValueError(f"scores of shapes {tuple(a.shape)} and {tuple(b.shape)} do not pair up")

    def ranks(x):
        r = torch.empty(x.numel(), dtype=torch.float64)
        r[torch.argsort(x.double().flatten(), stable=True)] = torch.arange(x.numel(),
                                                                           dtype=torch.float64)
        return r - r.mean()
    ra, rb = ranks(a), ranks(b)
    return float((ra * rb).sum() / torch.sqrt((ra * ra).sum() * (rb * rb).sum()))


def jaccard(m1: torch.Tensor, m2: torch.Tensor) -> float:
    """``|A ∩ B| / |A ∪ B|`` of two bool masks."""
    union = int((m1 | m2).sum())
    return float(int((m1 & m2).sum()) / union) if union else float("nan")


def split_half_reliability(halves: dict, frac: float, eps: float = EPS) -> dict:
    """How reproducible the scores are: each subset scored on two disjoint halves of its
    collection data (against the matching half of the retain set).

    ``halves``: :func:`modsep_utils.activations.all_half_stats` output. Returns per subset the
    rank correlation of the two score tensors ``[layers, neurons]`` and the Jaccard index of
    their top-``frac`` selections, and the chance Jaccard of two random selections of that
    size (``frac / (2 - frac)``)."""
    r1, r2 = halves["retain"]
    out = {"frac": frac, "chance_jaccard": frac / (2 - frac), "subsets": {}}
    for name, (h1, h2) in halves["forget"].items():
        s1, s2 = score(h1, r1, eps), score(h2, r2, eps)
        out["subsets"][name] = {"spearman": rank_correlation(s1, s2),
                                "jaccard": jaccard(top_fraction(s1, frac), top_fraction(s2, frac))}
    return out


def reliability_summary(rel: dict) -> dict:
    """Mean and minimum over subsets of :func:`split_half_reliability`'s rank correlation and
    Jaccard index, with its fraction and chance Jaccard (the headline numbers)."""
    import numpy as np
    rho = [v["spearman"] for v in rel["subsets"].values()]
    jac = [v["jaccard"] for v in rel["subsets"].values()]
    return {"frac": rel["frac"], "spearman_mean": float(np.mean(rho)),
            "spearman_min": float(np.min(rho)), "jaccard_mean": float(np.mean(jac)),
            "jaccard_min": float(np.min(jac)), "chance_jaccard": rel["chance_jaccard"]}


def plot_reliability(rel: dict, label: str = "trained"):
    """Figure: split-half rank correlation and top-k Jaccard per subset."""
    import matplotlib.pyplot as plt
    import numpy as np
    names = list(rel["subsets"])
    rho = [rel["subsets"][n]["spearman"] for n in names]
    jac = [rel["subsets"][n]["jaccard"] for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.25 * len(names) + 1.8), sharey=True,
                             constrained_layout=True)
    y = np.arange(len(names))
    axes[0].barh(y, rho, color="C0")
    axes[0].set_xlim(0, 1)
    axes[0].set_xlabel("rank correlation of the scores, half 1 vs half 2", fontsize=8)
    axes[1].barh(y, jac, color="C2")
    axes[1].axvline(rel["chance_jaccard"], color="grey", ls=":", label="chance")
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel(f"Jaccard of the top {rel['frac']:.1%} selections", fontsize=8)
    axes[1].legend(fontsize=7)
    axes[0].set_yticks(y, labels=[n.split(":", 1)[-1] for n in names], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(f"Split-half reliability of the scores ({label} model)", fontsize=9)
    return fig
