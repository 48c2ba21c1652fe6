"""Step 05: MoEfication - balanced k-means of the rows of W_in (paper section 2.3.2).

Per layer, the rows of W_in (one per neuron, ``[neurons, d_model]``: ``up_proj.weight`` for
gated MLPs, ``intermediate.dense.weight`` / ``fc1.weight`` for ViT) are L2-normalised and
split into ``k`` clusters of exactly ``neurons // k`` each with k-means-constrained
(REFERENCE.md). The paper uses k = 96 for ViT-Base (32 per cluster) and k = 128 for
Mistral-7B (112 per cluster); :func:`choose_k` picks the k for another width.

Two methods (:data:`METHODS`, the profile's ``moe_method``):

- ``"reference"``: the authors' call, ``KMeansConstrained(n_clusters=k, size_min=size_max=
  neurons // k, n_init, random_state)``. Its assignment step is a min-cost flow on *unsquared*
  distances rounded to 1e-3, read back arc by arc in Python; the paper's defaults (``n_init=10``)
  take about 16 minutes a layer for Mistral-7B on 2 cores.
- ``"fast"`` (default, :func:`balanced_kmeans`): the same objective (within-cluster sum of
  squares under exactly ``neurons // k`` per cluster), reached with less work: ``n_init``
  k-means++ starts, each refined by unconstrained Lloyd steps in torch (GPU when there is one),
  screened by one exact balanced assignment; the best :data:`N_REFINE` are run to convergence
  with exact balanced assignments. Each exact assignment is the transport problem "every row to
  one centre, every centre exactly ``neurons // k`` rows" on squared distances, solved by
  OR-Tools' ``SimpleMinCostFlow`` (the solver k-means-constrained uses), first on each row's
  :data:`CANDIDATES` nearest centres and accepted only when no negative cycle shows that the full
  problem has a cheaper assignment (else solved on the full graph). ``bench/bench_moe.py``
  measures both side by side.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import io as mio

#: The clustering methods: ``"fast"`` (:func:`balanced_kmeans`) and ``"reference"`` (the
#: authors' k-means-constrained call).
METHODS = ("fast", "reference")

#: Bumped whenever :func:`balanced_kmeans` would give other labels for the same inputs: it is part
#: of every cached clustering's key.
FAST_VERSION = "balanced-lloyd-ortools-v1"

#: How many of the ``n_init`` screened starts :func:`balanced_kmeans` runs to convergence.
N_REFINE = 3

#: Unconstrained Lloyd steps after k-means++ (fewer when the labels stop changing).
LLOYD_STEPS = 20

#: Centres per row offered to the sparse min-cost flow before the full graph (when k is larger).
CANDIDATES = 16

#: Below this many elements (rows x dims) the fast method runs torch on one CPU thread: small
#: operations on several threads of a shared machine spend their time waiting for each other
#: (the embedded ViT layer: 0.3 s on one thread, 2-15 s on two busy cores, the same labels).
SMALL_ON_ONE_THREAD = 2 ** 22

#: Squared distances are rounded to multiples of ``1 / COST_SCALE`` for the integer solver.
COST_SCALE = 1e8

#: ``n_init`` per run profile. The embedded profile clusters 2 x 30 SmolLM2 layers (1536 x 576)
#: and 2 x 4 ViT layers (512 x 128); one restart is 10x cheaper and its within-cluster sum of
#: squares is within a fraction of a percent of ten restarts' (bench/bench_moe.py measures both).
#: The paper profile keeps the authors' default of 10.
N_INIT_BY_PROFILE = {"embedded": 1, "paper": 10}


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n``, ascending."""
    if n < 1:
        raise ValueError(f"need a positive integer, got {n}")
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def check_k(n_neurons: int, k: int) -> None:
    """Raise ``ValueError`` unless ``k`` divides ``n_neurons`` (every cluster exactly
    ``n_neurons // k``), naming the nearest valid k below and above."""
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n_neurons or n_neurons % k:
        divs = divisors(n_neurons)
        below = [d for d in divs if d < k]
        above = [d for d in divs if d > k]
        near = ", ".join(f"k={d} ({n_neurons // d} per cluster)"
                         for d in ([below[-1]] if below else []) + ([above[0]] if above else []))
        raise ValueError(f"k={k} does not divide {n_neurons} neurons into equal clusters; "
                         f"nearest valid: {near} (or use choose_k({n_neurons}, cluster_size))")


def choose_k(d_mlp: int, cluster_size: int) -> int:
    """The k dividing ``d_mlp`` whose cluster size ``d_mlp // k`` is nearest ``cluster_size``.

    Ties (two sizes equally far) go to the larger k, i.e. the smaller clusters. Paper widths:
    ``choose_k(3072, 32) == 96`` (ViT-Base), ``choose_k(14336, 112) == 128`` (Mistral-7B).
    """
    if cluster_size < 1:
        raise ValueError(f"cluster_size must be >= 1, got {cluster_size}")
    return min(divisors(d_mlp), key=lambda k: (abs(d_mlp // k - cluster_size), -k))


def _as_array(w) -> np.ndarray:
    """float64 numpy copy of a ``[neurons, d_model]`` weight (torch, any float dtype, or numpy)."""
    if hasattr(w, "detach"):
        w = w.detach().cpu().float().numpy()  # via float32: numpy has no bfloat16
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"W_in must be [neurons, d_model]; got shape {w.shape}")
    return w


def normalise_rows(w_in) -> np.ndarray:
    """``[neurons, d_model]`` float64 with each row scaled to unit L2 norm (an all-zero row
    stays zero: it has no direction)."""
    w = _as_array(w_in)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    return w / np.where(norms > 0, norms, 1.0)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"moe_method must be one of {list(METHODS)}, not {method!r}")
    return method


def method_version(method: str) -> str:
    """What the cache key records for ``method``: :data:`FAST_VERSION`, or the installed
    k-means-constrained version for the reference."""
    if check_method(method) == "fast":
        return FAST_VERSION
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"k-means-constrained {version('k-means-constrained')}"
    except PackageNotFoundError:
        raise ImportError("moe_method 'reference' needs the k-means-constrained package "
                          "(pip install k-means-constrained)") from None


def cluster_layer(w_in, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 300,
                  method: str = "fast", device=None, n_jobs: int = 1) -> np.ndarray:
    """Balanced k-means labels ``[neurons]`` (int64 in ``0..k-1``) of one layer's W_in rows.

    ``w_in``: ``[neurons, d_model]``. Rows are L2-normalised, then clustered into ``k``
    clusters of exactly ``neurons // k``:

    - ``method="fast"``: :func:`balanced_kmeans` (``device``: None = CUDA when available);
    - ``method="reference"``: ``KMeansConstrained(n_clusters=k, size_min=neurons//k,
      size_max=neurons//k, random_state=seed, n_init=n_init, max_iter=max_iter,
      n_jobs=n_jobs)``, the authors' call (``n_jobs`` > 1 runs the restarts in parallel and
      draws other restart seeds, so other labels).

    A k that does not divide ``neurons`` raises ``ValueError`` naming the nearest valid k.
    """
    check_method(method)
    x = normalise_rows(w_in)
    d = x.shape[0]
    check_k(d, k)
    if method == "fast":
        labels = balanced_kmeans(x, k, seed=seed, n_init=n_init, max_iter=max_iter,
                                 device=device)
    else:
        try:
            from k_means_constrained import KMeansConstrained
        except ImportError:
            method_version("reference")  # raises the message naming the package
            raise
        km = KMeansConstrained(n_clusters=k, size_min=d // k, size_max=d // k,
                               random_state=seed, n_init=n_init, max_iter=max_iter,
                               n_jobs=n_jobs)
        labels = np.asarray(km.fit_predict(x), dtype=np.int64)
    sizes = np.bincount(labels, minlength=k)
    if labels.shape != (d,) or (sizes != d // k).any():  # the solver's contract, checked
        raise RuntimeError(f"{method} clustering returned unbalanced clusters (sizes "
                           f"{sorted(set(sizes.tolist()))}, want {d // k})")
    return labels


# -- the fast method -----------------------------------------------------------------------------

def pick_device(device=None):
    """``device`` as a ``torch.device``; None: ``cuda`` when available, else ``cpu``."""
    import torch
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _flow(n: int, k: int, size: int, rows: np.ndarray, cols: np.ndarray, cost: np.ndarray):
    """Solve the balanced transport on the arcs ``rows[a] -> cols[a]`` (integer ``cost[a]``)
    with OR-Tools: each row sends 1, each centre takes ``size``. Returns the chosen arc of
    each row ``[n]``, or None when these arcs admit no balanced assignment."""
    from ortools.graph.python.min_cost_flow import SimpleMinCostFlow
    flow = SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(rows, cols + n, np.ones(len(rows), np.int64), cost)
    flow.set_nodes_supplies(np.arange(n + k),
                            np.concatenate([np.ones(n, np.int64), np.full(k, -size, np.int64)]))
    status = flow.solve()
    if status == flow.INFEASIBLE:
        return None
    if status != flow.OPTIMAL:
        raise RuntimeError(f"min-cost flow failed ({status}) on a {n} x {k} assignment")
    used = np.flatnonzero(flow.flows(np.arange(len(rows))))
    if len(used) != n:
        raise RuntimeError(f"min-cost flow used {len(used)} arcs for {n} rows")
    return used[np.argsort(rows[used], kind="stable")]


def _no_negative_cycle(icost: np.ndarray, labels: np.ndarray, k: int) -> bool:
    """True when ``labels`` is an optimal balanced assignment for the integer costs ``icost``
    ``[n, k]``: no cycle of moves (a row of cluster a to b, one of b to c, ..., back to a) has
    negative total cost. ``w[a, b]`` is the cheapest move of a row of a to b; Floyd-Warshall on
    the k clusters finds any negative cycle."""
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    delta = icost[order] - icost[order, labels[order]][:, None]        # [n, k] cost of a move
    w = delta.reshape(k, n // k, k).min(axis=1)                        # balanced: n // k rows
    np.fill_diagonal(w, 0)
    for m in range(k):
        np.minimum(w, w[:, m:m + 1] + w[m:m + 1, :], out=w)
        if (np.diagonal(w) < 0).any():
            return False
    return True


def balanced_assignment(cost, size: int, candidates: int | None = None) -> np.ndarray:
    """The exact minimum-cost assignment ``[n]`` of ``n`` rows to ``k`` centres with every
    centre taking exactly ``size`` rows, for ``cost`` ``[n, k]`` (numpy or torch; e.g. squared
    distances). Costs are rounded to multiples of ``1 / COST_SCALE`` after subtracting each
    row's minimum (which changes no assignment's rank) and solved as a min-cost flow
    (OR-Tools ``SimpleMinCostFlow``). With ``candidates`` (default :data:`CANDIDATES`) below
    ``k / 2``, the flow first sees only each row's ``candidates`` cheapest centres; its answer
    is kept only when :func:`_no_negative_cycle` proves it optimal for the full costs, else the
    full graph is solved."""
    if hasattr(cost, "detach"):
        cost = cost.detach().to("cpu").double().numpy()
    cost = np.asarray(cost, dtype=np.float64)
    n, k = cost.shape
    if n != size * k:
        raise ValueError(f"{n} rows cannot fill {k} centres of exactly {size}")
    if not np.isfinite(cost).all():
        raise ValueError("assignment costs must be finite")
    cost = cost - cost.min(axis=1, keepdims=True)
    icost = np.rint(cost * COST_SCALE).astype(np.int64)
    cand = CANDIDATES if candidates is None else int(candidates)
    if 0 < cand and 2 * cand < k:
        near = np.argpartition(icost, cand, axis=1)[:, :cand]
        near.sort(axis=1)                       # a fixed arc order: the same input, same flow
        arc = _flow(n, k, size, np.repeat(np.arange(n, dtype=np.int64), cand),
                    near.ravel().astype(np.int64), np.take_along_axis(icost, near, 1).ravel())
        if arc is not None:
            labels = near.ravel()[arc].astype(np.int64)
            if _no_negative_cycle(icost, labels, k):
                return labels
    cols = np.tile(np.arange(k, dtype=np.int64), n)
    arc = _flow(n, k, size, np.repeat(np.arange(n, dtype=np.int64), k), cols, icost.ravel())
    return cols[arc]


def _centres(x, labels, k: int):
    """Mean of each cluster's rows ``[k, d]`` (an empty cluster gets NaN). On CUDA a one-hot
    product, since ``index_add_`` there sums in no fixed order (labels would not repeat)."""
    import torch
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    if x.device.type == "cuda":
        onehot = torch.zeros(k, x.shape[0], device=x.device, dtype=x.dtype)
        onehot[labels, torch.arange(x.shape[0], device=x.device)] = 1
        sums = onehot @ x
    else:
        sums = torch.zeros(k, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, labels, x)
    return sums / counts[:, None]


def _sq_dist(x, c):
    """``[n, k]`` squared distances of the unit rows ``x`` to the centres ``c`` (up to the
    row constant ``|x|^2 = 1``, which changes no assignment)."""
    return (c * c).sum(1)[None, :] - 2 * x @ c.T


def _kmeans_pp(x, k: int, gens: list) -> list:
    """k-means++ seeding (D^2 sampling, one candidate per centre) of ``k`` centres from the
    rows of ``x``, once per CPU generator in ``gens`` (its draws are the same on every device).
    The seedings advance in lockstep so that each step reads ``x`` once for all of them (on a
    CPU the seeding is bound by memory bandwidth)."""
    import torch
    n = x.shape[0]
    chosen = [[int(torch.randint(n, (1,), generator=g))] for g in gens]
    d2 = (2 - 2 * (x @ x[[c[0] for c in chosen]].T)).clamp_min(0).double().T   # [starts, n]
    for _ in range(1, k):
        cum = torch.cumsum(d2, 1)
        for r, g in enumerate(gens):
            u = float(torch.rand(1, generator=g, dtype=torch.float64)) * float(cum[r, -1])
            target = torch.tensor([u], dtype=torch.float64, device=cum.device)
            chosen[r].append(min(int(torch.searchsorted(cum[r], target)), n - 1))
        new = (2 - 2 * (x @ x[[c[-1] for c in chosen]].T)).clamp_min(0).double().T
        d2 = torch.minimum(d2, new)
    return [x[c].clone() for c in chosen]


def _lloyd(x, c, k: int, steps: int):
    """Up to ``steps`` unconstrained Lloyd steps from centres ``c`` (an emptied cluster keeps
    its centre); stops early when the labels repeat."""
    import torch
    prev = None
    for _ in range(steps):
        labels = torch.argmin(_sq_dist(x, c), 1)
        if prev is not None and torch.equal(labels, prev):
            break
        new = _centres(x, labels, k)
        c = torch.where(torch.isnan(new), c, new)
        prev = labels
    return c


def _wcss(sq_total: float, centres, size: int) -> float:
    """Within-cluster sum of squares of a balanced clustering (``size`` rows per cluster,
    ``centres`` their means; ``sq_total``: the sum of the rows' squared norms):
    ``sum |x|^2 - size * sum |mean|^2``."""
    return float(sq_total - size * (centres.double() ** 2).sum())


def _balanced_lloyd(x, c, k: int, max_iter: int, sq_total: float):
    """Alternate exact balanced assignments (:func:`balanced_assignment`) and centre updates
    from centres ``c``, at most ``max_iter`` assignments, until the labels repeat or the
    within-cluster SS stops falling (``sq_total``: the rows' summed squared norms).
    Returns (labels, centres, within-cluster SS, assignments made) of the best step."""
    import torch
    size = x.shape[0] // k
    labels, best, it = None, None, 0
    for it in range(1, max_iter + 1):
        new = torch.from_numpy(balanced_assignment(_sq_dist(x, c), size)).to(x.device)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        c = _centres(x, labels, k)
        w = _wcss(sq_total, c, size)
        if best is not None and w >= best[0]:   # the objective has stopped falling
            break
        best = (w, labels, c)
    return best[1], best[2], best[0], it


def balanced_kmeans(x, k: int, *, seed: int = 0, n_init: int = 10, max_iter: int = 300,
                    device=None, n_refine: int = N_REFINE, lloyd_steps: int = LLOYD_STEPS,
                    return_info: bool = False):
    """Exact balanced k-means labels ``[n]`` (int64, every cluster exactly ``n // k``) of the
    rows of ``x`` ``[n, d]`` (already L2-normalised, as :func:`cluster_layer` passes them).

    ``n_init`` starts, each: k-means++ seeding (start ``r`` draws from
    ``torch.Generator().manual_seed(seed * 1_000_003 + r)``), up to ``lloyd_steps``
    unconstrained Lloyd steps, one exact balanced assignment and centre update. The
    ``n_refine`` starts with the lowest within-cluster sum of squares (WCSS) then alternate
    exact balanced assignments and centre updates until the labels repeat, the WCSS stops
    falling or ``max_iter`` assignments; the lowest WCSS wins. Distances run in float32 torch on
    ``device`` (None: :func:`pick_device`); assignments on the CPU (OR-Tools). Deterministic for
    a given seed and device (CPU and GPU may break near-ties differently).
    ``return_info``: also a dict (device, seconds, assignments, WCSS per start).
    """
    import torch
    t0 = time.perf_counter()
    dev = pick_device(device)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32).to(dev)
    n = xt.shape[0]
    check_k(n, k)
    if n_init < 1 or n_refine < 1 or max_iter < 1:
        raise ValueError(f"n_init, n_refine and max_iter must be >= 1 "
                         f"(got {n_init}, {n_refine}, {max_iter})")
    threads = torch.get_num_threads()
    if dev.type == "cpu" and xt.numel() < SMALL_ON_ONE_THREAD:
        torch.set_num_threads(1)
    try:
        labels, info = _balanced_kmeans(xt, k, seed, n_init, max_iter, n_refine, lloyd_steps)
    finally:
        torch.set_num_threads(threads)
    info["seconds"] = time.perf_counter() - t0
    return (labels, info) if return_info else labels


def _balanced_kmeans(xt, k, seed, n_init, max_iter, n_refine, lloyd_steps):
    import torch
    dev = xt.device
    size = xt.shape[0] // k
    sq_total = float(torch.sum(xt * xt, dtype=torch.float64))
    gens = [torch.Generator().manual_seed(int(seed) * 1_000_003 + r) for r in range(n_init)]
    starts = []
    for r, c in enumerate(_kmeans_pp(xt, k, gens)):
        c = _lloyd(xt, c, k, lloyd_steps)
        starts.append((r, c))
    screened = []
    for r, c in starts:
        _, c, w, _ = _balanced_lloyd(xt, c, k, 1, sq_total)
        screened.append((w, r, c))
    starts = sorted(screened, key=lambda s: (s[0], s[1]))
    best, info = None, {"device": str(dev), "screen_wcss": [s[0] for s in starts],
                        "refined": []}
    for _, r, c in starts[:n_refine]:
        lab, _, w, its = _balanced_lloyd(xt, c, k, max_iter, sq_total)
        info["refined"].append({"start": r, "wcss": w, "assignments": its})
        if best is None or w < best[0]:
            best = (w, lab)
    return best[1].cpu().numpy().astype(np.int64), info


def inertia(w_in, labels) -> float:
    """Within-cluster sum of squared distances of the L2-normalised rows of ``w_in``
    ``[neurons, d_model]`` to their cluster means, for ``labels`` ``[neurons]``. Lower is
    tighter; compare with :func:`random_balanced_labels` for a baseline."""
    x = normalise_rows(w_in)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels shape {labels.shape} does not match W_in rows {x.shape[0]}")
    if labels.size == 0:
        return 0.0
    k = int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k)
    # sum ||x - mean||^2 = sum ||x||^2 - sum_c ||sum_c||^2 / n_c
    used = counts > 0
    return float((x * x).sum() - ((sums[used] ** 2).sum(axis=1) / counts[used]).sum())


def random_balanced_labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``[n]`` int64: a uniformly random assignment of ``n`` neurons to ``k`` clusters of
    exactly ``n // k`` each (the chance baseline of a balanced clustering)."""
    check_k(n, k)
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k, dtype=np.int64), n // k))


@dataclass
class Clustering:
    """The result of :func:`cluster_model`.

    - ``labels``: ``[layers, neurons]`` int64 cluster ids in ``0..k-1``.
    - ``seconds``: ``[layers]`` wall seconds the clustering of each layer took when it was
      computed (for a layer read from the cache: the time recorded when it was written).
    - ``from_cache``: ``[layers]`` bool, True where the labels came from the cache.
    - ``inertia``: ``[layers]`` within-cluster sum of squares of the normalised rows.
    """

    labels: np.ndarray
    seconds: np.ndarray
    from_cache: np.ndarray
    inertia: np.ndarray
    k: int
    seed: int
    n_init: int
    max_iter: int
    meta: dict[str, Any] = field(default_factory=dict)


def _weight_digest(w: np.ndarray) -> str:
    """sha256 of the exact float64 values and shape fed to the clustering."""
    h = hashlib.sha256(repr(w.shape).encode())
    h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where :func:`cluster_model` keeps labels (read at call time, so ``modsep_utils.io.DATA``
    can be redirected, e.g. in tests)."""
    return Path(mio.DATA) / "cache" / "moe"


def _load_cached(path: Path, expect: dict[str, Any]):
    """(labels, seconds) from ``path`` if it exists and was written by exactly these inputs."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if any(key not in z.files for key in expect):  # written before a key existed
            return None
        stored = {key: z[key].item() for key in expect}
        if stored != expect:  # a hash collision or a foreign file: never reuse it
            return None
        return np.asarray(z["labels"], dtype=np.int64), float(z["seconds"])


def _save_cached(path: Path, labels: np.ndarray, seconds: float, meta: dict[str, Any]) -> None:
    with mio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, labels=labels, seconds=np.float64(seconds),
                     **{key: np.asarray(v) for key, v in meta.items()})


def cluster_model(w_ins: Sequence, k: int, seed: int = 0,
                  cache_key_parts: Sequence | None = None, *, n_init: int = 10,
                  max_iter: int = 300, cache: bool = True,
                  progress: bool | str = True, method: str = "fast",
                  device=None) -> Clustering:
    """Cluster every layer: :func:`cluster_layer` on each ``w_ins[l]`` ``[neurons, d_model]``
    with ``method`` (:data:`METHODS`; ``device`` for the fast one).

    ``w_ins``: a sequence of per-layer W_in (e.g. ``[s.w_in for s in neuron_sites(model)]``)
    or one ``[layers, neurons, d_model]`` array; every layer must have the same neuron count.
    Returns a :class:`Clustering` (``labels`` ``[layers, neurons]``, ``seconds`` per layer, ...).

    Caching (``cache=True``): each layer's labels are stored under ``DATA/cache/moe/`` in a
    file named by ``content_key`` of the sha256 of the layer's weight values, ``k``, ``seed``,
    ``n_init``, ``max_iter``, the method and its version (:func:`method_version`) and
    ``cache_key_parts`` (e.g. the model name), written
    atomically; a stored file is reused only if all those inputs match what it records, so an
    interrupted run resumes layer by layer and other weights never reuse it.
    ``progress``: a tqdm bar over layers (a string sets its description).
    """
    from tqdm.auto import tqdm

    layers = list(w_ins)  # converted one at a time below: a 7B model's W_in in float64 is 15 GB
    if not layers:
        raise ValueError("w_ins is empty: pass one [neurons, d_model] W_in per layer")
    widths = {tuple(w.shape)[0] for w in layers}
    if len(widths) != 1:
        raise ValueError(f"layers differ in neuron count {sorted(widths)}: labels must form "
                         f"one [layers, neurons] array; cluster them separately")
    check_k(widths.pop(), k)
    version = method_version(method)
    cache_key_parts = list(cache_key_parts or [])
    extra = mio.content_key(*cache_key_parts) if cache_key_parts else ""
    labels, seconds, hits, inert = [], [], [], []
    desc = progress if isinstance(progress, str) else f"MoEfication k={k}"
    bar = tqdm(layers, desc=desc, unit="layer", disable=not progress)
    for w in bar:
        w = _as_array(w)
        meta = {"weights_sha256": _weight_digest(w), "k": int(k), "seed": int(seed),
                "n_init": int(n_init), "max_iter": int(max_iter), "method": method,
                "method_version": version, "extra": extra}
        path = cache_dir() / f"labels-{mio.content_key('moe-v1', meta)}.npz"
        hit = _load_cached(path, meta) if cache else None
        if hit is None:
            t0 = time.perf_counter()
            lab = cluster_layer(w, k, seed=seed, n_init=n_init, max_iter=max_iter,
                                method=method, device=device)
            sec = time.perf_counter() - t0
            if cache:
                _save_cached(path, lab, sec, meta)
        else:
            lab, sec = hit
        labels.append(lab)
        seconds.append(sec)
        hits.append(hit is not None)
        inert.append(inertia(w, lab))
        bar.set_postfix(s_per_layer=f"{sec:.1f}", cached=hit is not None)
    return Clustering(labels=np.stack(labels), seconds=np.asarray(seconds),
                      from_cache=np.asarray(hits), inertia=np.asarray(inert), k=int(k),
                      seed=int(seed), n_init=int(n_init), max_iter=int(max_iter),
                      meta={"cache_key_parts": list(map(str, cache_key_parts)),
                            "method": method, "method_version": version})


# -- notebook 05: both models of a profile -----------------------------------------------------

def random_inertia(w_in, k: int, n_draws: int = 3, seed: int = 0) -> float:
    """Mean :func:`inertia` of ``n_draws`` random balanced assignments of ``w_in``'s rows to
    ``k`` clusters: the baseline a clustering must beat."""
    n = _as_array(w_in).shape[0]
    return float(np.mean([inertia(w_in, random_balanced_labels(n, k, seed=seed + i))
                          for i in range(n_draws)]))


def cluster_sites(model, cluster_size: int, *, k: int | None = None, seed: int = 0,
                  n_init: int = 10, max_iter: int = 300, n_random: int = 3,
                  weight: str = "up", progress: bool | str = True, method: str = "fast",
                  device=None) -> Clustering:
    """:func:`cluster_model` on the input rows of every layer of ``model`` (``neuron_sites``):
    ``weight`` picks them in a gated MLP (:meth:`neurons.Site.rows`: ``"up"`` = W_in, the
    authors' choice; ``"gate"``; ``"gate_up"``); models without a gate ignore it. Each choice
    is cached on its own, since the cache is keyed by the rows clustered. ``method``:
    :data:`METHODS` (the profile's ``moe_method``).

    ``k``: default :func:`choose_k` ``(neurons, cluster_size)``, the paper's cluster size as
    near as the width allows. The labels are cached by the content of the weights and the
    clustering's settings, so the same model and settings are clustered once, whichever
    notebook asks. ``meta`` records ``cluster_size_wanted``, ``neurons``, ``d_model`` and
    ``random_inertia`` ``[layers]`` (:func:`random_inertia`, the baseline).
    """
    from .neurons import neuron_sites
    w_ins = [site.rows(weight) for site in neuron_sites(model)]
    neurons, d_model = (int(s) for s in w_ins[0].shape)
    k = choose_k(neurons, cluster_size) if k is None else int(k)
    result = cluster_model(w_ins, k, seed=seed, n_init=n_init, max_iter=max_iter,
                           progress=progress, method=method, device=device)
    result.meta.update(cluster_size_wanted=int(cluster_size), neurons=neurons, d_model=d_model,
                       weight=weight if neuron_sites(model)[0].w_gate is not None else "up",
                       random_inertia=np.array([random_inertia(w, k, n_random, seed)
                                                for w in w_ins]))
    return result


def model_clusterings(cfg: dict, progress: bool = True, weight: str | None = None
                      ) -> dict[str, Clustering]:
    """MoEfication of the profile's trained model and of one random-init model per seed of
    ``cfg["random_seeds"]``: ``{"trained": Clustering, "random": Clustering, "random seed 1":
    Clustering, ...}`` (keys from :func:`overlap.random_kind`: "random" is the first seed's, the
    default random model) with ``k = choose_k(d_mlp, moe_cluster_size)``, ``n_init =
    moe_n_init``, ``method = moe_method`` (``"fast"`` when the profile has no such key) and
    ``random_state = 0`` (REFERENCE.md). Each clustering's ``meta`` records
    ``random_init`` and ``model_seed`` (None for the trained model).

    ``weight`` (default ``cfg["moe_weight"]``): which rows of a gated MLP are clustered.

    Notebooks 05, 06 and 07 all call this; the labels are cached by the content of the weights,
    so after the first call every layer of every model comes from the cache."""
    from .activations import get_model, random_seeds
    from .overlap import random_kind
    seeds = random_seeds(cfg)
    models = [("trained", False, seeds[0])] + [(random_kind(s, seeds), True, s) for s in seeds]
    out = {}
    for kind, random_init, seed in models:
        model, _ = get_model(cfg["model"], random_init, seed, cfg["dtype"])
        out[kind] = cluster_sites(model, cfg["moe_cluster_size"], seed=0,
                                  n_init=cfg["moe_n_init"],
                                  weight=cfg["moe_weight"] if weight is None else weight,
                                  method=cfg.get("moe_method", "fast"),
                                  progress=f"MoEfication, {kind} model" if progress else False)
        out[kind].meta.update(random_init=random_init,
                              model_seed=int(seed) if random_init else None)
    return out


def labels_by_seed(clusterings: dict[str, Clustering]) -> dict:
    """``{"trained": [layers, neurons], "random": {seed: [layers, neurons]}}`` cluster labels of
    :func:`model_clusterings`' result (the layout :func:`auc.seed_tables` takes)."""
    rand = {c.meta["model_seed"]: c.labels for c in clusterings.values()
            if c.meta.get("random_init")}
    if "trained" not in clusterings or not rand:
        raise ValueError(f"need the trained and at least one random-init clustering (from "
                         f"model_clusterings); got {list(clusterings)}")
    return {"trained": clusterings["trained"].labels, "random": rand}


def check_labels(labels, n_layers: int, n_neurons: int, k: int | None = None) -> np.ndarray:
    """``labels`` as int64 ``[layers, neurons]`` after checking it matches the model (no
    broadcasting of a single layer's labels) and, with ``k``, that every cluster is exactly
    ``n_neurons // k`` strong in every layer."""
    lab = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if lab.shape != (n_layers, n_neurons):
        raise ValueError(f"cluster labels have shape {lab.shape}, the model has "
                         f"[{n_layers} layers, {n_neurons} neurons]: cluster this model "
                         f"(moe.cluster_sites) instead of reusing another's labels")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"cluster labels must be integers; got {lab.dtype}")
    if k is not None:
        check_k(n_neurons, k)
        if lab.min() < 0 or lab.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1}; got {lab.min()}..{lab.max()}")
        sizes = np.stack([np.bincount(row, minlength=k) for row in lab])
        if (sizes != n_neurons // k).any():
            raise ValueError(f"clusters are not balanced: sizes {sorted(set(sizes.ravel()))}, "
                             f"want {n_neurons // k}")
    return lab.astype(np.int64, copy=False)


def balanced(clustering: Clustering) -> bool:
    """True when every cluster of every layer holds exactly ``neurons // k`` neurons."""
    lab = clustering.labels
    sizes = np.stack([np.bincount(row, minlength=clustering.k) for row in lab])
    return bool((sizes == lab.shape[1] // clustering.k).all())


def summary(clusterings: dict[str, Clustering]) -> dict:
    """Plain numbers for notebook 05, per model: ``k``, ``cluster_size`` (and the wanted one),
    per layer ``inertia``, ``random_inertia`` and their ratio (below 1: tighter than chance),
    ``seconds`` per layer (as measured when computed) and ``from_cache``; totals."""
    out = {}
    for kind, c in clusterings.items():
        rand = np.asarray(c.meta.get("random_inertia", np.full(len(c.inertia), np.nan)))
        out[kind] = {
            "random_init": bool(c.meta.get("random_init", kind != "trained")),
            "model_seed": c.meta.get("model_seed"),
            "k": c.k, "cluster_size": int(c.labels.shape[1] // c.k),
            "cluster_size_wanted": c.meta.get("cluster_size_wanted"),
            "layers": int(c.labels.shape[0]), "neurons": int(c.labels.shape[1]),
            "n_init": c.n_init, "method": c.meta.get("method", "reference"),
            "balanced": balanced(c),
            "inertia": c.inertia.tolist(), "random_inertia": rand.tolist(),
            "inertia_ratio": (c.inertia / rand).tolist(),
            "seconds": c.seconds.tolist(), "from_cache": c.from_cache.tolist(),
            "seconds_total": float(c.seconds.sum()),
            "seconds_per_layer_mean": float(c.seconds.mean()),
        }
    return out


def format_summary(s: dict) -> str:
    """A small text table of :func:`summary`."""
    rows = []
    w = max(8, *(len(kind) for kind in s))  # "random seed 2" is wider than "trained"
    for kind, d in s.items():
        rows.append(f"{kind:{w}s} k = {d['k']} clusters of {d['cluster_size']} neurons "
                    f"(wanted {d['cluster_size_wanted']}), {d['layers']} layers x "
                    f"{d['neurons']} neurons, n_init = {d['n_init']}, "
                    f"method = {d.get('method', 'reference')}")
        rows.append(f"{'':{w}s} within-cluster SS / random balanced assignment, by layer: "
                    + " ".join(f"{r:.3f}" for r in d["inertia_ratio"]))
        cached = sum(d["from_cache"])
        rows.append(f"{'':{w}s} {d['seconds_per_layer_mean']:.2f} s per layer "
                    f"({d['seconds_total']:.1f} s in all, as measured when computed; "
                    f"{cached}/{d['layers']} layers read from the cache now)")
    spread = random_spread(s)
    if spread:
        rows.append(f"random init over seeds {spread['seeds']}: within-cluster SS / random, mean "
                    f"over layers {_mean_sd(spread['inertia_ratio_mean'])}")
    return "\n".join(rows)


def _mean_sd(sp: dict) -> str:
    """``"mean ± sd"`` of a scalar :func:`overlap.seed_spread` (sd n/a for one seed)."""
    sd = "n/a" if sp["std"] is None else f"{sp['std']:.3f}"
    return f"{sp['mean']:.3f} ± {sd}"


def random_spread(s: dict) -> dict:
    """How the random-init models of :func:`summary` vary over their seeds: ``{"seeds",
    "inertia_ratio": seed_spread of the ratio by layer ([layers] lists), "inertia_ratio_mean":
    seed_spread of each seed's mean over layers}`` (:func:`overlap.seed_spread`); ``{}``
    without a random-init model."""
    from .overlap import seed_spread
    rand = [d for d in s.values() if d["random_init"]]
    if not rand:
        return {}
    return {"seeds": [d["model_seed"] for d in rand],
            "inertia_ratio": seed_spread([d["inertia_ratio"] for d in rand]),
            "inertia_ratio_mean": seed_spread([np.mean(d["inertia_ratio"]) for d in rand])}


def plot_quality(s: dict):
    """Figure for notebook 05: per layer, within-cluster sum of squares relative to a random
    balanced assignment (below 1 = tighter), and seconds per layer, one line per model.
    ``s``: :func:`summary`. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    markers = iter(".x+^v*")
    for kind, d in s.items():  # the random-init seeds share a colour: one model, several draws
        x = np.arange(d["layers"])
        style = dict(color="C3", marker=next(markers, "."), alpha=0.8) if d["random_init"] \
            else dict(color="C0", marker=".")
        label = f"random init, seed {d['model_seed']}" if d["random_init"] else kind
        axes[0].plot(x, d["inertia_ratio"], label=f"{label} (k={d['k']})", **style)
        axes[1].plot(x, d["seconds"], label=label, **style)
    axes[0].axhline(1.0, color="0.5", ls="--", lw=0.8, label="random balanced assignment")
    axes[0].set_ylabel("within-cluster SS / random")
    spread = random_spread(s)
    over = (f"; random init, mean over layers: {_mean_sd(spread['inertia_ratio_mean'])} "
            f"({len(spread['seeds'])} seeds)") if spread else ""
    axes[0].set_title(f"clustering quality (lower = tighter){over}", fontsize=9)
    axes[1].set_ylabel("seconds")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("time per layer (when computed)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return fig


def headline(s: dict) -> dict:
    """The numbers of :func:`summary` that go into ``headline.json``: per model, and for the
    random-init models their spread over seeds (``random_over_seeds``: seeds and the mean
    inertia ratio's :func:`overlap.seed_spread`)."""
    out = {kind: {"k": d["k"], "cluster_size": d["cluster_size"],
                  "cluster_size_wanted": d["cluster_size_wanted"], "n_init": d["n_init"],
                  "model_seed": d["model_seed"],
                  "inertia_ratio_mean": float(np.mean(d["inertia_ratio"])),
                  "seconds_per_layer_mean": d["seconds_per_layer_mean"]}
           for kind, d in s.items()}
    spread = random_spread(s)
    if spread:
        out["random_over_seeds"] = {"seeds": spread["seeds"],
                                    "inertia_ratio_mean": spread["inertia_ratio_mean"]}
    return out


def tighter_than_random(s: dict) -> dict[str, bool]:
    """Per model of :func:`summary`: True when every layer's clustering has a lower
    within-cluster sum of squares than a random balanced assignment."""
    return {kind: bool((np.asarray(d["inertia_ratio"]) < 1).all()) for kind, d in s.items()}


def tighter_than_random_models(s: dict) -> bool:
    """True when the trained model's clusters are tighter (lower within-cluster SS relative to
    a random balanced assignment) than every random-init model's, in every layer: trained
    weights have structure that k-means can find; random ones should not. (Could fail: a
    clustering of the wrong weights, or a trained model no more structured than noise.)"""
    rand = [d["inertia_ratio"] for d in s.values() if d["random_init"]]
    if "trained" not in s or not rand:
        raise ValueError(f"need the trained and at least one random-init model; got {list(s)}")
    return bool((np.asarray(s["trained"]["inertia_ratio"]) < np.min(rand, axis=0)).all())


def is_gated(cfg: dict) -> bool:
    """Whether the profile's model has gated MLPs (a gate and an up matrix to choose from)."""
    from .activations import get_model
    from .neurons import neuron_sites
    model, _ = get_model(cfg["model"], False, 0, cfg["dtype"])
    return neuron_sites(model)[0].w_gate is not None
