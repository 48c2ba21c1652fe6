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
