import math

import numpy as np
import pytest
import torch

from modsep_utils.neurons import NeuronStats, collect_stats, neuron_sites
from modsep_utils.pruning import (accuracy, cross_evaluate, find_fraction, pruned_accuracy,
                                  summarize, text_accuracy)
from modsep_utils.scoring import layer_distribution, score, top_fraction
from tiny import ImageSubset, TextSubset, tiny_text_models, tiny_vit


def _stats(mean_abs, count=10.0):
    m = torch.as_tensor(mean_abs, dtype=torch.float64)
    s = NeuronStats.zeros(*m.shape)
    s.count += count
    s.sum_abs += m * count
    return s


def test_score_is_forget_over_eps_plus_retain():
    forget = _stats([[1.0, 0.0, 2.0]])
    retain = _stats([[0.5, 0.0, 4.0]])
    s = score(forget, retain, eps=1e-3)
    torch.testing.assert_close(s, torch.tensor([[1 / 0.501, 0.0, 2 / 4.001]], dtype=torch.float64))
    with pytest.raises(ValueError, match="different models"):
        score(forget, _stats([[1.0, 2.0]]))


def test_top_fraction_global_and_per_layer():
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0], [8.0, 7.0, 6.0, 0.0]])
    m = top_fraction(scores, 0.375)  # 3 of 8, globally
    assert m.tolist() == [[True, False, False, False], [True, True, False, False]]
    m = top_fraction(scores, 0.5, per_layer=True)  # 2 of every 4
    assert m.tolist() == [[True, False, False, True], [True, True, False, False]]
    assert top_fraction(scores, 0.0).sum() == 0 and top_fraction(scores, 1.0).all()
    torch.testing.assert_close(layer_distribution(top_fraction(scores, 0.375)),
                               torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    with pytest.raises(ValueError):
        top_fraction(scores, 1.5)


def test_top_fraction_ties_are_deterministic():
    scores = torch.ones(3, 10)
    a, b = top_fraction(scores, 0.2), top_fraction(scores.clone(), 0.2)
    assert torch.equal(a, b) and a.sum() == 6


GRID = [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]


def test_search_reaches_target_within_tolerance():
    # a synthetic monotone accuracy curve: acc = base * (1 - frac) ** 4
    scores = torch.rand(4, 250, generator=torch.Generator().manual_seed(0))
    base = 0.9
    calls = []

    def evaluate(mask):
        calls.append(int(mask.sum()))
        return base * (1 - mask.float().mean().item()) ** 4

    res = find_fraction(evaluate, scores, base, drop=0.5, grid=GRID, tol=0.02)
    assert res["reached"]
    assert res["target"] - 0.02 <= res["accuracy"] <= res["target"]
    assert math.isclose(res["target"], 0.45)
    assert len(calls) == len(set(calls))  # no k evaluated twice
    assert 0.08 < res["frac"] < 0.32  # inside the first bracket that crosses the target
    assert [p["k"] for p in res["history"]] == calls  # every measured point kept, in order


def test_search_brackets_a_non_monotone_curve():
    # accuracy dips below the target near 10% and climbs back above it by 100% (as the
    # embedded Coat class did): plain bisection on [0, 1] would start at 1.0, see accuracy
    # above the target and wrongly report "not reached"
    scores = torch.rand(1, 1000, generator=torch.Generator().manual_seed(1))

    def evaluate(mask):
        f = mask.float().mean().item()
        return 0.8 - 3 * f if f < 0.2 else 0.2 + 0.7 * f

    res = find_fraction(evaluate, scores, 0.8, drop=0.5, grid=GRID, tol=0.02)
    assert res["reached"] and 0.38 <= res["accuracy"] <= 0.40
    assert 0.08 < res["frac"] < 0.16
    assert max(p["frac"] for p in res["history"]) <= 0.16  # never needed the far end


def test_search_names_a_step_of_one_neuron_over_the_window():
    # one neuron takes the accuracy from above the window to below it (Lao in the embedded
    # ViT: 0.574 -> 0.412 against a window of [0.478, 0.498]): not reached, but crossed
    scores = torch.rand(1, 1000, generator=torch.Generator().manual_seed(2))

    def evaluate(mask):
        return 0.8 if int(mask.sum()) < 137 else 0.3

    res = find_fraction(evaluate, scores, 0.8, drop=0.5, grid=GRID, tol=0.02)
    assert not res["reached"] and res["crossed"]
    assert "one neuron more (136 -> 137) steps the accuracy from 0.800 to 0.300" in res["note"]
    smooth = find_fraction(lambda m: 0.8 * (1 - m.float().mean().item()), scores, 0.8,
                           drop=0.5, grid=GRID)
    assert smooth["reached"] and smooth["crossed"]


def test_search_reports_unreachable_target():
    scores = torch.rand(2, 50)
    res = find_fraction(lambda m: 0.8, scores, 0.8, drop=0.5, grid=GRID)
    assert not res["reached"] and not res["crossed"] and "above the target" in res["note"]
    assert res["accuracy"] == 0.8  # what was measured, not a placeholder
    with pytest.raises(ValueError, match="grid"):
        find_fraction(lambda m: 0.8, scores, 0.8, drop=0.5, grid=[0.1, 0.5])


def test_drop_labels_are_exact():
    from modsep_utils.pruning import drop_label, drop_tag
    assert drop_label(0.125) == "12.5%" and drop_tag(0.125) == "drop12.5"
    assert drop_label(0.29) == "29%" and drop_tag(0.29) == "drop29"
    assert drop_label(0.5) == "50%" and drop_tag(0.2) == "drop20"


def test_standard_errors_by_hand():
    from modsep_utils.pruning import bootstrap_mean, measurement, paired, ratio_se
    c, t = np.array([3, 5, 2, 6]), np.array([8, 8, 8, 8])
    p = 16 / 32
    want = math.sqrt(4 / 3 * sum((ci - p * 8) ** 2 for ci in c)) / 32
    assert ratio_se(c, t) == pytest.approx(want)
    m = measurement(c, t)
    assert m["accuracy"] == 0.5 and m["se"] == pytest.approx(want) and m["n"] == 32
    # paired: the same items pruned lose exactly one hit each -> difference -1/8, SE 0
    pr = measurement(c - 1, t)
    d = paired(pr, m)
    assert d["diff"] == pytest.approx(-4 / 32) and d["diff_se"] == pytest.approx(0.0)
    assert d["ratio"] == pytest.approx(12 / 16)
    assert d["diff_se"] < min(pr["se"], m["se"])
    with pytest.raises(ValueError, match="same items"):
        paired(measurement(c[:3], t[:3]), m)
    b = bootstrap_mean([0.1, 0.2, 0.3, 0.4], n_boot=500)
    assert b["mean"] == pytest.approx(0.25) and 0.1 <= b["lo"] < 0.25 < b["hi"] <= 0.4
    assert bootstrap_mean([np.nan])["mean"] is None


def test_cross_eval_matrix_on_a_trained_tiny_model():
    model = tiny_text_models()["llama"]
    # two "domains" the model learns in a few steps: counting up from low or high ids
    a = TextSubset("low", (torch.arange(12) % 20 + 1).repeat(6, 1))
    b = TextSubset("high", (torch.arange(12) % 20 + 40).repeat(6, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.cat([a.tokens, b.tokens])
    for _ in range(25):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    base = {s.name: accuracy(model, s) for s in (a, b)}
    sites = neuron_sites(model)
    full = torch.ones(len(sites), sites[0].n_neurons, dtype=torch.bool)
    none = torch.zeros_like(full)
    assert pruned_accuracy(model, none, a) == base["low"]
    masks = {"low": full, "high": none}
    subsets = {"low": a, "high": b}
    calls = []

    def accuracy_of(name, mask):
        calls.append((name, mask is None))
        s = subsets[name]
        return accuracy(model, s) if mask is None else pruned_accuracy(model, mask, s)

    m = cross_evaluate(accuracy_of, masks, ["low", "high"], progress=False)
    assert m["forget"] == ["low", "high"] and m["eval"] == ["low", "high"]
    ratio = np.array(m["ratio"])
    assert ratio[0, 1] == 1.0 and ratio[1, 1] == 1.0  # nothing pruned: unchanged
    assert np.isfinite(ratio).all()
    assert min(base.values()) > 0.5
    assert ratio[1, 0] == pytest.approx(pruned_accuracy(model, full, b) / base["high"])
    assert m["base"] == [base["low"], base["high"]]
    assert len(calls) == 2 + 4  # each baseline once, then every cell once


def test_text_accuracy_counts_next_token_hits():
    class Echo(torch.nn.Module):
        """Predicts that the next token equals the current one."""
        def forward(self, input_ids, attention_mask):
            return type("O", (), {"logits": torch.nn.functional.one_hot(input_ids, 8).float()})

        def parameters(self):
            yield torch.zeros(1)

    toks = torch.tensor([[1, 1, 2, 2], [3, 3, 3, 3]])
    # hits: row0 (1->1 yes, 1->2 no, 2->2 yes), row1 3 of 3 -> 5 of 6
    assert text_accuracy(Echo(), TextSubset("t", toks)) == pytest.approx(5 / 6)


def test_image_accuracy_on_tiny_vit():
    model = tiny_vit(num_labels=3)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        pred = model(pixel_values=x).logits.argmax(-1)
    assert accuracy(model, ImageSubset("i", x, pred)) == 1.0
    assert accuracy(model, ImageSubset("i", x, (pred + 1) % 3)) == 0.0


def test_summarize_headline_over_reached_columns_only():
    fractions = {"a": {"frac": 0.1, "reached": True}, "b": {"frac": 0.3, "reached": True},
                 "c": {"frac": 1.0, "reached": False}}
    matrix = {"forget": ["a", "b", "c"], "eval": ["a", "b", "c", "quiz"],
              "ratio": [[0.5, 0.9, 0.1], [0.8, 0.5, 0.2], [1.0, 1.0, 0.6], [0.7, 0.9, 0.3]]}
    h = summarize(fractions, matrix, n_boot=200)
    assert h["n_reached"] == 2 and h["n_forget"] == 3 and h["not_reached"] == ["c"]
    assert h["n_crossed"] == 2 and h["crossed_not_reached"] == []
    stepped = summarize({**fractions, "c": {"frac": 0.4, "reached": False, "crossed": True}},
                        matrix, n_boot=20)
    assert stepped["n_crossed"] == 3 and stepped["crossed_not_reached"] == ["c"]
    assert stepped["n_reached"] == 2
    assert h["frac_mean"] == pytest.approx(0.2) and h["frac_std"] == pytest.approx(0.1)
    # column c (not reached: every neuron pruned) must not enter the means
    assert h["diagonal_mean"] == pytest.approx((0.5 + 0.5) / 2)
    assert h["off_diagonal_mean"] == pytest.approx((0.8 + 1.0 + 0.9 + 1.0) / 4)
    assert h["eval_only_mean"] == pytest.approx((0.7 + 0.9) / 2)
    # the all-columns figures exist, clearly named
    assert h["diagonal_mean_all_columns"] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    lo, hi = h["diagonal_ci"]
    assert lo <= h["diagonal_mean"] <= hi
    from modsep_utils.pruning import headline_agrees
    assert headline_agrees(h, matrix, fractions)
    assert not headline_agrees({**h, "diagonal_mean": 0.5333}, matrix, fractions)


class CharTokenizer:
    """A character-level tokenizer over a 64-symbol vocabulary (no downloads)."""
    pad_token_id = 0
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [1 + ord(c) % 63 for c in text]}

    def decode(self, ids):
        return "".join(chr(64 + i) if i else "" for i in ids)  # id 1 -> "A", 2 -> "B", ...


def _questions():
    from modsep_utils.data import MCQuestion
    return [MCQuestion("s", f"q{i}?", [f"a{i}", f"bb{i}", f"c{i}c", f"d{i}"], i % 4)
            for i in range(7)]


class MCSubset:
    kind, name = "mc", "quiz:test"

    def __init__(self, qs):
        self.questions = qs


def test_mc_loglik_equals_unbatched_hand_computation():
    from modsep_utils.pruning import mc_accuracy
    model, tok = tiny_text_models()["llama"], CharTokenizer()
    qs = _questions()
    correct = 0
    with torch.no_grad():
        for q in qs:
            prompt = tok(f"Question: {q.question}\nAnswer:")["input_ids"]
            scores = []
            for c in q.choices:
                cont = tok(" " + c)["input_ids"]
                ids = torch.tensor([prompt + cont])
                logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
                scores.append(float(torch.stack([logp[len(prompt) + t - 1, x]
                                                 for t, x in enumerate(cont)]).mean()))
            correct += int(np.argmax(scores) == q.answer)
    got = mc_accuracy(model, tok, MCSubset(qs), method="loglik", batch_size=8)
    assert got == pytest.approx(correct / len(qs))


def test_mc_letter_equals_unbatched_hand_computation():
    from modsep_utils.data import mc_prompt
    from modsep_utils.pruning import mc_accuracy
    model, tok = tiny_text_models()["llama"], CharTokenizer()
    qs = _questions()
    with torch.no_grad():
        hits = [tok.decode([int(model(input_ids=torch.tensor([tok(mc_prompt(q))["input_ids"]]))
                                .logits[0, -1].argmax())]).strip() == "ABCD"[q.answer]
                for q in qs]
    got = mc_accuracy(model, tok, MCSubset(qs), method="letter", batch_size=3)
    assert got == pytest.approx(sum(hits) / len(qs))
    with pytest.raises(ValueError, match="letter"):
        mc_accuracy(model, tok, MCSubset(qs), method="nope")


def test_fractions_are_read_back_only_with_the_parameters_behind_them(tmp_path, monkeypatch):
    from modsep_utils import activations, config, pruning
    monkeypatch.setattr(activations, "_source_fingerprint", lambda name: "w1")
    monkeypatch.setattr(config, "results_dir", lambda cfg: tmp_path)
    cfg = config.load_profile("smoke", "vit")
    fr = {"fmnist:Bag": {"frac": 0.25, "reached": True}}
    with pytest.raises(FileNotFoundError, match="--only 03"):
        pruning.load_fractions(cfg, 0.5)
    pruning.save_fractions(cfg, 0.5, fr)
    assert pruning.fractions_path(cfg, 0.5).name == "03_fractions_drop50.json"
    assert pruning.step03_path(cfg, "cross_eval", 0.125).name == "03_cross_eval_drop12.5.json"
    assert pruning.load_fractions(cfg, 0.5) == fr
    with pytest.raises(KeyError, match="run notebook 03 again"):
        pruning.load_fractions(cfg, 0.5, ["fmnist:Coat"])
    with pytest.raises(ValueError, match="eval_n"):  # 03 ran with another evaluation size
        pruning.load_fractions({**cfg, "eval_n": 7}, 0.5)
    monkeypatch.setattr(activations, "_source_fingerprint", lambda name: "retrained")
    with pytest.raises(ValueError, match="weights"):
        pruning.load_fractions(cfg, 0.5)


def test_split_half_reliability_by_hand():
    from modsep_utils.scoring import (jaccard, rank_correlation, reliability_summary,
                                      split_half_reliability)
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert rank_correlation(a, a * 10 + 1) == pytest.approx(1.0)  # ranks only
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # ranks 0..3 against 1,0,3,2: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 60
    assert rank_correlation(a, torch.tensor([[2.0, 1.0, 4.0, 3.0]])) == pytest.approx(0.6)
    m1 = torch.tensor([[True, True, False, False]])
    m2 = torch.tensor([[True, False, True, False]])
    assert jaccard(m1, m2) == pytest.approx(1 / 3)
    same = _stats([[1.0, 5.0, 2.0, 0.5]])
    other = _stats([[5.0, 1.0, 0.5, 2.0]])
    retain = _stats([[1.0, 1.0, 1.0, 1.0]])
    rel = split_half_reliability({"forget": {"x": (same, same), "y": (same, other)},
                                  "retain": (retain, retain)}, frac=0.5)
    assert rel["subsets"]["x"] == {"spearman": pytest.approx(1.0), "jaccard": 1.0}
    assert rel["subsets"]["y"]["jaccard"] == 0.0 and rel["subsets"]["y"]["spearman"] < 0
    s = reliability_summary(rel)
    assert s["jaccard_min"] == 0.0 and s["jaccard_mean"] == 0.5
    assert s["chance_jaccard"] == pytest.approx(0.5 / 1.5)


def test_collection_halves_partition_the_blocks():
    from modsep_utils.activations import halves
    from modsep_utils.data import Subset
    tokens = torch.arange(5 * 4).view(5, 4)
    h1, h2 = halves(Subset("t", "text", "f", tokens=tokens))
    assert torch.equal(torch.cat([h1.tokens, h2.tokens]), tokens) and len(h1) == 2
    with pytest.raises(ValueError, match="collect_n"):
        halves(Subset("t", "text", "f", tokens=tokens[:1]))
