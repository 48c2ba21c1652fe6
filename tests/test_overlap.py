import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from modsep_utils.overlap import (chance_matrix, offdiag, overlap_by_layer, overlap_matrix,
                                  pattern_correlation, plot_overlaps, plot_sorted_overlaps)


def _masks():
    a = np.zeros((2, 5), bool)
    a[0, :4] = True            # |A| = 4
    b = np.zeros((2, 5), bool)
    b[0, 2:5] = True           # |B| = 3, A∩B = {2, 3}
    b[1, 0] = True             # |B| = 4
    return a, b


def test_overlap_is_asymmetric_with_unit_diagonal():
    a, b = _masks()
    m = overlap_matrix([a, torch.from_numpy(b)])  # torch and numpy mix
    assert m.shape == (2, 2)
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(2 / 4)    # |A∩B| / |A|
    assert m[1, 0] == pytest.approx(2 / 4)    # |A∩B| / |B|, |B| = 4 too
    c = np.zeros((2, 5), bool)
    c[0, 2] = True             # C ⊂ A: all of C is in A, a quarter of A in C
    m = overlap_matrix({"a": a, "c": c})
    assert m[1, 0] == 1.0 and m[0, 1] == pytest.approx(0.25)


def test_empty_selection_gives_nan_row_not_zero():
    a, _ = _masks()
    m = overlap_matrix([a, np.zeros_like(a)])
    assert np.isnan(m[1]).all()
    assert m[0, 1] == 0.0


def test_shape_mismatch_and_non_bool_masks_rejected():
    a, _ = _masks()
    with pytest.raises(ValueError, match="one shape"):
        overlap_matrix([a, a[:, :4]])
    with pytest.raises(ValueError, match="bool mask"):
        overlap_matrix([a, np.random.default_rng(0).random(a.shape)])


def test_chance_matches_monte_carlo():
    rng = np.random.default_rng(0)
    total, sizes = 400, (40, 100, 10)
    masks = []
    for s in sizes:
        m = np.zeros(total, bool)
        m[rng.choice(total, s, replace=False)] = True
        masks.append(m)
    chance = chance_matrix(masks)
    np.testing.assert_allclose(chance[0], np.asarray(sizes) / total)
    draws = []
    for _ in range(2000):
        rand = []
        for s in sizes:
            m = np.zeros(total, bool)
            m[rng.choice(total, s, replace=False)] = True
            rand.append(m)
        draws.append(offdiag(overlap_matrix(rand)))
    mc = np.mean(draws, axis=0)
    np.testing.assert_allclose(mc, offdiag(chance), atol=0.01)


def test_overlap_by_layer():
    a, b = _masks()
    per = overlap_by_layer(a, b)
    assert per[0] == pytest.approx(2 / 4)
    assert np.isnan(per[1])                    # A empty in layer 1
    np.testing.assert_allclose(overlap_by_layer(b, a), [2 / 3, 0.0])
    with pytest.raises(ValueError):
        overlap_by_layer(a, b[:1])


def test_offdiag_order_and_pattern_correlation():
    m = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(offdiag(m), [1, 2, 3, 5, 6, 7])
    rng = np.random.default_rng(1)
    base = rng.random((6, 6))
    assert pattern_correlation(base, 0.5 * base + 0.1) == pytest.approx(1.0)
    assert pattern_correlation(base, 1 - base) == pytest.approx(-1.0)
    unrelated = pattern_correlation(base, rng.random((6, 6)))
    assert abs(unrelated) < 0.6
    with pytest.raises(ValueError):
        pattern_correlation(base, base[:5, :5])
    # a constant side has no pattern, even where its float std is not exactly 0
    # (np.full(12, 0.1).std() is 1.4e-17): NaN, not a correlation of rounding noise
    flat = np.full((4, 4), 0.1)
    assert np.full(12, 0.1).std() > 0
    assert np.isnan(pattern_correlation(rng.random((4, 4)), flat))


def test_plots_return_figures():
    rng = np.random.default_rng(2)
    masks = [rng.random((3, 20)) < 0.3 for _ in range(4)]
    t = overlap_matrix(masks)
    r = overlap_matrix([rng.random((3, 20)) < 0.3 for _ in range(4)])
    fig = plot_overlaps(t, r, list("abcd"), chance=(chance_matrix(masks), 0.3))
    assert len(fig.axes) >= 2
    assert "chance" in fig.axes[0].get_title()
    fig2 = plot_sorted_overlaps(t, r)
    assert len(fig2.axes[0].lines) >= 2
    fig3 = plot_sorted_overlaps(t, r, chance=(chance_matrix(masks), chance_matrix(masks)))
    assert len(fig3.axes[0].lines) == len(fig2.axes[0].lines) + 1
    assert "beyond chance" in " ".join(x.get_text() for x in fig3.axes[0].get_legend().get_texts())
    with pytest.raises(ValueError):
        plot_overlaps(t, r, list("abc"))


# -- notebook 04 glue --------------------------------------------------------------------------

import json  # noqa: E402

from modsep_utils import config as mconfig  # noqa: E402
from modsep_utils import overlap  # noqa: E402


def test_order_by_family_groups_related_subsets():
    fam = {"shirt": "tops", "bag": "bags", "coat": "tops", "boot": "shoes", "sandal": "shoes"}
    got = overlap.order_by_family(["shirt", "bag", "boot", "coat", "sandal"], fam.get)
    assert got == ["shirt", "coat", "bag", "boot", "sandal"]


def test_masks_at_uses_each_subsets_fraction():
    scores = {"a": torch.arange(20.0).view(2, 10), "b": -torch.arange(20.0).view(2, 10)}
    m = overlap.masks_at(scores, {"a": 0.1, "b": 0.25})
    assert m["a"].dtype == bool and m["a"].sum() == 2 and m["b"].sum() == 5
    assert m["a"][1, 8:].all()                      # the two highest scores
    per = overlap.masks_at(scores, 0.2, per_layer=True)
    assert per["a"].sum(1).tolist() == [2, 2]       # the same count in every layer
    with pytest.raises(KeyError, match="no fraction"):
        overlap.masks_at(scores, {"a": 0.1})


def test_selection_fractions_vit_from_03_lm_from_overlap_frac(tmp_path, monkeypatch):
    from modsep_utils import pruning
    monkeypatch.setattr(mconfig, "results_dir", lambda cfg: tmp_path)
    monkeypatch.setattr(pruning, "fraction_params", lambda cfg, drop: {"drop": drop})
    cfg = {"experiment": "vit", "profile": "smoke", "drops": [0.5, 0.8], "overlap_frac": 0.01}
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        overlap.selection_fractions(cfg, ["a", "b"])
    fractions = {"a": {"frac": 0.1, "reached": True}, "b": {"frac": 0.2, "reached": False}}
    (tmp_path / "03_fractions_drop50.json").write_text(json.dumps(
        {"params": {"drop": 0.8}, "fractions": fractions}))
    with pytest.raises(ValueError, match="other parameters"):   # computed for another drop
        overlap.selection_fractions(cfg, ["a", "b"])
    (tmp_path / "03_fractions_drop50.json").write_text(json.dumps(
        {"params": {"drop": 0.5}, "fractions": fractions}))
    fr, info = overlap.selection_fractions(cfg, ["b", "a"])
    # b did not reach its target: overlap_frac instead of 03's closest fraction
    assert fr == {"b": 0.01, "a": 0.1} and info["not_reached"] == ["b"] and info["drop"] == 0.5
    assert "where not reached" in info["source"]
    fr, info = overlap.selection_fractions({**cfg, "experiment": "lm"}, ["a", "b"])
    assert fr == {"a": 0.01, "b": 0.01} and info["drop"] is None


def _random_sets(sizes, total, rng):
    out = []
    for s in sizes:
        m = np.zeros(total, bool)
        m[rng.choice(total, s, replace=False)] = True
        out.append(m)
    return out


def test_compare_models_separates_pattern_from_sizes():
    rng = np.random.default_rng(0)
    sizes = [100, 200, 400, 800, 1600, 150, 300, 600] * 2
    t = dict(zip("abcdefghijklmnop", _random_sets(sizes, 4000, rng)))
    r = dict(zip("abcdefghijklmnop", _random_sets(sizes, 4000, rng)))  # independent, same sizes
    res = overlap.compare_models(t, r)
    s = res["summary"]
    # both models' overlaps follow |N_j| / N, so the raw correlation is high ...
    assert s["r_trained_random"] > 0.8
    # ... but beyond chance there is no shared pattern
    assert abs(s["r_excess"]) < 0.3
    assert s["mean_trained"] == pytest.approx(s["chance_trained"], abs=0.02)
    np.testing.assert_allclose(res["chance_trained"], res["chance_random"])


def test_compare_models_finds_a_shared_pattern_and_family_excess():
    rng = np.random.default_rng(1)
    total = 3000
    base = {f: rng.random(total) < 0.15 for f in ("x", "y")}     # a family's shared neurons

    def model(seed):
        g = np.random.default_rng(seed)
        return {f"{f}{i}": base[f] & (g.random(total) < 0.6) | (g.random(total) < 0.03)
                for f in ("x", "y") for i in range(3)}
    t, r = model(2), model(3)
    fams = [n[0] for n in t]
    res = overlap.compare_models(t, r, fams)
    s = res["summary"]
    assert s["r_excess"] > 0.9
    assert s["within_family_trained"] > 2 * s["between_family_trained"]
    assert s["within_family_chance"] == pytest.approx(s["between_family_chance"], rel=0.3)
    json.dumps(s)                                                 # plain values only
    assert "within family" in overlap.format_summary(s)


def test_compare_models_rejects_mismatched_subsets():
    a, b = _masks()
    with pytest.raises(ValueError, match="same subsets"):
        overlap.compare_models({"a": a, "b": b}, {"b": b, "a": a})
    with pytest.raises(ValueError, match="families"):
        overlap.compare_models({"a": a, "b": b}, {"a": a, "b": b}, ["x"])


def test_mean_pairwise_overlap_agrees_with_the_summary_and_catches_a_wrong_one():
    rng = np.random.default_rng(4)
    t = dict(zip("abcde", _random_sets([50, 80, 120, 200, 0], 600, rng)))  # "e" is empty
    r = dict(zip("abcde", _random_sets([50, 80, 120, 200, 0], 600, rng)))
    s = overlap.compare_models(t, r)["summary"]
    assert overlap.agrees(s["mean_trained"], overlap.mean_pairwise_overlap(t))
    assert overlap.agrees(s["mean_random"], overlap.mean_pairwise_overlap(r))
    # a summary that took the diagonal in, or the other model's masks, disagrees
    m = overlap.overlap_matrix(t)
    assert not overlap.agrees(np.nanmean(m), overlap.mean_pairwise_overlap(t))
    assert not overlap.agrees(s["mean_random"], overlap.mean_pairwise_overlap(t))
    # by hand: A = {0..3}, B = {2, 3, 4} + {5}: |A∩B|/|A| = 2/4, |A∩B|/|B| = 2/4
    a, b = _masks()
    assert overlap.mean_pairwise_overlap([a, b]) == pytest.approx(0.5)
    assert np.isnan(overlap.mean_pairwise_overlap([np.zeros(3, bool)] * 2))


def test_agrees_and_distinct():
    assert overlap.agrees(0.1 + 0.2, 0.3) and not overlap.agrees(0.3, 0.31)
    assert overlap.agrees(None, float("nan")) and not overlap.agrees(None, 0.0)
    a, b = _masks()
    assert overlap.distinct([{"x": a, "y": b}, {"x": b, "y": a}])
    assert not overlap.distinct([{"x": a, "y": b}, {"x": a, "y": b}, {"x": b, "y": a}])
    assert overlap.distinct([a[:1], a])                      # other shapes differ


def test_seed_spread_is_over_seeds():
    sp = overlap.seed_spread([0.1, 0.2, 0.6])
    assert sp["n_seeds"] == 3 and sp["mean"] == pytest.approx(0.3)
    assert sp["std"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))  # a sample of seeds
    assert (sp["min"], sp["max"]) == (pytest.approx(0.1), pytest.approx(0.6))
    # arrays: the spread per position, over the seeds (axis 0), never over the layers
    sp = overlap.seed_spread([[1.0, 0.5], [3.0, 0.5], [None, 0.5]])
    assert sp["mean"] == [pytest.approx(2.0), pytest.approx(0.5)]
    assert sp["std"] == [pytest.approx(np.sqrt(2)), 0.0]
    assert sp["by_seed"][2] == [None, 0.5]
    one = overlap.seed_spread([0.4])
    assert one["mean"] == 0.4 and one["std"] is None           # no spread from one seed
    assert overlap.seed_spread([None, None])["mean"] is None
    json.dumps(sp)


def test_compare_seeds_averages_random_numbers_over_seeds():
    rng = np.random.default_rng(5)
    sizes = [100, 200, 300, 400]
    t = dict(zip("abcd", _random_sets(sizes, 2000, rng)))
    randoms = {s: dict(zip("abcd", _random_sets(sizes, 2000, np.random.default_rng(10 + s))))
               for s in (0, 1, 2)}
    res = overlap.compare_seeds(t, randoms, ["x", "x", "y", "y"])
    s = res["summary"]
    per_seed = [overlap.compare_models(t, randoms[k], ["x", "x", "y", "y"])["summary"]
                for k in (0, 1, 2)]
    for key in ("mean_random", "r_excess", "within_family_random"):
        assert s[key] == pytest.approx(np.mean([p[key] for p in per_seed]))
        assert s["spread"][key]["std"] == pytest.approx(np.std([p[key] for p in per_seed], ddof=1))
    assert s["mean_trained"] == per_seed[0]["mean_trained"]      # not a random-model number
    assert "mean_trained" not in s["spread"] and s["random_seeds"] == [0, 1, 2]
    np.testing.assert_array_equal(res["random"], res["random_by_seed"][0])
    assert overlap.agrees(s["mean_random"], np.mean([overlap.mean_pairwise_overlap(m)
                                                     for m in randoms.values()]))
    text = overlap.format_summary(s)
    assert "(3 seeds)" in text and "seeds [0, 1, 2]" in text
    assert "all seeds" in overlap.panel_titles(res)[1]
    json.dumps(s)
    with pytest.raises(ValueError, match="at least one"):
        overlap.compare_seeds(t, {})


def test_random_kind():
    assert overlap.random_kind(3, [3, 1]) == "random"
    assert overlap.random_kind(1, [3, 1]) == "random seed 1"
    with pytest.raises(ValueError, match="not one of"):
        overlap.random_kind(2, [3, 1])


def test_seed_scores_one_random_model_per_seed(monkeypatch):
    from modsep_utils import activations
    calls = []

    def fake_all_stats(cfg, forget, random_init=False, model_seed=None):
        calls.append((random_init, model_seed))
        return "stats", "retain"
    monkeypatch.setattr(activations, "all_stats", fake_all_stats)
    import modsep_utils.scoring as scoring
    monkeypatch.setattr(scoring, "all_scores",
                        lambda stats, retain, eps: {"a": len(calls)})
    cfg = {"random_seeds": [7, 8], "eps": 1e-3}
    trained, randoms = overlap.seed_scores(cfg, ["a"])
    assert calls == [(False, None), (True, 7), (True, 8)] and list(randoms) == [7, 8]
    calls.clear()
    assert set(overlap.model_scores(cfg, ["a"])) == {"trained", "random"}
    assert calls == [(False, None), (True, 7)]


def test_short_labels():
    assert overlap.short_labels(["fmnist:Bag", "text:c"], ["text:c"]) == ["Bag", "c (!)"]
