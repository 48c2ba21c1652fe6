"""Reproduce means the same numbers: compare a run's headline numbers with committed ones.

    python -m modsep_utils.reproduction --profile embedded        # run, then compare

Every number in ``results/<profile>/<experiment>/headline.json`` is compared with the committed
file within ``ATOL`` (absolute; accuracies, ratios, fractions, AUCs and correlations are all on
a 0-1 scale). Timings are not compared. CPU numerics differ slightly between machines, which can
move a neuron across a top-k cut; the tolerance allows for that and nothing more.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from .io import ROOT

ATOL = 0.02
SKIP = ("seconds", "time", "timing")


def flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON object as ``{"a/b/0": value}`` (timings left out)."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not any(s in str(k) for s in SKIP):
                out.update(flatten(v, f"{prefix}{k}/"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}/"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix.rstrip("/")] = float(obj)
    return out


def compare(current: Mapping, committed: Mapping, atol: float = ATOL) -> list[str]:
    """The numbers that differ by more than ``atol``, or exist on one side only."""
    a, b = flatten(current), flatten(committed)
    bad = [f"{k}: missing in this run" for k in sorted(set(b) - set(a))]
    bad += [f"{k}: not in the committed numbers" for k in sorted(set(a) - set(b))]
    bad += [f"{k}: {a[k]:.4g} here, {b[k]:.4g} committed" for k in sorted(set(a) & set(b))
            if abs(a[k] - b[k]) > atol]
    return bad


def expected_path(profile: str, experiment: str) -> Path:
    """Committed key numbers of a profile that CI checks inside the notebooks (smoke)."""
    return ROOT / "results" / "expected" / f"{profile}_{experiment}.json"


def matches_expected(profile: str, experiment: str, section: str, numbers: Mapping,
                     atol: float = ATOL) -> bool | None:
    """Whether ``numbers`` agree with the committed ``section`` of the expected file; None
    when no numbers are committed for this profile."""
    path = expected_path(profile, experiment)
    if not path.exists():
        return None
    committed = json.loads(path.read_text()).get(section)
    if committed is None:
        return None
    bad = compare(json.loads(json.dumps(numbers)), committed, atol)
    for line in bad[:10]:
        print("  differs:", line)
    return not bad


def committed_headline(path: Path) -> dict | None:
    """The committed version of a file (git HEAD), else the file as it is now."""
    rel = path.relative_to(ROOT)
    res = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True,
                         text=True)
    if res.returncode == 0:
        return json.loads(res.stdout)
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    from . import run
    from .config import EXPERIMENTS, load_profile, headline_path
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--experiment", choices=EXPERIMENTS, action="append")
    ap.add_argument("--atol", type=float, default=ATOL)
    args = ap.parse_args(argv)
    exps = args.experiment or list(EXPERIMENTS)
    paths = {e: headline_path(load_profile(args.profile, e)) for e in exps}
    committed = {e: committed_headline(p) for e, p in paths.items()}
    missing = [e for e, c in committed.items() if c is None]
    if missing:
        raise SystemExit(f"no committed headline for {args.profile}/{missing}: nothing to "
                         "compare with")
    run.main(["--profile", args.profile] + sum((["--experiment", e] for e in exps), []))
    failed = False
    for e in exps:
        bad = compare(json.loads(paths[e].read_text()), committed[e], args.atol)
        n = len(flatten(committed[e]))
        print(f"{args.profile}/{e}: {n - len(bad)} of {n} numbers within {args.atol} of the "
              "committed ones")
        for line in bad:
            print("  ", line)
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
