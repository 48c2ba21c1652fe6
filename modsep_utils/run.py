"""Run the numbered notebooks headlessly with papermill, for one profile.

    python -m modsep_utils.run --profile embedded                 # everything, both experiments
    python -m modsep_utils.run --profile smoke --experiment lm --only 03 -p drops "[0.3]"

    python -m modsep_utils.run --in-place                         # notebooks/ with their own (smoke) parameters

Executed notebooks go to ``reports/<profile>/<experiment>/``, figures to ``figures/<profile>/``
and the numbers behind them to ``results/<profile>/<experiment>/``. A run with ``-p`` overrides
writes into ``<that folder>/overrides/<slug>/`` instead (git-ignored; ``run.json`` there names
the overrides), unless ``--into-profile`` is given. Each notebook receives ``profile``,
``experiment`` and ``overrides`` (the ``-p`` values); it reads the rest from the profile file.
Steps cache what they compute, so a re-run after an interruption only does what is missing.
Every profile and override is checked before the first notebook starts. Every executed
notebook is saved as a reader without a kernel can read it (:func:`sanitize`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import config, parallel
from .config import EXPERIMENTS, load_profile
from .io import ROOT, atomic_path, update_json

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
    """Execute one notebook with ``params`` into ``out`` (sanitised, written atomically);
    return the seconds it took. Empty ``params`` run the notebook's own parameters cell
    without an injected one (papermill adds none), so an in-place run keeps its cells."""
    import nbformat
    import papermill as pm
    check_parameters(path, params)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # no output path: papermill would rewrite ``out`` cell by cell (the source notebook itself,
    # for an in-place run), and a failed run would leave it half executed; a failure raises
    # with the cell's traceback
    nb = pm.execute_notebook(str(path), None, parameters=params, cwd=str(NOTEBOOKS),
                             kernel_name="python3", progress_bar=False, log_output=False)
    retarget_links(nb, path.parent, out.parent)
    with atomic_path(out) as tmp:
        nbformat.write(sanitize(nb), str(tmp))
    return time.time() - t0


# ---------------------------------------------------------------------------- saved outputs

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def kernelspec(name: str = "python3") -> dict:
    """The kernelspec entry as JupyterLab writes it when it starts the kernel: a notebook that
    carries anything else is marked modified as soon as it is opened."""
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec(name)
    return {"display_name": spec.display_name, "language": spec.language, "name": name}


def sanitize(nb):
    """``nb`` as a reader without a kernel should see it (on a code host, or an untrusted
    notebook in JupyterLab), changed in place and returned:

    - widget outputs are dropped (tqdm bars, the explorer's controls): without their kernel
      they render as raw reprs (``VBox(children=...``, ``0%| | 0/4``); the explorer shows its
      report and figure as plain outputs below the controls, and those stay;
    - a stream keeps the final state of every line a progress bar rewrote with ``\\r``;
    - run timestamps go (cell ``execution``/``papermill`` metadata, papermill's times): they
      change on every run and say nothing about the results;
    - the kernelspec is the installed one's (:func:`kernelspec`).
    """
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = kernelspec()
    if "papermill" in nb.metadata:
        nb.metadata["papermill"] = {k: v for k, v in nb.metadata["papermill"].items()
                                    if k in ("parameters", "version")}
    for cell in nb.cells:
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if WIDGET_VIEW in out.get("data", {}):
                continue
            if out.output_type == "stream":
                out.text = "\n".join(line.rsplit("\r", 1)[-1] for line in out.text.split("\n"))
                if not out.text.strip():
                    continue
            kept.append(out)
        cell.outputs = kept
    return nb


_LINK = re.compile(r"(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)(\))", re.I)


def retarget_links(nb, source_dir: Path, out_dir: Path) -> None:
    """Relative links in markdown cells (``[LM](../reports/embedded/lm/03_pruning.ipynb)``)
    rewritten so that they resolve from ``out_dir`` as they did from ``source_dir``."""
    if Path(source_dir).resolve() == Path(out_dir).resolve():
        return

    def move(m):
        target = (Path(source_dir) / m.group(2)).resolve()
        return m.group(1) + os.path.relpath(target, Path(out_dir).resolve()) + m.group(3)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _LINK.sub(move, cell.source)


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
    ap.add_argument("--in-place", action="store_true",
                    help="execute notebooks/NN_*.ipynb into themselves with their committed "
                         "parameters (the smoke ViT run CI repeats); no --profile, -p")
    args = ap.parse_args(argv)
    books = notebooks(args.only)
    if args.in_place:
        if args.p or args.experiment or args.into_profile:
            raise SystemExit("--in-place runs the notebooks' own parameters: drop -p, "
                             "--experiment and --into-profile (or run without --in-place)")
        print(json.dumps(run_in_place(books), indent=1))
        return
    overrides = parse_overrides(args.p)
    # under torchrun / accelerate launch: the driver joins on gloo (it holds no tensors), and
    # every notebook kernel it starts joins in turn (modsep_utils.parallel)
    parallel.setup("gloo")
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
        # the notebook reads the profile file itself; it is told only what differs from it
        params = {"profile": cfg["profile"], "experiment": cfg["experiment"],
                  "overrides": config.overrides(cfg)}
        for book in books:
            print(f"[{tag}] {book.name} ...", flush=True)
            out = reports / cfg["experiment"] / book.name
            if not parallel.is_main():  # data-parallel: the main process keeps the report
                out = Path(tempfile.mkdtemp(prefix="modsep-report-")) / book.name
            secs = execute(book, params, out)
            step = {f"{cfg['experiment']}/{book.stem}": round(secs, 1)}
            timings.update(step)
            print(f"[{tag}] {book.name} done in {secs:.0f} s", flush=True)
            # seconds of this run only: steps found in the cache take seconds, so these are
            # not the cold-run times (the README records those); kept beside the reports
            update_json(reports / "timings.json", step)
    return timings


def run_in_place(books: list[Path]) -> dict:
    """Execute each of ``books`` into itself with its own parameters cell (nothing injected,
    so the paired ``.py`` stays in step); return the seconds each took."""
    timings = {}
    for book in books:
        print(f"[in place] {book.name} ...", flush=True)
        timings[book.stem] = round(execute(book, {}, book), 1)
    return timings


if __name__ == "__main__":
    main(sys.argv[1:])
