"""The authors' published data (data/paper/, modsep_utils.authors): the loader, the CIFAR-20
name correction checked against the data, the saved 1% selections, the table conversion and
the score-only profile."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from modsep_utils import authors, config, data, pruning

LM_NOT_ONE_PERCENT = {"pile:Enron Emails", "pile:FreeLaw", "pile:Github", "pile:NIH ExPorter",
                      "pile:PubMed Abstracts", "pile:PubMed Central", "pile:StackExchange",
                      "authors-only:emotion"}


@pytest.mark.parametrize("experiment, n_trained, n_random, n_common", [
    ("vit", 18, 19, 17), ("lm", 23, 20, 20)])
def test_loader_shapes_names_and_exact_values(experiment, n_trained, n_random, n_common):
    sc = authors.load_scores(experiment)
    assert (len(sc.trained), len(sc.random), len(sc.common)) == (n_trained, n_random, n_common)
    for kind, scores in (("trained", sc.trained), ("random", sc.random)):
        for name, s in scores.items():
            assert s.dtype == torch.float32 and tuple(s.shape) == authors.SHAPES[experiment]
            assert sc.saved[kind][name].dtype == torch.bool
            data.family_of(name)  # a valid project name (raises otherwise)
    # exact: the float32 tensor holds the float16 file's values
    f = authors.SCORE_FILES[experiment]["trained"][0]
    with np.load(authors.DATA_DIR / f) as z:
        key = next(k for k in z.files if k.endswith(authors.SCORES_SUFFIX) and
                   authors.DELETED not in k)
        raw = z[key]
    name = authors.project_name(experiment, key[:-len(authors.SCORES_SUFFIX)])
    assert np.array_equal(sc.trained[name].numpy(), raw.astype(np.float32))
    assert np.array_equal(sc.trained[name].numpy().astype(np.float16), raw)


def test_project_names_and_what_is_left_out():
    vit = authors.load_scores("vit")
    assert vit.only_trained == ["cifar20:large_man-made_outdoor_things"]
    assert vit.only_random == ["cifar20:large_natural_outdoor_scenes", "cifar20:medium_mammals"]
    assert vit.deleted == ["trained: cifar20-large_natural_outdoor_scenes__DELETED_LATER",
                           "trained: cifar20-medium_sized_mammals__DELETED_LATER"]
    assert set(vit.common) <= {f"cifar20:{n}" for n in data.CIFAR20_NAMES}
    assert vit.keys["trained"]["cifar20:vehicles_1"] == "cifar20-veh1"
    lm = authors.load_scores("lm")
    assert lm.only_trained == ["camel:biology", "camel:physics", "authors-only:math"]
    assert lm.only_random == [] and lm.deleted == []
    assert lm.keys["trained"]["pile:Gutenberg (PG-19)"] == "pile_Gutenberg"
    assert lm.keys["trained"]["pile:Wikipedia (en)"] == "pile_Wikipedia"
    assert lm.keys["trained"]["code:github"] == "code"
    assert authors.lm_name("mmlu:anatomy") == "mmlu:anatomy"
    with pytest.raises(ValueError, match="unknown"):
        authors.lm_name("pile_Nope")
    with pytest.raises(ValueError, match="unknown CIFAR-20"):
        authors.cifar20_name("cifar20-nope")


# ---------------------------------------------------------------------------- name correction

SHIFTED = ["large_man-made_outdoor_things", "large_natural_outdoor_scenes",
           "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
           "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"]


def test_the_authors_correction_shifts_the_names_after_large_carnivores():
    fix = authors.wrong_to_right()
    names = [f"cifar20:{n}" for n in data.CIFAR20_NAMES]
    until = names.index("cifar20:large_carnivores")
    assert all(fix[n] == n for n in names[:until + 1])
    # the i-th name of their 19-name list labelled coarse_label i: each label after
    # large_carnivores measured the superclass listed before it, vehicles_2 none
    listed = [n for n in names if n != "cifar20:large_man-made_outdoor_things"]
    for label, measured in zip(listed[until + 1:], names[until + 1:]):
        assert fix[label] == measured
    assert "cifar20:vehicles_2" not in fix.values()


def test_the_shift_is_in_the_80_percent_tables_columns_verified_from_the_data(monkeypatch):
    """Rows are pruned with the score file of their name; under the authors' labels each row
    after large_carnivores hurts the *next* column most, after the correction its own."""
    corrected, _ = authors.cross_eval_table("vit", 0.2)
    hardest = authors.most_damaged(corrected)
    own = [f for f in corrected["forget"] if f in corrected["eval"]]
    assert len(own) == 18 and all(hardest[f] == f for f in own)
    table = dataclasses.replace(authors.TABLES[("vit", 0.2)], correct_columns=False)
    monkeypatch.setitem(authors.TABLES, ("vit", 0.2), table)
    as_labelled, _ = authors.cross_eval_table("vit", 0.2)
    hardest = authors.most_damaged(as_labelled)
    order = [f"cifar20:{n}" for n in SHIFTED]
    for row in order[1:-1]:  # large_natural_outdoor_scenes .. vehicles_1
        assert hardest[row] == order[order.index(row) + 1], row
    names = [f"cifar20:{n}" for n in data.CIFAR20_NAMES]
    first = names[:names.index("cifar20:large_carnivores") + 1]
    # vehicles_2: its label's column (the search's target) measured vehicles_1, at 80%
    assert [f for f in as_labelled["forget"] if hardest[f] == f] == first + ["cifar20:vehicles_2"]


@pytest.mark.parametrize("drop", [0.5, 0.8])
def test_the_papers_tables_need_no_correction(drop):
    m, _ = authors.cross_eval_table("vit", drop)
    assert all(e == f for f, e in authors.most_damaged(m).items())


def test_the_score_files_carry_the_right_names():
    """Under the shift the files 'veh1'/'veh2' would hold trees / vehicles_1: vehicles 1 and 2
    are each other's nearest in the trained scores, and trees' nearest is outdoors."""
    sc = authors.load_scores("vit")
    names = list(sc.trained)
    logs = np.corrcoef(np.stack([np.log(sc.trained[n].numpy().ravel() + 1e-6) for n in names]))
    np.fill_diagonal(logs, -1)
    nearest = {n: names[int(np.argmax(logs[i]))] for i, n in enumerate(names)}
    assert nearest["cifar20:vehicles_1"] == "cifar20:vehicles_2"
    assert nearest["cifar20:vehicles_2"] == "cifar20:vehicles_1"
    assert nearest["cifar20:trees"] == "cifar20:large_man-made_outdoor_things"


# ---------------------------------------------------------------------------- saved selections


@pytest.mark.parametrize("experiment, n", [("vit", 37), ("lm", 35)])
def test_global_top_1pct_equals_the_authors_saved_selection_up_to_ties(experiment, n):
    check = authors.saved_selection_check(experiment)
    assert check["differ"] == [] and len(check["agree"]) == n
    skipped = {k.split(" ", 1)[1] for k in check["not_one_percent"]}
    assert skipped == (LM_NOT_ONE_PERCENT if experiment == "lm" else set())
    assert all(k.startswith("trained ") for k in check["not_one_percent"])


def test_top_k_agrees_accepts_ties_at_the_cut_only():
    s = torch.tensor([[5.0, 4.0, 3.0, 3.0, 1.0]])
    either = torch.tensor([[True, True, False, True, False]])
    assert authors.top_k_agrees(s, either)["equal_up_to_ties"]  # 3.0 tied at the cut
    wrong = torch.tensor([[True, False, True, True, False]])  # leaves out 4.0, above the cut
    assert not authors.top_k_agrees(s, wrong)["equal_up_to_ties"]


# ---------------------------------------------------------------------------- tables


def test_table_conversion_hand_checked_cells():
    m, fr = authors.cross_eval_table("vit", 0.5)
    i, j = m["eval"].index("cifar20:reptiles"), m["forget"].index("cifar20:aquatic_mammals")
    # cell7: pruning aquatic_mammals' top 12.5%, reptiles keep 82.91015625% of 100.0%
    assert m["pruned"][i][j] == pytest.approx(0.8291015625)
    assert m["ratio"][i][j] == pytest.approx(0.8291015625)
    assert fr["cifar20:aquatic_mammals"]["frac"] == 0.125
    assert fr["cifar20:aquatic_mammals"]["reached"]  # 48.44% in [47.90%, 49.90%]
    assert not fr["cifar20:household_electrical_devices"]["reached"]  # 60.25%
    assert m["frac"][j] == 0.125 and m["reached"] == [fr[f]["reached"] for f in m["forget"]]
    # target 80% (drop 20%), corrected: trees' neurons, column labelled veh1 = trees
    m, fr = authors.cross_eval_table("vit", 0.2)
    i, j = m["eval"].index("cifar20:trees"), m["forget"].index("cifar20:trees")
    assert m["ratio"][i][j] == pytest.approx(1.5984015984015985 / 98.7012987012987)
    assert not fr["cifar20:trees"]["reached"] and "small_mammals" in fr["cifar20:trees"]["note"]
    # LM: the authors' -1 placeholder is missing, never a number
    m, fr = authors.cross_eval_table("lm", 0.2)
    i = m["eval"].index("mmlu:professional_law")
    assert m["ratio"][i][m["forget"].index("code:github")] is None
    assert m["ratio"][i][m["forget"].index("pile:Wikipedia (en)")] == pytest.approx(
        41.329856584093875 / 43.15514993481095)
    assert len(m["forget"]) == 19 and len(m["eval"]) == 19 + 57
    assert [f for f, v in fr.items() if not v["reached"]] == ["pile:Enron Emails"]


def test_targets_map_to_exact_drop_labels_and_summaries_work():
    labels = {(e, pruning.drop_label(d)) for e, d in authors.TABLES}
    assert labels == {("vit", "20%"), ("vit", "50%"), ("vit", "80%"), ("vit", "90%"),
                      ("vit", "98%"), ("lm", "20%")}
    for (e, d) in authors.TABLES:
        m, fr = authors.cross_eval_table(e, d)
        s = pruning.summarize(fr, m)
        assert pruning.headline_agrees(s, m, fr)
        assert all(f["drop"] == d for f in fr.values())
        for f in fr.values():  # the authors' target: X% of unpruned = a drop of 1 - X
            want = 1 - d if authors.TABLES[(e, d)].absolute_target else (1 - d) * f["base"]
            assert f["target"] == pytest.approx(want, abs=1e-12)


def test_the_authors_way_gives_back_the_papers_numbers():
    for (e, label), paper in ((("vit", "50%"), pruning.PAPER["vit"]["50%"]),
                              (("vit", "80%"), pruning.PAPER["vit"]["80%"]),
                              (("lm", "20%"), pruning.PAPER["lm"]["20%"])):
        got = authors.as_the_authors(e, float(label[:-1]) / 100)
        for key, value in paper.items():  # within half a unit of the paper's last digit
            digits = len(repr(value).split(".")[1])
            assert abs(got[key] - value) <= 0.5 * 10 ** -digits, key


# ---------------------------------------------------------------------------- profile, files


@pytest.mark.parametrize("experiment", ["vit", "lm"])
def test_the_authors_profile_validates_and_is_score_only(experiment):
    cfg = config.load_profile("authors", experiment)
    assert authors.is_score_only(cfg)
    assert config.subset_list(cfg["forget"]) == authors.load_scores(experiment).common
    assert not authors.is_score_only(config.load_profile("smoke", experiment))
    if experiment == "vit":
        fractions, info = authors.selection_fractions(cfg, config.subset_list(cfg["forget"]))
        assert info["not_reached"] == ["cifar20:household_electrical_devices"]
        assert fractions["cifar20:household_electrical_devices"] == cfg["overlap_frac"]
        assert fractions["cifar20:vehicles_1"] == 0.0546875  # the 50% table's


def test_authors_only_subsets_belong_to_the_lm_experiment():
    assert data.family_of("authors-only:civil") == "authors-only"
    cfg = config.load_profile("authors", "vit")
    with pytest.raises(ValueError, match="belongs to the lm experiment"):
        config.validate({**cfg, "forget": ["authors-only:civil"]}, "test")


def test_skip_rest_prints_one_line_and_turns_later_cells_into_no_ops(monkeypatch, capsys):
    class Shell:
        input_transformers_cleanup = []
    shell = Shell()
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    assert not authors.skip_rest_if_score_only(config.load_profile("smoke", "vit"), "why")
    assert shell.input_transformers_cleanup == []
    cfg = config.load_profile("authors", "vit")
    assert authors.skip_rest_if_score_only(cfg, "why")
    assert authors.skip_rest_if_score_only(cfg, "why")  # once installed, not twice
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and "no model weights" in out[0] and "why" in out[0]
    (skip,) = shell.input_transformers_cleanup
    assert skip(["x = 1\n", "raise SystemExit\n"])[0].startswith("pass")
    # running the set-up cell again (e.g. after switching profile) ends the skipping
    setup = ["cfg = config.from_parameters(globals())\n"]
    assert skip(setup) == setup and skip(["x = 1\n"]) == ["x = 1\n"]


def test_shipped_files_are_checked_and_small(tmp_path, monkeypatch):
    total = sum(p.stat().st_size for p in authors.DATA_DIR.iterdir())
    assert total <= 35e6
    for p in authors.DATA_DIR.iterdir():
        shutil.copy(p, tmp_path / p.name)
    bad = tmp_path / authors.VIT80_JSON
    bad.write_text(bad.read_text().replace("99.8", "99.9", 1))
    monkeypatch.setattr(authors, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match="does not match its sha256"):
        authors._checked_path(authors.VIT80_JSON)
    authors._checked_path(authors.NOTEBOOK_JSON)
