"""Prepare the embedded default once: the embedded models, every embedded text domain and the
rendered Glyphs-100 images.

    python -m modsep_utils.prepare [--record-digests]

Idempotent: what is already prepared is kept (each piece is written atomically). Writes the
collect/eval leakage of every text domain to ``results/embedded/text_leakage.json``;
``--record-digests`` rewrites the committed ``data/text_digests.json`` from this machine.
"""
from __future__ import annotations

import argparse
import json
import time

from .io import ROOT, write_json

LEAKAGE_JSON = ROOT / "results" / "embedded" / "text_leakage.json"


def leakage_table(report: dict[str, dict]) -> str:
    """One line per domain: documents and characters per split, eval leak before/after."""
    rows = [f"{'domain':<15}{'docs c/e':>11}{'repeats':>8}{'chars c/e':>17}"
            f"{'leak before':>12}{'after':>7}"]
    for d, r in report.items():
        rows.append(f"{d:<15}{r['docs_collect']:>6}/{r['docs_eval']:<4}{r['docs_repeated']:>8}"
                    f"{r['chars_collect']:>9,}/{r['chars_eval']:<7,}"
                    f"{r['leak_before']:>12.1%}{r['leak_after']:>7.1%}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record-digests", action="store_true",
                    help="rewrite data/text_digests.json from the text prepared here")
    args = ap.parse_args(argv)
    from . import data, glyphs
    from .models import prepare_embedded_models
    t0 = time.time()
    info = prepare_embedded_models(progress=True)
    data.prepare_embedded(progress=True)
    for split in ("train", "test"):
        glyphs.glyph_arrays(split)
    report = data.leakage_report()
    write_json(LEAKAGE_JSON, {
        "text_format": data.TEXT_FORMAT, "split_version": data.SPLIT_VERSION,
        "eval_every": data.EVAL_EVERY, "dup_line_chars": data.DUP_LINE_CHARS,
        "domains": report})
    print(leakage_table(report))
    print(f"leakage written to {LEAKAGE_JSON.relative_to(ROOT)}")
    if args.record_digests:
        data.record_text_digests()
        print(f"digests written to {data.TEXT_DIGESTS}")
    print(json.dumps(info, indent=1, default=str))
    print(f"embedded default prepared in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
