import json
import os
import shutil
import warnings

import pytest
import torch

from modsep_utils import io


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "DATA", tmp_path)
    return tmp_path


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value
    return compute, calls


def cache_file(kind, key_parts, ext):
    return io.DATA / "cache" / kind / f"{io.content_key(key_parts)}.{ext}"


CACHES = [(io.cached_tensors, "pt", lambda: {"a": torch.arange(6.0)}),
          (io.cached_json, "json", lambda: {"a": [1.0, 2.0], "n": 3})]


def same(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("cached, ext, make", CACHES)
def test_a_cache_entry_is_reused(data, cached, ext, make):
    key = {"subset": "fmnist:Bag", "n": 64, "frac": (0.5, 1.0)}
    compute, calls = counting(make())
    first = cached("k", key, compute)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cached("k", key, compute)
    assert calls == [1] and same(first, again)


@pytest.mark.parametrize("cached, ext, make", CACHES)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong structure"])
def test_a_damaged_cache_file_is_reported_deleted_and_recomputed(data, cached, ext, make, damage):
    key = ["stats", 1]
    compute, calls = counting(make())
    cached("k", key, compute)
    path = cache_file("k", key, ext)
    if damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif ext == "pt":  # the old format: the bare value
        torch.save(make(), path)
    else:
        path.write_text(json.dumps([1, 2]))
    with pytest.warns(io.CacheWarning, match=f"cache file {path}.*deleted, recomputing"):
        value = cached("k", key, compute)
    assert calls == [1, 1] and same(value, make())
    with warnings.catch_warnings():  # the recomputed entry is valid again
        warnings.simplefilter("error")
        assert same(cached("k", key, compute), make()) and calls == [1, 1]


@pytest.mark.parametrize("cached, ext, make", CACHES)
def test_a_valid_entry_under_another_key_is_not_trusted(data, cached, ext, make):
    cached("k", ["a"], lambda: make())
    shutil.copy(cache_file("k", ["a"], ext), cache_file("k", ["b"], ext))
    compute, calls = counting(make())
    with pytest.warns(io.CacheWarning, match="written for other inputs"):
        cached("k", ["b"], compute)
    assert calls == [1]


def test_pt_entries_hold_their_inputs(data):
    key = {"model": "embedded-vit", "seeds": (0, 1)}
    io.cached_tensors("k", key, lambda: {"x": torch.ones(2)})
    entry = torch.load(cache_file("k", key, "pt"), weights_only=True)
    assert entry["inputs"] == {"model": "embedded-vit", "seeds": [0, 1]}
    assert torch.equal(entry["value"]["x"], torch.ones(2))


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)
        return mask
    saved = os.umask(0o022)
    yield set_mask
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_written_files_get_the_umask_permissions(tmp_path, monkeypatch, umask, mask):
    umask(mask)
    assert io.umask() == mask
    io.write_json(tmp_path / "a" / "x.json", {"a": 1})
    assert (tmp_path / "a" / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
    monkeypatch.setattr(io, "DATA", tmp_path)
    io.cached_tensors("k", [1], lambda: {"x": torch.zeros(1)})
    assert cache_file("k", [1], "pt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_umask_without_proc(monkeypatch, umask):
    umask(0o027)
    monkeypatch.setattr(io.Path, "read_text", lambda self: (_ for _ in ()).throw(OSError()))
    assert io.umask() == 0o027
    monkeypatch.undo()
    assert io.umask() == 0o027  # read, and set back


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
