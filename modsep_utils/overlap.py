"""Step 04: intersections of selected neuron sets (paper section 4.1, Figures 3-5).

For the neuron sets ``N_i`` selected for subsets ``i = 0..n-1`` (bool masks of one shape, e.g.
``[layers, neurons]``), ``overlap(i, j) = |N_i ∩ N_j| / |N_i|``: the share of i's neurons that
j also selected. It is *not* symmetric. Under random selections of the same sizes the expected
overlap is ``|N_j| / N_total`` (REFERENCE.md), which :func:`chance_matrix` reports.

The random-init model is one draw of weights: :func:`compare_seeds` compares the trained
selections with each seed's (``random_seeds``) and reports the random numbers as mean ± sd
over seeds (:func:`seed_spread`, also used by steps 05 and 06).
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np


def as_bool_array(mask, name: str = "mask") -> np.ndarray:
    """A bool numpy copy of ``mask`` (torch tensor or array-like).

    Integer or float masks are accepted only when every value is 0 or 1, so a score array
    passed by mistake fails loudly instead of being read as "nonzero = selected".
    """
    if hasattr(mask, "detach"):  # torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be a bool mask (or 0/1 values); got dtype {arr.dtype} "
                         f"with values other than 0 and 1 - select neurons first (e.g. top-k)")
    return arr.astype(bool)


def _stack(masks) -> np.ndarray:
    """``[n, N_total]`` bool from a sequence (or a mapping, values in order) of same-shape masks."""
    if isinstance(masks, Mapping):
        masks = list(masks.values())
    arrs = [as_bool_array(m, f"masks[{i}]") for i, m in enumerate(masks)]
    if not arrs:
        raise ValueError("need at least one mask")
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"all masks must have one shape; got {sorted(shapes)}: select every "
                         f"subset's neurons from the same model")
    return np.stack([a.reshape(-1) for a in arrs])


def overlap_matrix(masks: Sequence) -> np.ndarray:
    """``[n, n]`` float64: entry ``[i, j] = |N_i ∩ N_j| / |N_i|``.

    ``masks``: a sequence (or a dict; its values in order) of ``n`` bool masks of one shape,
    any shape (e.g. ``[layers, neurons]``), torch or numpy. Row ``i`` is normalised by
    ``|N_i|``, so the matrix is not symmetric and its diagonal is 1.

    An empty ``N_i`` gives a row of NaN: the share of nothing is undefined, and a 0 there
    would read as "no overlap". (Column ``j`` of an empty ``N_j`` is a true 0.)
    Mismatched shapes raise ``ValueError``.
    """
    x = _stack(masks).astype(np.float64)  # exact integer counts up to 2**53
    inter = x @ x.T
    sizes = x.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / sizes[:, None]
    out[sizes == 0] = np.nan
    return out


def chance_matrix(masks: Sequence) -> np.ndarray:
    """``[n, n]``: the expected :func:`overlap_matrix` under independent uniformly random
    selections of the same sizes, ``|N_j| / N_total`` in column ``j`` (every row alike).

    The diagonal holds the same formula (two independent draws), not 1. Rows of empty
    ``N_i`` are NaN, as in :func:`overlap_matrix`.
    """
    x = _stack(masks)
    sizes = x.sum(axis=1).astype(np.float64)
    out = np.tile(sizes / x.shape[1], (len(sizes), 1))
    out[sizes == 0] = np.nan
    return out


def overlap_by_layer(mask_a, mask_b) -> np.ndarray:
    """``[layers]``: ``|A_l ∩ B_l| / |A_l|`` per layer for bool masks ``[layers, neurons]``.

    Layers where A selected nothing are NaN (undefined, not 0). Swap the arguments for
    ``|A ∩ B| / |B|``.
    """
    a, b = as_bool_array(mask_a, "mask_a"), as_bool_array(mask_b, "mask_b")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two [layers, neurons] masks of one shape; got {a.shape} and "
                         f"{b.shape}")
    size_a = a.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a & b).sum(axis=1) / size_a
    out[size_a == 0] = np.nan
    return out


def offdiag(matrix) -> np.ndarray:
    """1-D array of the off-diagonal entries of a square ``[n, n]`` matrix, row-major
    (``[0,1], [0,2], ..., [1,0], [1,2], ...``): ``n * (n - 1)`` values."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"need a square [n, n] matrix; got shape {m.shape}")
    return m[~np.eye(m.shape[0], dtype=bool)]


def offdiag_pairs(n: int) -> list[tuple[int, int]]:
    """The ``(i, j)`` index of each entry of :func:`offdiag` of an ``[n, n]`` matrix, in order."""
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def pattern_correlation(m1, m2) -> float:
    """Pearson r between the off-diagonal entries of two ``[n, n]`` overlap matrices (e.g.
    trained vs random model): how similar the *pattern* of overlaps is, whatever its level.

    Pairs where either entry is NaN (empty selections) are left out. Returns NaN when fewer
    than 3 pairs remain or either side is constant (r is undefined there).
    """
    a, b = np.asarray(m1, dtype=float), np.asarray(m2, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"matrices differ in shape: {a.shape} vs {b.shape}")
    x, y = offdiag(a), offdiag(b)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    # constant sides by their range: the float std of equal values need not be exactly 0
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _chance_pair(chance):
    """(trained chance, random chance) from None, a number, a matrix or a pair of those."""
    if chance is None:
        return None, None
    if isinstance(chance, tuple):  # only a tuple means a pair; a list is one matrix
        if len(chance) != 2:
            raise ValueError(f"chance as a tuple must be (trained, random); "
                             f"got {len(chance)} items")
        return chance
    return chance, chance


def _chance_text(chance) -> str:
    if chance is None:
        return ""
    c = np.asarray(chance, dtype=float)
    level = np.nanmean(offdiag(c)) if c.ndim == 2 else float(c)
    return f" (chance {100 * level:.1f}%)"


def plot_overlaps(trained, random, labels: Sequence[str], chance=None, *,
                  titles: tuple[str, str] = ("trained", "random init")):
    """Figures 3/4: the trained and random-model overlap matrices side by side, in percent.

    ``trained``, ``random``: ``[n, n]`` from :func:`overlap_matrix`; rows are "of the neurons
    of row i", columns "share also selected by column j". ``chance``: optional expected
    overlap, either one value/matrix for both panels or a tuple ``(trained, random)`` (e.g. from
    :func:`chance_matrix`), shown in the panel titles as the mean off-diagonal level.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .plots import heatmap

    t, r = np.asarray(trained, dtype=float), np.asarray(random, dtype=float)
    n = len(labels)
    if t.shape != (n, n) or r.shape != (n, n):
        raise ValueError(f"{n} labels need [{n}, {n}] matrices; got {t.shape} and {r.shape}")
    c_t, c_r = _chance_pair(chance)
    size = max(6.0, 0.38 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
    im = None
    for ax, m, title, c in ((axes[0], t, titles[0], c_t), (axes[1], r, titles[1], c_r)):
        im = heatmap(ax, m, labels, labels, vmin=0.0, vmax=1.0, cmap="viridis",
                     title=f"{title}{_chance_text(c)}", xlabel="also selected by (j)",
                     ylabel="neurons of (i)")
        for txt in ax.texts:  # viridis is dark below ~60%: light text there, dark above
            txt.set_color("black" if float(txt.get_text()) > 60 else "white")
    fig.colorbar(im, ax=axes, shrink=0.8, label="|N_i ∩ N_j| / |N_i|")
    return fig


def plot_sorted_overlaps(trained, random, *, sort_by: str = "random", title: str | None = None,
                         chance: tuple | None = None, ax=None):
    """Figure 5: every off-diagonal overlap of the trained and random model, pairs in one
    order (sorted by ``sort_by``: "random" or "trained"), with the difference trained - random
    as bars. The Pearson r of the two patterns is in the legend; with ``chance`` =
    ``(trained chance, random chance)`` matrices (:func:`chance_matrix`) also the r of the
    overlaps in excess of chance, drawn as a line.

    Returns the matplotlib Figure (``ax.figure`` when ``ax`` is given).
    """
    import matplotlib.pyplot as plt

    t, r = offdiag(np.asarray(trained, float)), offdiag(np.asarray(random, float))
    if t.shape != r.shape:
        raise ValueError(f"matrices differ in size: {np.shape(trained)} vs {np.shape(random)}")
    if sort_by not in ("random", "trained"):
        raise ValueError(f"sort_by must be 'random' or 'trained', not {sort_by!r}")
    order = np.argsort(r if sort_by == "random" else t, kind="stable")
    t, r = t[order], r[order]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    else:
        fig = ax.figure
    x = np.arange(len(t))
    ax.bar(x, 100 * (t - r), width=1.0, color="0.75", label="trained - random")
    ax.plot(x, 100 * r, ".", ms=3, color="tab:orange", label="random init")
    r_text = f"r = {pattern_correlation(trained, random):.2f}"
    if chance is not None:
        ct, cr = (np.asarray(c, float) for c in chance)
        r_text += (f"; beyond chance r = "
                   f"{pattern_correlation(np.asarray(trained, float) - ct, np.asarray(random, float) - cr):.2f}")
        ax.plot(x, 100 * offdiag(ct)[order], color="0.4", lw=0.8, ls=":",
                label="chance (trained sizes)")
    ax.plot(x, 100 * t, ".", ms=3, color="tab:blue", label=f"trained ({r_text})")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel(f"class pair (i, j), sorted by the {sort_by} overlap")
    ax.set_ylabel("overlap |N_i ∩ N_j| / |N_i| (%)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


# -- notebook 04: selections from step 03 and the comparison trained vs random ---------------

def order_by_family(names: Sequence[str], family) -> list[str]:
    """``names`` grouped by ``family(name)`` (families in order of first appearance, names
    in their given order within a family): related subsets sit next to each other in figures."""
    names = list(names)
    fams = [family(n) for n in names]
    first = {f: i for i, f in reversed(list(enumerate(fams)))}
    return [names[i] for i in sorted(range(len(names)), key=lambda i: (first[fams[i]], i))]


def masks_at(scores: Mapping, frac, per_layer: bool = False) -> dict[str, np.ndarray]:
    """Bool ``[layers, neurons]`` masks of the top-scored neurons of each subset.

    ``scores``: subset -> ``[layers, neurons]`` scores; ``frac``: one fraction for every
    subset, or a mapping subset -> fraction (e.g. each class's fraction from step 03; the
    random model is given the same fractions so the sizes, and so chance, match).
    ``per_layer``: the same fraction of every layer instead of one global top-k.
    """
    from .scoring import top_fraction
    if isinstance(frac, Mapping):
        missing = [n for n in scores if n not in frac]
        if missing:
            raise KeyError(f"no fraction for {missing}; fractions given for {list(frac)}")
        fracs = {n: float(frac[n]) for n in scores}
    else:
        fracs = dict.fromkeys(scores, float(frac))
    return {n: top_fraction(s, fracs[n], per_layer=per_layer).numpy() for n, s in scores.items()}


def random_kind(seed: int, seeds: Sequence[int]) -> str:
    """The key of the random-init model of ``seed`` among the profile's ``seeds``: "random" for
    the first (the default random model of every notebook, and the only one notebook 07
    shows), ``"random seed <s>"`` for the others."""
    seeds = [int(s) for s in seeds]
    if int(seed) not in seeds:
        raise ValueError(f"seed {seed} is not one of the random seeds {seeds}")
    return "random" if int(seed) == seeds[0] else f"random seed {int(seed)}"


def seed_scores(cfg: Mapping, names: Sequence[str], seeds: Sequence[int] | None = None
                ) -> tuple[dict, dict[int, dict]]:
    """Scores of every subset for the trained model and for each random-init model:
    ``(trained, randoms)`` with ``trained`` = ``{name: [layers, neurons]}`` and ``randoms`` =
    ``{seed: {name: [layers, neurons]}}``, one per seed of ``cfg["random_seeds"]`` (or
    ``seeds``). One random model is one draw: the seeds say how much a baseline owes to it.
    Statistics come from step 01's cache (data sampled with ``cfg["seed"]`` for every model)."""
    from .activations import all_stats, random_seeds
    from .scoring import all_scores
    stats, retain = all_stats(dict(cfg), list(names), random_init=False)
    trained = all_scores(stats, retain, cfg["eps"])
    randoms = {}
    for s in (random_seeds(dict(cfg)) if seeds is None else seeds):
        stats, retain = all_stats(dict(cfg), list(names), random_init=True, model_seed=int(s))
        randoms[int(s)] = all_scores(stats, retain, cfg["eps"])
    return trained, randoms


def model_scores(cfg: Mapping, names: Sequence[str]) -> dict[str, dict]:
    """Scores of every subset for the trained and the default (first-seed) random model:
    ``{"trained": {name: [layers, neurons]}, "random": {...}}`` (:func:`seed_scores` for all
    the seeds)."""
    from .activations import random_seeds
    trained, randoms = seed_scores(cfg, names, random_seeds(dict(cfg))[:1])
    return {"trained": trained, "random": next(iter(randoms.values()))}


def fractions_from_03(fractions: Mapping[str, Mapping], fallback: float) -> dict[str, float]:
    """subset -> fraction from notebook 03's results: the bisected fraction where the target
    drop was reached, else ``fallback``. (A subset 03 could not bring to its target holds the
    closest fraction tried - often 100% of the neurons, when even pruning every MLP neuron
    leaves the accuracy above the target - which would make every overlap trivially full.)"""
    return {n: float(f["frac"]) if f.get("reached") else float(fallback)
            for n, f in fractions.items()}


def selection_fractions(cfg: Mapping, names: Sequence[str]) -> tuple[dict[str, float], dict]:
    """The fraction of neurons selected for each subset in notebook 04, and where it came from.

    ViT: each class's fraction from notebook 03 at the first drop of the profile (the paper's
    Figure 3 uses each class's selected fraction); a class that 03 did not bring to its target
    gets ``overlap_frac`` instead (:func:`fractions_from_03`), listed in ``not_reached``.
    LM: ``overlap_frac`` for every subset (the paper's Figure 4: top 1%). Returns
    ``(name -> fraction, info)`` with ``info`` = ``{"source", "drop", "not_reached"}``.
    """
    if cfg["experiment"] == "vit":
        from . import pruning
        drop = float(cfg["drops"][0])
        # the loader that also checks they were computed with this run's parameters and weights
        fr = pruning.load_fractions(dict(cfg), drop, names)
        not_reached = [n for n, f in fr.items() if not f.get("reached")]
        source = f"each class's fraction from notebook 03 (drop {pruning.drop_label(drop)})"
        if not_reached:
            source += f"; top {float(cfg['overlap_frac']):.1%} where not reached (!)"
        return (fractions_from_03(fr, cfg["overlap_frac"]),
                {"source": source, "drop": drop, "not_reached": not_reached})
    frac = float(cfg["overlap_frac"])
    return (dict.fromkeys(names, frac),
            {"source": f"top {frac:.1%} of neurons (overlap_frac)", "drop": None,
             "not_reached": []})


def _finite(x) -> float | None:
    """JSON has no NaN: a missing number is stored as null."""
    x = float(x)
    return x if np.isfinite(x) else None


def _offdiag_mean(m) -> float:
    v = offdiag(np.asarray(m, float))
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _group_means(m, families: Sequence[str]) -> tuple[float, float]:
    """(mean over off-diagonal pairs of one family, mean over pairs of different families)."""
    fam = np.asarray(families)
    same = fam[:, None] == fam[None, :]
    off = ~np.eye(len(fam), dtype=bool)
    m = np.asarray(m, float)
    out = []
    for sel in (same & off, ~same):
        v = m[sel]
        v = v[np.isfinite(v)]
        out.append(float(v.mean()) if v.size else float("nan"))
    return out[0], out[1]


def compare_models(trained: Mapping, random: Mapping, families: Sequence[str] | None = None
                   ) -> dict:
    """Overlap matrices of the trained and random model's selections and the numbers that
    say how alike they are.

    ``trained``, ``random``: subset -> bool mask, the same subsets in the same order (the
    order of the matrices' rows and columns). ``families``: optional family of each subset
    (same order), for the within- vs between-family means.

    Returns ``names``, ``trained``/``random`` (``[n, n]`` overlap matrices),
    ``chance_trained``/``chance_random`` (``[n, n]``, :func:`chance_matrix`) and ``summary``:
    mean off-diagonal overlap of each and of chance; ``r_trained_random``, the Pearson r of
    the two patterns; and ``r_excess``, the r of (overlap - chance) - the size of ``N_j``
    alone makes column ``j`` high in both models when the fractions differ by subset, so
    ``r_excess`` is the one that says the *pattern* persists. With ``families``:
    ``within_family``/``between_family`` means for trained, random and chance.
    """
    names = list(trained)
    if list(random) != names:
        raise ValueError(f"trained and random selections must cover the same subsets in one "
                         f"order; got {names} and {list(random)}")
    if families is not None and len(families) != len(names):
        raise ValueError(f"{len(families)} families for {len(names)} subsets")
    t, r = overlap_matrix(trained), overlap_matrix(random)
    ct, cr = chance_matrix(trained), chance_matrix(random)
    summary = {
        "n_subsets": len(names),
        "mean_trained": _offdiag_mean(t), "mean_random": _offdiag_mean(r),
        "chance_trained": _offdiag_mean(ct), "chance_random": _offdiag_mean(cr),
        "r_trained_random": pattern_correlation(t, r),
        "r_excess": pattern_correlation(t - ct, r - cr),
    }
    if families is not None:
        for key, m in (("trained", t), ("random", r), ("chance", ct)):
            w, b = _group_means(m, families)
            summary[f"within_family_{key}"], summary[f"between_family_{key}"] = w, b
    summary = {k: (v if isinstance(v, int) else _finite(v)) for k, v in summary.items()}
    return {"names": names, "families": list(families) if families is not None else None,
            "trained": t, "random": r, "chance_trained": ct, "chance_random": cr,
            "summary": summary}


#: keys of :func:`compare_models`' summary that depend on the random model (the others
#: depend on the trained model's selections only): averaged over seeds by :func:`compare_seeds`
RANDOM_KEYS = ("mean_random", "chance_random", "r_trained_random", "r_excess",
               "within_family_random", "between_family_random")


def _plain(x):
    """A float (None for NaN: JSON has no NaN), or nested lists of them, from an array."""
    a = np.asarray(x, dtype=float)
    return _finite(a) if a.ndim == 0 else [_plain(v) for v in a]


def seed_spread(values) -> dict:
    """How one number, or one array of numbers, varies over the random-init models.

    ``values``: one entry per seed, each a number or an array of one shape (e.g. ``[layers]``);
    None and NaN (undefined, e.g. an empty selection) are left out of the statistics.
    Returns ``{"n_seeds", "mean", "std", "min", "max", "by_seed"}``: floats for numbers,
    (nested) lists of the entry's shape for arrays, None where no seed has a finite value.
    ``std`` is the sample standard deviation (ddof = 1: the seeds are a sample of the random
    models one could have drawn), None where fewer than 2 seeds have a finite value.
    """
    v = np.array(list(values), dtype=float)  # None -> NaN
    if v.ndim == 0 or len(v) == 0:
        raise ValueError("need one value per seed, at least one seed")
    n = np.isfinite(v).sum(axis=0)
    with warnings.catch_warnings():  # an all-NaN position stays NaN (None), quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = np.nanmean(v, 0), np.nanmin(v, 0), np.nanmax(v, 0)
        std = np.where(n >= 2, np.nanstd(v, 0, ddof=1), np.nan)
    return {"n_seeds": len(v), "mean": _plain(mean), "std": _plain(std), "min": _plain(lo),
            "max": _plain(hi), "by_seed": _plain(v)}


def compare_seeds(trained: Mapping, randoms: Mapping[int, Mapping],
                  families: Sequence[str] | None = None) -> dict:
    """:func:`compare_models` of the trained selections against each random-init model's.

    ``trained``: subset -> bool mask ``[layers, neurons]``; ``randoms``: seed -> (subset -> bool
    mask), the same subsets in the same order. A single random model is one draw of its
    weights; the spread over seeds says how much of "the random model's pattern" is that draw.

    Returns :func:`compare_models`' keys for the first seed (``random``, ``chance_random``: the
    matrices a figure shows), plus ``seeds``, ``random_by_seed`` (seed -> ``[n, n]``) and a
    ``summary`` whose :data:`RANDOM_KEYS` are the *mean over seeds*, with ``spread`` (key ->
    :func:`seed_spread` over seeds) and ``random_seeds``.
    """
    seeds = [int(s) for s in randoms]
    if not seeds:
        raise ValueError("need the selections of at least one random-init model")
    per = {s: compare_models(trained, randoms[s], families) for s in seeds}
    out = dict(per[seeds[0]])
    summary = dict(out["summary"])
    spread = {key: seed_spread([per[s]["summary"][key] for s in seeds])
              for key in RANDOM_KEYS if key in summary}
    summary.update({key: sp["mean"] for key, sp in spread.items()})
    summary.update(random_seeds=seeds, spread=spread)
    out.update(seeds=seeds, random_by_seed={s: per[s]["random"] for s in seeds},
               summary=summary)
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:5.1f}%"


def spread_text(summary: Mapping, key: str, percent: bool = False) -> str:
    """``summary[key]`` as text with its spread over seeds when the summary has one (from
    :func:`compare_seeds`), e.g. ``"15.5% ± 1.2% (3 seeds)"`` or ``"+0.82 ± 0.05 (3 seeds)"``."""
    fmt = (lambda x: _pct(x).strip()) if percent else \
        (lambda x: "n/a" if x is None else f"{x:+.2f}")  # noqa: E731
    text = fmt(summary[key])
    sp = summary.get("spread", {}).get(key)
    if sp is not None and sp["std"] is not None:
        std = f"{100 * sp['std']:.1f}%" if percent else f"{sp['std']:.2f}"
        text += f" ± {std} ({sp['n_seeds']} seeds)"
    return text


def format_summary(summary: Mapping) -> str:
    """A few lines of text for the ``summary`` of :func:`compare_models` or
    :func:`compare_seeds` (then the random model's numbers are mean ± sd over seeds)."""
    rows = [f"mean overlap |N_i ∩ N_j| / |N_i| over {summary['n_subsets']} subsets "
            f"(off-diagonal):",
            f"  trained {_pct(summary['mean_trained'])}   random "
            f"{spread_text(summary, 'mean_random', percent=True)}   chance "
            f"{_pct(summary['chance_trained'])} (trained sizes), "
            f"{_pct(summary['chance_random'])} (random sizes)",
            f"  correlation trained vs random: r = {spread_text(summary, 'r_trained_random')}; "
            f"of the excess over chance: r = {spread_text(summary, 'r_excess')}"]
    if "within_family_trained" in summary:
        for key in ("trained", "random", "chance"):
            rows.append(f"  {key:8s} within family {_pct(summary[f'within_family_{key}'])}, "
                        f"between families {_pct(summary[f'between_family_{key}'])}")
    if summary.get("random_seeds"):
        seeds = summary["random_seeds"]
        rows.append(f"  random init: mean ± sd over the models of seeds {seeds}; matrices and "
                    f"pairs shown for seed {seeds[0]}")
    return "\n".join(rows)


def panel_titles(result: Mapping) -> tuple[str, str]:
    """Titles of :func:`plot_overlaps`' two panels for a :func:`compare_seeds` result: the
    random panel shows the first seed's matrix, and says the mean overlap over every seed."""
    seeds = result.get("seeds")
    if not seeds:
        return "trained", "random init"
    return ("trained", f"random init, seed {seeds[0]}; all seeds: "
            f"{spread_text(result['summary'], 'mean_random', percent=True)}")


def short_labels(names: Sequence[str], not_reached: Sequence[str] = ()) -> list[str]:
    """Figure labels: the name after its group prefix (``fmnist:Bag`` -> ``Bag``; the whole
    name where two would read alike), marked ``(!)`` where notebook 03 did not reach the target
    drop (its closest fraction is used)."""
    from .pruning import short_names
    bad = set(not_reached)
    return [s + (" (!)" if n in bad else "") for n, s in zip(names, short_names(names))]


def mean_pairwise_overlap(masks) -> float:
    """Mean of ``|N_i ∩ N_j| / |N_i|`` over ordered pairs ``i != j``, counted pair by pair
    from the masks (a sequence or dict of same-shape bool masks, e.g. ``[layers, neurons]``).

    Deliberately not through :func:`overlap_matrix` or :func:`offdiag`: it recomputes a
    summary's mean overlap from its inputs, so a summary that took the wrong entries (the
    diagonal, the transpose, another model's masks) disagrees. Pairs with an empty ``N_i`` are
    left out (undefined, as in the matrix); NaN when no pair is defined.
    """
    arrs = [as_bool_array(m).ravel() for m in (masks.values() if isinstance(masks, Mapping)
                                               else masks)]
    shares = []
    for i, a in enumerate(arrs):
        size = int(np.count_nonzero(a))
        if size:
            shares += [np.count_nonzero(a & b) / size for j, b in enumerate(arrs) if j != i]
    return float(np.mean(shares)) if shares else float("nan")


def agrees(a, b, rtol: float = 1e-9) -> bool:
    """True when two numbers agree (to ``rtol``), or both are undefined (None or NaN)."""
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    if not (np.isfinite(a) and np.isfinite(b)):
        return bool(np.isnan(a) and np.isnan(b))
    return bool(np.isclose(a, b, rtol=rtol, atol=1e-12))


def distinct(items) -> bool:
    """True when no two of ``items`` are equal. Each item is an array or a dict of arrays
    (e.g. one seed's ``{subset: mask}``, or one seed's cluster labels ``[layers, neurons]``).
    Two random-init seeds giving identical selections or clusters means the seed never reached
    the model (or the cache ignored it): every "spread over seeds" would then be zero."""
    arrs = [np.stack([np.asarray(v) for v in it.values()]) if isinstance(it, Mapping)
            else np.asarray(it) for it in items]
    return not any(a.shape == b.shape and np.array_equal(a, b)
                   for i, a in enumerate(arrs) for b in arrs[i + 1:])
