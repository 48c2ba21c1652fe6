import numpy as np
import pytest
import torch

import modsep_utils.io as mio
from modsep_utils import moe


def _clustered_weights(n=64, d=8, k=8, seed=0, noise=0.05):
    """[n, d] rows around k random directions, n // k each (a known balanced structure)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    rows = np.repeat(centres, n // k, axis=0) + noise * rng.standard_normal((n, d))
    return rows * rng.uniform(0.5, 3.0, size=(n, 1))  # scale must not matter: rows are normalised


def test_every_cluster_exactly_balanced():
    w = np.random.default_rng(0).standard_normal((64, 8))
    labels = moe.cluster_layer(w, 8, n_init=2)
    assert labels.dtype == np.int64 and labels.shape == (64,)
    np.testing.assert_array_equal(np.bincount(labels, minlength=8), np.full(8, 8))


def test_better_than_random_balanced_assignment_and_finds_structure():
    w = _clustered_weights()
    labels = moe.cluster_layer(torch.tensor(w, dtype=torch.float32), 8, n_init=3)
    rand = [moe.inertia(w, moe.random_balanced_labels(64, 8, seed=s)) for s in range(5)]
    assert moe.inertia(w, labels) < 0.2 * min(rand)
    truth = np.repeat(np.arange(8), 8)
    # same partition up to renaming: each true group maps to one found cluster
    for g in range(8):
        assert len(set(labels[truth == g].tolist())) == 1


def test_inertia_matches_direct_formula():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 4))
    lab = moe.random_balanced_labels(12, 3, seed=1)
    x = w / np.linalg.norm(w, axis=1, keepdims=True)
    direct = sum(((x[lab == c] - x[lab == c].mean(0)) ** 2).sum() for c in range(3))
    assert moe.inertia(w, lab) == pytest.approx(direct)
    assert np.bincount(lab).tolist() == [4, 4, 4]


def test_bad_k_names_nearby_valid_k():
    w = np.random.default_rng(0).standard_normal((1536, 4))
    with pytest.raises(ValueError, match=r"k=14 does not divide.*k=12 .*k=16 "):
        moe.cluster_layer(w, 14)
    with pytest.raises(ValueError, match="k=7 does not divide"):
        moe.random_balanced_labels(64, 7)


def test_choose_k():
    assert moe.choose_k(3072, 32) == 96       # ViT-Base, paper
    assert moe.choose_k(14336, 112) == 128    # Mistral-7B, paper
    assert moe.choose_k(512, 32) == 16        # embedded ViT
    k = moe.choose_k(1536, 112)               # SmolLM2: 128 and 96 tie, larger k wins
    assert 1536 % k == 0 and k == 16
    assert moe.choose_k(1536, 100) == 16      # 96 is nearer 100 than 128


def test_cache_reused_and_not_reused_for_other_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(mio, "DATA", tmp_path)
    w = [_clustered_weights(seed=s) for s in range(2)]
    first = moe.cluster_model(w, 8, n_init=1, progress=False)
    assert first.labels.shape == (2, 64) and not first.from_cache.any()
    assert first.seconds.shape == (2,) and (first.seconds > 0).all()
    files = sorted((tmp_path / "cache" / "moe").glob("*.npz"))
    assert len(files) == 2

    calls = []
    real = moe.cluster_layer
    monkeypatch.setattr(moe, "cluster_layer", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    again = moe.cluster_model(w, 8, n_init=1, progress=False)
    assert again.from_cache.all() and not calls
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_allclose(again.seconds, first.seconds)

    changed = [w[0], w[1].copy()]
    changed[1][0, 0] += 1e-9                         # one weight differs
    other = moe.cluster_model(changed, 8, n_init=1, progress=False)
    assert other.from_cache.tolist() == [True, False] and len(calls) == 1
    moe.cluster_model(w, 8, seed=1, n_init=1, progress=False)                # other seed
    moe.cluster_model(w, 8, n_init=1, cache_key_parts=["x"], progress=False)  # other parts
    assert len(calls) == 5
    assert not list((tmp_path / "cache" / "moe").glob(".*.tmp"))  # atomic: no leftovers


def test_cluster_model_rejects_mixed_widths():
    with pytest.raises(ValueError, match="neuron count"):
        moe.cluster_model([np.ones((8, 2)), np.ones((16, 2))], 4, cache=False, progress=False)


def test_cache_file_from_other_inputs_never_reused_even_under_same_name(tmp_path, monkeypatch):
    monkeypatch.setattr(mio, "DATA", tmp_path)
    monkeypatch.setattr(mio, "content_key", lambda *parts: "collide")  # every key the same
    a, b = _clustered_weights(seed=0), _clustered_weights(seed=5)
    moe.cluster_model([a], 8, n_init=1, progress=False)
    assert len(list((tmp_path / "cache" / "moe").glob("*.npz"))) == 1
    res = moe.cluster_model([b], 8, n_init=1, progress=False)
    assert not res.from_cache.any()                  # same file name, other weights: recomputed
    np.testing.assert_array_equal(res.labels[0], moe.cluster_layer(b, 8, n_init=1))


# -- notebook 05 glue --------------------------------------------------------------------------

from tiny import tiny_vit  # noqa: E402


def test_cluster_sites_on_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setattr(mio, "DATA", tmp_path)
    model = tiny_vit(layers=3)                     # 3 layers x 24 neurons x 16
    c = moe.cluster_sites(model, cluster_size=6, n_init=2, progress=False)
    assert c.k == 4 and c.labels.shape == (3, 24)
    assert moe.balanced(c)
    assert c.meta["random_inertia"].shape == (3,) and c.meta["cluster_size_wanted"] == 6
    s = moe.summary({"trained": c})
    assert s["trained"]["cluster_size"] == 6 and s["trained"]["balanced"]
    assert all(r < 1 for r in s["trained"]["inertia_ratio"])  # tighter than random labels
    assert moe.tighter_than_random(s) == {"trained": True}
    assert moe.headline(s)["trained"]["k"] == 4
    assert "k = 4 clusters of 6" in moe.format_summary(s)
    again = moe.cluster_sites(model, cluster_size=6, n_init=2, progress=False)
    assert again.from_cache.all()
    np.testing.assert_array_equal(again.labels, c.labels)
    moe.plot_quality(s)


def test_model_clusterings_are_cache_hits_the_second_time(tmp_path, monkeypatch):
    """Notebooks 06 and 07 call model_clusterings after 05: every layer from the cache."""
    from modsep_utils import activations
    monkeypatch.setattr(mio, "DATA", tmp_path)
    loads = []

    def fake_get_model(name, random_init=False, seed=0, dtype="float32"):
        loads.append((random_init, seed) if random_init else random_init)
        model = tiny_vit(layers=2)
        if random_init:                            # another, fixed set of weights
            torch.manual_seed(seed + 1)
            for site_w in [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]:
                torch.nn.init.normal_(site_w)
        return model, None
    monkeypatch.setattr(activations, "get_model", fake_get_model)
    cfg = {"model": "tiny", "seed": 0, "dtype": "float32", "moe_cluster_size": 8,
           "moe_n_init": 1, "random_seeds": [4, 5, 6], "moe_weight": "up"}
    first = moe.model_clusterings(cfg, progress=False)
    assert list(first) == ["trained", "random", "random seed 5", "random seed 6"]
    assert loads == [False, (True, 4), (True, 5), (True, 6)]   # one random model per seed
    assert first["trained"].k == 3 and not first["trained"].from_cache.any()
    assert not (first["trained"].labels == first["random"].labels).all()
    assert [c.meta["model_seed"] for c in first.values()] == [None, 4, 5, 6]
    by_seed = moe.labels_by_seed(first)
    assert list(by_seed["random"]) == [4, 5, 6]
    np.testing.assert_array_equal(by_seed["random"][5], first["random seed 5"].labels)
    from modsep_utils.overlap import distinct
    assert distinct(by_seed["random"].values())
    s = moe.summary(first)
    spread = moe.random_spread(s)
    assert spread["seeds"] == [4, 5, 6] and spread["inertia_ratio_mean"]["n_seeds"] == 3
    assert len(spread["inertia_ratio"]["mean"]) == 2                 # per layer, over seeds
    assert moe.headline(s)["random_over_seeds"]["seeds"] == [4, 5, 6]
    assert "over seeds [4, 5, 6]" in moe.format_summary(s)
    moe.plot_quality(s)
    second = moe.model_clusterings(cfg, progress=False)
    assert all(c.from_cache.all() for c in second.values())
    for kind in first:
        np.testing.assert_array_equal(second[kind].labels, first[kind].labels)


def test_check_labels_refuses_to_broadcast():
    lab = np.stack([moe.random_balanced_labels(12, 3, seed=s) for s in range(2)])
    assert moe.check_labels(lab, 2, 12, 3).shape == (2, 12)
    with pytest.raises(ValueError, match=r"\(12,\).*\[2 layers, 12 neurons\]"):
        moe.check_labels(lab[0], 2, 12)
    with pytest.raises(ValueError, match="shape"):
        moe.check_labels(lab[:, :6], 2, 12)
    bad = lab.copy()
    bad[0] = np.repeat([0, 0, 1], 4)                # clusters of 8, 4 and 0 neurons
    with pytest.raises(ValueError, match="not balanced"):
        moe.check_labels(bad, 2, 12, 3)
    with pytest.raises(ValueError, match="k=5 does not divide"):
        moe.check_labels(lab, 2, 12, 5)


def _summary_entry(ratio, seed=None):
    return {"random_init": seed is not None, "model_seed": seed, "inertia_ratio": ratio}


def test_random_spread_and_trained_against_random_models():
    s = {"trained": _summary_entry([0.7, 0.8]), "random": _summary_entry([0.95, 0.96], 0),
         "random seed 1": _summary_entry([0.97, 0.94], 1),
         "random seed 2": _summary_entry([0.96, 0.95], 2)}
    sp = moe.random_spread(s)
    assert sp["seeds"] == [0, 1, 2]
    assert sp["inertia_ratio"]["mean"] == pytest.approx([0.96, 0.95])
    assert sp["inertia_ratio_mean"]["mean"] == pytest.approx(0.955)
    assert sp["inertia_ratio_mean"]["std"] == pytest.approx(np.std([0.955, 0.955, 0.955], ddof=1))
    assert moe.tighter_than_random_models(s)
    s["random seed 2"]["inertia_ratio"] = [0.96, 0.79]   # one seed, one layer tighter: False
    assert not moe.tighter_than_random_models(s)
    assert moe.random_spread({"trained": s["trained"]}) == {}
    with pytest.raises(ValueError, match="random-init"):
        moe.tighter_than_random_models({"trained": s["trained"]})


# -- moe_weight: which rows of a gated MLP are clustered (issue 12) ---------------------------

def _planted_gate_model():
    """A tiny Llama whose gate rows sit in 4 planted groups of 6 (per layer) while its up rows
    are unstructured: what decides firing is clustered, what scales the output is not."""
    from tiny import tiny_text_models
    model = tiny_text_models()["llama"]
    gen = torch.Generator().manual_seed(0)
    for layer in model.model.layers:
        gate = layer.mlp.gate_proj.weight  # [24 neurons, 16]
        centres = torch.randn(4, gate.shape[1], generator=gen)
        with torch.no_grad():
            gate.copy_(centres.repeat_interleave(6, 0)
                       + 0.05 * torch.randn(gate.shape, generator=gen))
            layer.mlp.up_proj.weight.copy_(torch.randn(layer.mlp.up_proj.weight.shape,
                                                       generator=gen))
    return model


def _pure(labels, truth):
    return all(len(set(labels[truth == g].tolist())) == 1 for g in np.unique(truth))


def test_gate_rows_recover_planted_clusters_and_up_rows_do_not(tmp_path, monkeypatch):
    monkeypatch.setattr(mio, "DATA", tmp_path)
    model = _planted_gate_model()
    truth = np.repeat(np.arange(4), 6)
    gate = moe.cluster_sites(model, 6, seed=0, n_init=3, weight="gate", progress=False)
    up = moe.cluster_sites(model, 6, seed=0, n_init=3, weight="up", progress=False)
    assert gate.meta["weight"] == "gate" and up.meta["weight"] == "up"
    assert all(_pure(lab, truth) for lab in gate.labels)
    assert not any(_pure(lab, truth) for lab in up.labels)
    both = moe.cluster_sites(model, 6, seed=0, n_init=3, weight="gate_up", progress=False)
    assert both.meta["d_model"] == 2 * model.config.hidden_size
    # cached per choice: the same choice again is read back, another one is computed
    again = moe.cluster_sites(model, 6, seed=0, n_init=3, weight="gate", progress=False)
    assert again.from_cache.all() and np.array_equal(again.labels, gate.labels)
    assert not up.from_cache.any() and not both.from_cache.any()


def test_moe_weight_is_ignored_without_a_gate_and_checked(tmp_path, monkeypatch):
    from modsep_utils.neurons import neuron_sites
    from tiny import tiny_vit
    monkeypatch.setattr(mio, "DATA", tmp_path)
    vit = tiny_vit()
    a = moe.cluster_sites(vit, 6, n_init=1, weight="up", progress=False)
    b = moe.cluster_sites(vit, 6, n_init=1, weight="gate", progress=False)
    assert b.from_cache.all() and np.array_equal(a.labels, b.labels)  # the same rows
    assert b.meta["weight"] == "up"  # what was actually clustered
    with pytest.raises(ValueError, match="moe_weight"):
        neuron_sites(vit)[0].rows("down")


def test_weight_comparison_reads_both_choices():
    from modsep_utils import auc
    layers = 3

    def summary(shift):
        curve = lambda v: {"mean": [v] * layers, "overall": v, "overall_std": 0.01}  # noqa
        names = (auc.TRAINED, auc.RANDOM_RANDOM, auc.RANDOM_TRAINED)
        return {"exact": {**{n: curve(0.6 + shift) for n in names}, auc.CHANCE: curve(0.6)},
                "z": {n: curve(10 * shift) for n in names}}
    quality = {"trained": {"inertia_ratio_mean": 0.9},
               "random_over_seeds": {"inertia_ratio_mean": {"mean": 0.99}}}
    d = auc.weight_comparison({"up": summary(0.0), "gate": summary(0.1)},
                              {"up": quality, "gate": quality})
    assert d["gate"]["z_overall"][auc.TRAINED] == pytest.approx(1.0)
    assert d["up"]["auc_overall"][auc.CHANCE] == 0.6 and d["up"]["inertia_ratio_random"] == 0.99
    assert "gate" in auc.format_weight_comparison(d)
    assert auc.weight_headline(d)["gate"]["z_overall"] == d["gate"]["z_overall"]
    assert "auc_by_layer" not in auc.weight_headline(d)["up"]


# -- the fast method (issue 9, section 3) ------------------------------------------------------

def _ref_or_skip():
    return pytest.importorskip("k_means_constrained")


@pytest.mark.parametrize("n,d,k", [(96, 8, 12), (256, 16, 8), (60, 5, 60)])
def test_fast_clusters_are_exactly_balanced(n, d, k):
    w = np.random.default_rng(n).standard_normal((n, d))
    labels = moe.cluster_layer(w, k, n_init=2, method="fast")
    assert labels.dtype == np.int64 and labels.shape == (n,)
    np.testing.assert_array_equal(np.bincount(labels, minlength=k), np.full(k, n // k))


def test_fast_is_deterministic_under_its_seed():
    w = np.random.default_rng(1).standard_normal((128, 12))
    a = moe.cluster_layer(w, 8, seed=3, n_init=3)
    np.testing.assert_array_equal(a, moe.cluster_layer(w, 8, seed=3, n_init=3))
    others = [moe.cluster_layer(w, 8, seed=s, n_init=1) for s in range(4)]
    assert any(not np.array_equal(others[0], o) for o in others[1:])  # the seed is used


@pytest.mark.parametrize("seed", range(4))
def test_fast_wcss_within_one_percent_of_the_reference(seed):
    _ref_or_skip()
    rng = np.random.default_rng(seed)
    # some structure (as trained weights have) plus noise, and plain noise
    for w in (_clustered_weights(n=192, d=16, k=12, seed=seed, noise=0.6),
              rng.standard_normal((192, 16))):
        ref = moe.inertia(w, moe.cluster_layer(w, 12, seed=0, n_init=10, method="reference"))
        fast = moe.inertia(w, moe.cluster_layer(w, 12, seed=0, n_init=10, method="fast"))
        assert fast <= 1.01 * ref, (seed, fast / ref)


def test_fast_finds_planted_clusters():
    w = _clustered_weights(n=96, d=12, k=6, seed=2)
    labels = moe.cluster_layer(w, 6, n_init=3, method="fast")
    truth = np.repeat(np.arange(6), 16)
    assert all(len(set(labels[truth == g].tolist())) == 1 for g in range(6))


def test_fast_rejects_k_not_dividing_the_rows():
    w = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(ValueError, match=r"k=7 does not divide 100 .*k=5 .*k=10 "):
        moe.cluster_layer(w, 7, method="fast")
    with pytest.raises(ValueError, match="k=7 does not divide"):
        moe.balanced_kmeans(moe.normalise_rows(w), 7)
    with pytest.raises(ValueError, match="moe_method"):
        moe.cluster_layer(w, 10, method="kmeans")


def test_cuda_less_machine_uses_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert moe.pick_device().type == "cpu"
    w = np.random.default_rng(0).standard_normal((64, 8))
    labels, info = moe.balanced_kmeans(moe.normalise_rows(w), 8, n_init=2, return_info=True)
    assert info["device"] == "cpu" and np.bincount(labels).tolist() == [8] * 8


@pytest.mark.parametrize("k,size,cand", [(64, 5, 6), (40, 3, 4), (32, 4, 0), (8, 6, None)])
def test_balanced_assignment_is_the_exact_optimum(k, size, cand):
    """Sparse candidates + the negative-cycle certificate give the full problem's optimum,
    also when the candidates alone are infeasible or suboptimal (strong column offsets)."""
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(k + size)
    for trial in range(6):
        n = k * size
        cost = rng.random((n, k)) + np.linspace(0, 1, k)[None] * rng.random((n, 1)) * trial
        labels = moe.balanced_assignment(cost, size, candidates=cand)
        assert np.bincount(labels, minlength=k).tolist() == [size] * k
        # the linear assignment on the centres replicated `size` times: the same optimum
        rows, cols = linear_sum_assignment(np.repeat(cost, size, axis=1))
        best = cost[rows, cols // size].sum()
        assert cost[np.arange(n), labels].sum() == pytest.approx(best, abs=n / moe.COST_SCALE)


def test_method_and_its_version_are_in_the_cache_key(tmp_path, monkeypatch):
    _ref_or_skip()
    monkeypatch.setattr(mio, "DATA", tmp_path)
    w = [_clustered_weights(seed=1)]
    fast = moe.cluster_model(w, 8, n_init=1, progress=False)
    assert fast.meta["method"] == "fast" and fast.meta["method_version"] == moe.FAST_VERSION
    ref = moe.cluster_model(w, 8, n_init=1, method="reference", progress=False)
    assert not ref.from_cache.any()                   # another method: not the fast labels
    assert ref.meta["method_version"].startswith("k-means-constrained ")
    assert moe.cluster_model(w, 8, n_init=1, progress=False).from_cache.all()
    monkeypatch.setattr(moe, "FAST_VERSION", "balanced-lloyd-test")
    assert not moe.cluster_model(w, 8, n_init=1, progress=False).from_cache.any()
    assert len(list((tmp_path / "cache" / "moe").glob("*.npz"))) == 3


def test_model_clusterings_follow_moe_method(tmp_path, monkeypatch):
    from modsep_utils import activations
    monkeypatch.setattr(mio, "DATA", tmp_path)
    monkeypatch.setattr(activations, "get_model", lambda *a, **kw: (tiny_vit(layers=1), None))
    cfg = {"model": "tiny", "seed": 0, "dtype": "float32", "moe_cluster_size": 8,
           "moe_n_init": 1, "random_seeds": [0], "moe_weight": "up"}
    assert moe.model_clusterings(cfg, progress=False)["trained"].meta["method"] == "fast"
    _ref_or_skip()
    got = moe.model_clusterings({**cfg, "moe_method": "reference"}, progress=False)
    assert got["trained"].meta["method"] == "reference"
    assert moe.summary(got)["trained"]["method"] == "reference"
