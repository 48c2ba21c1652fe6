import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from modsep_utils import auc

K = 4
LABELS = np.repeat(np.arange(K), 8)          # 32 neurons, 8 per cluster


def _select(per_cluster):
    """bool [32] choosing per_cluster[c] neurons of cluster c."""
    sel = np.zeros(len(LABELS), bool)
    for c, n in enumerate(per_cluster):
        sel[np.flatnonzero(LABELS == c)[:n]] = True
    return sel


def test_exact_one_cluster_is_one_and_even_spread_is_half():
    assert auc.lorenz_auc(LABELS, _select([0, 6, 0, 0]), K) == pytest.approx(1.0)
    assert auc.lorenz_auc(LABELS, _select([3, 3, 3, 3]), K) == pytest.approx(0.5)
    # in between: counts 4,2,1,1 -> S = 4/8, 6/8, 7/8 -> mean = 17/24
    assert auc.lorenz_auc(LABELS, _select([1, 4, 1, 2]), K) == pytest.approx(17 / 24)


def test_lorenz_curve_sorted_descending_from_zero():
    curve = auc.lorenz_curve(LABELS, _select([1, 4, 1, 2]), K)
    np.testing.assert_allclose(curve, [0, 4 / 8, 6 / 8, 7 / 8, 1])
    assert np.isnan(auc.lorenz_curve(LABELS, _select([0, 0, 0, 0]), K)).all()


def test_authors_variant_by_hand():
    # counts 4,2,1,1 sorted: c = [0, 4, 6, 7, 8], x = min(8, 4) = 4
    # sum(c[:4]) / (c[4] * 4) = (0 + 4 + 6 + 7) / 32
    sel = _select([1, 4, 1, 2])
    assert auc.lorenz_auc(LABELS, sel, K, variant="authors") == pytest.approx(17 / 32)
    # uniform 3 each: c = [0, 3, 6, 9, 12]: 18 / 48 = (k - 1) / (2k)
    assert auc.lorenz_auc(LABELS, _select([3] * 4), K, "authors") == pytest.approx(3 / 8)
    # N = 2 < k: x = 2, counts 1,1: c = [0, 1, 2]: (0 + 1) / (2 * 2)
    assert auc.lorenz_auc(LABELS, _select([1, 0, 1, 0]), K, "authors") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="variant"):
        auc.lorenz_auc(LABELS, sel, K, variant="gini")


def test_nothing_selected_is_nan_and_one_selected_is_defined():
    none = _select([0, 0, 0, 0])
    assert np.isnan(auc.lorenz_auc(LABELS, none, K))
    assert np.isnan(auc.lorenz_auc(LABELS, none, K, "authors"))
    one = _select([0, 0, 1, 0])
    assert auc.lorenz_auc(LABELS, one, K) == 1.0
    assert auc.lorenz_auc(LABELS, one, K, "authors") == 0.0


def test_fewer_selected_than_clusters_uses_k_eff():
    # N = 3 < k = 4: one per cluster is the most even possible -> 0.5, not above it
    assert auc.lorenz_auc(LABELS, _select([1, 1, 1, 0]), K) == pytest.approx(0.5)
    # N = 3: counts 2,1 -> k_eff = 3, S_1 = 2/3, S_2 = 1 -> (2/3 + 1) / 2
    assert auc.lorenz_auc(LABELS, _select([2, 0, 1, 0]), K) == pytest.approx(5 / 6)
    assert auc.lorenz_auc(LABELS, _select([3, 0, 0, 0]), K) == pytest.approx(1.0)


def test_shape_mismatch_and_bad_labels_raise():
    with pytest.raises(ValueError, match="differ in shape"):
        auc.lorenz_auc(LABELS, np.ones(31, bool), K)
    with pytest.raises(ValueError, match="0..3"):
        auc.lorenz_auc(LABELS + 1, np.ones(32, bool), K)
    lab2 = np.stack([LABELS, LABELS])
    with pytest.raises(ValueError, match=r"\(2, 32\).*\(3, 32\)"):
        auc.auc_by_layer(lab2, np.ones((3, 32), bool), K)


def test_auc_by_layer_matches_per_layer():
    rng = np.random.default_rng(0)
    lab = np.stack([rng.permutation(LABELS) for _ in range(3)])
    sel = rng.random((3, 32)) < 0.3
    sel[2] = False
    got = auc.auc_by_layer(lab, sel, K)
    for layer in range(2):
        assert got[layer] == pytest.approx(auc.lorenz_auc(lab[layer], sel[layer], K))
    assert np.isnan(got[2])
    got_a = auc.auc_by_layer(lab, sel, K, "authors")
    assert got_a[0] == pytest.approx(auc.lorenz_auc(lab[0], sel[0], K, "authors"))


def test_random_baseline_between_even_and_best():
    lab = np.repeat(np.arange(16), 32)          # 512 neurons, 16 clusters of 32
    draws = auc.random_selection_auc(lab, 64, 16, n_draws=200, seed=0)
    assert draws.shape == (200,)
    best = auc.best_auc(64, 16, 32)
    assert best == pytest.approx((0.5 + 14) / 15)  # 2 full clusters: S_1 = 1/2, then 1
    assert 0.5 < draws.mean() < best
    # chance rises as the selection shrinks (REFERENCE: well above 0.5 for small selections)
    small = auc.random_selection_auc(lab, 8, 16, n_draws=200, seed=0)
    big = auc.random_selection_auc(lab, 256, 16, n_draws=200, seed=0)
    assert big.mean() < draws.mean() < small.mean()
    layered = auc.random_selection_auc(np.stack([lab, lab]), [8, 256], 16, n_draws=50)
    assert layered.shape == (2, 50) and layered[0].mean() > layered[1].mean()


def test_best_auc_capacity_limited_by_hand():
    # 40 in clusters of 32 with k = 4: counts 32, 8, 0, 0 -> S = 32/40, 1, 1 -> mean
    assert auc.best_auc(40, 4, 32) == pytest.approx((0.8 + 1 + 1) / 3)
    np.testing.assert_array_equal(auc.best_counts(40, 4, 32), [32, 8, 0, 0])
    with pytest.raises(ValueError):
        auc.best_counts(200, 4, 32)


def test_plots():
    c1 = auc.lorenz_curve(LABELS, _select([1, 4, 1, 2]), K)
    fig = auc.plot_lorenz({"trained": c1}, {"trained": 17 / 24})
    assert "0.71" in fig.axes[0].get_legend().get_texts()[1].get_text()
    fig = auc.plot_auc_by_layer({"trained": np.random.default_rng(0).random((5, 3)),
                                 "chance": [0.6, 0.6, 0.6]}, layer_names=["a", "b", "c"])
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError):
        auc.plot_auc_by_layer({"x": np.zeros((2, 3)), "y": np.zeros(4)})


# -- notebook 06 glue --------------------------------------------------------------------------

def _two_models(n_layers=3, k=8, size=8, n_sel=8, seed=0):
    """Trained selections that fill one cluster of the trained clustering per layer (and
    per subset), random-model selections drawn at random; both the same size per layer."""
    rng = np.random.default_rng(seed)
    width = k * size
    lab_t = np.stack([rng.permutation(np.repeat(np.arange(k), size)) for _ in range(n_layers)])
    lab_r = np.stack([rng.permutation(np.repeat(np.arange(k), size)) for _ in range(n_layers)])
    masks_t, masks_r = {}, {}
    for s, name in enumerate(["x", "y"]):
        mt = np.zeros((n_layers, width), bool)
        mr = np.zeros((n_layers, width), bool)
        for layer in range(n_layers):
            mt[layer, np.flatnonzero(lab_t[layer] == s)[:n_sel]] = True
            mr[layer, rng.choice(width, n_sel, replace=False)] = True
        masks_t[name], masks_r[name] = mt, mr
    return {"trained": lab_t, "random": lab_r}, {"trained": masks_t, "random": masks_r}


def test_auc_table_curves():
    labels, masks = _two_models()
    table = auc.auc_table(labels, masks, 8, n_draws=100)
    ex = table["exact"]
    assert table["cluster_size"] == 8 and table["names"] == ["x", "y"]
    assert np.asarray(table["n_selected"]).tolist() == [[8, 8, 8]] * 2
    np.testing.assert_allclose(ex["trained clusters x trained neurons"], 1.0)
    np.testing.assert_allclose(ex[auc.BEST], 1.0)          # 8 fit in one cluster of 8
    chance = ex[auc.CHANCE]
    assert chance.shape == (2, 3) and 0.5 < chance.mean() < 0.9
    # trained neurons in the random model's clusters look like a random selection
    assert abs(ex["random clusters x trained neurons"].mean() - chance.mean()) < 0.15
    au = table["authors"]
    np.testing.assert_allclose(au["trained clusters x trained neurons"], 7 / 8)  # (x-1)/x
    assert auc.within_bounds(table)
    s = auc.table_summary(table)
    assert s["exact"][auc.CHANCE]["mean"] == pytest.approx(chance.mean(0).tolist())
    assert s["exact"]["trained clusters x trained neurons"]["overall"] == pytest.approx(1.0)
    h = auc.headline(s)
    assert h["authors"][auc.BEST]["overall"] == pytest.approx(7 / 8)
    assert "random clusters x random neurons" in auc.format_table_summary(s)
    assert len(auc.plot_auc_panels(s, table=table).axes) == 2


def test_auc_table_empty_layer_is_nan_and_none_in_summary():
    labels, masks = _two_models()
    for kind in ("trained", "random"):
        for m in masks[kind].values():
            m[2] = False
    table = auc.auc_table(labels, masks, 8, n_draws=20)
    for curve in table["exact"].values():
        assert np.isnan(curve[:, 2]).all() and np.isfinite(curve[:, :2]).all()
    s = auc.table_summary(table)
    assert s["exact"][auc.CHANCE]["mean"][2] is None
    import json
    json.dumps(s)


def test_auc_table_bad_inputs():
    labels, masks = _two_models()
    with pytest.raises(ValueError, match=r"\[layers, neurons\]"):
        auc.auc_table({**labels, "random": labels["random"][0]}, masks, 8)
    bad = {"trained": masks["trained"], "random": dict(masks["random"])}
    bad["random"]["x"] = bad["random"]["x"].copy()
    bad["random"]["x"][0, :] = True
    with pytest.raises(ValueError, match="differ in size"):
        auc.auc_table(labels, bad, 8)
    with pytest.raises(ValueError, match="same subsets"):
        auc.auc_table(labels, {"trained": masks["trained"],
                               "random": {"y": masks["random"]["y"]}}, 8)
    with pytest.raises(ValueError, match=r"\(3, 64\)"):
        auc.auc_table(labels, {kind: {n: m[:, :32] for n, m in v.items()}
                               for kind, v in masks.items()}, 8)


def test_example_curves_and_layer_choice():
    labels, masks = _two_models()
    for m in masks["trained"].values():           # layer 1: spread over 8 clusters instead
        m[1] = False
        m[1, [np.flatnonzero(labels["trained"][1] == c)[0] for c in range(8)]] = True
    table = auc.auc_table(labels, masks, 8, n_draws=20)
    assert auc.most_concentrated_layer(table) in (0, 2)
    curves, aucs = auc.example_curves(labels, masks, "x", 0, 8, n_draws=50)
    for name, c in curves.items():
        assert c.shape == (9,) and c[0] == 0 and c[-1] == pytest.approx(1.0)
        assert (curves[auc.BEST] >= c - 1e-12).all()
    assert aucs["trained clusters x trained neurons"] == 1.0
    assert 0.5 < aucs[auc.CHANCE] < 1.0


def test_mean_random_curve():
    lab = np.repeat(np.arange(4), 8)
    c = auc.mean_random_curve(lab, 8, 4, n_draws=100)
    assert (np.diff(c) >= 0).all() and c[1] > 0.25  # fullest cluster holds more than a quarter
    with pytest.raises(ValueError, match="1..32"):
        auc.mean_random_curve(lab, 0, 4)
