"""Step 01: where the MLP neurons are, streaming statistics of them, and pruning masks.

A *neuron* is one coordinate of the input to the MLP's output projection (REFERENCE.md):
the GELU output for ViT / BERT / GPT-2, ``act_fn(gate_proj(x)) * up_proj(x)`` for gated MLPs
(Llama, Mistral, SmolLM2). A forward *pre*-hook on the output projection sees exactly that
vector, so one hook serves every architecture. All model-specific knowledge of this project
lives in :func:`neuron_sites`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

SUPPORTED = (
    "ViT (intermediate/output layout and the transformers>=5.9 mlp.fc1/fc2 layout)",
    "BERT-style encoders (intermediate.dense / output.dense)",
    "GPT-2 (mlp.c_fc / mlp.c_proj)",
    "gated MLPs: Llama, Mistral, SmolLM2, Qwen2, Gemma (mlp.gate_proj/up_proj/down_proj)",
)


#: which input rows MoEfication clusters (gated MLPs; other MLPs have one input matrix)
MOE_WEIGHTS = ("up", "gate", "gate_up")


@dataclass
class Site:
    """The neurons of one layer: ``out_proj`` consumes them; ``w_in`` is ``[neurons, d_model]``
    (gated MLPs: ``up_proj``, the authors' choice); ``w_gate`` ``[neurons, d_model]`` is the
    gate of a gated MLP (``act(gate(x)) * up(x)``: the gate decides whether a neuron fires),
    None for other MLPs."""

    layer: int
    out_proj: nn.Module
    w_in: torch.Tensor
    w_gate: torch.Tensor | None = None

    @property
    def n_neurons(self) -> int:
        return self.w_in.shape[0]

    def rows(self, which: str = "up") -> torch.Tensor:
        """The input rows that describe each neuron, ``[neurons, d]``: ``"up"`` (W_in),
        ``"gate"`` (the gate's rows) or ``"gate_up"`` (both, each row L2-normalised, side by
        side, ``d = 2 d_model``). A model without a gate has only W_in: every choice gives it."""
        if which not in MOE_WEIGHTS:
            raise ValueError(f"moe_weight must be one of {list(MOE_WEIGHTS)}, not {which!r}")
        if self.w_gate is None or which == "up":
            return self.w_in
        if which == "gate":
            return self.w_gate
        unit = [w.float() / w.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
                for w in (self.w_gate, self.w_in)]
        return torch.cat(unit, dim=1)


def _block_site(block: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None] | None:
    """(output projection, W_in and the gate's W as [neurons, d_model] (None without a gate))
    of one transformer block, or None."""
    mlp = getattr(block, "mlp", None)
    if mlp is not None:
        if all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
            # neuron = act(gate) * up
            return mlp.down_proj, mlp.up_proj.weight, mlp.gate_proj.weight
        if hasattr(mlp, "fc1") and hasattr(mlp, "fc2"):
            return mlp.fc2, mlp.fc1.weight, None
        if hasattr(mlp, "c_fc") and hasattr(mlp, "c_proj"):
            # GPT-2's Conv1D stores weight as [in, out]
            return mlp.c_proj, mlp.c_fc.weight.T, None
    inter, out = getattr(block, "intermediate", None), getattr(block, "output", None)
    if inter is not None and hasattr(inter, "dense") and out is not None and hasattr(out, "dense"):
        return out.dense, inter.dense.weight, None
    return None


def neuron_sites(model: nn.Module) -> list[Site]:
    """One :class:`Site` per transformer layer, in order.

    Finds the first ``nn.ModuleList`` whose every element is a supported transformer block,
    whatever path the loaded model puts it under (so renamed modules keep working).
    """
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            found = [_block_site(b) for b in module]
            if all(f is not None for f in found):
                return [Site(i, o, w.detach(), None if g is None else g.detach())
                        for i, (o, w, g) in enumerate(found)]
    name = type(model).__name__
    raise ValueError(
        f"unsupported architecture {name}: no MLP neuron sites found. Supported: "
        + "; ".join(SUPPORTED)
    )


def n_neurons(model: nn.Module) -> tuple[int, int]:
    """``(layers, neurons per layer)``; every supported model has equal-width MLPs."""
    sites = neuron_sites(model)
    return len(sites), sites[0].n_neurons


@dataclass
class NeuronStats:
    """Streaming sums over token positions, float64, ``[layers, neurons]`` (``count``: ``[layers]``).

    Sums merge exactly, so statistics from shards, processes or subsets add up to one pass.
    """

    count: torch.Tensor
    sum_abs: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n_pos: torch.Tensor

    FIELDS = ("count", "sum_abs", "sum", "sum_sq", "n_pos")

    @classmethod
    def zeros(cls, layers: int, neurons: int) -> "NeuronStats":
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        return cls(z(layers), z(layers, neurons), z(layers, neurons), z(layers, neurons),
                   z(layers, neurons))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.sum_abs.shape)

    def _per_token(self, x: torch.Tensor) -> torch.Tensor:
        if (self.count == 0).any():
            raise ValueError("no tokens collected for some layer; is the data empty?")
        return x / self.count[:, None]

    def mean_abs(self) -> torch.Tensor:
        """Mean |activation| ``[layers, neurons]``: the quantity the score uses."""
        return self._per_token(self.sum_abs)

    def mean(self) -> torch.Tensor:
        return self._per_token(self.sum)

    def var(self) -> torch.Tensor:
        return self._per_token(self.sum_sq) - self.mean() ** 2

    def frac_pos(self) -> torch.Tensor:
        return self._per_token(self.n_pos)

    def merge(self, other: "NeuronStats") -> "NeuronStats":
        """The statistics of both runs together (exact: sums add)."""
        if self.shape != other.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.shape} and {other.shape}")
        return NeuronStats(*(getattr(self, f) + getattr(other, f) for f in self.FIELDS))

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor]) -> "NeuronStats":
        return cls(*(d[f].to(torch.float64) for f in cls.FIELDS))


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _StopForward(Exception):
    """Raised by the hook after the last neuron site: the forward need not go on."""


def collect_stats(model: nn.Module, batches: Iterable[dict], progress: bool | str = False
                  ) -> NeuronStats:
    """Stream neuron statistics over ``batches`` (dicts passed as ``model(**batch)``).

    Every token position counts except attention padding (``attention_mask == 0``).
    Memory is O(layers x neurons) whatever the number of tokens: each batch is reduced to
    per-neuron sums (float32 within the batch) and added to float64 accumulators that stay on
    each layer's device (a model spread over GPUs keeps each layer's sums on its GPU); they
    come to the host once, at the end, not per layer per batch.

    Data-parallel (``torchrun`` / ``accelerate launch``, see :mod:`modsep_utils.parallel`):
    each process takes every ``world_size``-th batch and the sums are added across processes;
    every process returns the statistics of all batches.
    """
    from . import parallel
    sites = neuron_sites(model)
    n_layers, width = len(sites), sites[0].n_neurons
    device = _model_device(model)
    state: dict[str, torch.Tensor | None] = {"keep": None}
    # per layer: [4, neurons] float64 sums (abs, signed, square, positive) on its device, and
    # the token count on the host (a Python int: no device sync)
    sums: list[torch.Tensor | None] = [None] * n_layers
    count = [0] * n_layers

    f32 = torch.float32

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0]
            keep = state["keep"]
            # [batch, tokens, neurons] -> [kept tokens, neurons]
            if keep is not None and x.dim() == 3:
                x = x[keep.to(x.device)]
            else:
                x = x.reshape(-1, x.shape[-1])
            if x.dtype not in (f32, torch.float64):
                x = x.to(f32)  # bf16/fp16 models: square and sum in float32
            a = x.abs()
            # one batch's sums in float32 (a few thousand tokens), accumulated across
            # batches in float64; sign().clamp() counts x > 0 several times faster than a
            # bool sum
            pos = x.sign().clamp_(min=0)
            if x.device.type == "cpu":
                # a row of ones times each [tokens, neurons] matrix (BLAS); it was meant to
                # beat sum(0), but repeated runs show no clear difference on these CPUs
                # (bench_collect.py --sums); the committed statistics were made this way.
                # GPUs keep sum(0), which TF32 matmul settings cannot make less exact
                ones = torch.ones(1, x.shape[0], dtype=x.dtype)
                part = torch.cat([ones @ a, ones @ x, ones @ (a * a), ones @ pos])
            else:
                part = torch.stack([a.sum(0), x.sum(0), (a * a).sum(0), pos.sum(0)])
            if sums[layer] is None:
                sums[layer] = torch.zeros(part.shape, dtype=torch.float64, device=part.device)
            sums[layer] += part
            count[layer] += x.shape[0]
        return hook

    last = max(s.layer for s in sites)

    def stop_after_last(module, args):
        # nothing after the last neuron site changes the statistics: skip the rest of the
        # forward (last down-projection, final norm, LM head: a fifth of SmolLM2's forward)
        raise _StopForward

    handles = [s.out_proj.register_forward_pre_hook(make_hook(s.layer)) for s in sites]
    handles += [s.out_proj.register_forward_pre_hook(stop_after_last)
                for s in sites if s.layer == last]
    try:
        it = parallel.shard(batches)
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(it, desc=progress if isinstance(progress, str) else "collect",
                      leave=False, disable=not parallel.is_main())
        with torch.inference_mode():
            for batch in it:
                mask = batch.get("attention_mask")
                # no padding: skip the boolean gather (a copy of every activation)
                pad = mask is not None and not bool(mask.all())
                batch = _to_device(batch, device)
                state["keep"] = batch["attention_mask"].bool() if pad else None
                try:
                    model(**batch)
                except _StopForward:
                    pass
    finally:
        for h in handles:
            h.remove()
    # once per subset: every layer's sums to the host, then across processes
    host = torch.zeros(n_layers, 4, width, dtype=torch.float64)
    for layer, t in enumerate(sums):
        if t is not None:
            host[layer] = t.cpu()
    host = parallel.all_sum(host)
    counts = parallel.all_sum(torch.tensor(count, dtype=torch.float64))
    return NeuronStats(counts, host[:, 0].clone(), host[:, 1].clone(), host[:, 2].clone(),
                       host[:, 3].clone())


def as_mask(mask) -> torch.Tensor:
    """``mask`` (torch or numpy) as a bool tensor; a numeric mask must hold only 0 and 1.

    A score tensor passed by mistake would otherwise prune every nonzero neuron.
    """
    m = torch.as_tensor(mask)
    if m.dtype == torch.bool:
        return m
    if m.is_floating_point() or m.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                            torch.uint8):
        if bool(((m == 0) | (m == 1)).all()):
            return m.to(torch.bool)
        raise ValueError("a pruning mask must be boolean (or hold only 0 and 1); got "
                         f"{m.dtype} values such as {m[(m != 0) & (m != 1)][:3].tolist()}"
                         " - pass e.g. scoring.top_fraction(scores, frac), not the scores")
    raise ValueError(f"a pruning mask must be boolean, got dtype {m.dtype}")


@contextmanager
def pruned(model: nn.Module, mask: torch.Tensor) -> Iterator[nn.Module]:
    """Zero the neurons of a bool ``[layers, neurons]`` mask (True = pruned) while inside.

    Equivalent to zeroing those columns of each output projection's weight; the hooks are
    removed on exit, also on an exception.
    """
    sites = neuron_sites(model)
    expected = (len(sites), sites[0].n_neurons)
    mask = as_mask(mask)
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, model has [layers, neurons] = "
                         f"{list(expected)}")
    keep = ~mask.to(torch.bool)
    on_device: dict[int, torch.Tensor] = {}  # each layer's row where its activations are

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0]
            k = on_device.get(layer)
            if k is None or k.device != x.device or k.dtype != x.dtype:
                k = on_device[layer] = keep[layer].to(x.device, x.dtype)
            return (x * k,) + tuple(args[1:])
        return hook

    handles = [s.out_proj.register_forward_pre_hook(make_hook(s.layer))
               for s in sites if mask[s.layer].any()]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
