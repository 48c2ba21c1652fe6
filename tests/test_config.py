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
    smoke = config.load_profile("smoke", "vit")
    books = run.notebooks()
    assert [b.name[:2] for b in books][:3] == ["01", "02", "03"]
    for book in books:
        params = __import__("papermill").inspect_notebook(str(book))
        assert set(params) == set(smoke), book.name
        for k, p in params.items():
            assert eval(p["default"]) == smoke[k], (book.name, k)


def test_undeclared_parameter_fails_clearly():
    book = run.notebooks(["01"])[0]
    with pytest.raises(SystemExit, match="declares no parameter \\['typo'\\]"):
        run.check_parameters(book, {"typo": 1})
    with pytest.raises(SystemExit, match="no notebook declares"):
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
