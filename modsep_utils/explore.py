"""Step 07: the class-pair explorer. For two subsets A and B it gathers what the other steps
measured about them: the accuracy effect of pruning one subset's neurons on the other
(cross-evaluation, step 03), how their neuron selections overlap layer by layer (step 04) and,
given MoEfication labels (step 05), which clusters hold the neurons they share (step 06).

:func:`pair_report` returns plain Python values (lists, floats, None), ready for JSON and for
:func:`plot_pair`; :meth:`Explorer.widget` builds the notebook's whole interactive view
(:class:`PairView`): the notebook cell only calls it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .auc import auc_by_layer
from .overlap import as_bool_array


def _ratio(cross_eval: Mapping, forget: str, evaluated: str) -> tuple[float | None, str | None]:
    """(pruned / unpruned accuracy on ``evaluated`` after pruning ``forget``'s neurons, None)
    or (None, why it is missing)."""
    forgets, evals = list(cross_eval["forget"]), list(cross_eval["eval"])
    what = f"pruning {forget!r}'s neurons, evaluated on {evaluated!r}"
    if forget not in forgets:
        return None, f"no cross-eval entry for {what}: {forget!r} is not a forget subset " \
                     f"(have {forgets})"
    if evaluated not in evals:
        return None, f"no cross-eval entry for {what}: {evaluated!r} is not an evaluated " \
                     f"subset (have {evals})"
    value = cross_eval["ratio"][evals.index(evaluated)][forgets.index(forget)]
    if value is None or not math.isfinite(float(value)):
        return None, f"no cross-eval entry for {what}: the table holds {value!r}"
    return float(value), None


def _check_cross_eval(cross_eval: Mapping) -> None:
    missing = [key for key in ("forget", "eval", "ratio") if key not in cross_eval]
    if missing:
        raise ValueError(f"cross_eval needs keys 'forget', 'eval', 'ratio'; missing {missing}")
    n_eval, n_forget = len(cross_eval["eval"]), len(cross_eval["forget"])
    rows = cross_eval["ratio"]
    if len(rows) != n_eval or any(len(r) != n_forget for r in rows):
        shape = (len(rows), sorted({len(r) for r in rows}))
        raise ValueError(f"cross_eval['ratio'] must be [eval x forget] = [{n_eval} x {n_forget}]"
                         f" (ratio[i][j]: accuracy on eval[i] after pruning forget[j]); got "
                         f"{shape[0]} rows of lengths {shape[1]}")


def _floats(x) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=float)]


def pair_report(a: str, b: str, *, masks: Mapping[str, Any], cross_eval: Mapping | None,
                labels=None, k: int | None = None, layer_names: Sequence[str] | None = None,
                top: int = 5, no_cross_eval: str = "no cross-evaluation for this model"
                ) -> dict[str, Any]:
    """Everything about the pair (A, B) in one dict of plain values.

    - ``masks``: subset name -> bool ``[layers, neurons]`` selection (torch or numpy).
    - ``cross_eval``: ``{"forget": [...], "eval": [...], "ratio": [[...]]}`` with
      ``ratio[i][j]`` = accuracy on ``eval[i]`` after pruning ``forget[j]``'s neurons,
      divided by the unpruned accuracy. ``None``: there is none for this model (e.g. the
      random model, or notebook 03 not run); every ratio is then None and ``missing`` says
      ``no_cross_eval``.
    - ``labels``: optional MoEfication cluster ids ``[layers, neurons]``; ``k`` their number
      of clusters (default ``labels.max() + 1``, right for balanced clusterings, which use all).

    Keys: ``a_to_b`` (ratio on B after pruning A), ``b_to_a``, ``a_self``, ``b_self`` - each a
    float or None; ``missing``: one message per None, saying why (never a made-up number).
    Per layer (lists ``[layers]``): ``n_a``, ``n_b``, ``n_shared``, ``overlap_a_in_b``
    (|A∩B|/|A|, NaN where A is empty), ``overlap_b_in_a`` (|A∩B|/|B|), ``chance_a_in_b``
    (|B|/neurons: the expected |A∩B|/|A| if A were random), ``chance_b_in_a``; ``total``: the
    same over the whole model. With labels, ``clusters``: ``k`` and per layer ``n_clusters``
    (distinct clusters holding shared neurons), ``top`` (``[cluster, count]`` of the fullest
    ones), ``auc_shared`` / ``auc_a`` / ``auc_b`` (exact Lorenz AUC, NaN for an empty set).
    """
    for name in (a, b):
        if name not in masks:
            raise KeyError(f"no mask for {name!r}; masks has {list(masks)}")
    ma, mb = as_bool_array(masks[a], f"masks[{a!r}]"), as_bool_array(masks[b], f"masks[{b!r}]")
    if ma.ndim != 2 or ma.shape != mb.shape:
        raise ValueError(f"masks of {a!r} {ma.shape} and {b!r} {mb.shape} must both be "
                         f"[layers, neurons] of one model")
    n_layers, width = ma.shape
    names = list(layer_names) if layer_names is not None else [f"L{i}" for i in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer_names for {n_layers} layers")

    if cross_eval is not None:
        _check_cross_eval(cross_eval)
    report: dict[str, Any] = {"a": a, "b": b, "layer_names": names, "neurons_per_layer": width}
    missing = []
    for key, forget, evaluated in (("a_to_b", a, b), ("b_to_a", b, a), ("a_self", a, a),
                                   ("b_self", b, b)):
        if cross_eval is None:
            report[key], why = None, no_cross_eval
        else:
            report[key], why = _ratio(cross_eval, forget, evaluated)
        if why:
            missing.append(f"{key}: {why}")
    report["missing"] = missing

    shared = ma & mb
    n_a, n_b, n_s = ma.sum(1), mb.sum(1), shared.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        report.update(
            n_a=n_a.tolist(), n_b=n_b.tolist(), n_shared=n_s.tolist(),
            overlap_a_in_b=_floats(np.where(n_a > 0, n_s / n_a, np.nan)),
            overlap_b_in_a=_floats(np.where(n_b > 0, n_s / n_b, np.nan)),
            chance_a_in_b=_floats(n_b / width), chance_b_in_a=_floats(n_a / width))
    total_a, total_b, total_s = int(n_a.sum()), int(n_b.sum()), int(n_s.sum())
    report["total"] = {
        "n_a": total_a, "n_b": total_b, "n_shared": total_s,
        "a_in_b": total_s / total_a if total_a else float("nan"),
        "b_in_a": total_s / total_b if total_b else float("nan"),
        "chance_a_in_b": total_b / ma.size, "chance_b_in_a": total_a / ma.size}

    report["clusters"] = None
    if labels is not None:
        lab = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        if lab.shape != ma.shape:
            raise ValueError(f"labels {lab.shape} and masks {ma.shape} must both be "
                             f"[layers, neurons] of one model")
        k = int(lab.max()) + 1 if k is None else int(k)
        per_layer = []
        auc_s, auc_a, auc_b = (auc_by_layer(lab, m, k) for m in (shared, ma, mb))
        for layer in range(n_layers):
            counts = np.bincount(lab[layer][shared[layer]], minlength=k)
            order = np.argsort(-counts, kind="stable")[:top]
            per_layer.append({
                "layer": names[layer], "n_shared": int(n_s[layer]),
                "n_clusters": int((counts > 0).sum()),
                "top": [[int(c), int(counts[c])] for c in order if counts[c] > 0],
                "auc_shared": float(auc_s[layer]), "auc_a": float(auc_a[layer]),
                "auc_b": float(auc_b[layer])})
        report["clusters"] = {"k": k, "per_layer": per_layer}
    return report


def plot_pair(report: Mapping[str, Any]):
    """The explorer's figure for one :func:`pair_report`: accuracy ratios (missing entries
    marked), overlap by layer against chance, and - with clusters - how many clusters hold the
    shared neurons and their Lorenz AUC. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    a, b, names = report["a"], report["b"], report["layer_names"]
    clusters = report.get("clusters")
    n_panels = 3 if clusters else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.8), constrained_layout=True)
    title = f"{a}  vs  {b}"
    if "frac_a" in report:  # an Explorer report: which model, and the fractions selected
        title = (f"{report['model']} model: {a} (top {report['frac_a']:.1%})  vs  {b} "
                 f"(top {report['frac_b']:.1%})")
    fig.suptitle(title, fontsize=10)

    ax = axes[0]
    # member names only under the bars ("fmnist:T-shirt" -> "T-shirt"): full names collide
    sa, sb = a.rpartition(":")[2], b.rpartition(":")[2]
    bars = [("a_to_b", f"prune {sa}\neval {sb}"), ("b_to_a", f"prune {sb}\neval {sa}"),
            ("a_self", f"prune {sa}\neval {sa}"), ("b_self", f"prune {sb}\neval {sb}")]
    for i, (key, text) in enumerate(bars):
        value = report.get(key)
        if value is None:
            ax.text(i, 0.05, "missing", ha="center", rotation=90, fontsize=8, color="tab:red")
        else:
            ax.bar(i, value, color="tab:blue" if i < 2 else "0.6")
            ax.text(i, value, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", lw=0.6, ls="--")
    ax.set_xticks(range(len(bars)), labels=[t for _, t in bars], fontsize=6)
    ax.set_ylabel("accuracy pruned / unpruned")
    # measured by notebook 03 at each subset's own fraction only: the fraction chosen here
    # cannot move these bars, and the title says so
    ax.set_title("cross-evaluation (03's fractions)" if "frac_a" in report else
                 "cross-evaluation", fontsize=9)

    ax = axes[1]
    x = np.arange(len(names))
    ax.plot(x, 100 * np.asarray(report["overlap_a_in_b"]), marker=".", label=f"|A∩B|/|A| ({a})")
    ax.plot(x, 100 * np.asarray(report["overlap_b_in_a"]), marker=".", label=f"|A∩B|/|B| ({b})")
    ax.plot(x, 100 * np.asarray(report["chance_a_in_b"]), ls="--", color="tab:blue", lw=0.8,
            label="chance |B|/neurons")
    ax.plot(x, 100 * np.asarray(report["chance_b_in_a"]), ls="--", color="tab:orange", lw=0.8,
            label="chance |A|/neurons")
    _layer_axis(ax, names)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("overlap (%)")
    ax.set_title("overlap by layer", fontsize=9)
    _legend(ax, *ax.get_legend_handles_labels())

    if clusters:
        ax = axes[2]
        per = clusters["per_layer"]
        ax.bar(x, [p["n_clusters"] for p in per], color="0.7", label="clusters holding A∩B")
        ax.plot(x, [p["n_shared"] for p in per], "k.", label="shared neurons")
        ax.set_ylabel(f"count (k = {clusters['k']})")
        _layer_axis(ax, names)
        twin = ax.twinx()
        twin.plot(x, [p["auc_shared"] for p in per], color="tab:green", marker=".",
                  label="Lorenz AUC of A∩B")
        twin.set_ylim(0.45, 1.02)
        twin.set_ylabel("exact Lorenz AUC", color="tab:green")
        ax.set_title("shared neurons in MoE clusters", fontsize=9)
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        _legend(ax, lines[0] + more[0], lines[1] + more[1])
    return fig


def _layer_axis(ax, names: Sequence[str], most: int = 12) -> None:
    """Layer ticks that stay readable for deep models: at most ``most`` labels, upright (a
    30-layer LM gets every third layer, not 30 rotated labels in 6-point type)."""
    step = max(1, math.ceil(len(names) / most))
    ticks = list(range(0, len(names), step))
    ax.set_xticks(ticks, labels=[names[i] for i in ticks], fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel("layer", fontsize=8)


def _legend(ax, handles, labels) -> None:
    """A legend of the entries that show something (a line of NaN only, e.g. the overlap of
    an empty selection, is left out); none at all when no entry does."""
    def drawn(h):
        data = h.get_ydata() if hasattr(h, "get_ydata") else [1.0]
        return bool(np.isfinite(np.asarray(data, dtype=float)).any())
    keep = [(h, t) for h, t in zip(handles, labels) if drawn(h)]
    if keep:
        ax.legend(*zip(*keep), fontsize=6)


# -- notebook 07: the data behind the widget ---------------------------------------------------

def default_pair(names: Sequence[str], family=None) -> tuple[str, str]:
    """The explorer's first selection: the first two subsets of one family (related classes,
    where the paper expects overlap) or, without such a pair, the first two subsets."""
    names = list(names)
    if len(names) < 2:
        raise ValueError(f"need at least two subsets to compare; got {names}")
    if family is not None:
        fams = [family(n) for n in names]
        for i, f in enumerate(fams):
            for j in range(i + 1, len(names)):
                if fams[j] == f:
                    return names[i], names[j]
    return names[0], names[1]


class Explorer:
    """What the class-pair widget shows, for one profile and experiment.

    - ``scores``: ``{"trained": {subset: [layers, neurons]}, "random": {...}}``;
    - ``fractions``: subset -> the fraction notebook 03 selected (None where 03 has not run,
      or for the LM, whose overlaps use ``default_frac`` as in notebook 04);
    - ``cross_eval``: notebook 03's table for the trained model (None if missing);
    - ``labels``: ``{"trained": [layers, neurons], "random": ...}`` MoEfication cluster ids
      (None to leave the clusters out) and ``k``.

    :meth:`report` is :func:`pair_report` for a model kind, two subsets and a fraction.
    """

    def __init__(self, scores: Mapping, *, fractions: Mapping | None = None,
                 default_frac: float = 0.01, cross_eval: Mapping | None = None,
                 labels: Mapping | None = None, k: int | None = None,
                 cross_eval_note: str = "", missing_note: str = ""):
        if set(scores) != {"trained", "random"}:
            raise ValueError(f"scores need 'trained' and 'random'; got {list(scores)}")
        self.scores = {kind: dict(v) for kind, v in scores.items()}
        self.names = list(self.scores["trained"])
        if list(self.scores["random"]) != self.names:
            raise ValueError("trained and random scores must cover the same subsets")
        shape = tuple(next(iter(self.scores["trained"].values())).shape)
        self.fractions = dict(fractions) if fractions is not None else None
        self.default_frac = float(default_frac)
        self.cross_eval = cross_eval
        self.labels = None
        if labels is not None:
            from .moe import check_labels
            self.labels = {kind: check_labels(labels[kind], *shape, k)
                           for kind in ("trained", "random")}
        self.k = k
        self.cross_eval_note = cross_eval_note
        self.missing_note = missing_note

    @property
    def kinds(self) -> list[str]:
        return ["trained", "random"]

    def fraction(self, name: str, frac: float | None = None) -> float:
        """``frac`` if given, else ``name``'s fraction from notebook 03, else the default."""
        if frac is not None:
            return float(frac)
        if self.fractions is not None and name in self.fractions:
            return float(self.fractions[name])
        return self.default_frac

    def report(self, kind: str, a: str, b: str, frac: float | None = None) -> dict[str, Any]:
        """:func:`pair_report` for the ``kind`` ("trained" or "random") model's selections of
        ``a`` and ``b``, each at :meth:`fraction` (``frac`` None: its own 03 fraction).
        Adds ``model``, ``frac_a``, ``frac_b`` and ``cross_eval_note``."""
        if kind not in self.scores:
            raise ValueError(f"model must be one of {self.kinds}, not {kind!r}")
        for name in (a, b):
            if name not in self.scores[kind]:
                raise KeyError(f"unknown subset {name!r}; choose from {self.names}")
        from .overlap import masks_at
        fa, fb = self.fraction(a, frac), self.fraction(b, frac)
        masks = masks_at({a: self.scores[kind][a]}, fa) | masks_at({b: self.scores[kind][b]}, fb)
        if kind == "trained" and self.cross_eval is not None:
            cross, why = self.cross_eval, ""
        elif kind == "trained":
            cross, why = None, self.missing_note or "no cross-evaluation: run notebook 03"
        else:
            cross, why = None, ("no cross-evaluation for the random model (notebook 03 prunes "
                                "the trained model only)")
        labels = self.labels[kind] if self.labels is not None else None
        report = pair_report(a, b, masks=masks, cross_eval=cross, labels=labels, k=self.k,
                             no_cross_eval=why)
        report.update(model=kind, frac_a=fa, frac_b=fb, cross_eval_note=self.cross_eval_note)
        return report

    def widget(self, a: str | None = None, b: str | None = None, family=None) -> "PairView":
        """The interactive view (:class:`PairView`), first showing ``a`` and ``b`` (default:
        :func:`default_pair` by ``family``); a cell that ends with it displays it."""
        return PairView(self, a, b, family)

    @classmethod
    def from_config(cls, cfg: Mapping, names: Sequence[str], progress: bool = True
                    ) -> "Explorer":
        """Everything from the caches and results of notebooks 01-05 for this profile:
        scores of both models, notebook 03's fractions and cross-evaluation at the first drop
        (their absence is reported by the widget, not an error) and both MoEfication
        clusterings (cached by notebook 05; computed here if missing)."""
        from .io import read_json
        from .moe import model_clusterings
        from .overlap import fractions_from_03, model_scores
        from .pruning import load_fractions, step03_path

        scores = model_scores(cfg, names)
        drop = float(cfg["drops"][0])
        fractions = cross = None
        note, missing = "", ""
        path = step03_path(cfg, "cross_eval", drop)
        try:  # checked against this run's parameters: stale results are not shown
            fr = load_fractions(cfg, drop, names)
        except (FileNotFoundError, KeyError, ValueError) as e:
            missing = f"no cross-evaluation: {e}"
        else:
            if path.exists():
                cross = read_json(path)
                note = f"cross-evaluation at each subset's fraction for a {drop * 100:.6g}% drop"
            else:
                missing = f"no cross-evaluation: {path} is missing; run notebook 03"
            if cfg["experiment"] == "vit":  # as notebook 04: each class at its own fraction
                fractions = fractions_from_03(fr, cfg["overlap_frac"])
        clusterings = model_clusterings(dict(cfg), progress=progress)
        labels = {kind: c.labels for kind, c in clusterings.items()}
        return cls(scores, fractions=fractions, default_frac=cfg["overlap_frac"],
                   cross_eval=cross, labels=labels, k=clusterings["trained"].k,
                   cross_eval_note=note, missing_note=missing)


def format_report(report: Mapping[str, Any]) -> str:
    """A few lines of text for one :func:`pair_report` (or :meth:`Explorer.report`)."""
    a, b = report["a"], report["b"]
    fmt = lambda x: "missing" if x is None else f"{x:.3f}"  # noqa: E731
    pct = lambda x: "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"  # noqa: E731
    rows = []
    if "model" in report:
        rows.append(f"{report['model']} model: {a} at {report['frac_a']:.2%} of neurons, "
                    f"{b} at {report['frac_b']:.2%}")
    rows.append(f"accuracy pruned/unpruned: prune {a} -> {b}: {fmt(report['a_to_b'])}, "
                f"prune {b} -> {a}: {fmt(report['b_to_a'])}  (self: {fmt(report['a_self'])}, "
                f"{fmt(report['b_self'])})")
    if report.get("cross_eval_note"):
        rows.append(f"  ({report['cross_eval_note']})")
    by_reason: dict[str, list[str]] = {}
    for m in report["missing"]:  # "key: why"; one line per distinct reason
        key, _, why = m.partition(": ")
        by_reason.setdefault(why, []).append(key)
    for why, keys in by_reason.items():
        rows.append(f"  missing {', '.join(keys)}: {why}")
    t = report["total"]
    rows.append(f"shared neurons: {t['n_shared']} of {t['n_a']} ({a}) and {t['n_b']} ({b}): "
                f"|A∩B|/|A| = {pct(t['a_in_b'])} (chance {pct(t['chance_a_in_b'])}), "
                f"|A∩B|/|B| = {pct(t['b_in_a'])} (chance {pct(t['chance_b_in_a'])})")
    if report.get("clusters"):
        held = [p for p in report["clusters"]["per_layer"] if p["n_shared"]]
        where = ", ".join(f"{p['layer']}: {p['n_shared']} in {p['n_clusters']}" for p in held)
        rows.append(f"MoE clusters (k = {report['clusters']['k']}) holding the shared neurons, "
                    f"by layer (neurons in clusters): {where or 'no shared neuron'}")
    return "\n".join(rows)


# -- notebook 07: the interactive view ---------------------------------------------------------

class PairView:
    """Notebook 07's explorer: controls (model, class A, class B, fraction, "each class at its
    03 fraction") and, under them, the report text and the figure of what they select, redrawn
    on every change (:meth:`refresh`).

    The report and figure are display handles updated in place, not an ``Output`` widget:
    headless, nbclient mimics an ``Output`` widget with comm messages on the kernel's shell
    channel, and papermill runs of such a notebook hung now and then (nbclient issue #312).
    So a saved notebook keeps the first selection's report and figure as plain outputs that
    read without a kernel, under the controls' widget output (which :func:`modsep_utils.run.
    sanitize` drops from saved notebooks: without its kernel it is a raw repr).

    The fraction slider selects both classes' neurons when the box is unticked; while the box
    is ticked (each class at notebook 03's own fraction) the slider is disabled, and
    :attr:`note` says which fraction is in use and that the cross-evaluation bars are 03's
    measurements at 03's fractions, which no fraction chosen here changes.

    Without a browser: set a control's ``value`` and read :attr:`report`, :attr:`text`,
    :attr:`png` (the figure) and :attr:`figure`.
    """

    def __init__(self, explorer: Explorer, a: str | None = None, b: str | None = None,
                 family=None):
        import ipywidgets as widgets

        self.explorer = ex = explorer
        first_a, first_b = default_pair(ex.names, family)
        own = ex.fractions is not None
        self.model = widgets.Dropdown(options=ex.kinds, value="trained", description="model")
        self.a = widgets.Dropdown(options=ex.names, value=a or first_a, description="class A")
        self.b = widgets.Dropdown(options=ex.names, value=b or first_b, description="class B")
        # redrawn when the slider is released: a redraw takes seconds on a 30-layer model
        self.frac = widgets.FloatSlider(value=ex.default_frac, min=0.001, max=0.5, step=0.001,
                                        readout_format=".1%", description="fraction",
                                        continuous_update=False, disabled=own)
        self.own = widgets.Checkbox(value=own, disabled=not own,
                                    description="each class at its 03 fraction")
        self.note = widgets.HTML()
        self.controls = widgets.VBox([widgets.HBox([self.model, self.a, self.b]),
                                      widgets.HBox([self.frac, self.own]), self.note])
        self.report: dict[str, Any] = {}
        self.text = ""
        self.png = b""
        self.figure = None
        self._views = None  # (text, figure) display handles, once displayed
        self.refresh()
        for control in (self.model, self.a, self.b, self.frac, self.own):
            control.observe(self.refresh, names="value")

    def fraction(self) -> float | None:
        """The slider's fraction, or None while each class is at its 03 fraction."""
        own = self.own.value and self.explorer.fractions is not None
        return None if own else float(self.frac.value)

    def refresh(self, _change=None) -> None:
        """Recompute the report and figure of the controls' values, and redraw them."""
        import matplotlib.pyplot as plt
        from IPython.display import Image, Pretty

        frac = self.fraction()
        self.frac.disabled = frac is None
        try:
            report = self.explorer.report(self.model.value, self.a.value, self.b.value, frac)
        except (KeyError, ValueError) as e:  # shown where the report goes, not lost in a log
            self.text = f"cannot show this selection: {e}"
        else:
            self.report, self.text = report, format_report(report)
            if self.figure is not None:
                plt.close(self.figure)
            self.figure = plot_pair(report)
            # closed at once: the inline backend would draw every open figure again at the
            # end of the cell; the PNG is what the figure view shows
            plt.close(self.figure)
            self.png = _png(self.figure)
        self.note.value = self._note(frac)
        if self._views is not None:
            self._views[0].update(Pretty(self.text))
            self._views[1].update(Image(data=self.png, format="png"))

    def _note(self, frac: float | None) -> str:
        ex, r = self.explorer, self.report
        if frac is None:
            what = (f"each class at its 03 fraction ({r.get('a')} {r.get('frac_a', 0):.1%}, "
                    f"{r.get('b')} {r.get('frac_b', 0):.1%}); untick the box to select both at "
                    f"the slider's fraction")
        else:
            what = f"both classes at the slider's {frac:.1%} of neurons"
            if ex.fractions is None:
                what += " (no per-class fraction here: as in notebook 04)"
        return (f"<small>Selection: {what}. The fraction moves the overlap and cluster panels; "
                f"the cross-evaluation bars are notebook 03's measurements at 03's fractions "
                f"and stay.</small>")

    def _ipython_display_(self) -> None:
        from IPython.display import Image, Pretty, display
        display(self.controls)
        views = (display(Pretty(self.text), display_id=True),
                 display(Image(data=self.png, format="png"), display_id=True))
        self._views = views if None not in views else None  # None outside IPython


def _png(fig) -> bytes:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()
