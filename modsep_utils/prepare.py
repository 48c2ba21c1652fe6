"""Prepare the embedded default once: both embedded models and every embedded text domain.

    python -m modsep_utils.prepare

Idempotent: what is already prepared is kept (each piece is written atomically).
"""
from __future__ import annotations

import json
import time


def main() -> None:
    from .data import prepare_embedded
    from .models import prepare_embedded_models
    t0 = time.time()
    info = prepare_embedded_models(progress=True)
    prepare_embedded(progress=True)
    print(json.dumps(info, indent=1, default=str))
    print(f"embedded default prepared in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
