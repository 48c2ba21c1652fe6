import json
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from modsep_utils.explore import pair_report, plot_pair


def _setup():
    a = np.zeros((2, 8), bool)
    b = np.zeros((2, 8), bool)
    a[0, [0, 1, 2, 3]] = True
    b[0, [2, 3, 4]] = True         # layer 0: shared {2, 3}
    a[1, [0, 5]] = True
    b[1, [5, 6, 7, 1]] = True      # layer 1: shared {5}
    masks = {"cats": a, "dogs": torch.from_numpy(b), "cars": np.zeros((2, 8), bool)}
    cross = {"forget": ["cats", "dogs"], "eval": ["cats", "dogs", "cars"],
             "ratio": [[0.5, 0.9], [0.8, 0.4], [0.99, 0.97]]}
    labels = np.array([[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3, 0, 1, 2, 3]])
    return masks, cross, labels


def test_pair_report_values():
    masks, cross, labels = _setup()
    r = pair_report("cats", "dogs", masks=masks, cross_eval=cross, labels=labels, k=4)
    assert r["a_to_b"] == 0.8          # eval dogs after pruning cats: ratio[1][0]
    assert r["b_to_a"] == 0.9          # eval cats after pruning dogs: ratio[0][1]
    assert r["a_self"] == 0.5 and r["b_self"] == 0.4
    assert r["missing"] == []
    assert r["n_shared"] == [2, 1]
    assert r["overlap_a_in_b"] == pytest.approx([2 / 4, 1 / 2])
    assert r["overlap_b_in_a"] == pytest.approx([2 / 3, 1 / 4])
    assert r["chance_a_in_b"] == pytest.approx([3 / 8, 4 / 8])
    assert r["total"]["a_in_b"] == pytest.approx(3 / 6)
    per = r["clusters"]["per_layer"]
    assert per[0]["n_clusters"] == 1 and per[0]["top"] == [[1, 2]]  # 2 and 3 share cluster 1
    assert per[0]["auc_shared"] == 1.0
    assert per[1]["n_clusters"] == 1 and per[1]["top"] == [[1, 1]]
    json.dumps(r)                      # plain values only


def test_missing_pair_is_reported_not_invented():
    masks, cross, _ = _setup()
    r = pair_report("cats", "cars", masks=masks, cross_eval=cross)
    assert r["a_to_b"] == 0.99
    assert r["b_to_a"] is None and r["b_self"] is None
    assert any("b_to_a" in m and "'cars' is not a forget subset" in m for m in r["missing"])
    assert r["clusters"] is None
    assert all(math.isnan(x) for x in r["overlap_b_in_a"])  # cars selected nothing
    cross["ratio"][0][1] = None
    r = pair_report("cats", "dogs", masks=masks, cross_eval=cross)
    assert r["b_to_a"] is None and "holds None" in r["missing"][0]


def test_bad_inputs_raise():
    masks, cross, labels = _setup()
    with pytest.raises(KeyError, match="birds"):
        pair_report("cats", "birds", masks=masks, cross_eval=cross)
    with pytest.raises(ValueError, match="eval x forget"):
        pair_report("cats", "dogs", masks=masks,
                    cross_eval={**cross, "ratio": [[1.0, 1.0]]})
    with pytest.raises(ValueError, match="labels"):
        pair_report("cats", "dogs", masks=masks, cross_eval=cross, labels=labels[:, :4])


def test_plot_pair():
    masks, cross, labels = _setup()
    fig = plot_pair(pair_report("cats", "dogs", masks=masks, cross_eval=cross, labels=labels))
    assert len(fig.axes) == 4          # three panels and the AUC twin axis
    fig = plot_pair(pair_report("cats", "cars", masks=masks, cross_eval=cross))
    assert len(fig.axes) == 2
    assert any(t.get_text() == "missing" for t in fig.axes[0].texts)


# -- notebook 07 glue --------------------------------------------------------------------------

from modsep_utils import explore  # noqa: E402


def _explorer(**kw):
    g = torch.Generator().manual_seed(0)
    scores = {kind: {n: torch.rand(2, 8, generator=g) for n in ("cats", "dogs", "cars")}
              for kind in ("trained", "random")}
    _, cross, labels = _setup()
    labels = {"trained": labels, "random": labels[:, ::-1].copy()}
    return explore.Explorer(scores, cross_eval=cross, labels=labels, k=4, **kw)


def test_explorer_report_fractions_and_missing_cross_eval():
    ex = _explorer(fractions={"cats": 0.25, "dogs": 0.5, "cars": 0.125}, default_frac=0.5)
    r = ex.report("trained", "cats", "dogs")
    assert (r["frac_a"], r["frac_b"]) == (0.25, 0.5)
    assert r["total"]["n_a"] == 4 and r["total"]["n_b"] == 8       # of 16 neurons
    assert r["a_to_b"] == 0.8 and r["missing"] == []
    r = ex.report("trained", "cats", "dogs", frac=0.125)          # the slider overrides both
    assert r["total"]["n_a"] == r["total"]["n_b"] == 2
    rnd = ex.report("random", "cats", "dogs")
    assert rnd["a_to_b"] is None and rnd["b_to_a"] is None
    assert "random model" in rnd["missing"][0]
    assert "missing a_to_b, b_to_a, a_self, b_self: no cross-evaluation for the random" \
        in explore.format_report(rnd)
    text = explore.format_report(ex.report("trained", "cats", "dogs", frac=0.5))
    assert "by layer (neurons in clusters): L0:" in text
    r = ex.report("trained", "cats", "cars")                     # cars was never pruned
    assert r["b_to_a"] is None and any("not a forget subset" in m for m in r["missing"])
    with pytest.raises(ValueError, match="model must be"):
        ex.report("frozen", "cats", "dogs")
    with pytest.raises(KeyError, match="birds"):
        ex.report("trained", "cats", "birds")
    json.dumps(r)


def test_explorer_without_03_says_so():
    ex = _explorer(missing_note="no cross-evaluation: run notebook 03")
    ex.cross_eval = None
    r = ex.report("trained", "cats", "dogs")
    assert r["a_to_b"] is None and "run notebook 03" in r["missing"][0]
    assert r["frac_a"] == ex.default_frac


def test_explorer_rejects_labels_of_another_shape():
    with pytest.raises(ValueError, match="cluster labels have shape"):
        explore.Explorer({kind: {"a": torch.rand(2, 8)} for kind in ("trained", "random")},
                         labels={"trained": np.zeros((1, 8), int), "random": np.zeros((2, 8),
                                                                                      int)})


def test_default_pair_prefers_one_family():
    fam = {"shirt": "tops", "bag": "bags", "coat": "tops"}.get
    assert explore.default_pair(["bag", "shirt", "coat"], fam) == ("shirt", "coat")
    assert explore.default_pair(["bag", "shirt"], fam) == ("bag", "shirt")
    with pytest.raises(ValueError):
        explore.default_pair(["bag"])


def test_explorer_from_config(tmp_path, monkeypatch):
    from modsep_utils import config as mconfig
    from modsep_utils import moe, overlap
    from modsep_utils.io import write_json

    ex0 = _explorer()
    monkeypatch.setattr(mconfig, "results_dir", lambda cfg: tmp_path)
    monkeypatch.setattr(overlap, "model_scores", lambda cfg, names: ex0.scores)
    labels = ex0.labels

    class C:
        def __init__(self, lab):
            self.labels, self.k = lab, 4
    monkeypatch.setattr(moe, "model_clusterings",
                        lambda cfg, progress=True: {k: C(v) for k, v in labels.items()})
    from modsep_utils import activations, pruning
    monkeypatch.setattr(activations, "_source_fingerprint", lambda name: "w1")
    cfg = {**mconfig.load_profile("smoke", "vit"), "drops": [0.5], "overlap_frac": 0.25}
    names = ["cats", "dogs", "cars"]
    ex = explore.Explorer.from_config(cfg, names)               # no 03 results yet
    assert ex.cross_eval is None and ex.fractions is None
    assert "run notebook 03" in ex.report("trained", "cats", "dogs")["missing"][0]
    pruning.save_fractions(cfg, 0.5, {n: {"frac": 0.25, "reached": True} for n in names})
    stale = explore.Explorer.from_config({**cfg, "eval_n": 3}, names)  # 03 ran otherwise
    assert stale.cross_eval is None and "eval_n" in stale.missing_note
    _, cross, _ = _setup()
    write_json(tmp_path / "03_cross_eval_drop50.json", cross)
    ex = explore.Explorer.from_config(cfg, names)
    r = ex.report("trained", "cats", "dogs")
    assert r["a_to_b"] == 0.8 and ex.fractions == dict.fromkeys(names, 0.25)
    assert "50% drop" in r["cross_eval_note"]
    pruning.save_fractions({**cfg, "experiment": "lm"}, 0.5,
                           {n: {"frac": 0.25, "reached": True} for n in names})
    lm = explore.Explorer.from_config({**cfg, "experiment": "lm"}, names)
    assert lm.fractions is None and lm.cross_eval is not None  # LM: overlap_frac, as in 04


# -- notebook 07: the interactive view ---------------------------------------------------------

class _Handle:
    """Stands in for an IPython display handle: records what the view sends it."""
    def __init__(self):
        self.shown = []

    def update(self, obj):
        self.shown.append(obj)


def test_widget_redraws_report_and_figure_when_a_control_changes():
    view = _explorer(fractions={"cats": 0.25, "dogs": 0.5, "cars": 0.125}).widget()
    assert (view.a.value, view.b.value) == ("cats", "dogs")
    text, png = view.text, view.png
    assert png.startswith(b"\x89PNG") and "cats" in text
    view._views = (_Handle(), _Handle())          # as displayed in a notebook
    view.a.value = "cars"
    assert view.report["a"] == "cars" and "cars" in view.text and view.text != text
    assert view.png != png
    assert "cars" in view._views[0].shown[-1].data
    assert view._views[1].shown[-1].data == view.png
    view.model.value = "random"
    assert view.report["model"] == "random" and "random model" in view.text
    assert view.report["a_to_b"] is None            # the random model has no cross-evaluation


def test_the_fraction_slider_drives_the_selection_or_says_why_not():
    view = _explorer(fractions={"cats": 0.25, "dogs": 0.5, "cars": 0.125}).widget()
    # each class at its 03 fraction: the slider is off, and the note says so
    assert view.own.value and view.frac.disabled
    assert (view.report["frac_a"], view.report["frac_b"]) == (0.25, 0.5)
    assert "untick the box" in view.note.value
    before = view.png
    view.own.value = False
    assert not view.frac.disabled and "slider's" in view.note.value
    view.frac.value = 0.125
    assert (view.report["frac_a"], view.report["frac_b"]) == (0.125, 0.125)
    assert view.report["total"]["n_a"] == 2 and view.png != before
    assert "(top 12.5%)" in view.figure._suptitle.get_text()
    # the bars are 03's measurements at 03's fractions: the figure and the note say they stay
    assert "03's fractions" in view.figure.axes[0].get_title()
    assert "stay" in view.note.value
    # LM: no per-class fraction, so the box is off and the slider always drives
    lm = _explorer().widget()
    assert not lm.own.value and lm.own.disabled and not lm.frac.disabled
    assert "as in notebook 04" in lm.note.value


def test_a_failing_selection_is_shown_not_lost():
    view = _explorer().widget()
    view.explorer.scores["trained"].pop("dogs")
    view.refresh()
    assert view.text.startswith("cannot show this selection:") and "dogs" in view.text


def test_deep_models_get_readable_layer_axes_and_no_empty_legends():
    g = np.random.default_rng(0)
    masks = {"a": g.random((30, 64)) < 0.1, "b": g.random((30, 64)) < 0.1,
             "none": np.zeros((30, 64), bool)}
    labels = g.integers(0, 4, (30, 64))
    fig = plot_pair(pair_report("a", "b", masks=masks, cross_eval=None, labels=labels, k=4))
    for ax in fig.axes[1:3]:
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert 1 < len(ticks) <= 12 and ticks[0] == "L0"
        assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    # an empty selection: its overlap line is all NaN and has no legend entry
    fig = plot_pair(pair_report("none", "none", masks=masks, cross_eval=None))
    legend = fig.axes[1].get_legend()
    assert all("none" not in t.get_text() for t in legend.get_texts())
    assert len(legend.get_texts()) == 2                # the two chance lines only
