"""Data-parallel collection and evaluation: 2 processes (gloo, launched with torchrun, and with
``accelerate launch``, as a user would) give the statistics, per-item counts and accuracies of
one process, exactly, and the main process alone writes caches and results."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, procs: int, data: Path, launcher: str = "torchrun") -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MODSEP_DATA": str(data),
           "MODSEP_DIST_BACKEND": "gloo", "PYTHONPATH": str(HERE.parent)}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    if procs == 1:
        launch = [sys.executable]
    elif launcher == "torchrun":
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc-per-node={procs}"]
    else:
        # the README's 8-GPU command with 2 processes: --multi_gpu is accelerate's torchrun
        # launcher (its --cpu multi-process path needs mpirun); without CUDA each process
        # joins on gloo
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                  f"--num_processes={procs}", "--num_machines=1", "--mixed_precision=no",
                  "--dynamo_backend=no", f"--main_process_port={_free_port()}"]
    r = subprocess.run(launch + [str(Path(__file__)), str(out)], env=env, cwd=HERE,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    _run(root / "one", 1, root / "data1")
    _run(root / "two", 2, root / "data2")
    _run(root / "accelerate", 2, root / "data3", launcher="accelerate")
    return root


@pytest.mark.parametrize("run", ["two", "accelerate"])
def test_two_processes_equal_one_exactly(runs, run):
    one = torch.load(runs / "one" / "rank0.pt", weights_only=False)
    for rank in (0, 1):
        two = torch.load(runs / run / f"rank{rank}.pt", weights_only=False)
        assert two["world"] == 2 and one["world"] == 1
        assert set(two) == set(one)
        for key in one:
            if key in ("world", "cached_value"):
                continue
            a, b = one[key], two[key]
            if key.startswith("stats_"):  # statistics: float64 sums, bit for bit
                for f in a:
                    assert torch.equal(a[f], b[f]), (key, f)
            else:
                assert repr(a) == repr(b), key


def test_main_process_writes_caches_and_results(runs):
    for run in ("one", "two", "accelerate"):
        res = torch.load(runs / run / "rank0.pt", weights_only=False)
        assert res["cache_hits"] == ["computed", "cached"], run
        # the cached value is the all-process sum, computed once by every process
        assert res["cached_value"] == {"n": res["world"]}
    for run, data in (("two", "data2"), ("accelerate", "data3")):
        assert (runs / run / "result.json").read_text().strip() == '{\n  "rank": 0\n}'
        assert sorted(p.name for p in (runs / data / "cache" / "t").iterdir()) \
            == sorted(p.name for p in (runs / "data1" / "cache" / "t").iterdir())


# ------------------------------------------------------------------------ worker (per process)

def worker(out: Path) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from test_scoring_pruning import CharTokenizer, MCSubset
    from tiny import ImageSubset, TextSubset, text_batch, tiny_text_models, tiny_vit

    from modsep_utils import io, parallel, pruning
    from modsep_utils.data import MCQuestion
    from modsep_utils.neurons import collect_stats
    out.mkdir(parents=True, exist_ok=True)
    res = {"world": parallel.world_size() if parallel.active() else 1}
    g = torch.Generator().manual_seed(0)
    lm = tiny_text_models()["mistral"]
    text = TextSubset("text:t", torch.randint(1, 64, (7, 12), generator=g))  # 4 batches of 2
    res["stats_text"] = collect_stats(lm, text.batches(2)).to_dict()
    padded = [text_batch(3, 10, seed=s, pad_last=s + 1) for s in range(3)]  # 3 batches
    res["stats_padded"] = collect_stats(lm, padded).to_dict()
    vit = tiny_vit(num_labels=4)
    images = ImageSubset("img:i", torch.randn(9, 1, 8, 8, generator=g),
                         torch.randint(0, 4, (9,), generator=g))
    res["stats_vit"] = collect_stats(vit, images.batches(4)).to_dict()
    res["text_counts"] = [a.tolist() for a in pruning.text_counts(lm, text, batch_size=2)]
    mask = torch.zeros(2, 24, dtype=torch.bool)
    mask[:, ::4] = True
    with pruning.pruned(lm, mask):
        res["text_counts_pruned"] = [a.tolist() for a in pruning.text_counts(lm, text, 3)]
    res["image_counts"] = [a.tolist() for a in pruning.image_counts(vit, images, 4)]
    qs = [MCQuestion("s", f"q{i} " + "ab " * (i % 5) + "?", [f"a{i}", f"bb{i}", f"c{i}c", "d"],
                     i % 4) for i in range(11)]
    for method in ("loglik", "letter"):
        res[f"mc_{method}"] = [a.tolist() for a in pruning.mc_counts(
            lm, CharTokenizer(), MCSubset(qs), method, batch_size=4)]
    res["accuracy"] = pruning.accuracy(lm, text, batch_size=2)
    # caches: computed by every process (a collective inside), saved by the main one; a
    # second call finds it, on every process
    hits = []

    def compute():
        hits.append("computed")
        return {"n": int(parallel.all_sum(torch.tensor([1.0])).item())}
    for _ in range(2):
        n = len(hits)
        res["cached_value"] = io.cached_json("t", {"k": 1}, compute)
        if len(hits) == n:
            hits.append("cached")
    res["cache_hits"] = hits
    io.write_json(out / "result.json", {"rank": parallel.rank()})
    torch.save(res, out / f"rank{parallel.rank()}.pt")


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
