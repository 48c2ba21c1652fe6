import json
from pathlib import Path

import pytest

from modsep_utils import config, run

ROOT = Path(__file__).resolve().parent.parent


def test_profiles_share_one_parameter_set():
    names = config.parameter_names()
    for profile in ("smoke", "embedded", "paper"):
        for exp in ("vit", "lm"):
            cfg = config.load_profile(profile, exp)
            assert list(cfg) == names, (profile, exp)
            assert cfg["profile"] == profile and cfg["experiment"] == exp


def test_unknown_profile_or_experiment():
    with pytest.raises(ValueError, match="smoke"):
        config.load_profile("nope", "vit")
    with pytest.raises(ValueError, match="vit"):
        config.load_profile("smoke", "audio")


def test_notebook_defaults_are_the_smoke_vit_profile():
    books = run.notebooks()
    assert [b.name[:2] for b in books][:3] == ["01", "02", "03"]
    for book in books:
        params = __import__("papermill").inspect_notebook(str(book))
        assert list(params) == list(config.NOTEBOOK_PARAMETERS), book.name
        assert {k: eval(p["default"]) for k, p in params.items()} == {
            "profile": "smoke", "experiment": "vit", "overrides": {}}, book.name


def test_undeclared_parameter_fails_clearly():
    book = run.notebooks(["01"])[0]
    with pytest.raises(SystemExit, match="declares no parameter \\['typo'\\]"):
        run.check_parameters(book, {"typo": 1})
    with pytest.raises(SystemExit, match="unknown key 'typo'"):
        run.main(["--profile", "smoke", "--only", "01", "-p", "typo", "1"])
    with pytest.raises(SystemExit, match="no notebook numbered"):
        run.main(["--profile", "smoke", "--only", "42"])


def test_overrides_are_read_as_yaml():
    assert run.parse_overrides([["drops", "[0.3, 0.6]"], ["seed", "3"]]) == {
        "drops": [0.3, 0.6], "seed": 3}


def test_notebooks_have_a_tagged_parameters_cell_and_a_checked_cell():
    for book in run.notebooks():
        nb = json.loads(book.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, book.name


# ---------------------------------------------------------------------------- issue 7, §8

@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A scratch repository: configs/ holds a copy of the committed profiles; outputs go here."""
    import shutil
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.setattr(config, "ROOT", tmp_path)
    monkeypatch.setattr(config, "CONFIGS", tmp_path / "configs")
    monkeypatch.delenv(config.INTO_PROFILE, raising=False)
    return tmp_path


def write_profile(repo, exp, *replace, name="mine", prepend=""):
    """``configs/<name>/<exp>.yaml``: a copy of the embedded profile, with ``(old, new)``
    replacements and ``prepend`` before it."""
    text = prepend + (repo / "configs" / "embedded" / f"{exp}.yaml").read_text()
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    (repo / "configs" / name).mkdir(exist_ok=True)
    (repo / "configs" / name / f"{exp}.yaml").write_text(text)


def test_a_copied_profile_writes_into_its_own_folders(repo):
    write_profile(repo, "vit")  # a plain copy: the folder names the profile
    write_profile(repo, "lm", prepend="profile: mine\n")  # an agreeing line is fine
    for exp in ("vit", "lm"):
        cfg = config.load_profile("mine", exp)
        assert cfg["profile"] == "mine" and cfg["experiment"] == exp
        assert config.results_dir(cfg) == repo / "results" / "mine" / exp
        assert config.headline_path(cfg) == repo / "results" / "mine" / exp / "headline.json"
        assert config.figure_path(cfg, "x") == repo / "figures" / "mine" / f"{exp}_x.png"


def test_a_profile_line_that_disagrees_with_the_folder_is_an_error(repo):
    write_profile(repo, "vit", prepend="profile: embedded\n")  # disagrees with its folder
    with pytest.raises(ValueError, match=r"configs/mine/vit.yaml: profile = 'embedded'.*'mine'"):
        config.load_profile("mine", "vit")
    write_profile(repo, "lm", prepend="experiment: vit\n")
    with pytest.raises(ValueError, match=r"configs/mine/lm.yaml: experiment = 'vit'"):
        config.load_profile("mine", "lm")


def test_unknown_and_missing_keys_name_the_file_and_the_key(repo):
    write_profile(repo, "vit", ("collect_n:", "colect_n:"))
    with pytest.raises(ValueError, match=r"configs/mine/vit.yaml: unknown key 'colect_n'; "
                                         r"did you mean 'collect_n'\?"):
        config.load_profile("mine", "vit")
    write_profile(repo, "vit", ("model: embedded-vit-glyphs\n", ""))
    with pytest.raises(ValueError, match=r"configs/mine/vit.yaml: missing key 'model'"):
        config.load_profile("mine", "vit")


def test_a_profile_file_that_is_not_yaml_or_not_a_mapping(repo):
    (repo / "configs" / "bad").mkdir()
    (repo / "configs" / "bad" / "vit.yaml").write_text("drops: [0.5\n")
    with pytest.raises(ValueError, match=r"^configs/bad/vit.yaml: not valid YAML: [^\n]*$"):
        config.load_profile("bad", "vit")
    (repo / "configs" / "bad" / "vit.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="configs/bad/vit.yaml: must hold"):
        config.load_profile("bad", "vit")


BAD_VALUES = [
    ("drops", 0.5, "list"), ("drops", [1.5], "list"), ("drops", [-0.1], "list"),
    ("drops", [0], "list"), ("drops", [], "non-empty"),
    ("collect_n", 0, ">= 1"), ("eval_n", 0, ">= 1"), ("eval_n", 2.5, ">= 1"),
    ("mc_n", -1, ">= 0"), ("collect_n", True, ">= 1"),
    ("overlap_frac", 0, r"\(0, 1\]"), ("auc_frac", 1.5, r"\(0, 1\]"),
    ("bisect_grid", [0.1, 0.5], "ending at 1.0"), ("bisect_grid", [0.5, 0.1, 1.0], "increasing"),
    ("bisect_grid", [0, 0.5, 1.0], r"\(0, 1\]"), ("bisect_tol", 1, r"\(0, 1\)"),
    ("batch_size", 0, ">= 1"), ("block_len", 1, ">= 2"),
    ("random_seeds", [], "non-empty"), ("random_seeds", [0, 0], "distinct"),
    ("random_seeds", [0.5], "whole"), ("auc_fracs", [0.1, 2], r"\(0, 1\]"),
    ("dtype", "float64", "float32, bfloat16 or float16"),
    ("mc_method", "guess", "letter or loglik"),
    ("experiment", "audio", "vit or lm"), ("eps", "1e-3", "write 0.001"),
    ("forget", ["text:python"], "lm experiment; the vit experiment takes the groups fmnist"),
    ("forget", "quiz", "belongs to the lm experiment"),
    ("extra_eval", ["quiz:state"], "belongs to the lm experiment"),
    ("retain", "text:mixture", "belongs to the lm experiment"),
    ("forget", ["nonsense:x"], "has no known group"),
]


@pytest.mark.parametrize("key, value, message", BAD_VALUES)
def test_bad_values_are_named_with_what_they_must_be(key, value, message):
    cfg = config.load_profile("smoke", "vit") | {key: value}
    with pytest.raises(ValueError, match=f"^here: {key} = .*{message}") as err:
        config.validate(cfg, "here")
    assert "\n" not in str(err.value)


def test_lm_takes_text_and_multiple_choice_subsets_only():
    lm = config.load_profile("smoke", "lm")
    for ok in ({"retain": "merge"}, {"retain": "pile:all"}, {"extra_eval": "mmlu"},
               {"forget": ["code:github", "camel:physics"]}):
        config.validate(lm | ok, "here")
    for bad in ({"forget": ["fmnist:Bag"]}, {"forget": "cifar20"}, {"retain": "cifar100:all"}):
        with pytest.raises(ValueError, match="vit experiment; the lm experiment takes the "
                                             "groups text, quiz, pile, code, camel, mmlu"):
            config.validate(lm | bad, "here")


def test_notebook_parameters_are_validated():
    smoke = config.load_profile("smoke", "vit")
    cell = {"profile": "smoke", "experiment": "vit", "overrides": {}}
    assert config.from_parameters({**cell, "In": [], "plt": None}) == smoke
    # switching the experiment is one line: every other value follows the profile file
    lm = config.from_parameters({**cell, "experiment": "lm"})
    assert lm == config.load_profile("smoke", "lm") and lm["model"] == "embedded-lm"
    # overrides, and a key papermill -p injects as a variable, change the file's values
    assert config.from_parameters({**cell, "overrides": {"drops": [0.3]}})["drops"] == [0.3]
    assert config.from_parameters({**cell, "seed": 3})["seed"] == 3
    with pytest.raises(ValueError, match=r"notebook parameters \(smoke/vit, overrides drops\): "
                                         r"drops = 0.5 is invalid"):
        config.from_parameters({**cell, "overrides": {"drops": 0.5}})
    with pytest.raises(ValueError, match="unknown key 'colect_n'; did you mean 'collect_n'"):
        config.from_parameters({**cell, "overrides": {"colect_n": 8}})
    with pytest.raises(ValueError, match="overrides sets 'experiment'; set it as the parameter"):
        config.from_parameters({**cell, "overrides": {"experiment": "lm"}})
    with pytest.raises(ValueError, match="overrides = 'drops' is invalid; it must be a dict"):
        config.from_parameters({**cell, "overrides": "drops"})
    with pytest.raises(ValueError, match="notebook parameters: experiment = 'audio'"):
        config.from_parameters({**cell, "experiment": "audio"})
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        config.from_parameters({**cell, "profile": "nope"})


def test_values_that_do_not_belong_together_are_an_error():
    cell = {"profile": "smoke", "experiment": "lm", "overrides": {}}
    # the case: the LM experiment must never run the ViT silently
    with pytest.raises(ValueError, match="model = 'embedded-vit' belongs to the vit experiment, "
                                         "not lm; choose experiment = 'vit'"):
        config.from_parameters({**cell, "overrides": {"model": "embedded-vit"}})
    with pytest.raises(ValueError, match="'fmnist:Bag' belongs to the vit experiment"):
        config.from_parameters({**cell, "forget": ["fmnist:Bag"]})
    assert config.model_experiment("embedded-lm") == "lm"
    assert config.model_experiment("authors:Ahmed9275/Vit-Cifar100") is None
    assert config.model_experiment("mistralai/Mistral-7B-Instruct-v0.2") is None


def test_override_runs_write_apart_and_record_the_overrides(repo, monkeypatch):
    cfg = config.load_profile("smoke", "vit") | {"drops": [0.3]}
    out = repo / "results" / "smoke" / "overrides" / "drops=0.3"
    assert config.results_dir(cfg) == out / "vit"
    assert config.headline_path(cfg) == out / "vit" / "headline.json"
    assert config.figure_path(cfg, "x") == repo / "figures/smoke/overrides/drops=0.3/vit_x.png"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json == {"vit": {"profile_file": "configs/smoke/vit.yaml",
                                "overrides": {"drops": [0.3]}}}
    assert (repo / "figures/smoke/overrides/drops=0.3/run.json").exists()
    assert config.results_dirs(cfg) == [out / "vit", repo / "results" / "smoke" / "vit"]
    # the profile's own values, or an explicit --into-profile, write into the profile folders
    smoke = config.load_profile("smoke", "vit")
    assert config.results_dir(smoke) == repo / "results/smoke/vit"
    assert config.results_dirs(smoke) == [repo / "results/smoke/vit"]
    monkeypatch.setenv(config.INTO_PROFILE, "1")
    assert config.results_dir(cfg) == repo / "results" / "smoke" / "vit"


def test_override_folders_are_ignored_by_git():
    import subprocess
    for path in ("results/embedded/overrides/drops=0.3/vit/headline.json",
                 "figures/paper/overrides/drops=0.3/vit_x.png"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "results/embedded/vit/headline.json"],
                          cwd=ROOT).returncode == 1


def test_override_slugs_are_short_and_distinct():
    assert config.override_slug({"drops": [0.3, 0.6], "seed": 1}) == "drops=0.3,0.6+seed=1"
    long = config.override_slug({"forget": [f"text:domain{i}" for i in range(20)]})
    other = config.override_slug({"forget": [f"text:domain{i}" for i in range(21)]})
    assert len(long) <= 60 and long != other and "/" not in long and ":" not in long


def test_bad_overrides_fail_before_anything_runs(monkeypatch):
    monkeypatch.setattr(run, "execute", lambda *a: pytest.fail("a notebook ran"))
    with pytest.raises(SystemExit, match=r"^-p drops '\[0.3': not a YAML value \(.*\); write"):
        run.parse_overrides([["drops", "[0.3"]])
    with pytest.raises(SystemExit, match=r"^-p for smoke/vit: drops = 0.5 is invalid"):
        run.main(["--profile", "smoke", "--only", "01", "-p", "drops", "0.5"])
    with pytest.raises(SystemExit, match="-p for smoke/lm: collect_n = 0 is invalid"):
        run.main(["--profile", "smoke", "--experiment", "lm", "--only", "01",
                  "-p", "collect_n", "0"])
    with pytest.raises(SystemExit, match="choose it with --profile"):
        run.main(["--profile", "smoke", "--only", "01", "-p", "profile", "paper"])
    with pytest.raises(SystemExit, match="unknown profile 'nope'"):
        run.main(["--profile", "nope", "--only", "01"])


def test_run_writes_overrides_apart_unless_into_profile(repo, monkeypatch):
    import os
    calls = []

    def fake_execute(book, params, out):
        assert set(params) == set(config.NOTEBOOK_PARAMETERS)  # the rest is the profile file's
        calls.append((out, params["overrides"]["drops"], os.environ.get(config.INTO_PROFILE)))
        return 0.0
    monkeypatch.setattr(run, "execute", fake_execute)
    run.main(["--profile", "smoke", "--experiment", "vit", "--only", "01", "-p", "drops", "[0.3]"])
    run.main(["--profile", "smoke", "--experiment", "vit", "--only", "01", "-p", "drops", "[0.3]",
              "--into-profile"])
    book = run.notebooks(["01"])[0].name
    assert calls == [
        (repo / "reports/smoke/overrides/drops=0.3/vit" / book, [0.3], None),
        (repo / "reports/smoke/vit" / book, [0.3], "1")]
    assert os.environ.get(config.INTO_PROFILE) is None


def test_a_notebook_run_that_differs_from_its_profile_writes_apart(repo):
    cell = {"profile": "smoke", "experiment": "vit", "overrides": {}}
    apart = repo / "results/smoke/overrides/drops=0.3/vit"
    # edited overrides in JupyterLab, or papermill -p drops "[0.3]" (a variable it injects)
    for namespace in ({**cell, "overrides": {"drops": [0.3]}}, {**cell, "drops": [0.3]}):
        cfg = config.from_parameters(namespace)
        assert config.results_dir(cfg) == apart
        assert config.figure_path(cfg, "x").parent == repo / "figures/smoke/overrides/drops=0.3"
        assert "differs from configs/smoke/vit.yaml in drops = [0.3]" in config.describe(cfg)
    # the profile's own values write into the profile's folders
    cfg = config.from_parameters(cell)
    assert config.results_dir(cfg) == repo / "results/smoke/vit"
    assert config.describe(cfg).endswith("results into results/smoke/vit/")
