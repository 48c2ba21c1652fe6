"""Run the numbered notebooks headlessly with papermill, for one profile.

    python -m modsep_utils.run --profile embedded                 # everything, both experiments
    python -m modsep_utils.run --profile smoke --experiment lm --only 03 -p drops "[0.3]"

Executed notebooks go to ``reports/<profile>/<experiment>/``, figures to ``figures/<profile>/``
and the numbers behind them to ``results/<profile>/<experiment>/``. Steps cache what they
compute, so a re-run after an interruption only does what is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from .config import EXPERIMENTS, load_profile
from .io import ROOT, update_json

NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, or those whose number is in ``only``."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.zfill(2) for o in only}
        unknown = wanted - {p.name[:2] for p in found}
        if unknown:
            raise SystemExit(f"no notebook numbered {sorted(unknown)}; have "
                             f"{[p.name for p in found]}")
        found = [p for p in found if p.name[:2] in wanted]
    return found


def declared_parameters(path: Path) -> set[str]:
    import papermill as pm
    return set(pm.inspect_notebook(str(path)))


def check_parameters(path: Path, params: dict) -> None:
    """Papermill only warns about a parameter the notebook does not declare: fail instead."""
    unknown = sorted(set(params) - declared_parameters(path))
    if unknown:
        raise SystemExit(f"{path.name} declares no parameter {unknown}; it takes "
                         f"{sorted(declared_parameters(path))}")


def execute(path: Path, params: dict, out: Path) -> float:
    """Execute one notebook with ``params`` into ``out``; return the seconds it took."""
    import papermill as pm
    check_parameters(path, params)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(NOTEBOOKS),
                        kernel_name="python3", progress_bar=False, log_output=False)
    return time.time() - t0


def parse_overrides(pairs: list[list[str]]) -> dict:
    """``-p key value`` pairs; values are read as YAML (numbers, lists, ...)."""
    return {k: yaml.safe_load(v) for k, v in pairs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="embedded", help="smoke | embedded | paper")
    ap.add_argument("--experiment", choices=EXPERIMENTS, action="append",
                    help="vit and/or lm (default: both)")
    ap.add_argument("--only", action="append", help="notebook number(s) to run, e.g. 03")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="override a parameter (value read as YAML)")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.p)
    books = notebooks(args.only)
    declared = set().union(*(declared_parameters(b) for b in books)) if books else set()
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise SystemExit(f"no notebook declares the parameter(s) {unknown}; known: "
                         f"{sorted(declared)}")
    timings = {}
    for experiment in args.experiment or list(EXPERIMENTS):
        cfg = load_profile(args.profile, experiment) | overrides
        for book in books:
            params = {k: v for k, v in cfg.items() if k in declared_parameters(book)}
            out = ROOT / "reports" / args.profile / experiment / book.name
            print(f"[{args.profile}/{experiment}] {book.name} ...", flush=True)
            secs = execute(book, params, out)
            timings[f"{experiment}/{book.stem}"] = round(secs, 1)
            print(f"[{args.profile}/{experiment}] {book.name} done in {secs:.0f} s", flush=True)
    # seconds of this run only: steps found in the cache take seconds, so these are not the
    # cold-run times (the README records those); kept beside the executed notebooks
    update_json(ROOT / "reports" / args.profile / "timings.json", timings)
    print(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
