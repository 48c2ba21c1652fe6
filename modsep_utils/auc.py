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
capacity-limited best :func:`best_auc` beside any measured area.
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


def plot_auc_by_layer(curves: Mapping[str, Sequence], *, layer_names: Sequence[str] | None = None,
                      title: str | None = None, ylabel: str = "normalised Lorenz AUC", ax=None):
    """Figure 6b/c: per layer, mean +- std over subsets, one line per curve name.

    ``curves[name]``: ``[subsets, layers]`` (mean and std over subsets, NaN ignored, drawn as
    a line and a band) or ``[layers]`` (one line, e.g. a baseline). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = ax.figure
    n_layers = None
    for name, values in curves.items():
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
    [subsets, layers] array}}`` for each of ``variants``.
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
                   "n_selected": n_sel, "n_draws": int(n_draws)}
    # chance and best depend on the per-layer sizes only: compute once per distinct size
    sizes = sorted({int(n) for n in n_sel.ravel()})
    for variant in variants:
        _check_variant(variant)
        curves = {}
        for name, clusters, neurons in PAIRINGS:
            curves[name] = np.stack([auc_by_layer(lab[clusters], s, k, variant)
                                     for s in sel[neurons]])
        chance = {n: float(np.mean(random_selection_auc(lab["trained"][0], n, k, n_draws,
                                                        seed, variant))) if n else np.nan
                  for n in sizes}
        best = {n: best_auc(n, k, size, variant) if n else np.nan for n in sizes}
        curves[CHANCE] = np.vectorize(chance.get, otypes=[float])(n_sel)
        curves[BEST] = np.vectorize(best.get, otypes=[float])(n_sel)
        table[variant] = curves
    return table


def _nan_stats(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(v, axis=0), np.nanstd(v, axis=0)


def table_summary(table: Mapping) -> dict:
    """Plain numbers of :func:`auc_table`: per variant and curve, ``mean``/``std`` over
    subsets by layer ``[layers]`` and ``overall`` (mean over subsets and layers). NaN (an
    empty selection) becomes None."""
    fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
    out = {"names": list(table["names"]), "k": table["k"], "cluster_size": table["cluster_size"],
           "n_selected_per_layer": np.asarray(table["n_selected"]).tolist()}
    for variant in VARIANTS:
        if variant not in table:
            continue
        out[variant] = {}
        for curve, v in table[variant].items():
            v = np.asarray(v, dtype=float)
            mean, std = _nan_stats(v)
            out[variant][curve] = {"mean": [fin(x) for x in mean], "std": [fin(x) for x in std],
                                   "overall": fin(np.nanmean(v)) if np.isfinite(v).any()
                                   else None}
    return out


def format_table_summary(s: Mapping) -> str:
    """Text: for each variant and curve, the mean AUC over subsets by layer and overall."""
    rows = []
    for variant in VARIANTS:
        if variant not in s:
            continue
        rows.append(f"{variant} AUC, mean over {len(s['names'])} subsets, by layer:")
        for curve, d in s[variant].items():
            by_layer = " ".join("  nan" if x is None else f"{x:.3f}" for x in d["mean"])
            overall = "nan" if d["overall"] is None else f"{d['overall']:.3f}"
            rows.append(f"  {curve:36s} {overall}  | {by_layer}")
    return "\n".join(rows)


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


def plot_auc_panels(s: Mapping, *, title: str = "", layer_names: Sequence[str] | None = None,
                    table: Mapping | None = None):
    """Figure 6b/c: one panel per variant (exact, authors), AUC by layer, mean +- std over
    subsets for every curve. ``table`` (:func:`auc_table`) gives the bands; ``s`` its
    :func:`table_summary` (used for the variants present). Returns the Figure."""
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in s]
    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 4.2),
                             constrained_layout=True, squeeze=False)
    for ax, variant in zip(axes[0], variants):
        curves = {name: np.asarray(table[variant][name], dtype=float) for name in
                  table[variant]} if table is not None else \
                 {name: [np.nan if x is None else x for x in d["mean"]]
                  for name, d in s[variant].items()}
        plot_auc_by_layer(curves, layer_names=layer_names, ax=ax,
                          title=f"{title} {variant} AUC (k = {s['k']})".strip(),
                          ylabel=f"normalised Lorenz AUC ({variant})")
        # below the axes: inside, the legend hides the bands
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def headline(s: Mapping) -> dict:
    """The numbers of :func:`table_summary` that go into ``headline.json``: per variant and
    curve, the mean AUC by layer and overall."""
    return {"k": s["k"], "cluster_size": s["cluster_size"],
            **{variant: {curve: {"by_layer": d["mean"], "overall": d["overall"]}
                         for curve, d in s[variant].items()}
               for variant in VARIANTS if variant in s}}
