"""Profiles: one YAML file per profile and experiment under ``configs/<profile>/<experiment>.yaml``.

Every key of a profile is a papermill parameter of at least one notebook; the notebooks'
parameter cells carry the ``smoke`` values as their committed defaults.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .io import ROOT

CONFIGS = ROOT / "configs"
EXPERIMENTS = ("vit", "lm")


def profiles() -> list[str]:
    return sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def load_profile(profile: str, experiment: str) -> dict:
    """The parameters of ``configs/<profile>/<experiment>.yaml``."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}")
    path = CONFIGS / profile / f"{experiment}.yaml"
    if not path.exists():
        raise ValueError(f"unknown profile {profile!r}; choose one of {profiles()}")
    return yaml.safe_load(path.read_text())


def subset_list(spec) -> list[str]:
    """A list of subset names, or a group name (``"text"``, ``"quiz"``, ``"cifar20"``, ...)
    meaning every subset of that group."""
    if spec is None or spec == []:
        return []
    if isinstance(spec, str):
        from .data import subset_names
        return list(subset_names(spec))
    return list(spec)


def results_dir(cfg: dict) -> Path:
    """``results/<profile>/<experiment>/``: the numbers behind every figure, as JSON."""
    return ROOT / "results" / cfg["profile"] / cfg["experiment"]


def figure_path(cfg: dict, name: str) -> Path:
    """``figures/<profile>/<experiment>_<name>.png`` (its JSON is written beside it)."""
    return ROOT / "figures" / cfg["profile"] / f"{cfg['experiment']}_{name}.png"


def headline_path(cfg: dict) -> Path:
    return results_dir(cfg) / "headline.json"


def parameter_names() -> list[str]:
    """The parameters every notebook declares (the keys of the smoke ViT profile)."""
    return list(load_profile("smoke", "vit"))


def from_parameters(namespace: dict) -> dict:
    """The profile dict of a notebook's parameters (picked from its ``globals()``)."""
    missing = [k for k in parameter_names() if k not in namespace]
    if missing:
        raise ValueError(f"parameters missing from the notebook: {missing}")
    return {k: namespace[k] for k in parameter_names()}


def eval_names(cfg: dict) -> list[str]:
    """Evaluation subsets: the forget subsets, then the eval-only ones (multiple choice)."""
    return subset_list(cfg["forget"]) + subset_list(cfg["extra_eval"])
