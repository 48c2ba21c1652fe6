"""Step 06: Lorenz curves of selected neurons over MoEfication clusters, and their area
(paper section 4.2, Figure 6).

For one layer: count the selected neurons in each of the ``k`` clusters, sort the counts
descending and accumulate them. ``S_j`` is the share of the ``N`` selected neurons held by the
``j`` fullest clusters (``S_0 = 0``, ``S_k = 1``). Two normalised areas (REFERENCE.md):

- ``"exact"``: ``A = (1 / (k_eff - 1)) * sum_{j=1}^{k_eff-1} S_j`` with ``k_eff = min(N, k)``:
  1.0 when all selected neurons share one cluster, 0.5 when they are spread evenly (for
  ``N < k`` an even spread means one neuron per cluster in ``N`` clusters, hence ``k_eff``).
- ``"authors"``: the authors' left Riemann sum ``sum(c[:x]) / (c[x] * x)`` with ``x = min(N, k)``,
  ``c`` the cumulative counts with ``c[0] = 0``; it gives ``(k - 1) / (2k)`` for an even spread
  and ``(x - 1) / x`` for one cluster. Use it to compare with the paper's figures.

Edge cases, both variants: ``N = 0`` gives NaN (no selection, no distribution). ``N = 1``:
"exact" gives 1.0 (the one neuron is trivially in one cluster; likewise whenever ``k = 1``),
"authors" gives 0.0, which is what their formula returns (``x = 1``, an empty sum).

Chance is well above 0.5 for small selections, so report :func:`random_selection_auc` and the
capacity-limited best :func:`best_auc` beside any measured area, and how far beyond chance an
area lies as a z-score (:func:`zscore`: in standard deviations of a random selection's area).
Random-model baselines are computed for every random-init seed (:func:`seed_tables`,
:func:`seeds_summary`), and the whole comparison at several selection fractions
(:func:`fraction_sweep`, :func:`auc_vs_fraction`).
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from .overlap import as_bool_array

VARIANTS = ("exact", "authors")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")


def _check_labels(labels, k: int, ndim: int) -> np.ndarray:
    lab = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if lab.ndim != ndim:
        want = "[neurons]" if ndim == 1 else "[layers, neurons]"
        raise ValueError(f"labels must be {want}; got shape {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integer cluster ids; got dtype {lab.dtype}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if lab.size and (lab.min() < 0 or lab.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1} for k={k}; got {lab.min()}..{lab.max()}")
    return lab.astype(np.int64, copy=False)


def _pair(labels, selected, k: int, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    lab = _check_labels(labels, k, ndim)
    sel = as_bool_array(selected, "selected")
    if sel.shape != lab.shape:
        want = "[neurons]" if ndim == 1 else "[layers, neurons]"
        raise ValueError(f"labels {lab.shape} and selected {sel.shape} differ in shape: both "
                         f"must be {want} of one model")
    return lab, sel


def cluster_counts(labels, selected, k: int) -> np.ndarray:
    """``[k]`` int64: how many selected neurons each cluster holds (unsorted).

    ``labels``: ``[neurons]`` ints in ``0..k-1``; ``selected``: bool ``[neurons]``.
    """
    lab, sel = _pair(labels, selected, k, 1)
    return np.bincount(lab[sel], minlength=k).astype(np.int64)


def lorenz_from_counts(counts) -> np.ndarray:
    """``[k+1]`` cumulative shares ``S_0 = 0, S_1, ..., S_k = 1`` of per-cluster ``counts``
    ``[k]`` sorted descending; all NaN when the counts sum to 0."""
    c = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    n = c.sum()
    if n == 0:
        return np.full(len(c) + 1, np.nan)
    return np.concatenate([[0.0], np.cumsum(c) / n])


def auc_from_counts(counts, variant: str = "exact") -> np.ndarray | float:
    """Normalised Lorenz area of per-cluster ``counts`` ``[..., k]`` (see the module docstring);
    a float for one layer's ``[k]``, else ``[...]``."""
    _check_variant(variant)
    cnt = np.asarray(counts, dtype=np.float64)
    one = cnt.ndim == 1
    cnt = np.atleast_2d(cnt)
    k = cnt.shape[-1]
    c = np.cumsum(-np.sort(-cnt, axis=-1), axis=-1)  # cumulative counts, fullest first [m, k]
    n = c[..., -1]
    x = np.minimum(n, k).astype(np.int64)
    j = np.arange(1, k + 1)  # c[..., j-1] is the count in the j fullest clusters
    with np.errstate(invalid="ignore", divide="ignore"):
        if variant == "exact":
            inner = (j < x[..., None]) * c  # S_j for j = 1..k_eff-1, times N
            out = inner.sum(axis=-1) / n / (x - 1)
            out = np.where(x == 1, 1.0, out)
        else:
            cz = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)  # c[0] = 0
            left = (np.arange(k + 1) < x[..., None]) * cz
            out = left.sum(axis=-1) / (np.take_along_axis(cz, x[..., None], -1)[..., 0] * x)
    out = np.where(n == 0, np.nan, out)
    return float(out[0]) if one else out.reshape(np.shape(counts)[:-1])


def lorenz_curve(labels, selected, k: int) -> np.ndarray:
    """``[k+1]``: ``S_j``, the share of the selected neurons in the ``j`` fullest clusters,
    starting at ``S_0 = 0``. ``labels`` ``[neurons]`` ints in ``0..k-1``, ``selected`` bool
    ``[neurons]``. No selected neuron: all NaN (there is no distribution)."""
    return lorenz_from_counts(cluster_counts(labels, selected, k))


def lorenz_auc(labels, selected, k: int, variant: str = "exact") -> float:
    """Normalised area under one layer's Lorenz curve: ``"exact"`` (1.0 one cluster, 0.5 even)
    or ``"authors"`` (their left Riemann sum). NaN when nothing is selected; ``N = 1`` gives 1.0
    ("exact") or 0.0 ("authors"). Shapes of ``labels`` and ``selected`` must match."""
    _check_variant(variant)
    return auc_from_counts(cluster_counts(labels, selected, k), variant)


def _layer_counts(lab: np.ndarray, sel: np.ndarray, k: int) -> np.ndarray:
    """``[layers, k]`` counts for ``[layers, neurons]`` labels and mask."""
    offset = lab + k * np.arange(lab.shape[0])[:, None]  # one bincount for all layers
    return np.bincount(offset[sel], minlength=k * lab.shape[0]).reshape(lab.shape[0], k)


def auc_by_layer(labels, selected, k: int, variant: str = "exact") -> np.ndarray:
    """``[layers]`` :func:`lorenz_auc` of each layer, for ``labels`` and ``selected`` both
    ``[layers, neurons]`` (a mismatch raises ``ValueError`` naming both shapes). Layers with no
    selected neuron are NaN."""
    _check_variant(variant)
    lab, sel = _pair(labels, selected, k, 2)
    return auc_from_counts(_layer_counts(lab, sel, k), variant)


def random_selection_auc(labels, n_selected, k: int, n_draws: int = 100, seed: int = 0,
                         variant: str = "exact") -> np.ndarray:
    """Chance baseline: the area of ``n_draws`` uniformly random selections of ``n_selected``
    neurons per layer, against the same cluster ``labels``.

    ``labels``: ``[neurons]`` (then ``n_selected`` is an int; returns ``[n_draws]``) or
    ``[layers, neurons]`` (``n_selected`` an int or ``[layers]``, e.g. ``mask.sum(1)``;
    returns ``[layers, n_draws]``). Take ``.mean(-1)`` / ``.std(-1)`` for the baseline.
    """
    _check_variant(variant)
    lab = np.asarray(labels)
    one = lab.ndim == 1
    lab = _check_labels(lab[None] if one else lab, k, 2)
    n_sel = np.broadcast_to(np.asarray(n_selected, dtype=np.int64), (lab.shape[0],))
    if (n_sel < 0).any() or (n_sel > lab.shape[1]).any():
        raise ValueError(f"n_selected must be in 0..{lab.shape[1]}; got {n_sel.tolist()}")
    rng = np.random.default_rng(seed)
    out = np.empty((lab.shape[0], n_draws))
    for layer, n in enumerate(n_sel):
        counts = np.empty((n_draws, k), dtype=np.int64)
        for d in range(n_draws):
            idx = rng.choice(lab.shape[1], size=int(n), replace=False)
            counts[d] = np.bincount(lab[layer, idx], minlength=k)
        out[layer] = auc_from_counts(counts, variant)
    return out[0] if one else out


def best_counts(n_selected: int, k: int, cluster_size: int) -> np.ndarray:
    """``[k]``: the most concentrated counts possible - fill clusters to ``cluster_size`` one
    after another."""
    if not 0 <= n_selected <= k * cluster_size:
        raise ValueError(f"n_selected={n_selected} does not fit {k} clusters of {cluster_size}")
    full, rest = divmod(int(n_selected), int(cluster_size))
    counts = np.zeros(k, dtype=np.int64)
    counts[:full] = cluster_size
    if rest:
        counts[full] = rest
    return counts


def best_auc(n_selected: int, k: int, cluster_size: int, variant: str = "exact") -> float:
    """The highest area reachable when each cluster holds at most ``cluster_size`` neurons
    (capacity-limited best, :func:`best_counts`); NaN for ``n_selected = 0``."""
    return auc_from_counts(best_counts(n_selected, k, cluster_size), variant)


def plot_lorenz(curves: Mapping[str, Sequence[float]], aucs: Mapping[str, float] | None = None,
                *, title: str | None = None, ax=None):
    """Figure 6a: Lorenz curves, one per name (``curves[name]`` ``[k+1]`` from
    :func:`lorenz_curve`), against the fraction of clusters (fullest first); the diagonal is
    an even spread. ``aucs`` (optional, name -> area) goes into the legend.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4), constrained_layout=True)
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8, label="even spread")
    for name, curve in curves.items():
        s = np.asarray(curve, dtype=float)
        label = name if not aucs or name not in aucs else f"{name} (AUC {aucs[name]:.2f})"
        ax.plot(np.arange(len(s)) / (len(s) - 1), s, drawstyle="default", label=label)
    ax.set_xlabel("fraction of clusters (fullest first)")
    ax.set_ylabel("cumulative share of selected neurons")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _band_line(ax, name: str, d: Mapping, n_layers: int | None) -> int:
    """One curve of ``{"mean": [x], "std": [x] or None}``: a line with a band of +- std;
    returns the number of points (checked against ``n_layers``)."""
    mean = np.asarray(d["mean"], dtype=float)
    if n_layers is not None and len(mean) != n_layers:
        raise ValueError(f"curves[{name!r}] has {len(mean)} layers, others {n_layers}")
    x = np.arange(len(mean)) if d.get("x") is None else np.asarray(d["x"], dtype=float)
    (line,) = ax.plot(x, mean, marker=".", label=name, **d.get("style", {}))
    if d.get("std") is not None:
        std = np.asarray(d["std"], dtype=float)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    return len(mean)


def plot_auc_by_layer(curves: Mapping[str, Sequence], *, layer_names: Sequence[str] | None = None,
                      title: str | None = None, ylabel: str = "normalised Lorenz AUC", ax=None):
    """Figure 6b/c: per layer, mean +- std over subsets, one line per curve name.

    ``curves[name]``: ``[subsets, layers]`` (mean and std over subsets, NaN ignored, drawn as
    a line and a band), ``[layers]`` (one line, e.g. a baseline), or ``{"mean": [layers],
    "std": [layers]}`` (a line and a band of +- ``std``, e.g. the spread over seeds; None or a
    missing ``std`` draws no band). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = ax.figure
    n_layers = None
    for name, values in curves.items():
        if isinstance(values, Mapping):
            n_layers = _band_line(ax, name, values, n_layers)
            continue
        v = np.asarray(values, dtype=float)
        if v.ndim not in (1, 2):
            raise ValueError(f"curves[{name!r}] must be [layers] or [subsets, layers]; "
                             f"got shape {v.shape}")
        if n_layers is not None and v.shape[-1] != n_layers:
            raise ValueError(f"curves[{name!r}] has {v.shape[-1]} layers, others {n_layers}")
        n_layers = v.shape[-1]
        x = np.arange(n_layers)
        if v.ndim == 1:
            ax.plot(x, v, marker=".", label=name)
            continue
        with warnings.catch_warnings():  # all-NaN layers stay NaN in the plot, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(v, axis=0), np.nanstd(v, axis=0)
        (line,) = ax.plot(x, mean, marker=".", label=f"{name} (n={v.shape[0]})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    if n_layers is not None:
        names = list(layer_names) if layer_names is not None else [str(i) for i in range(n_layers)]
        if len(names) != n_layers:
            raise ValueError(f"{len(names)} layer_names for {n_layers} layers")
        step = max(1, n_layers // 16)
        ax.set_xticks(range(0, n_layers, step), labels=names[::step], fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig



# -- notebook 06: every curve of Figure 6 over all subsets -------------------------------------

#: the curves of Figure 6b/c, in plotting order: (name, clusters of, neurons selected on)
PAIRINGS = (("trained clusters x trained neurons", "trained", "trained"),
            ("random clusters x random neurons", "random", "random"),
            ("random clusters x trained neurons", "random", "trained"))
CHANCE, BEST = "chance (random selection)", "best achievable"


def _stack_masks(masks: Mapping, names: Sequence[str], shape: tuple) -> np.ndarray:
    out = []
    for n in names:
        m = as_bool_array(masks[n], f"masks[{n!r}]")
        if m.shape != shape:
            raise ValueError(f"mask of {n!r} is {m.shape}, the cluster labels are {shape}: "
                             f"both must be [layers, neurons] of one model")
        out.append(m)
    return np.stack(out)


def auc_table(labels: Mapping, masks: Mapping, k: int, *, n_draws: int = 200, seed: int = 0,
              variants: Sequence[str] = VARIANTS) -> dict:
    """Figure 6b/c's numbers: the Lorenz AUC of every subset in every layer, for each curve.

    ``labels``: ``{"trained": [layers, neurons], "random": [layers, neurons]}`` cluster ids
    (balanced, ``k`` clusters); ``masks``: ``{"trained": {subset: bool [layers, neurons]},
    "random": {...}}`` with the same subsets (the selection restricted to an equal fraction
    per layer). Curves (:data:`PAIRINGS`, then :data:`CHANCE` and :data:`BEST`):

    - trained clusters x trained neurons, random x random, random clusters x trained neurons;
    - chance: the mean area of ``n_draws`` uniformly random selections of the same size per
      layer (for balanced clusters it does not depend on which clustering);
    - best: the capacity-limited most concentrated selection of the same size.

    Returns ``{"names", "k", "cluster_size", "n_selected" [subsets, layers], variant: {curve:
    [subsets, layers] array}}`` for each of ``variants``, and ``chance_std``: ``{variant:
    [subsets, layers]}``, the standard deviation of one random selection's area (for
    :func:`zscore`).
    """
    lab = {}
    for kind in ("trained", "random"):
        if kind not in labels or kind not in masks:
            raise KeyError(f"labels and masks need 'trained' and 'random' entries; got "
                           f"{list(labels)} and {list(masks)}")
        lab[kind] = _check_labels(labels[kind], k, 2)
    shape = lab["trained"].shape
    if lab["random"].shape != shape:
        raise ValueError(f"trained labels {shape} and random labels {lab['random'].shape} "
                         f"must both be [layers, neurons] of one architecture")
    names = list(masks["trained"])
    if list(masks["random"]) != names:
        raise ValueError(f"trained and random selections must cover the same subsets in one "
                         f"order; got {names} and {list(masks['random'])}")
    if shape[1] % k:
        raise ValueError(f"{shape[1]} neurons do not split into {k} equal clusters")
    size = shape[1] // k
    sel = {kind: _stack_masks(masks[kind], names, shape) for kind in ("trained", "random")}
    n_sel = sel["trained"].sum(axis=2)  # [subsets, layers]
    if (sel["random"].sum(axis=2) != n_sel).any():
        raise ValueError("the random model's selections differ in size from the trained "
                         "model's: select the same fraction per layer for both")
    table: dict = {"names": names, "k": int(k), "cluster_size": int(size),
                   "n_selected": n_sel, "n_draws": int(n_draws), "chance_std": {}}
    # chance and best depend on the per-layer sizes only: compute once per distinct size
    sizes = sorted({int(n) for n in n_sel.ravel()})
    for variant in variants:
        _check_variant(variant)
        curves = {}
        for name, clusters, neurons in PAIRINGS:
            curves[name] = np.stack([auc_by_layer(lab[clusters], s, k, variant)
                                     for s in sel[neurons]])
        draws = {n: random_selection_auc(lab["trained"][0], n, k, n_draws, seed, variant)
                 for n in sizes if n}
        chance = {n: float(draws[n].mean()) if n else np.nan for n in sizes}
        chance_sd = {n: float(draws[n].std(ddof=1)) if n else np.nan for n in sizes}
        best = {n: best_auc(n, k, size, variant) if n else np.nan for n in sizes}
        per_size = lambda d: np.vectorize(d.get, otypes=[float])(n_sel)  # noqa: E731
        curves[CHANCE], curves[BEST] = per_size(chance), per_size(best)
        table[variant] = curves
        table["chance_std"][variant] = per_size(chance_sd)
    return table


def _nan_stats(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(v, axis=0), np.nanstd(v, axis=0)


def mean_random_curve(labels, n_selected: int, k: int, n_draws: int = 200,
                      seed: int = 0) -> np.ndarray:
    """``[k+1]``: the mean Lorenz curve of ``n_draws`` uniformly random selections of
    ``n_selected`` neurons of one layer (``labels`` ``[neurons]``): chance in Figure 6a."""
    lab = _check_labels(labels, k, 1)
    if not 0 < n_selected <= lab.size:
        raise ValueError(f"n_selected must be in 1..{lab.size}; got {n_selected}")
    rng = np.random.default_rng(seed)
    curves = [lorenz_from_counts(np.bincount(lab[rng.choice(lab.size, n_selected,
                                                            replace=False)], minlength=k))
              for _ in range(n_draws)]
    return np.mean(curves, axis=0)


def example_curves(labels: Mapping, masks: Mapping, subset: str, layer: int, k: int,
                   n_draws: int = 200, seed: int = 0) -> tuple[dict, dict]:
    """Figure 6a for one subset and layer: ``(curves, aucs)``, both keyed by the curve names
    of :func:`auc_table` (``curves[name]`` ``[k+1]``, ``aucs[name]`` the exact area)."""
    lt = _check_labels(labels["trained"], k, 2)
    lr = _check_labels(labels["random"], k, 2)
    sel_t = as_bool_array(masks["trained"][subset], "trained mask")[layer]
    sel_r = as_bool_array(masks["random"][subset], "random mask")[layer]
    by_name = {"trained clusters x trained neurons": (lt[layer], sel_t),
               "random clusters x random neurons": (lr[layer], sel_r),
               "random clusters x trained neurons": (lr[layer], sel_t)}
    curves = {name: lorenz_curve(lab, sel, k) for name, (lab, sel) in by_name.items()}
    aucs = {name: lorenz_auc(lab, sel, k) for name, (lab, sel) in by_name.items()}
    n = int(sel_t.sum())
    curves[CHANCE] = mean_random_curve(lt[layer], n, k, n_draws, seed)
    aucs[CHANCE] = float(np.mean(random_selection_auc(lt[layer], n, k, n_draws, seed)))
    best = best_counts(n, k, lt.shape[1] // k)
    curves[BEST] = lorenz_from_counts(best)
    aucs[BEST] = auc_from_counts(best)
    return curves, aucs


def most_concentrated_layer(table: Mapping, variant: str = "exact") -> int:
    """The layer whose mean trained x trained AUC over subsets is highest (Figure 6a's
    example layer)."""
    mean, _ = _nan_stats(np.asarray(table[variant][PAIRINGS[0][0]], dtype=float))
    return int(np.nanargmax(mean))


def within_bounds(table: Mapping) -> bool:
    """True when every finite exact AUC lies in [0.5, 1] and no curve exceeds the best
    achievable (both hold by construction; a violation means a bug upstream)."""
    ok = True
    if "exact" in table:
        for v in table["exact"].values():
            v = np.asarray(v, dtype=float)
            v = v[np.isfinite(v)]
            ok &= bool(((v >= 0.5 - 1e-12) & (v <= 1 + 1e-12)).all())
    for variant in VARIANTS:
        if variant not in table:
            continue
        best = np.asarray(table[variant][BEST], dtype=float)
        for name, _, _ in PAIRINGS:
            v = np.asarray(table[variant][name], dtype=float)
            fin = np.isfinite(v)
            ok &= bool((v[fin] <= best[fin] + 1e-12).all())
    return ok


#: the chance band is the mean +- this many standard deviations of one random selection's area
CHANCE_SD = 2


def zscore(observed, chance_mean, chance_std) -> np.ndarray:
    """``(observed - chance_mean) / chance_std``, elementwise (any one shape, e.g. ``[subsets,
    layers]``): how many standard deviations of a random selection of the same size an area
    lies above chance. NaN where the chance spread is 0 or undefined (a selection of every
    neuron, or of one, has a single possible area: "beyond chance" means nothing there)."""
    obs, mean, std = (np.asarray(x, dtype=float) for x in (observed, chance_mean, chance_std))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 0, (obs - mean) / np.where(std > 0, std, 1.0), np.nan)


def table_zscores(table: Mapping, variant: str = "exact") -> dict[str, np.ndarray]:
    """:func:`zscore` of every pairing of :func:`auc_table` (:data:`PAIRINGS`): name ->
    ``[subsets, layers]``. Chance is drawn against the trained clustering; for balanced
    clusters its distribution does not depend on which clustering."""
    t = table[variant]
    return {name: zscore(t[name], t[CHANCE], table["chance_std"][variant])
            for name, _, _ in PAIRINGS}


def one_seed(by_seed: Mapping, seed: int | None = None) -> dict:
    """``{"trained": x, "random": y}`` from ``{"trained": x, "random": {seed: y, ...}}``: the
    layout of :func:`auc_table` and :func:`example_curves` for one random seed (default: the
    first, the default random model)."""
    rand = by_seed["random"]
    seed = next(iter(rand)) if seed is None else seed
    return {"trained": by_seed["trained"], "random": rand[seed]}


def seed_tables(labels: Mapping, masks: Mapping, k: int, **kwargs) -> dict[int, dict]:
    """:func:`auc_table` for each random-init model: ``{seed: table}``.

    ``labels``: ``{"trained": [layers, neurons], "random": {seed: [layers, neurons]}}``
    (:func:`moe.labels_by_seed`); ``masks``: ``{"trained": {subset: bool [layers, neurons]},
    "random": {seed: {subset: ...}}}`` (:func:`selections`), the same seeds. The trained
    curve and chance are the same in every table (chance is drawn with the same ``seed``)."""
    seeds = list(labels["random"])
    if list(masks["random"]) != seeds:
        raise ValueError(f"labels and masks must cover the same random seeds in one order; "
                         f"got {seeds} and {list(masks['random'])}")
    return {int(s): auc_table(one_seed(labels, s), one_seed(masks, s), k, **kwargs)
            for s in seeds}


def selections(trained_scores: Mapping, random_scores: Mapping, frac: float) -> dict:
    """The top ``frac`` of every layer, per subset: ``{"trained": {subset: bool [layers,
    neurons]}, "random": {seed: {...}}}`` from ``trained_scores`` (subset -> ``[layers,
    neurons]``) and ``random_scores`` (seed -> subset -> scores; :func:`overlap.seed_scores`)."""
    from .overlap import masks_at
    return {"trained": masks_at(trained_scores, frac, per_layer=True),
            "random": {s: masks_at(sc, frac, per_layer=True) for s, sc in random_scores.items()}}


def fraction_sweep(labels: Mapping, trained_scores: Mapping, random_scores: Mapping, k: int,
                   fracs: Sequence[float], **kwargs) -> dict[float, dict]:
    """:func:`seeds_summary` at each selection fraction: ``{frac: summary}`` (the top ``frac``
    of every layer, :func:`selections`; ``labels`` as :func:`seed_tables` takes them,
    ``kwargs`` go to :func:`auc_table`). Feed it to :func:`auc_vs_fraction`."""
    return {float(f): seeds_summary(seed_tables(
        labels, selections(trained_scores, random_scores, f), k, **kwargs)) for f in fracs}


def _spread_entry(per_seed: Sequence, over_seeds: bool) -> dict:
    """One curve of :func:`seeds_summary` from its ``[subsets, layers]`` array per seed.

    ``over_seeds`` False (a curve that does not depend on the random model): the first
    array's mean and sd over subsets by layer, ``overall`` its mean and ``overall_std`` the sd
    over subsets of each subset's mean over layers. True: the same means per seed, then their
    mean and sample sd over seeds (:func:`overlap.seed_spread`), ``by_seed`` the overall values.
    """
    from .overlap import _plain, seed_spread
    with warnings.catch_warnings():  # an all-NaN layer (no selection) stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        arrs = [np.asarray(v, dtype=float) for v in per_seed]
        by_layer = [np.nanmean(v, axis=0) for v in arrs]
        overall = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in arrs]
        if not over_seeds:
            return {"mean": _plain(by_layer[0]), "std": _plain(np.nanstd(arrs[0], axis=0)),
                    "overall": _plain(overall[0]),
                    "overall_std": _plain(np.nanstd(np.nanmean(arrs[0], axis=1))),
                    "band": f"sd over {arrs[0].shape[0]} subsets"}
    layers, total = seed_spread(by_layer), seed_spread(overall)
    return {"mean": layers["mean"], "std": layers["std"], "overall": total["mean"],
            "overall_std": total["std"], "by_seed": total["by_seed"],
            "band": f"sd over {len(arrs)} seeds"}


def seeds_summary(tables: Mapping[int, Mapping]) -> dict:
    """Plain numbers of :func:`seed_tables` (seed -> :func:`auc_table`) for notebook 06.

    Per variant and curve: ``mean`` and ``std`` by layer ``[layers]``, ``overall``,
    ``overall_std`` and ``band`` (what the std is):

    - trained clusters x trained neurons: over subsets (it does not depend on the seed);
    - the pairings with a random model: mean over subsets per seed, then mean and sd over the
      seeds (one random model is one draw; the band is how much the draw matters);
    - chance: ``std`` the sd of one random selection's area (the band is +- :data:`CHANCE_SD`
      of it); best achievable: no band.

    ``z``: ``{pairing: ...}`` the same for :func:`table_zscores` (area beyond chance in
    chance's sds). One z serves both variants: for a given selection size and ``k`` both
    areas are sums of the same ``S_j`` (the authors' is the exact one times ``(x - 1) / x``),
    so the z-scores are identical; they are computed on "exact" when present. Also ``names``,
    ``k``, ``cluster_size``, ``n_selected_per_layer`` ``[subsets, layers]`` and ``seeds``.
    NaN becomes None.
    """
    seeds = [int(s) for s in tables]
    first = tables[seeds[0]]
    out = {"names": list(first["names"]), "k": first["k"],
           "cluster_size": first["cluster_size"],
           "n_selected_per_layer": np.asarray(first["n_selected"]).tolist(), "seeds": seeds}
    random_pairing = {name: "random" in (c, n) for name, c, n in PAIRINGS}
    for variant in VARIANTS:
        if variant not in first:
            continue
        out[variant] = {}
        for curve in first[variant]:
            entry = _spread_entry([tables[s][variant][curve] for s in seeds],
                                  random_pairing.get(curve, False))
            if curve == CHANCE:  # the band of chance is the spread of one random selection
                sd = _spread_entry([first["chance_std"][variant]], False)
                entry.update(std=sd["mean"], overall_std=sd["overall"],
                             band=f"{CHANCE_SD} sd of a random selection")
            elif curve == BEST:
                entry.update(std=None, overall_std=None, band="")
            out[variant][curve] = entry
    variant = "exact" if "exact" in first else next(v for v in VARIANTS if v in first)
    zs = {s: table_zscores(tables[s], variant) for s in seeds}
    out["z"] = {name: _spread_entry([zs[s][name] for s in seeds], random_pairing[name])
                for name, _, _ in PAIRINGS}
    return out


def above_chance(s: Mapping, variant: str = "exact", n_sd: float = CHANCE_SD) -> bool:
    """True when the trained model's mean area (trained clusters x trained neurons, over
    layers and subsets, :func:`seeds_summary`) lies above the chance band: chance's mean +
    ``n_sd`` sds of one random selection's area. (Could fail: a trained model whose selected
    neurons do not concentrate in its clusters - the paper's LM result.)"""
    d = s[variant]
    trained, chance = d[PAIRINGS[0][0]]["overall"], d[CHANCE]
    if trained is None or chance["overall"] is None or chance["overall_std"] is None:
        return False
    return bool(trained > chance["overall"] + n_sd * chance["overall_std"])


def near_chance(s: Mapping, pairing: str = PAIRINGS[2][0], n_sd: float = CHANCE_SD) -> bool:
    """True when ``pairing``'s mean z beyond chance (:func:`seeds_summary`, over layers,
    subsets and seeds) lies within +- ``n_sd``. For random-model clusters x trained neurons it
    should: clusters of other weights know nothing of the trained selection. (Could fail: the
    random model's clusters were the trained model's, or its weights were not random.)"""
    z = s["z"][pairing]["overall"]
    return z is not None and bool(abs(z) < n_sd)


def _fmt(x, sd=None) -> str:
    text = "  nan" if x is None else f"{x:.3f}"
    return text if sd is None else f"{text} ± {sd:.3f}"


def format_seeds_summary(s: Mapping) -> str:
    """Text of :func:`seeds_summary`: per variant and curve the overall mean (± its sd,
    see ``band``) and the mean by layer; then the z-scores beyond chance by layer."""
    rows = [f"random-init models: seeds {s['seeds']} (random curves: mean ± sd over seeds)"]
    for variant in VARIANTS:
        if variant not in s:
            continue
        rows.append(f"{variant} AUC, mean over {len(s['names'])} subsets, by layer:")
        for curve, d in s[variant].items():
            by_layer = " ".join(_fmt(x) for x in d["mean"])
            rows.append(f"  {curve:36s} {_fmt(d['overall'], d['overall_std']):15s} | {by_layer}")
    rows.append("AUC beyond chance, z = (AUC - chance mean) / chance sd (either variant), "
                "by layer:")
    for name, d in s["z"].items():
        by_layer = " ".join("  nan" if x is None else f"{x:+5.1f}" for x in d["mean"])
        overall = "nan" if d["overall"] is None else f"{d['overall']:+.2f}"
        sd = "" if d["overall_std"] is None else f" ± {d['overall_std']:.2f}"
        rows.append(f"  {name:36s} {overall + sd:15s} | {by_layer}")
    return "\n".join(rows)


def _panel_curves(entries: Mapping, n_sd: Mapping[str, float] | None = None) -> dict:
    """name (with its band) -> ``{"mean", "std"}`` for :func:`plot_auc_by_layer` from the
    entries of :func:`seeds_summary` (``n_sd[name]`` scales a band, e.g. chance's 2 sd)."""
    out = {}
    for name, d in entries.items():
        scale = (n_sd or {}).get(name, 1)
        std = None if d["std"] is None else np.asarray(d["std"], dtype=float) * scale
        band = f" (± {d['band']})" if d.get("band") else ""
        out[name + band] = {"mean": d["mean"], "std": std}
    return out


def plot_auc_panels(s: Mapping, *, title: str = "", layer_names: Sequence[str] | None = None):
    """Figure 6b/c from :func:`seeds_summary`: one panel per variant (exact, authors), AUC by
    layer for every curve with its band (trained: sd over subsets; random models: sd over
    seeds; chance: +- 2 sd of one random selection), and a panel of the z-scores beyond
    chance by layer. Returns the Figure."""
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in s]
    fig, axes = plt.subplots(1, len(variants) + 1, figsize=(6.2 * (len(variants) + 1), 4.4),
                             constrained_layout=True, squeeze=False)
    panels = [(variant, _panel_curves(s[variant], {CHANCE: CHANCE_SD}),
               f"normalised Lorenz AUC ({variant})", f"{variant} AUC (k = {s['k']})")
              for variant in variants]
    panels.append(("z", _panel_curves(s["z"]), "z = (AUC - chance) / sd of chance",
                   "AUC beyond chance"))
    for ax, (_, curves, ylabel, name) in zip(axes[0], panels):
        plot_auc_by_layer(curves, layer_names=layer_names, ax=ax,
                          title=f"{title} {name}".strip(), ylabel=ylabel)
        # below the axes: inside, the legend hides the bands
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    z_ax = axes[0][-1]
    z_ax.axhline(0, color="0.5", lw=0.8, ls="--")
    z_ax.axhline(CHANCE_SD, color="0.5", lw=0.8, ls=":")
    return fig


def auc_vs_fraction(summaries: Mapping[float, Mapping], variant: str = "exact") -> dict:
    """The overall area against the selection fraction, from one :func:`seeds_summary` per
    fraction (``{frac: summary}``): ``{"fracs" [F], "n_selected" [F] (neurons per layer),
    "seeds", "variant", "curves": {curve: {"mean" [F], "std" [F] or None, "band"}}, "z":
    {pairing: {"mean" [F], "std" [F] or None, "band"}}}``. ``mean`` is each summary's
    ``overall`` (over layers and subsets; random models: mean over seeds) and ``std`` its
    ``overall_std`` (see ``band``). A result near chance at one fraction (the LM at 3.4%)
    reads differently when the trained curve leaves chance at another."""
    fracs = [float(f) for f in summaries]
    if not fracs:
        raise ValueError("need a summary for at least one fraction")
    ss = [summaries[f] for f in summaries]

    def series(entries) -> dict:
        names = list(entries(ss[0]))
        return {name: {"mean": [entries(x)[name]["overall"] for x in ss],
                       "std": None if entries(ss[0])[name]["overall_std"] is None
                       else [entries(x)[name]["overall_std"] for x in ss],
                       "band": entries(ss[0])[name]["band"]} for name in names}

    return {"fracs": fracs, "variant": variant, "seeds": ss[0]["seeds"],
            "n_selected": [x["n_selected_per_layer"][0][0] for x in ss],
            "curves": series(lambda x: x[variant]), "z": series(lambda x: x["z"])}


def format_auc_vs_fraction(d: Mapping) -> str:
    """Text of :func:`auc_vs_fraction`: one row per fraction."""
    names = list(d["curves"])
    short = [n.split(" (")[0].replace(" clusters", "").replace(" neurons", "") for n in names]
    head = "fraction  n/layer  " + "  ".join(f"{n:>16s}" for n in short)
    rows = [f"{d['variant']} AUC over layers and subsets (± sd; random models over seeds "
            f"{d['seeds']}), z of the trained curve beyond chance:", head]
    tt = PAIRINGS[0][0]
    for i, f in enumerate(d["fracs"]):
        cells = []
        for name in names:
            c = d["curves"][name]
            sd = None if c["std"] is None else c["std"][i]
            cells.append(f"{_fmt(c['mean'][i], sd):>16s}")
        z = d["z"][tt]["mean"][i]
        rows.append(f"{f:8.1%}  {d['n_selected'][i]:7d}  " + "  ".join(cells)
                    + ("" if z is None else f"   z = {z:+.1f}"))
    return "\n".join(rows)


def plot_auc_vs_fraction(d: Mapping, *, title: str = "", mark: float | None = None):
    """The AUC against the selection fraction (:func:`auc_vs_fraction`): left, every curve with
    its band (chance: +- 2 sd of one random selection); right, the z-scores beyond chance.
    ``mark``: a fraction to mark (the profile's ``auc_frac``). Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    x = np.asarray(d["fracs"], dtype=float)
    panels = ((axes[0], _panel_curves(d["curves"], {CHANCE: CHANCE_SD}),
               f"normalised Lorenz AUC ({d['variant']})"),
              (axes[1], _panel_curves(d["z"]), "z = (AUC - chance) / sd of chance"))
    for ax, curves, ylabel in panels:
        for name, c in curves.items():
            _band_line(ax, name, {**c, "x": x}, None)
        ax.set_xscale("log")
        ax.set_xticks(x, labels=[f"{f:.1%}" for f in x], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("fraction of every layer selected")
        ax.set_ylabel(ylabel)
        if mark is not None:
            ax.axvline(mark, color="0.6", lw=0.8, ls="-.", label=f"auc_frac = {mark:.1%}")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    axes[1].axhline(0, color="0.5", lw=0.8, ls="--")
    axes[1].axhline(CHANCE_SD, color="0.5", lw=0.8, ls=":")
    axes[0].set_title(f"{title} AUC against the selection fraction".strip(), fontsize=9)
    axes[1].set_title(f"{title} beyond chance".strip(), fontsize=9)
    return fig


def fraction_headline(d: Mapping) -> dict:
    """The numbers of :func:`auc_vs_fraction` that go into ``headline.json``: per fraction,
    the mean AUC of every curve (and its sd) and the trained curve's z beyond chance."""
    return {"variant": d["variant"], "seeds": d["seeds"], "fracs": d["fracs"],
            "n_selected_per_layer": d["n_selected"],
            "auc": {name: {"mean": c["mean"], "std": c["std"]} for name, c in d["curves"].items()},
            "z": {name: c["mean"] for name, c in d["z"].items()}}


def headline(s: Mapping) -> dict:
    """The numbers of :func:`seeds_summary` that go into
    ``headline.json``: per variant and curve the mean AUC by layer, overall (and its sd where
    the summary has one); the z-scores beyond chance by layer and overall."""
    def pick(d):
        out = {"by_layer": d["mean"], "overall": d["overall"]}
        if d.get("overall_std") is not None:
            out.update(overall_std=d["overall_std"], band=d["band"])
        return out
    out = {"k": s["k"], "cluster_size": s["cluster_size"],
           **{variant: {curve: pick(d) for curve, d in s[variant].items()}
              for variant in VARIANTS if variant in s}}
    if "seeds" in s:
        out["seeds"] = s["seeds"]
    if "z" in s:
        out["z"] = {name: pick(d) for name, d in s["z"].items()}
    return out


# -- which rows a gated MLP is clustered on (moe_weight) ---------------------------------------

TRAINED = "trained clusters x trained neurons"
RANDOM_RANDOM = "random clusters x random neurons"
RANDOM_TRAINED = "random clusters x trained neurons"


def weight_comparison(summaries: Mapping[str, Mapping], quality: Mapping[str, Mapping]) -> dict:
    """Plain numbers comparing MoEfication on different rows of a gated MLP.

    ``summaries``: ``{choice: seeds_summary(...)}``; ``quality``: ``{choice:
    moe.headline(moe.summary(clusterings))}``. Returns per choice the exact AUC by layer (trained, random
    models, random clusters x trained neurons, chance), the z-scores by layer and overall
    (random models: mean and sd over seeds) and the clustering's sum of squares relative to
    a random balanced assignment (trained, random models)."""
    out = {}
    for choice, s in summaries.items():
        ex, z = s["exact"], s["z"]
        q = quality[choice]
        out[choice] = {
            "auc_by_layer": {name: ex[name]["mean"] for name in
                             (TRAINED, RANDOM_RANDOM, RANDOM_TRAINED, CHANCE)},
            "auc_overall": {name: ex[name]["overall"] for name in
                            (TRAINED, RANDOM_RANDOM, RANDOM_TRAINED, CHANCE)},
            "z_by_layer": {name: z[name]["mean"] for name in z},
            "z_overall": {name: z[name]["overall"] for name in z},
            "z_overall_std": {name: z[name]["overall_std"] for name in z},
            "inertia_ratio_trained": q["trained"]["inertia_ratio_mean"],
            "inertia_ratio_random": q["random_over_seeds"]["inertia_ratio_mean"]["mean"],
        }
    return out


def weight_headline(d: Mapping) -> dict:
    """The overall numbers of :func:`weight_comparison` (no per-layer lists) for the headline."""
    keys = ("auc_overall", "z_overall", "z_overall_std", "inertia_ratio_trained",
            "inertia_ratio_random")
    return {choice: {key: c[key] for key in keys} for choice, c in d.items()}


def format_weight_comparison(d: Mapping) -> str:
    rows = [f"{'rows':<8} {'AUC trained':>11} {'random':>7} {'chance':>7} {'z trained':>10} "
            f"{'z random':>14} {'WCSS/random trained':>20} {'random':>7}"]
    for choice, c in d.items():
        a, z, zs = c["auc_overall"], c["z_overall"], c["z_overall_std"]
        rows.append(f"{choice:<8} {a[TRAINED]:>11.3f} {a[RANDOM_RANDOM]:>7.3f} {a[CHANCE]:>7.3f} "
                    f"{z[TRAINED]:>+10.2f} {z[RANDOM_RANDOM]:>+8.2f} ± {zs[RANDOM_RANDOM] or 0:.2f} "
                    f"{c['inertia_ratio_trained']:>20.3f} {c['inertia_ratio_random']:>7.3f}")
    return "\n".join(rows)


def plot_weight_comparison(d: Mapping, *, title: str = ""):
    """Figure: AUC and z beyond chance by layer for each clustering choice: trained model
    (solid), random-init models (dashed, mean over seeds), random-model clusters with the
    trained selections (dash-dot, z panel); dotted: chance, z = 2."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    for c, (choice, v) in enumerate(d.items()):
        layers = np.arange(len(v["z_by_layer"][TRAINED]))
        axes[0].plot(layers, v["auc_by_layer"][TRAINED], "-o", ms=3, color=f"C{c}",
                     label=f"{choice}: trained")
        axes[0].plot(layers, v["auc_by_layer"][RANDOM_RANDOM], "--", color=f"C{c}",
                     label=f"{choice}: random models")
        axes[1].plot(layers, v["z_by_layer"][TRAINED], "-o", ms=3, color=f"C{c}",
                     label=f"{choice}: trained")
        axes[1].plot(layers, v["z_by_layer"][RANDOM_RANDOM], "--", color=f"C{c}",
                     label=f"{choice}: random models")
        axes[1].plot(layers, v["z_by_layer"][RANDOM_TRAINED], "-.", lw=0.8, color=f"C{c}",
                     label=f"{choice}: random clusters x trained neurons")
    first = next(iter(d.values()))
    axes[0].plot(np.arange(len(first["auc_by_layer"][CHANCE])), first["auc_by_layer"][CHANCE],
                 ":", color="grey", label="chance")
    axes[1].axhline(2, color="grey", ls=":", lw=0.8)
    axes[1].axhline(0, color="grey", ls="--", lw=0.6)
    axes[0].set_ylabel("normalised Lorenz AUC (exact)")
    axes[1].set_ylabel("z = (AUC - chance) / sd of chance")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.legend(fontsize=7)
    axes[0].set_title(f"{title} AUC by the rows clustered", fontsize=9)
    axes[1].set_title(f"{title} beyond chance", fontsize=9)
    return fig


def by_moe_weight(cfg: Mapping, masks: Mapping, k: int, choices=("up", "gate"),
                  seed: int = 0) -> dict:
    """:func:`weight_comparison` of the profile's models clustered on each of ``choices``
    (``moe_weight`` values): trained and every random-init seed, each clustering cached."""
    from . import moe
    summaries, quality = {}, {}
    for choice in choices:
        clusterings = moe.model_clusterings(dict(cfg), weight=choice)
        labels = moe.labels_by_seed(clusterings)
        summaries[choice] = seeds_summary(seed_tables(labels, masks, k, seed=seed))
        quality[choice] = moe.headline(moe.summary(clusterings))
    return weight_comparison(summaries, quality)
