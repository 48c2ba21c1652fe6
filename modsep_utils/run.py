"""Run the numbered notebooks headlessly with papermill, for one profile.

    python -m modsep_utils.run --profile embedded                 # everything, both experiments
    python -m modsep_utils.run --profile smoke --experiment lm --only 03 -p drops "[0.3]"

Executed notebooks go to ``reports/<profile>/<experiment>/``, figures to ``figures/<profile>/``
and the numbers behind them to ``results/<profile>/<experiment>/``. A run with ``-p`` overrides
writes into ``<that folder>/overrides/<slug>/`` instead (git-ignored; ``run.json`` there names
the overrides), unless ``--into-profile`` is given. Steps cache what they compute, so a re-run
after an interruption only does what is missing. Every profile and override is checked before
the first notebook starts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from . import config
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
    out = {}
    for key, value in pairs:
        if key in ("profile", "experiment"):
            raise SystemExit(f"-p {key}: choose it with --{key}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise SystemExit(f"-p {key} {value!r}: not a YAML value ({problem}); write e.g. "
                             f"-p drops \"[0.3, 0.6]\" or -p collect_n 64") from None
    return out


def plan(profile: str, experiments: list[str], overrides: dict) -> list[dict]:
    """The configuration of every experiment to run, each checked before anything runs."""
    try:
        cfgs = [load_profile(profile, e) for e in experiments]
        return [config.validate(c | overrides, f"-p for {profile}/{c['experiment']}")
                for c in cfgs]
    except ValueError as e:
        raise SystemExit(str(e)) from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="embedded", help="smoke | embedded | paper | yours")
    ap.add_argument("--experiment", choices=EXPERIMENTS, action="append",
                    help="vit and/or lm (default: both)")
    ap.add_argument("--only", action="append", help="notebook number(s) to run, e.g. 03")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="override a parameter (value read as YAML)")
    ap.add_argument("--into-profile", action="store_true",
                    help="with -p: write into the profile's own folders, not overrides/<slug>/")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.p)
    books = notebooks(args.only)
    declared = set().union(*(declared_parameters(b) for b in books)) if books else set()
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise SystemExit(f"no notebook declares the parameter(s) {unknown} "
                         f"({config.closest(unknown[0])}); known: {sorted(declared)}")
    cfgs = plan(args.profile, args.experiment or list(EXPERIMENTS), overrides)
    saved = os.environ.get(config.INTO_PROFILE)
    if args.into_profile:
        os.environ[config.INTO_PROFILE] = "1"  # read by config.output_dir, here and in kernels
    try:
        print(json.dumps(run_all(cfgs, books), indent=1))
    finally:
        if saved is None:
            os.environ.pop(config.INTO_PROFILE, None)
        else:
            os.environ[config.INTO_PROFILE] = saved


def run_all(cfgs: list[dict], books: list[Path]) -> dict:
    """Execute ``books`` for every configuration; return the seconds each took."""
    timings = {}
    for cfg in cfgs:
        reports = config.output_dir(cfg, "reports")
        tag = f"{cfg['profile']}/{cfg['experiment']}"
        if reports.parent.name == "overrides":
            tag += f", into overrides/{reports.name}"
        if books == notebooks():
            # a run of every notebook writes the whole headline anew: no entry of an earlier
            # run (or of an older code version) survives beside the numbers it no longer matches
            config.headline_path(cfg).unlink(missing_ok=True)
        for book in books:
            params = {k: v for k, v in cfg.items() if k in declared_parameters(book)}
            print(f"[{tag}] {book.name} ...", flush=True)
            secs = execute(book, params, reports / cfg["experiment"] / book.name)
            step = {f"{cfg['experiment']}/{book.stem}": round(secs, 1)}
            timings.update(step)
            print(f"[{tag}] {book.name} done in {secs:.0f} s", flush=True)
            # seconds of this run only: steps found in the cache take seconds, so these are
            # not the cold-run times (the README records those); kept beside the reports
            update_json(reports / "timings.json", step)
    return timings


if __name__ == "__main__":
    main(sys.argv[1:])
