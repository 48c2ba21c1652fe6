"""Atomic writes and content-addressed caches.

Every file a later run trusts is written to a temporary name in the same folder and then
renamed, so an interrupted run never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MODSEP_DATA", ROOT / "data"))


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def update_json(path: str | os.PathLike, updates: dict) -> dict:
    """Merge ``updates`` into the JSON object at ``path`` (created if missing), atomically."""
    path = Path(path)
    obj = read_json(path) if path.exists() else {}
    obj.update(updates)
    write_json(path, obj)
    return obj


def _jsonable(x: Any):
    import numpy as np
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    try:
        import torch
        if isinstance(x, torch.Tensor):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def content_key(*parts: Any) -> str:
    """A short hash of the JSON form of ``parts``: the cache key of a computation's inputs."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_tensors(kind: str, key_parts: Any, compute):
    """Load the dict of tensors cached under ``DATA/cache/<kind>/<key>.pt`` or compute and save it.

    The key is the content hash of ``key_parts`` (every input that changes the result), so a
    cache written from other inputs is never reused.
    """
    import torch
    path = DATA / "cache" / kind / f"{content_key(key_parts)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    value = compute()
    with atomic_path(path) as tmp:
        torch.save(value, tmp)
    return value


def cached_json(kind: str, key_parts: Any, compute):
    """Like :func:`cached_tensors` for JSON-serialisable results."""
    path = DATA / "cache" / kind / f"{content_key(key_parts)}.json"
    if path.exists():
        return read_json(path)["value"]
    value = compute()
    write_json(path, {"inputs": key_parts, "value": value})
    return value
