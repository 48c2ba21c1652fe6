"""Atomic writes and content-addressed caches.

Every file a later run trusts is written to a temporary name in the same folder and then
renamed, so an interrupted run never leaves a half-written file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MODSEP_DATA", ROOT / "data"))
_UMASK_LOCK = threading.Lock()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The file (or folder) gets the permissions the user's umask gives a new one: ``mkstemp``
    creates it readable by its owner only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere ``os.umask`` must set it to read
    it, so it is set straight back (under a lock, against this process's other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (data-parallel: by the main process only,
    see :func:`modsep_utils.parallel.on_main`)."""
    def write():
        with atomic_path(path) as tmp:
            _dump_json(obj, tmp)
    from .parallel import on_main
    on_main(write)


def _dump_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def update_json(path: str | os.PathLike, updates: dict) -> dict:
    """Merge ``updates`` into the JSON object at ``path`` (created if missing), atomically."""
    path = Path(path)
    obj = read_json(path) if path.exists() else {}
    obj.update(updates)
    write_json(path, obj)  # every process read the same file: on_main keeps them in step
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


def _canonical(parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=_jsonable)


def content_key(*parts: Any) -> str:
    """A short hash of the JSON form of ``parts``: the cache key of a computation's inputs."""
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:16]


class CacheWarning(UserWarning):
    """A cache file could not be used (unreadable, or written for other inputs): recomputed."""


def cached_tensors(kind: str, key_parts: Any, compute):
    """Load the value (a dict of tensors, ...) cached under ``DATA/cache/<kind>/<key>.pt`` or
    compute and save it.

    The key is the content hash of ``key_parts`` (every input that changes the result), so a
    cache written from other inputs is never reused; the file holds ``{"inputs": key_parts,
    "value": value}`` and the inputs are compared on load too. A file that cannot be read or
    holds other inputs is reported (:class:`CacheWarning`), deleted and recomputed.
    """
    import torch
    return _cached(DATA / "cache" / kind / f"{content_key(key_parts)}.pt", key_parts, compute,
                   load=lambda p: torch.load(p, weights_only=True), save=torch.save)


def cached_json(kind: str, key_parts: Any, compute):
    """Like :func:`cached_tensors` for JSON-serialisable results (``<key>.json``)."""
    return _cached(DATA / "cache" / kind / f"{content_key(key_parts)}.json", key_parts, compute,
                   load=read_json, save=_dump_json)


def _cached(path: Path, key_parts: Any, compute, load, save):
    """Data-parallel: the main process looks the value up and hands it to the others (they
    need not see its disk), every process computes a missing value (its share of the
    batches), the main process saves it."""
    from . import parallel
    found, value = parallel.broadcast(
        _lookup(path, key_parts, load) if parallel.is_main() else None)
    if found:
        return value
    value = compute()
    # the inputs in their JSON form: what a weights-only torch.load accepts, and compares equal
    entry = {"inputs": json.loads(_canonical(key_parts)), "value": value}

    def write():
        with atomic_path(path) as tmp:
            save(entry, tmp)
    parallel.on_main(write)
    return value


def _lookup(path: Path, key_parts: Any, load) -> tuple[bool, Any]:
    """``(True, value)`` of a usable cache file, else ``(False, None)`` (a bad file reported
    and deleted)."""
    if path.exists():
        try:
            entry = load(path)
        except MemoryError:
            raise
        except Exception as e:  # any way a file fails to load: truncated, garbage, foreign
            problem = f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        else:
            if not (isinstance(entry, dict) and set(entry) == {"inputs", "value"}):
                problem = "not a cache entry {inputs, value}"
            elif _canonical(entry["inputs"]) != _canonical(key_parts):
                problem = "written for other inputs than its key's"
            else:
                return True, entry["value"]
        warnings.warn(f"cache file {path} is {problem}: deleted, recomputing", CacheWarning,
                      stacklevel=4)
        path.unlink(missing_ok=True)
    return False, None
