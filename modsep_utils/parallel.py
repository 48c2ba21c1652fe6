"""Data-parallel statistics and evaluation on ``torch.distributed`` (``torchrun``, ``accelerate
launch``): each process takes its share of the batches, the sums and per-item counts are
combined across processes, and one process (rank 0) writes results and caches.

One process (no launcher, or ``WORLD_SIZE=1``): every function here is a no-op, so notebooks,
``python -m modsep_utils.run`` and the tests run as before. Under a launcher each process joins
the process group lazily, at its first collective, from the variables the launcher sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL when CUDA
is there (each process on GPU ``LOCAL_RANK``), gloo otherwise or with
``MODSEP_DIST_BACKEND=gloo``. The driver and every notebook kernel it starts are processes of
their own that join in turn; each joins under a store prefix counted per rank
(``modsep/<n>``), so successive kernels never read a finished kernel's keys from the
launcher's store.

Exactness: statistics are float64 sums of per-batch float32 partial sums and every batch is
computed whole by one process, so the merged sums are those of one process up to the order
of float64 additions, which does not change a bit while the partials of one neuron lie
within 2^29 / batches of each other (tested: identical to one process). Counts are integers.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

#: set by a process that hosts the rendezvous store itself (no launcher agent store), so the
#: notebook kernels it starts connect to it instead of hosting another on the same port
HOSTED = "MODSEP_STORE_HOSTED"


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() else None


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def world_size() -> int:
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_world_size()
    return _env_world()


def rank() -> int:
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main() -> bool:
    """Whether this process writes results and caches (rank 0; the only one without a
    launcher)."""
    return rank() == 0


def active() -> bool:
    """Several processes share the work (joins the process group on first use)."""
    return setup()


def backend() -> str:
    import torch
    if os.environ.get("MODSEP_DIST_BACKEND"):
        return os.environ["MODSEP_DIST_BACKEND"]
    return "nccl" if torch.cuda.is_available() else "gloo"


def setup(backend_name: str | None = None) -> bool:
    """Join the launcher's process group once per process; True when there are several
    processes. ``backend_name``: force one (the driver uses gloo: it holds no tensors)."""
    if _env_world() <= 1:
        return False
    dist = _dist()
    if dist is None:
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    from datetime import timedelta

    import torch
    r, world = rank(), _env_world()
    name = backend_name or backend()
    if name == "nccl":
        torch.cuda.set_device(local_rank())
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    host = r == 0 and not agent and not os.environ.get(HOSTED)
    timeout = timedelta(seconds=int(os.environ.get("MODSEP_DIST_TIMEOUT", "3600")))
    store = dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"),
                          int(os.environ["MASTER_PORT"]), world, is_master=host,
                          timeout=timeout, wait_for_workers=False)
    if host:
        os.environ[HOSTED] = "1"
    n = store.add(f"modsep/joins/{r}", 1)  # the same count on every rank: same code path
    dist.init_process_group(name, store=dist.PrefixStore(f"modsep/{n}", store), rank=r,
                            world_size=world, timeout=timeout)
    return True


def _device():
    """Where collective tensors live: this process's GPU for NCCL, else the CPU."""
    import torch
    return torch.device("cuda", torch.cuda.current_device()) if backend() == "nccl" \
        else torch.device("cpu")


def shard(items: Iterable) -> Iterator:
    """This process's share of ``items`` (every ``world_size``-th, from its rank): batches
    are handed out whole, so each is computed exactly as one process computes it."""
    if not active():
        yield from items
        return
    r, w = rank(), world_size()
    for i, x in enumerate(items):
        if i % w == r:
            yield x


def all_sum(t):
    """``t`` summed over the processes (a new tensor on ``t``'s device; ``t`` itself with
    one process)."""
    if not active():
        return t
    dist = _dist()
    out = t.to(_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def gather_shards(parts: Sequence, n_items: int | None = None) -> list:
    """Reassemble what :func:`shard` split: ``parts`` are this process's results, one per
    item it took, in its order; returns every process's results in the items' order."""
    if not active():
        return list(parts)
    dist = _dist()
    every: list[Any] = [None] * world_size()
    dist.all_gather_object(every, list(parts))
    out = []
    for i in range(max(len(p) for p in every)):
        out += [p[i] for p in every if i < len(p)]
    return out


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not active():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        _dist().barrier()


def on_main(write: Callable[[], Any]) -> Any:
    """Run ``write`` (a result or cache file written) on the main process only, between two
    barriers: every process has decided to write before it starts and sees the file after,
    so whatever a process decides from the files it reads, all decide alike (one node, or a
    shared file system)."""
    if not active():
        return write()
    barrier()
    out = write() if is_main() else None
    barrier()
    return out


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (builds a model cache, extracts data); the
    others wait, then run it and find the result."""
    if active() and not is_main():
        barrier()
    yield
    if active() and is_main():
        barrier()
