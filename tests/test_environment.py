"""environment.yml (conda users) and pyproject.toml list the same pinned packages."""
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(reqs):
    out = {}
    for r in reqs:
        name, _, version = r.partition("==")
        out[name.strip().lower()] = version.strip()
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(project) == _pins(pip)
    assert all(v for v in _pins(project).values()), "every dependency is pinned"


def test_torch_is_pinned_by_constraints():
    cons = (ROOT / "constraints.txt").read_text()
    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert f"torch=={project['torch']}" in cons


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
