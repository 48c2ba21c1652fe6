"""The paper's authors' published data at paper scale (``data/paper/``, see its README.md):
per-neuron scores of Mistral-7B-Instruct-v0.2 and of the CIFAR-100 ViT, trained and
random-init, and their cross-evaluation tables, in this project's own forms.

- :func:`load_scores`: scores as ``name -> [layers, neurons]`` float32 tensors (the published
  float16 values widen exactly), trained and random-init, and the authors' saved top-1%
  selections; subset names in the project's naming (``cifar20:<coarse_label name>``,
  ``pile:<Pile set name>``, ``camel:<subject>``, ``code:github``; subsets with no loader in this
  project: ``authors-only:<their name>``, :data:`AUTHORS_ONLY`).
- :func:`cross_eval_table`: one of their tables as notebook 03's matrix (``forget``, ``eval``,
  ``base``, ``pruned``, ``ratio`` ``[eval][forget]``, ``frac``, ``reached``) with the fractions
  dict that :func:`modsep_utils.pruning.summarize` takes.

**Score-only profiles.** A profile whose ``model`` starts with ``authors:`` (:func:`is_score_only`;
``configs/authors/``) has no model weights. Notebook 02 and 04 take their scores from here,
03 draws the authors' tables (:func:`show_cross_eval`), and 01, 05, 06, 07 and the parts of 02
that need statistics print one line and skip the rest of the notebook
(:func:`skip_rest_if_score_only`).

**The authors' "target".** Their target X% is X% of the unpruned accuracy, i.e. a drop of
1 - X: their "target 80%" table is the project's drop 20%, "target 50%" is drop 50%, "target
20%" drop 80%. The search accepted a fraction when ``target - 2 <= accuracy <= target``
(percentage points), the project's rule, so a column is *reached* under the same test.

Quirks of the data, handled in the open:

- **CIFAR-20 names.** The authors' hand-written list of superclasses dropped
  ``large_man-made_outdoor_things``; an evaluation that took the i-th name of that list for
  ``coarse_label`` i labelled every superclass after ``large_carnivores`` with the name of the
  one before it. Their notebook maps the labels back (``cifar20_wrong_to_right``, read from
  the data here). Checked against the data (``tests/test_authors.py``): in the target-80% table
  the rows (pruned with the score file of their name) after ``large_carnivores`` hit hardest the
  evaluation column *after* their own, and after the correction each row hits its own
  superclass hardest; the rows also agree best with the overlaps of the loaded scores when the
  columns are corrected and the rows are not. The score files and the notebook's other tables
  (targets 2/10/20/50%) carry the right names: there each row hits its own column hardest, and
  the trained scores' similarities are those of the named superclasses (vehicles 1 and 2 are
  each other's nearest). So the correction is applied to that table's evaluation columns only
  (:data:`TABLES`), nowhere else.
- **Deleted files.** Two trained-ViT keys end in ``__DELETED_LATER`` (files the authors deleted
  in a later commit): left out, listed in :attr:`AuthorsScores.deleted`.
- **Different subsets per model.** Trained and random-init runs scored different subsets:
  comparisons use their intersection (:attr:`AuthorsScores.common`); the rest is listed.
- **Saved selections that are not 1%.** Eight of the 23 trained-Mistral files hold a saved
  selection of far more than 1% of the neurons (every neuron in six of them): only the others
  are compared with our top-1% (:func:`saved_selection_check`).
- **Placeholders.** The LM table recorded five MMLU subjects that failed as accuracy -1 (ratio
  1.0) in 12 of its 19 columns: here those cells are missing (None), never a number.
- **Unpruned accuracies** were measured anew in each of the LM table's runs (two runs of
  12 and 7 columns, up to 0.06 points apart on text and 1 point on MMLU): every ratio uses its
  own column's unpruned accuracy (``base_by_forget``); ``base`` is their mean.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .io import ROOT

DATA_DIR = ROOT / "data" / "paper"
PREFIX = "authors:"
#: the models the published data come from (a score-only profile's ``model`` is PREFIX + this)
MODELS = {"vit": "Ahmed9275/Vit-Cifar100", "lm": "mistralai/Mistral-7B-Instruct-v0.2"}
SHAPES = {"vit": (12, 3072), "lm": (32, 14336)}
SCORE_FILES = {
    "vit": {"trained": ("vit_cifar100_trained_ff_scores.npz",),
            "random": ("vit_cifar100_randominit_ff_scores.npz",)},
    "lm": {"trained": tuple(f"mistral7b_instruct_v02_trained_ff_scores_part{i}of4.npz"
                            for i in range(1, 5)),
           "random": tuple(f"mistral7b_randominit_ff_scores_part{i}of4.npz" for i in range(1, 5))},
}
SCORES_SUFFIX, SAVED_SUFFIX = "__ff_scores", "__ff_criteria_1pct_global"
DELETED = "__DELETED_LATER"
NOTEBOOK_JSON = "notebook_plot-things-eval-modularity_cross_pruning_data.json"
VIT80_JSON = "vit_cifar20_crossevaluation_target80.json"
TOL = 2.0  # the authors' acceptance window, percentage points below the target

#: the authors' Mistral subsets with no loader in this project (what is known of their data:
#: the authors' library ``taker``, texts.py, for civil and emotion; nothing stated for the others)
AUTHORS_ONLY = {
    "math": "not stated (camel-ai/math would match the science subsets)",
    "civil": "civil_comments with toxicity <= 0.2 (taker's 'civil')",
    "emotion": "dair-ai/emotion (taker's 'emotion')",
    "poems": "not stated",
}
_CAMEL = {"biology", "chemistry", "physics"}
# the authors' superclass names -> the dataset's coarse_label names
_CIFAR20 = {"large_manmade_outdoor_things": "large_man-made_outdoor_things",
            "medium_sized_mammals": "medium_mammals",
            "non_insect_invertebrates": "non-insect_invertebrates",
            "veh1": "vehicles_1", "veh2": "vehicles_2"}
# the target-80% table's short names for two entries of the authors' 19-name list
_LIST_ALIASES = {"large_outdoor": "large_natural_outdoor_scenes",
                 "medium_mammals": "medium_sized_mammals"}


@dataclass(frozen=True)
class Table:
    """One of the authors' cross-evaluation tables: where it is and how to read it."""
    experiment: str
    drop: float
    file: str
    cell: str | None          # key in the notebook JSON (None: the file is the table)
    absolute_target: bool     # target_accuracy is an absolute accuracy, not X% of unpruned
    correct_columns: bool     # the evaluation columns carry the shifted CIFAR-20 names
    note: str


#: the tables converted, by (experiment, drop). Not converted: the notebook's partial ViT runs
#: (cells 3 and 9: 3 and 7 superclasses at an absolute 10%; cell 0: one superclass), cell 10
#: (the authors' own relabelling of a run at 50% whose columns had the shifted names; cell 7
#: is the complete run at 50%, and the paper's numbers) and cell 14 (a console log of 6 Pile
#: subsets at 50%, model not stated).
TABLES = {
    ("vit", 0.5): Table("vit", 0.5, NOTEBOOK_JSON, "cell7", False, False,
                        "target 50% of unpruned, 19 superclasses, 1024 images"),
    ("vit", 0.8): Table("vit", 0.8, NOTEBOOK_JSON, "cell6", False, False,
                        "target 20% of unpruned, 19 superclasses, 1024 images"),
    ("vit", 0.2): Table("vit", 0.2, VIT80_JSON, None, False, True,
                        "target 80% of unpruned, 19 superclasses, 1001 images; evaluation "
                        "columns renamed by the authors' cifar20_wrong_to_right"),
    ("vit", 0.9): Table("vit", 0.9, NOTEBOOK_JSON, "cell12", False, False,
                        "target 10% of unpruned, 19 superclasses, 1024 images"),
    ("vit", 0.98): Table("vit", 0.98, NOTEBOOK_JSON, "cell2", True, False,
                         "target accuracy 2.0% absolute (a drop of 97.99-98.00% from "
                         "99.3-99.9%), 4 superclasses, 1001 images"),
    ("lm", 0.2): Table("lm", 0.2, NOTEBOOK_JSON, "cell1", False, False,
                       "target 80% of unpruned, 19 subsets, 22 text and 57 MMLU evaluations "
                       "as the notebook typed them; the model is not named there (most likely "
                       "Mistral-7B-Instruct-v0.2: the authors' Mistral script evaluates MMLU)"),
}
#: the paper's other Mistral fraction (section 4.1: 3.4 +- 2.6% of neurons; Figure 6c): notebook
#: 04 of a score-only LM profile also draws the overlaps there
EXTRA_OVERLAP_FRACS = {"lm": (0.034,)}


# ---------------------------------------------------------------------------- profiles


def is_score_only(cfg: Mapping) -> bool:
    """True for a profile of the authors' published data (``model: authors:<hub id>``): no
    model weights, only scores and tables."""
    return str(cfg["model"]).startswith(PREFIX)


_SKIPPING = {"on": False}
# cells that start a notebook over: the parameters cell and the set-up cell that reads them
_RESTART_MARKERS = ("config.from_parameters(", "# Parameters")


def _skip_cell(lines: list[str]) -> list[str]:
    """Input transformer: while skipping, a cell becomes ``pass``; running the parameters or
    set-up cell again stops the skipping (e.g. after switching to a profile with weights)."""
    if not _SKIPPING["on"]:
        return lines
    if any(m in "".join(lines) for m in _RESTART_MARKERS):
        _SKIPPING["on"] = False
        return lines
    return ["pass  # skipped: a score-only profile (modsep_utils.authors)\n"]


def skip_rest_if_score_only(cfg: Mapping, why: str) -> bool:
    """In a score-only profile: print one line saying why, and turn every later cell of the
    running notebook into a no-op (an IPython input transformer), until the parameters or
    set-up cell runs again. Elsewhere: do nothing and return False."""
    if not is_score_only(cfg):
        return False
    print(f"{cfg['profile']}/{cfg['experiment']}: this profile has no model weights (the "
          f"authors' published scores and tables only): {why}; the rest of this notebook is "
          f"skipped")
    from IPython import get_ipython
    shell = get_ipython()
    if shell is not None:
        _SKIPPING["on"] = True
        if _skip_cell not in shell.input_transformers_cleanup:
            shell.input_transformers_cleanup.append(_skip_cell)
    return True


# ---------------------------------------------------------------------------- names


def cifar20_name(key: str) -> str:
    """``cifar20-veh1`` (or ``veh1``) -> ``cifar20:vehicles_1``: the dataset's coarse_label name."""
    from .data import CIFAR20_NAMES
    member = _LIST_ALIASES.get(key.removeprefix("cifar20-"), key.removeprefix("cifar20-"))
    member = _CIFAR20.get(member, member)
    if member not in CIFAR20_NAMES:
        raise ValueError(f"unknown CIFAR-20 superclass {key!r} in the authors' data")
    return f"cifar20:{member}"


def lm_name(key: str) -> str:
    """The authors' text subset name -> the project's: ``pile_Gutenberg`` ->
    ``pile:Gutenberg (PG-19)``, ``code`` -> ``code:github``, ``biology`` -> ``camel:biology``,
    ``mmlu:<subject>`` unchanged, ``civil`` -> ``authors-only:civil`` (:data:`AUTHORS_ONLY`)."""
    from .data import MMLU_SUBJECTS, PILE_SETS
    if key.startswith("mmlu:") and key[5:] in MMLU_SUBJECTS:
        return key
    pile = {"pile_" + s.split(" (")[0].replace(" ", "_"): s for s in PILE_SETS}
    if key in pile:
        return f"pile:{pile[key]}"
    if key == "code":
        return "code:github"
    if key in _CAMEL:
        return f"camel:{key}"
    if key in AUTHORS_ONLY:
        return f"authors-only:{key}"
    raise ValueError(f"unknown text subset {key!r} in the authors' data")


def project_name(experiment: str, key: str) -> str:
    return cifar20_name(key) if experiment == "vit" else lm_name(key)


def canonical_order(experiment: str, names: Sequence[str]) -> list[str]:
    """``names`` in the project's order: CIFAR-20 by coarse_label; text as code, camel-ai, the
    Pile (its listed order), the authors-only subsets, then MMLU subjects alphabetically."""
    from .data import CAMEL_SUBJECTS, CIFAR20_NAMES, MMLU_SUBJECTS, PILE_SETS
    if experiment == "vit":
        known = [f"cifar20:{m}" for m in CIFAR20_NAMES]
    else:
        known = (["code:github"] + [f"camel:{m}" for m in CAMEL_SUBJECTS]
                 + [f"pile:{m}" for m in PILE_SETS] + [f"authors-only:{m}" for m in AUTHORS_ONLY]
                 + [f"mmlu:{m}" for m in MMLU_SUBJECTS])
    rank = {n: i for i, n in enumerate(known)}
    return sorted(names, key=lambda n: rank[n])


# ---------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class AuthorsScores:
    """The published scores of one experiment, in the project's form.

    ``trained``, ``random``: name -> float32 ``[layers, neurons]`` (exact widenings of the
    float16 files); ``saved``: ``{"trained"|"random": {name: bool [layers, neurons]}}``, the
    authors' saved selections; ``keys``: the authors' key of each name; ``deleted``: the keys
    left out (files the authors deleted later)."""
    experiment: str
    trained: dict
    random: dict
    saved: dict
    keys: dict
    deleted: list = field(default_factory=list)

    @property
    def common(self) -> list[str]:
        """The subsets scored in both models, in the project's order: what comparisons use."""
        return canonical_order(self.experiment, [n for n in self.trained if n in self.random])

    @property
    def only_trained(self) -> list[str]:
        return [n for n in self.trained if n not in self.random]

    @property
    def only_random(self) -> list[str]:
        return [n for n in self.random if n not in self.trained]


def _checked_path(name: str) -> Path:
    """``data/paper/<name>`` after checking its content against ``SHA256SUMS``."""
    path = DATA_DIR / name
    sums = dict(reversed(line.split()) for line in (DATA_DIR / "SHA256SUMS").read_text()
                .splitlines() if line.strip())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sums.get(name) != digest:
        raise ValueError(f"{path} does not match its sha256 in {DATA_DIR / 'SHA256SUMS'}: "
                         f"restore it from git (git checkout -- {path})")
    return path


@lru_cache(maxsize=2)
def load_scores(experiment: str) -> AuthorsScores:
    """The authors' scores of ``experiment`` ("vit" or "lm"); cached (treat as read-only)."""
    import torch
    out = {"trained": {}, "random": {}}
    saved = {"trained": {}, "random": {}}
    keys = {"trained": {}, "random": {}}
    deleted = []
    for kind, files in SCORE_FILES[experiment].items():
        for f in files:
            with np.load(_checked_path(f)) as z:
                for k in z.files:
                    if not k.endswith(SCORES_SUFFIX):
                        continue
                    key = k[:-len(SCORES_SUFFIX)]
                    if key.endswith(DELETED):
                        deleted.append(f"{kind}: {key}")
                        continue
                    s, sel = z[k], z[key + SAVED_SUFFIX]
                    if s.dtype != np.float16 or s.shape != SHAPES[experiment] or \
                            sel.shape != s.shape or not np.isfinite(s).all():
                        raise ValueError(f"{f}: {k} is {s.dtype} {s.shape}, expected finite "
                                         f"float16 {SHAPES[experiment]}")
                    name = project_name(experiment, key)
                    out[kind][name] = torch.from_numpy(s.astype(np.float32))
                    saved[kind][name] = torch.from_numpy(sel.astype(bool))
                    keys[kind][name] = key
    order = {kind: canonical_order(experiment, list(d)) for kind, d in out.items()}
    return AuthorsScores(experiment, {n: out["trained"][n] for n in order["trained"]},
                         {n: out["random"][n] for n in order["random"]},
                         {kind: {n: saved[kind][n] for n in order[kind]} for kind in saved},
                         keys, deleted)


def scores_for(cfg: Mapping, names: Sequence[str]) -> tuple[dict, dict]:
    """``(trained, random)`` scores of ``names`` (both models must have them): notebook 02."""
    sc = load_scores(cfg["experiment"])
    missing = [n for n in names if n not in sc.trained or n not in sc.random]
    if missing:
        raise KeyError(f"the authors' data has no trained and random-init scores for {missing};"
                       f" both models have: {sc.common}")
    return {n: sc.trained[n] for n in names}, {n: sc.random[n] for n in names}


def seed_scores(cfg: Mapping, names: Sequence[str]) -> tuple[dict, dict]:
    """:func:`overlap.seed_scores`' form: the authors published one random-init model (its
    seed not recorded), keyed by the profile's first ``random_seeds`` entry."""
    trained, random = scores_for(cfg, names)
    return trained, {int(cfg["random_seeds"][0]): random}


def top_k_agrees(scores, saved) -> dict:
    """Does a global top-k of ``scores`` (k = the number saved) equal the ``saved`` bool
    selection up to ties at the cut? Every neuron scored above the k-th score must be saved,
    none below it; neurons tied at the cut may go either way (float16 rounds distinct scores
    to one value). Our selection is :func:`modsep_utils.scoring.top_fraction`."""
    import torch
    from .scoring import top_fraction
    s = torch.as_tensor(scores, dtype=torch.float64)
    saved = torch.as_tensor(saved, dtype=torch.bool)
    k = int(saved.sum())
    ours = top_fraction(s, k / s.numel())
    cut = torch.sort(s.flatten(), descending=True).values[k - 1]
    differ = ours ^ saved
    return {"k": k, "n_differ": int(differ.sum()), "ties_at_cut": int((s == cut).sum()),
            "equal_up_to_ties": bool((s[differ] == cut).all())}


def saved_selection_check(experiment: str) -> dict:
    """Our global top-1% (``int(0.01 * n)`` neurons, the authors' count) of every loaded score
    tensor against the authors' saved selection: ``{"agree": [...], "differ": [...],
    "not_one_percent": {"<kind> <name>": n saved}}``."""
    sc = load_scores(experiment)
    out = {"agree": [], "differ": [], "not_one_percent": {}}
    for kind, scores in (("trained", sc.trained), ("random", sc.random)):
        for name, s in scores.items():
            saved = sc.saved[kind][name]
            tag = f"{kind} {name}"
            if int(saved.sum()) != int(0.01 * s.numel()):
                out["not_one_percent"][tag] = int(saved.sum())
            else:
                out["agree" if top_k_agrees(s, saved)["equal_up_to_ties"] else "differ"].append(tag)
    return out


def describe_scores(experiment: str) -> str:
    """What was loaded, what was left out and why, and the check of the saved selections."""
    sc = load_scores(experiment)
    check = saved_selection_check(experiment)
    n = len(check["agree"]) + len(check["differ"])
    layers, neurons = SHAPES[experiment]
    lines = [f"the authors' scores of {MODELS[experiment]} ({layers} x {neurons} neurons): "
             f"{len(sc.trained)} trained and {len(sc.random)} random-init subsets; "
             f"both models: {len(sc.common)}",
             f"  scored in the trained model only: {sc.only_trained or 'none'}",
             f"  in the random-init model only: {sc.only_random or 'none'}",
             f"  left out (files the authors deleted later): {sc.deleted or 'none'}",
             f"  our global top 1% equals the authors' saved selection up to ties at the cut "
             f"for {len(check['agree'])} of {n} (differs: {check['differ'] or 'none'})"]
    if check["not_one_percent"]:
        lines.append(f"  saved selections that are not 1% (not compared): "
                     f"{check['not_one_percent']}")
    unmapped = [n for n in sc.trained if n.startswith("authors-only:")]
    if unmapped:
        lines.append("  no loader in this project (authors-only): "
                     + "; ".join(f"{n}: {AUTHORS_ONLY[n.split(':')[1]]}" for n in unmapped))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tables


@lru_cache(maxsize=4)
def _read_json(name: str):
    return json.loads(_checked_path(name).read_text())


def wrong_to_right() -> dict[str, str]:
    """The authors' own correction of the shifted CIFAR-20 evaluation names (their notebook,
    cell 10), as project names: ``{"cifar20:<label given>": "cifar20:<superclass measured>"}``."""
    raw = _read_json(NOTEBOOK_JSON)["cell10"]["cifar20_wrong_to_right"]
    return {cifar20_name(w): cifar20_name(r) for w, r in raw.items()}


def raw_table(experiment: str, drop: float) -> dict:
    """The table as the authors stored it: row -> {unpruned_accuracy, target_accuracy,
    ff_frac, column -> {unpruned_accuracy, pruned_accuracy, accuracy_ratio, ...}}."""
    t = TABLES[(experiment, drop)]
    raw = _read_json(t.file)
    return raw["data"] if t.cell is None else raw[t.cell]["data"]


def _cells(row: Mapping) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, dict)}


def _percent(x) -> float | None:
    """An accuracy in percent as a fraction; the authors' -1 placeholder (an error) as None."""
    return None if x is None or x < 0 else x / 100.0


def cross_eval_table(experiment: str, drop: float) -> tuple[dict, dict]:
    """``(matrix, fractions)`` of the authors' table at ``drop`` (:data:`TABLES`).

    ``matrix`` has notebook 03's keys (``ratio[i][j]`` = pruned / unpruned accuracy on
    ``eval[i]`` with ``forget[j]``'s neurons pruned, each over its own column's unpruned
    accuracy, recomputed from their accuracies: their stored ratio divided by unpruned + 1e-5)
    plus ``base_by_forget`` and ``source``. ``fractions``: forget name -> ``frac``, ``reached``
    (the pruned accuracy on its own subset within [target - 2, target] points), ``accuracy``,
    ``target``, ``base``, ``drop``, ``note``. Placeholders are None."""
    t = TABLES[(experiment, drop)]
    raw = raw_table(experiment, drop)
    fix = wrong_to_right() if t.correct_columns else {}
    row_name = {r: project_name(experiment, r) for r in raw}
    col_keys = list(dict.fromkeys(c for row in raw.values() for c in _cells(row)))
    col_name = {c: fix.get(project_name(experiment, c), project_name(experiment, c))
                for c in col_keys}
    if len(set(col_name.values())) != len(col_name) or len(set(row_name.values())) != len(raw):
        raise ValueError(f"{t.file} {t.cell}: two labels map to one subset")
    forget = canonical_order(experiment, list(row_name.values()))
    by_name = {row_name[r]: r for r in raw}
    col_of = {v: k for k, v in col_name.items()}
    evals = [f for f in forget if f in col_of]
    evals += canonical_order(experiment, [n for n in col_of if n not in evals])
    cell = {(e, f): raw[by_name[f]].get(col_of[e], {}) for e in evals for f in forget}
    unpruned = [[_percent(cell[e, f].get("unpruned_accuracy")) for f in forget] for e in evals]
    pruned = [[_percent(cell[e, f].get("pruned_accuracy")) if unpruned[i][j] is not None
               else None for j, f in enumerate(forget)] for i, e in enumerate(evals)]
    ratio = [[p / u if p is not None and u else None for p, u in zip(pr, ur)]
             for pr, ur in zip(pruned, unpruned)]
    base = [float(np.mean([u for u in ur if u is not None])) if any(u is not None for u in ur)
            else None for ur in unpruned]
    fractions = {}
    for j, f in enumerate(forget):
        row = raw[by_name[f]]
        target, own = row["target_accuracy"], None
        relative = target / row["unpruned_accuracy"]
        if t.absolute_target and abs(target - 100 * (1 - drop)) > 1e-9 or \
                not t.absolute_target and abs(relative - (1 - drop)) > 1e-9:
            raise ValueError(f"{t.file} {t.cell}: {f}'s target {target} is not drop {drop}")
        if f in evals:
            own = pruned[evals.index(f)][j]
        searched = col_name.get(by_name[f])  # the column the authors' search measured
        if searched not in (None, f):
            fell = "is not evaluated" if own is None else f"fell to {own:.1%}"
            reached, note = False, (f"the search measured {searched} (the evaluation's shifted "
                                    f"label {by_name[f].removeprefix('cifar20-')}); its own "
                                    f"superclass {fell}")
        elif own is None:
            reached, note = False, "no evaluation of its own subset in this table"
        else:
            reached = target - TOL - 1e-9 <= 100 * own <= target + 1e-9
            note = "" if reached else (f"pruned accuracy {own:.2%} outside the window "
                                       f"[{(target - TOL) / 100:.2%}, {target / 100:.2%}]")
        fractions[f] = {"frac": float(row["ff_frac"]), "reached": bool(reached),
                        "accuracy": own, "target": target / 100,
                        "base": row["unpruned_accuracy"] / 100, "drop": drop, "tol": TOL / 100,
                        "note": note}
    matrix = {"forget": forget, "eval": evals, "base": base, "base_by_forget": unpruned,
              "pruned": pruned, "ratio": ratio, "frac": [fractions[f]["frac"] for f in forget],
              "reached": [fractions[f]["reached"] for f in forget],
              "source": f"data/paper/{t.file}" + (f" [{t.cell}]" if t.cell else ""),
              "note": t.note}
    return matrix, fractions


def as_the_authors(experiment: str, drop: float) -> dict:
    """The headline computed the authors' way, from their stored table as it stands: every
    column (reached or not), their stored ratios (placeholders as recorded, ratio 1.0), their
    labels, and the population standard deviation of the fractions. This gives back the
    numbers of :data:`modsep_utils.pruning.PAPER`."""
    raw = raw_table(experiment, drop)
    diag, off, other = [], [], []
    for r, row in raw.items():
        for c, v in _cells(row).items():
            (diag if c == r else off if c in raw else other).append(v["accuracy_ratio"])
    fr = np.array([row["ff_frac"] for row in raw.values()])
    return {"frac_mean": float(fr.mean()), "frac_std": float(fr.std()),
            "diagonal_mean": float(np.mean(diag)) if diag else None,
            "off_diagonal_mean": float(np.mean(off)) if off else None,
            "eval_only_mean": float(np.mean(other)) if other else None,
            "n_forget": len(raw)}


def most_damaged(matrix: Mapping) -> dict[str, str]:
    """forget subset -> the evaluated subset its pruning hurt most (lowest ratio) among the
    forget subsets: its own, for a table whose rows and columns name the same data."""
    ev, out = list(matrix["eval"]), {}
    for j, f in enumerate(matrix["forget"]):
        vals = [(matrix["ratio"][i][j], e) for i, e in enumerate(ev)
                if e in matrix["forget"] and matrix["ratio"][i][j] is not None]
        out[f] = min(vals)[1] if vals else None
    return out


def tables(experiment: str) -> dict[float, tuple[dict, dict]]:
    """Every converted table of ``experiment``: drop -> ``(matrix, fractions)``."""
    return {d: cross_eval_table(e, d) for (e, d) in sorted(TABLES) if e == experiment}


def show_cross_eval(cfg: Mapping) -> str:
    """Notebook 03 of a score-only profile: the authors' tables as Figures 1 / 2 in the
    project's style (the profile's ``drops``; any other targets the tables hold in
    ``03_authors_other_targets``), headline numbers by :func:`pruning.summarize` beside the
    paper's and beside the authors' way of computing them; returns the text table."""
    import matplotlib.pyplot as plt

    from . import config, pruning
    from .io import update_json
    from .plots import save_figure
    exp = cfg["experiment"]
    got = tables(exp)
    wanted = [float(d) for d in cfg["drops"]]
    lacking = [pruning.drop_label(d) for d in wanted if d not in got]
    figures = {"fig1_cross_eval" if exp == "vit" else "fig2_cross_eval":
               [d for d in wanted if d in got],
               "03_authors_other_targets": [d for d in got if d not in wanted]}
    summaries, sources = {}, {}
    for fig_name, drops in figures.items():
        if not drops:
            continue
        labels = {d: pruning.drop_label(d) for d in drops}
        matrices = {labels[d]: got[d][0] for d in drops}
        fracs = {labels[d]: got[d][1] for d in drops}
        sums = {lab: pruning.summarize(fracs[lab], m) for lab, m in matrices.items()}
        summaries.update(sums)
        sources.update({lab: {"source": m["source"], "note": m["note"],
                              "not_reached": {f: v["note"] for f, v in fracs[lab].items()
                                              if not v["reached"]}}
                        for lab, m in matrices.items()})
        fig = pruning.plot_cross_eval(matrices, sums, title=f"{MODELS[exp]} (authors' table):")
        save_figure(fig, config.figure_path(cfg, fig_name),
                    {"matrices": matrices, "summaries": sums, "fractions": fracs})
        plt.show()
    headline = pruning.headline(exp, summaries)
    for d in got:
        lab = pruning.drop_label(d)
        headline[lab]["authors_way"] = as_the_authors(exp, d)
        headline[lab].update(sources[lab])
    update_json(config.headline_path(dict(cfg)), {"03_selective_pruning": headline,
                                                  "03_drops_without_a_table": lacking})
    text = pruning.format_headline(headline)
    text += "\nthe authors' way (every column, their stored ratios, placeholders as recorded):"
    for lab, h in headline.items():
        a = h["authors_way"]
        text += (f"\n{lab:>5} fraction {a['frac_mean']:.2%} ± {a['frac_std']:.2%}, diagonal "
                 f"{a['diagonal_mean']:.3f}, off-diagonal {a['off_diagonal_mean']:.3f}"
                 + (f", eval-only {a['eval_only_mean']:.3f}" if a["eval_only_mean"] else ""))
    if lacking:
        text += f"\nno table of the authors at {', '.join(lacking)}"
    return text


# ---------------------------------------------------------------------------- notebook 04


def selection_fractions(cfg: Mapping, names: Sequence[str]) -> tuple[dict, dict]:
    """:func:`overlap.selection_fractions` for a score-only profile: ViT each superclass's
    fraction from the authors' table at the profile's first drop (``overlap_frac`` where it
    was not reached, marked (!)); the LM ``overlap_frac`` for every subset."""
    from . import overlap, pruning
    if cfg["experiment"] != "vit":
        return overlap.selection_fractions(cfg, names)
    drop = float(cfg["drops"][0])
    _, fr = cross_eval_table("vit", drop)
    missing = [n for n in names if n not in fr]
    if missing:
        raise KeyError(f"the authors' {pruning.drop_label(drop)} table has no row for {missing}")
    fr = {n: fr[n] for n in names}
    not_reached = [n for n, f in fr.items() if not f["reached"]]
    t = TABLES[("vit", drop)]
    source = (f"each superclass's fraction from the authors' {pruning.drop_label(drop)} table "
              f"({t.cell or t.file})")
    if not_reached:
        source += f"; top {float(cfg['overlap_frac']):.1%} where not reached (!)"
    return (overlap.fractions_from_03(fr, cfg["overlap_frac"]),
            {"source": source + "; the authors' one random-init model",
             "drop": drop, "not_reached": not_reached})


def more_overlap_fractions(cfg: Mapping) -> tuple[float, ...]:
    """Further fractions notebook 04 draws in a score-only profile (:data:`EXTRA_OVERLAP_FRACS`)."""
    return EXTRA_OVERLAP_FRACS.get(cfg["experiment"], ()) if is_score_only(cfg) else ()
