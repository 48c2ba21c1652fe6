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
    assert table["chance_std"]["exact"].shape == (2, 3) and (table["chance_std"]["exact"] > 0).all()
    s = auc.seeds_summary({0: table})
    assert s["exact"][auc.CHANCE]["mean"] == pytest.approx(chance.mean(0).tolist())
    assert s["exact"]["trained clusters x trained neurons"]["overall"] == pytest.approx(1.0)
    h = auc.headline(s)
    assert h["authors"][auc.BEST]["overall"] == pytest.approx(7 / 8)
    assert h["seeds"] == [0] and "trained clusters x trained neurons" in h["z"]
    assert "random clusters x random neurons" in auc.format_seeds_summary(s)
    assert len(auc.plot_auc_panels(s).axes) == 3             # exact, authors, z


def test_auc_table_empty_layer_is_nan_and_none_in_summary():
    labels, masks = _two_models()
    for kind in ("trained", "random"):
        for m in masks[kind].values():
            m[2] = False
    table = auc.auc_table(labels, masks, 8, n_draws=20)
    for curve in table["exact"].values():
        assert np.isnan(curve[:, 2]).all() and np.isfinite(curve[:, :2]).all()
    s = auc.seeds_summary({0: table})
    assert s["exact"][auc.CHANCE]["mean"][2] is None
    assert s["z"]["trained clusters x trained neurons"]["mean"][2] is None
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


# -- beyond chance, over seeds, against the fraction -------------------------------------------

def _planted(n_subsets=40, n_layers=2, k=16, size=32, n_sel=64, concentrated=True, seed=0):
    """labels [layers, k * size] and subset -> bool [layers, k * size] masks: ``n_sel``
    neurons per layer, either packed into the first clusters (concentrated) or uniformly
    random (what chance draws)."""
    rng = np.random.default_rng(seed)
    width = k * size
    lab = np.stack([rng.permutation(np.repeat(np.arange(k), size)) for _ in range(n_layers)])
    masks = {}
    for s in range(n_subsets):
        m = np.zeros((n_layers, width), bool)
        for layer in range(n_layers):
            if concentrated:
                m[layer, np.argsort(lab[layer], kind="stable")[:n_sel]] = True
            else:
                m[layer, rng.choice(width, n_sel, replace=False)] = True
        masks[f"s{s}"] = m
    return lab, masks


def test_zscore_sign_and_scale_on_planted_selections():
    lab, conc = _planted(concentrated=True)
    _, rand = _planted(concentrated=False, seed=1)
    k = 16
    table = auc.auc_table({"trained": lab, "random": lab}, {"trained": conc, "random": rand}, k,
                          n_draws=400, variants=("exact",))
    z = auc.table_zscores(table)
    planted = z["trained clusters x trained neurons"]       # 64 neurons in 2 full clusters
    random_ = z["random clusters x random neurons"]         # drawn as chance draws them
    assert planted.shape == (40, 2) and (planted > 10).all()  # far beyond chance, positive
    # random selections: z is a standard score - mean near 0, spread near 1
    assert abs(random_.mean()) < 0.4 and 0.7 < random_.std() < 1.3
    # by hand: z = (AUC - chance mean) / chance sd
    t = table["exact"]
    np.testing.assert_allclose(planted, (t["trained clusters x trained neurons"] - t[auc.CHANCE])
                               / table["chance_std"]["exact"])
    s = auc.seeds_summary({0: table})
    assert auc.above_chance(s)
    assert s["z"]["trained clusters x trained neurons"]["overall"] > 10
    assert not auc.near_chance(s, "trained clusters x trained neurons")
    assert auc.near_chance(s, "random clusters x random neurons")
    # either variant gives the same z: the authors' area is the exact one times (x - 1) / x
    both = auc.auc_table({"trained": lab, "random": lab}, {"trained": conc, "random": rand}, k,
                         n_draws=400)
    np.testing.assert_allclose(auc.table_zscores(both, "authors")["random clusters x random "
                                                                  "neurons"],
                               auc.table_zscores(both, "exact")["random clusters x random "
                                                                "neurons"])
    flipped = auc.auc_table({"trained": lab, "random": lab}, {"trained": rand, "random": conc},
                            k, n_draws=400, variants=("exact",))
    assert not auc.above_chance(auc.seeds_summary({0: flipped}))


def test_zscore_undefined_without_chance_spread():
    z = auc.zscore([0.7, 0.8, 0.9], [0.6, 0.6, 0.6], [0.05, 0.0, np.nan])
    assert z[0] == pytest.approx(2.0) and np.isnan(z[1:]).all()


def _seeded(n_seeds=3, n_layers=3, k=8, size=8, n_sel=8):
    """Trained model as in _two_models; one random model per seed, its own labels and
    random selections."""
    labels, masks = _two_models(n_layers, k, size, n_sel)
    lab_r, masks_r = {}, {}
    for s in range(n_seeds):
        other, om = _two_models(n_layers, k, size, n_sel, seed=10 + s)
        lab_r[s], masks_r[s] = other["random"], om["random"]
    return ({"trained": labels["trained"], "random": lab_r},
            {"trained": masks["trained"], "random": masks_r})


def test_seed_tables_and_spread_over_seeds():
    labels, masks = _seeded()
    tables = auc.seed_tables(labels, masks, 8, n_draws=50)
    assert list(tables) == [0, 1, 2]
    s = auc.seeds_summary(tables)
    rr = "random clusters x random neurons"
    per_seed = [np.nanmean(tables[k]["exact"][rr], axis=0) for k in range(3)]  # [layers] each
    d = s["exact"][rr]
    assert d["mean"] == pytest.approx(np.mean(per_seed, axis=0).tolist())
    assert d["std"] == pytest.approx(np.std(per_seed, axis=0, ddof=1).tolist())  # over seeds
    assert d["overall_std"] == pytest.approx(np.std([p.mean() for p in per_seed], ddof=1))
    assert d["band"] == "sd over 3 seeds" and len(d["by_seed"]) == 3
    tt = s["exact"]["trained clusters x trained neurons"]
    assert tt["band"] == "sd over 2 subsets" and tt["overall"] == pytest.approx(1.0)
    assert s["exact"][auc.CHANCE]["band"].startswith("2 sd")
    assert s["z"][rr]["band"] == "sd over 3 seeds"
    np.testing.assert_array_equal(auc.one_seed(labels, 2)["random"], labels["random"][2])
    assert "seeds [0, 1, 2]" in auc.format_seeds_summary(s)
    with pytest.raises(ValueError, match="same random seeds"):
        auc.seed_tables(labels, {**masks, "random": {0: masks["random"][0]}}, 8)


def test_auc_vs_fraction_shape_and_order():
    import json
    rng = np.random.default_rng(3)
    k, size, n_layers = 8, 16, 2
    width = k * size
    lab = np.stack([rng.permutation(np.repeat(np.arange(k), size)) for _ in range(n_layers)])
    # trained scores: high on cluster 0 and 1 (a concentrated selection); random: noise
    trained = {f"s{i}": np.where(lab < 2, 1.0, 0.0) + 0.01 * rng.random((n_layers, width))
               for i in range(3)}
    randoms = {s: {f"s{i}": rng.random((n_layers, width)) for i in range(3)} for s in (0, 1, 2)}
    labels = {"trained": lab, "random": {s: np.stack([rng.permutation(lab[0])
                                                      for _ in range(n_layers)])
                                         for s in (0, 1, 2)}}
    fracs = [0.05, 0.125, 0.25, 0.5]
    sweep = auc.fraction_sweep(labels, trained, randoms, k, fracs, n_draws=100)
    d = auc.auc_vs_fraction(sweep)
    assert d["fracs"] == fracs and d["n_selected"] == [6, 16, 32, 64] and d["seeds"] == [0, 1, 2]
    for c in list(d["curves"].values()) + list(d["z"].values()):
        assert len(c["mean"]) == len(fracs)
        assert c["std"] is None or len(c["std"]) == len(fracs)
    tt, chance = d["curves"]["trained clusters x trained neurons"], d["curves"][auc.CHANCE]
    assert (np.diff(chance["mean"]) < 0).all()    # chance falls as the selection grows
    assert all(t > c + 2 * sd for t, c, sd in zip(tt["mean"], chance["mean"], chance["std"])
               if t is not None)
    assert d["curves"]["random clusters x random neurons"]["band"] == "sd over 3 seeds"
    assert d["curves"][auc.BEST]["std"] is None
    assert "12.5%" in auc.format_auc_vs_fraction(d)
    h = auc.fraction_headline(d)
    assert h["fracs"] == fracs and len(h["z"]["trained clusters x trained neurons"]) == 4
    json.dumps(h)
    json.dumps(d)
    assert len(auc.plot_auc_vs_fraction(d, mark=0.125).axes) == 2
