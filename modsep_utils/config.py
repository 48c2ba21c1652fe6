"""Profiles: one YAML file per profile and experiment, ``configs/<profile>/<experiment>.yaml``.

A notebook's parameters cell holds ``profile``, ``experiment`` and ``overrides`` only
(:data:`NOTEBOOK_PARAMETERS`): every other value comes from the profile file, so changing the
experiment or the profile is one line and never leaves the other experiment's values behind
(:func:`from_parameters`). Its committed defaults are the ``smoke`` ViT profile (the CI size).

:func:`validate` checks a configuration before anything runs (profile files, ``run -p``
overrides, a notebook's parameters) and raises a one-line ``ValueError`` naming the source,
the key, the bad value and what it must be.

Where a run writes (:func:`output_dir`): a run with the parameters of its profile file writes
into ``results/<profile>/<experiment>/`` and ``figures/<profile>/``; a run whose parameters
differ (``run -p``, or a notebook run with edited parameters) writes into
``results/<profile>/overrides/<slug>/<experiment>/`` and ``figures/<profile>/overrides/<slug>/``
(git-ignored, with a ``run.json`` recording what differs), unless the environment variable
``MODSEP_INTO_PROFILE=1`` (``run --into-profile``) sends it into the profile's own folders.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import yaml

from .io import ROOT, content_key, read_json, write_json

CONFIGS = ROOT / "configs"
INTO_PROFILE = "MODSEP_INTO_PROFILE"
# subset groups (the part of a subset name before ":") by experiment
# (authors-only: subsets of the authors' published scores with no loader here, modsep_utils.authors)
GROUPS = {"vit": ("fmnist", "fmnist-super", "glyph", "script", "cifar20", "cifar100"),
          "lm": ("text", "quiz", "pile", "code", "camel", "mmlu", "authors-only")}
EXPERIMENTS = tuple(GROUPS)


def _int(lo: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _frac(v) -> bool:
    return _number(v) and 0 < v <= 1


def _open_frac(v) -> bool:
    return _number(v) and 0 < v < 1


def _name(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _list(item, distinct=False, increasing=False):
    def check(v):
        return (isinstance(v, list) and len(v) > 0 and all(item(x) for x in v)
                and (not distinct or len(set(v)) == len(v))
                and (not increasing or all(a < b for a, b in zip(v, v[1:]))))
    return check


# key: (check of its value, what the value must be); the order of the notebooks' parameter cells
PARAMETERS = {
    "experiment": (lambda v: v in EXPERIMENTS, "vit or lm"),
    "profile": (lambda v: isinstance(v, str) and re.fullmatch(r"\w[\w.-]*", v) is not None,
                "a profile name, a folder of configs/"),
    "model": (_name, "a model name: embedded-lm, embedded-vit-glyphs, embedded-vit or a Hugging Face hub id"),
    "forget": (lambda v: _name(v) or _list(_name)(v),
               "a subset group or a non-empty list of subset names"),
    "retain": (_name, "a subset name, or merge (the mixture of the forget subsets)"),
    "extra_eval": (lambda v: v is None or v == [] or _name(v) or _list(_name)(v),
                   "a subset group or a list of subset names ([] for none)"),
    "collect_n": (_int(1), "a whole number >= 1"),
    "eval_n": (_int(1), "a whole number >= 1"),
    "mc_n": (_int(0), "a whole number >= 0"),
    "mc_method": (lambda v: v in ("letter", "loglik"), "letter or loglik"),
    "drops": (_list(_open_frac), "a non-empty list of accuracy drops in (0, 1), e.g. [0.5]"),
    "bisect_grid": (lambda v: _list(_frac, increasing=True)(v) and v[-1] == 1,
                    "an increasing list of fractions in (0, 1] ending at 1.0"),
    "bisect_tol": (_open_frac, "a number in (0, 1)"),
    "bisect_max_iter": (_int(1), "a whole number >= 1"),
    "eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "batch_size": (_int(1), "a whole number >= 1"),
    "block_len": (_int(2), "a whole number >= 2"),
    "seed": (_int(0), "a whole number >= 0"),
    "dtype": (lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
    "overlap_frac": (_frac, "a fraction in (0, 1]"),
    "moe_cluster_size": (_int(1), "a whole number >= 1"),
    "moe_n_init": (_int(1), "a whole number >= 1"),
    "moe_method": (lambda v: v in ("fast", "reference"),
                   "fast (moe.balanced_kmeans) or reference (the authors' k-means-constrained)"),
    "moe_weight": (lambda v: v in ("up", "gate", "gate_up"),
                   "up, gate or gate_up (the rows a gated MLP is clustered on)"),
    "random_seeds": (_list(_int(0), distinct=True), "a non-empty list of distinct whole numbers"),
    "auc_fracs": (_list(_frac), "a non-empty list of fractions in (0, 1]"),
    "auc_frac": (_frac, "a fraction in (0, 1]"),
}


def parameter_names() -> list[str]:
    """The parameters every profile holds and every notebook declares."""
    return list(PARAMETERS)


def profiles() -> list[str]:
    return sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def profile_path(profile: str, experiment: str) -> Path:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}")
    path = CONFIGS / profile / f"{experiment}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown profile {profile!r} (no {_shown(path)}); "
                         f"choose one of {profiles()}")
    return path


def load_profile(profile: str, experiment: str) -> dict:
    """The parameters of ``configs/<profile>/<experiment>.yaml``, checked by :func:`validate`.

    The file's folder names the profile and its name the experiment: its ``profile:`` and
    ``experiment:`` lines may be left out, and must agree with them where given.
    """
    path = profile_path(profile, experiment)
    source = _shown(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {_one_line(e)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: must hold `key: value` lines, one per parameter")
    for key, given in (("profile", profile), ("experiment", experiment)):
        if raw.setdefault(key, given) != given:
            raise ValueError(f"{source}: {key} = {raw[key]!r}, but the file's place makes it "
                             f"{given!r}; set it to {given!r} or delete the line")
    return validate(raw, source)


def validate(cfg: dict, source: str) -> dict:
    """``cfg`` with its keys in the order of :data:`PARAMETERS`, once it passes every check:

    - it has every key of :data:`PARAMETERS` and no other (a typo is told the closest key);
    - every value passes its check in :data:`PARAMETERS` (types, ranges, choices; the
      fraction lists ``drops``, ``bisect_grid``, ``auc_fracs``; distinct ``random_seeds``);
    - every subset named in ``forget``, ``retain`` and ``extra_eval`` belongs to a group of
      the experiment (:data:`GROUPS`): images for vit, text and multiple choice for lm; an
      embedded model belongs to its experiment (:func:`model_experiment`).

    Else a one-line ``ValueError`` starting with ``source`` (a file, ``-p``, a notebook).
    """
    for key in cfg:
        if key not in PARAMETERS:
            raise ValueError(f"{source}: unknown key {key!r}; {closest(key)}")
    for key, (check, must) in PARAMETERS.items():
        if key not in cfg:
            raise ValueError(f"{source}: missing key {key!r}; add it ({must})")
        if not check(cfg[key]):
            hint = (" (YAML reads 1e-3 as text: write 0.001)"
                    if re.fullmatch(r"[-+]?[\d.]+e[-+]?\d+", str(cfg[key])) else "")
            raise ValueError(f"{source}: {key} = {_short(cfg[key])} is invalid; it must be "
                             f"{must}{hint}")
    owner = model_experiment(cfg["model"])
    if owner not in (None, cfg["experiment"]):
        raise ValueError(f"{source}: model = {cfg['model']!r} belongs to the {owner} experiment, "
                         f"not {cfg['experiment']}; choose experiment = {owner!r}, or a model "
                         f"of the {cfg['experiment']} experiment")
    groups = GROUPS[cfg["experiment"]]
    for key in ("forget", "retain", "extra_eval"):
        spec = cfg[key] or []
        for name in [spec] if isinstance(spec, str) else spec:
            group = name.partition(":")[0]
            if group not in groups and not (key == "retain" and name == "merge"):
                owner = [e for e, g in GROUPS.items() if group in g]
                why = f"belongs to the {owner[0]} experiment" if owner else "has no known group"
                raise ValueError(f"{source}: {key} = {_short(spec)}: {name!r} {why}; the "
                                 f"{cfg['experiment']} experiment takes the groups "
                                 f"{', '.join(groups)} (group:member, or a group name)")
    return {key: cfg[key] for key in PARAMETERS}


def model_experiment(model: str) -> str | None:
    """The experiment an embedded model belongs to (``embedded-vit`` -> vit, ``embedded-lm`` ->
    lm, also behind the authors' ``authors:`` prefix); None for a hub id or folder, whose kind
    only loading it tells."""
    name = str(model).removeprefix("authors:")
    kind = name.removeprefix("embedded-").split("-")[0] if name.startswith("embedded-") else None
    return kind if kind in EXPERIMENTS else None


def closest(key: str) -> str:
    """``did you mean ...`` for a mistyped parameter, else the list of parameters."""
    near = difflib.get_close_matches(key, PARAMETERS, n=1)
    return f"did you mean {near[0]!r}?" if near else f"the parameters are {', '.join(PARAMETERS)}"


# what a notebook's parameters cell declares; every other key comes from the profile file
NOTEBOOK_PARAMETERS = ("profile", "experiment", "overrides")


def from_parameters(namespace: dict) -> dict:
    """The configuration of a notebook run, from its ``globals()``:
    ``configs/<profile>/<experiment>.yaml``, then the keys of the dict ``overrides``, then any
    profile key set as a variable before the set-up cell (``papermill -p drops "[0.3]"`` injects
    ``drops = [0.3]``), checked together by :func:`validate`. A run that differs from its
    profile file writes apart (:func:`output_dir`)."""
    source = "notebook parameters"
    for key in ("profile", "experiment"):
        check, must = PARAMETERS[key]
        if key not in namespace or not check(namespace[key]):
            raise ValueError(f"{source}: {key} = {_short(namespace.get(key))} is invalid; it "
                             f"must be {must}")
    given = namespace.get("overrides") or {}
    if not isinstance(given, dict):
        raise ValueError(f"{source}: overrides = {_short(given)} is invalid; it must be a dict "
                         f"of profile keys, e.g. {{'drops': [0.3]}}")
    for key in ("profile", "experiment"):
        if key in given:
            raise ValueError(f"{source}: overrides sets {key!r}; set it as the parameter {key} "
                             f"instead (it chooses the profile file)")
    injected = {k: namespace[k] for k in PARAMETERS
                if k in namespace and k not in ("profile", "experiment")}
    changed = given | injected
    profile, experiment = namespace["profile"], namespace["experiment"]
    if changed:
        source += f" ({profile}/{experiment}, overrides {', '.join(sorted(changed))})"
    return validate(load_profile(profile, experiment) | changed, source)


def describe(cfg: dict) -> str:
    """One line for a notebook's set-up cell: what runs, and where its results go."""
    changed = overrides(cfg)
    text = (f"{cfg['profile']}/{cfg['experiment']}: model {cfg['model']}, "
            f"{len(subset_list(cfg['forget']))} forget subsets, retain = {cfg['retain']}; "
            f"results into {_shown(results_dir(cfg))}/")
    if changed:
        text += (f" (differs from {_shown(profile_path(cfg['profile'], cfg['experiment']))} in "
                 f"{', '.join(f'{k} = {v!r}' for k, v in changed.items())})")
    return text


def subset_list(spec) -> list[str]:
    """A list of subset names, or a group name (``"text"``, ``"quiz"``, ``"cifar20"``, ...)
    meaning every subset of that group."""
    if spec is None or spec == []:
        return []
    if isinstance(spec, str):
        from .data import subset_names
        return list(subset_names(spec))
    return list(spec)


def eval_names(cfg: dict) -> list[str]:
    """Evaluation subsets: the forget subsets, then the eval-only ones (multiple choice)."""
    return subset_list(cfg["forget"]) + subset_list(cfg["extra_eval"])


# ---------------------------------------------------------------------------- outputs


def overrides(cfg: dict) -> dict:
    """The parameters of ``cfg`` that differ from its profile file (``{}`` for a profile run)."""
    base = load_profile(cfg["profile"], cfg["experiment"])
    return {k: cfg[k] for k in base if cfg[k] != base[k]}


def override_slug(changed: dict) -> str:
    """A folder name for a set of overrides, e.g. ``drops=0.3`` or ``collect_n=8+seed=1``;
    a long one, or one with characters a folder name cannot keep, is cut and given a hash."""
    def plain(v):
        return ",".join(map(plain, v)) if isinstance(v, list) else str(v)
    text = "+".join(f"{k}={plain(v)}" for k, v in sorted(changed.items()))
    slug = re.sub(r"[^\w.,=+-]", "-", text)
    if slug != text or len(slug) > 60:
        slug = f"{slug[:48]}-{content_key(changed)[:8]}"
    return slug


def output_dir(cfg: dict, top: str) -> Path:
    """``<top>/<profile>/`` for a profile run (or with ``MODSEP_INTO_PROFILE=1``), else
    ``<top>/<profile>/overrides/<slug>/`` with a ``run.json`` of the overrides by experiment."""
    base = ROOT / top / cfg["profile"]
    changed = overrides(cfg)
    if not changed or os.environ.get(INTO_PROFILE, "") not in ("", "0"):
        return base
    out = base / "overrides" / override_slug(changed)
    record = read_json(out / "run.json") if (out / "run.json").exists() else {}
    entry = {"profile_file": _shown(profile_path(cfg["profile"], cfg["experiment"])),
             "overrides": changed}
    if record.get(cfg["experiment"]) != entry:
        write_json(out / "run.json", record | {cfg["experiment"]: entry})
    return out


def results_dir(cfg: dict) -> Path:
    """``results/<profile>/<experiment>/`` (see :func:`output_dir`): the numbers, as JSON."""
    return output_dir(cfg, "results") / cfg["experiment"]


def results_dirs(cfg: dict) -> list[Path]:
    """Where to read an earlier step's results: this run's folder, then (for an override run)
    the profile's own. The reader checks the parameters recorded with them."""
    own = ROOT / "results" / cfg["profile"] / cfg["experiment"]
    return list(dict.fromkeys([results_dir(cfg), own]))


def figure_path(cfg: dict, name: str) -> Path:
    """``figures/<profile>/<experiment>_<name>.png`` (see :func:`output_dir`; its JSON beside)."""
    return output_dir(cfg, "figures") / f"{cfg['experiment']}_{name}.png"


def headline_path(cfg: dict) -> Path:
    return results_dir(cfg) / "headline.json"


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
