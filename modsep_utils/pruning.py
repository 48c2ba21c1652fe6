"""Step 03: selective pruning. Accuracy of a (pruned) model on a subset, the fraction of
top-scored neurons that reaches a target drop (bisection), and cross-evaluation.

Accuracy (REFERENCE.md): text = top-1 next-token prediction over the whole vocabulary at
every position (``logits[:-1]`` vs ``ids[1:]``), padding excluded; images = top-1 over all
labels; multiple choice = the authors' zero-shot letter format or the continuation
log-likelihood of each choice.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import parallel
from .neurons import _model_device, pruned
from .scoring import n_select, top_fraction

LETTERS = "ABCD"


def _on_device(batches, model):
    """This process's share of ``batches`` (data-parallel: every ``world_size``-th batch; all
    of them with one process), moved to the model's device."""
    device = _model_device(model)
    for batch in parallel.shard(batches):
        yield {k: v.to(device) for k, v in batch.items()}


def _to_host(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Per-batch device tensors to the host in one transfer (no sync per batch)."""
    if not parts:
        return []
    flat = torch.cat(parts).cpu().numpy()
    return np.split(flat, np.cumsum([len(p) for p in parts])[:-1])


def _merged(parts: list[np.ndarray]) -> np.ndarray:
    """Every process's per-batch results, in the order of the batches."""
    every = parallel.gather_shards(parts)
    return np.concatenate(every) if every else np.zeros(0, np.int64)


# -- per-item counts: every accuracy is a ratio of sums over independent items (text blocks,
# -- images, questions), which is what its standard error and any paired comparison need


def text_counts(model: nn.Module, subset, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 next-token hits and predicted positions per text block: ``([n], [n])``."""
    correct, total = [], []
    with torch.inference_mode():
        for batch in _on_device(subset.batches(batch_size), model):
            ids, mask = batch["input_ids"], batch["attention_mask"].bool()
            logits = model(**batch).logits[:, :-1]
            valid = mask[:, 1:] & mask[:, :-1]
            hit = (logits.argmax(-1) == ids[:, 1:]) & valid
            correct.append(hit.sum(1))
            total.append(valid.sum(1))
    correct, total = _merged(_to_host(correct)), _merged(_to_host(total))
    if total.sum() == 0:
        raise ValueError(f"subset {subset.name} has no token to predict")
    return correct, total


def image_counts(model: nn.Module, subset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 hits per image (``subset.labels`` ``[n]``): ``([n] of 0/1, [n] of 1)``."""
    preds = []
    with torch.inference_mode():
        for batch in _on_device(subset.batches(batch_size), model):
            preds.append(model(**batch).logits.argmax(-1))
    preds = _merged(_to_host(preds))
    if preds.size == 0:
        raise ValueError(f"subset {subset.name} has no image")
    hit = (preds == subset.labels.numpy()).astype(np.int64)
    return hit, np.ones_like(hit)


def _pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _pad(seqs, pad_id, left=False)


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool
         ) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(n - len(s), n) if left else slice(0, len(s))
        ids[i, span] = torch.as_tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)


def _by_length(lengths: Sequence[int], per_batch: int) -> list[list[int]]:
    """Item indices in batches of similar length (sorted, stable): little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + per_batch] for i in range(0, len(order), per_batch)]


def _letter_hits(model, tokenizer, qs, idx, device, pad) -> list[int]:
    """The authors' format: the top-1 next token after the prompt is the gold letter."""
    from .data import mc_prompt
    seqs = [tokenizer(mc_prompt(qs[i]), add_special_tokens=True)["input_ids"] for i in idx]
    ids, mask = _pad_right(seqs, pad)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   use_cache=False).logits
    last = (mask.sum(1) - 1).to(device)
    top = logits[torch.arange(len(idx), device=device), last].argmax(-1).cpu()
    return [int(tokenizer.decode([t]).strip() == LETTERS[qs[i].answer])
            for i, t in zip(idx, top.tolist())]


def _loglik_hits(model, tokenizer, qs, idx, device, pad) -> list[int]:
    """The gold choice has the highest :func:`_loglik_scores`."""
    scores = _loglik_scores(model, tokenizer, qs, idx, device, pad)
    gold = torch.tensor([qs[i].answer for i in idx])
    return (scores.argmax(1) == gold).long().tolist()


def _loglik_scores(model, tokenizer, qs, idx, device, pad) -> torch.Tensor:
    """Each choice's mean log-probability of its tokens after the question, ``[questions,
    choices]``: one forward for the questions (left-padded), the choices as their
    continuations on the questions' key/value cache (the same numbers as each question +
    choice in full)."""
    prompts = [tokenizer(f"Question: {qs[i].question}\nAnswer:",
                         add_special_tokens=True)["input_ids"] for i in idx]
    conts = [tokenizer(" " + c, add_special_tokens=False)["input_ids"]
             for i in idx for c in qs[i].choices]
    k = len(conts) // len(idx)
    ids, mask = _pad(prompts, pad, left=True)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                position_ids=pos.to(device), use_cache=True)
    # the prompt's last position predicts each continuation's first token
    first = torch.log_softmax(out.logits[:, -1].float(), -1).repeat_interleave(k, 0)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    cids, cmask = _pad_right([c or [pad] for c in conts], pad)
    amask = torch.cat([mask.repeat_interleave(k, 0), cmask], 1)
    cpos = mask.sum(1).repeat_interleave(k)[:, None] + torch.arange(cids.shape[1])
    logits = model(input_ids=cids.to(device), attention_mask=amask.to(device),
                   position_ids=cpos.to(device), past_key_values=cache, use_cache=True).logits
    logp = torch.log_softmax(logits.float(), -1)
    cids = cids.to(device)
    scores = []
    for r, c in enumerate(conts):
        # token t of the choice is predicted at position t-1 (t = 0: by the prompt)
        tok = torch.cat([first[r, cids[r, :1]],
                         logp[r, :len(c) - 1].gather(1, cids[r, 1:len(c), None])[:, 0]])
        scores.append(float(tok[:len(c)].mean()))
    return torch.tensor(scores).view(len(idx), k)


def mc_counts(model: nn.Module, tokenizer, subset, method: str = "loglik",
              batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Hits per multiple-choice question: ``([n] of 0/1, [n] of 1)``.

    ``method="letter"``: the authors' zero-shot MMLU format; correct when the top-1 next token
    over the whole vocabulary is the gold letter. ``method="loglik"``: each choice scored by the
    mean log-probability of its tokens as a continuation of the question; correct when the
    gold choice scores highest (the question run once, the choices continuing it).
    Questions are batched by length (little padding); data-parallel, each process scores
    every ``world_size``-th batch.
    """
    if method not in ("letter", "loglik"):
        raise ValueError(f"unknown multiple-choice method {method!r}; use 'letter' or 'loglik'")
    qs = subset.questions
    if not qs:
        raise ValueError(f"subset {subset.name} has no question")
    device = _model_device(model)
    pad = _pad_id(tokenizer)
    if method == "letter":
        from .data import mc_prompt
        score, per_batch = _letter_hits, batch_size
        lengths = [len(mc_prompt(q)) for q in qs]
    else:
        # batch_size questions a batch (the former path ran batch_size // 4, each choice
        # with its question): the choices' rows are short, and two forwards of a batch
        # cost less than four of a quarter of it (each forward reads every weight once)
        score, per_batch = _loglik_hits, batch_size
        lengths = [len(q.question) for q in qs]
    parts = []
    with torch.inference_mode():
        for idx in parallel.shard(_by_length(lengths, per_batch)):
            parts.append(list(zip(idx, score(model, tokenizer, qs, idx, device, pad))))
    hit = np.zeros(len(qs), np.int64)
    for idx_hits in parallel.gather_shards(parts):
        for i, h in idx_hits:
            hit[i] = h
    return hit, np.ones_like(hit)


def counts(model: nn.Module, subset, processor=None, batch_size: int = 8,
           mc_method: str = "loglik") -> tuple[np.ndarray, np.ndarray]:
    """Per-item ``(correct [n], total [n])`` of ``model`` on ``subset`` by its kind."""
    if subset.kind == "text":
        return text_counts(model, subset, batch_size)
    if subset.kind == "image":
        return image_counts(model, subset, batch_size)
    if subset.kind == "mc":
        return mc_counts(model, processor, subset, mc_method, batch_size)
    raise ValueError(f"subset {subset.name} has unknown kind {subset.kind!r}")


def text_accuracy(model: nn.Module, subset, batch_size: int = 8) -> float:
    """Top-1 next-token accuracy over all non-padding positions of a text subset."""
    return ratio_of(*text_counts(model, subset, batch_size))


def image_accuracy(model: nn.Module, subset, batch_size: int = 64) -> float:
    """Top-1 accuracy over all labels on the images of a subset."""
    return ratio_of(*image_counts(model, subset, batch_size))


def mc_accuracy(model: nn.Module, tokenizer, subset, method: str = "loglik",
                batch_size: int = 16) -> float:
    """Accuracy on a multiple-choice subset (see :func:`mc_counts`)."""
    return ratio_of(*mc_counts(model, tokenizer, subset, method, batch_size))


def accuracy(model: nn.Module, subset, processor=None, batch_size: int = 8,
             mc_method: str = "loglik") -> float:
    """Accuracy of ``model`` on ``subset`` by its kind (text, image or multiple choice)."""
    return ratio_of(*counts(model, subset, processor, batch_size, mc_method))


def pruned_accuracy(model, mask, subset, **kw) -> float:
    """Accuracy of ``model`` with the neurons of ``mask`` zeroed (a fresh, unpruned model
    outside the call: the hooks are removed afterwards)."""
    with pruned(model, mask):
        return accuracy(model, subset, **kw)


# -- uncertainty


def ratio_of(correct, total) -> float:
    return float(np.sum(correct) / np.sum(total))


def ratio_se(num, den) -> float:
    """Standard error of ``sum(num) / sum(den)`` over independent items ``[n]`` (the
    linearised, cluster-robust form: tokens within a block are not independent, blocks are).
    NaN for fewer than 2 items."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    n = len(num)
    if n < 2 or den.sum() == 0:
        return float("nan")
    r = num.sum() / den.sum()
    return float(np.sqrt(n / (n - 1) * np.sum((num - r * den) ** 2)) / den.sum())


def measurement(correct, total) -> dict:
    """An accuracy with its standard error and the per-item counts behind it."""
    correct = np.asarray(correct, np.int64)
    total = np.asarray(total, np.int64)
    return {"accuracy": ratio_of(correct, total), "se": ratio_se(correct, total),
            "n_items": int(len(total)), "n": int(total.sum()),
            "correct": correct.tolist(), "total": total.tolist()}


def paired(pruned_m: Mapping, base_m: Mapping) -> dict:
    """Pruned against unpruned on the same items: the difference of accuracies and the
    ratio (pruned / unpruned), each with its paired standard error."""
    cp, cu = np.asarray(pruned_m["correct"], float), np.asarray(base_m["correct"], float)
    t = np.asarray(base_m["total"], float)
    if cp.shape != cu.shape or not np.array_equal(t, np.asarray(pruned_m["total"], float)):
        raise ValueError("a paired comparison needs both measurements on the same items")
    diff = float((cp.sum() - cu.sum()) / t.sum())
    out = {"diff": diff, "diff_se": ratio_se(cp - cu, t), "ratio": None, "ratio_se": None}
    if cu.sum() > 0:
        out["ratio"] = float(cp.sum() / cu.sum())
        out["ratio_se"] = ratio_se(cp, cu)
    return out


def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0, groups=None) -> dict:
    """Mean of ``values`` with a percentile-bootstrap 95% interval.

    ``groups`` (same length as ``values``): resample whole groups (e.g. the cells of one
    forget column) instead of single values; NaN values are ignored."""
    v = np.asarray(values, float)
    groups = np.arange(len(v)) if groups is None else np.asarray(groups)
    keep = np.isfinite(v)
    v, groups = v[keep], groups[keep]
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b in range(n_boot):
        pick = np.concatenate([members[i] for i in rng.integers(len(ids), size=len(ids))])
        means[b] = v[pick].mean()
    lo, hi = (np.percentile(means, [2.5, 97.5]) if len(ids) > 1 else (np.nan, np.nan))
    return {"mean": float(v.mean()), "lo": finite_or_none(float(lo)),
            "hi": finite_or_none(float(hi)), "n": int(len(ids))}


# -- the search for a fraction


def find_fraction(evaluate: Callable[[torch.Tensor], float | Mapping], scores: torch.Tensor,
                  base: float, drop: float, grid: Sequence[float], tol: float = 0.02,
                  max_iter: int = 16) -> dict:
    """The fraction of top-scored neurons whose pruning costs ``drop`` of ``base``.

    ``evaluate(mask)`` returns an accuracy, or a :func:`measurement` dict. Accepted when
    ``target - tol <= acc <= target`` with ``target = (1 - drop) * base`` (fractions, so
    tol = 0.02 is the authors' 2 percentage points). Accuracy need not fall monotonically with
    the fraction, so the search first *brackets*: it walks up the increasing ``grid`` (ending
    at 1.0) to the first fraction at or below the target, then bisects between it and the
    grid point before. Returns ``frac``, ``k``, ``accuracy``, ``target``, ``reached`` (False
    when no fraction landed in the window: the result then holds the closest fraction tried
    and says so; never a placeholder), ``crossed`` (some fraction below 1 brought the accuracy
    to the target or under it: the drop is reachable, though perhaps not inside the window,
    when one neuron more steps the accuracy past it) and ``history``, every point measured in
    order.
    """
    grid = [float(g) for g in grid]
    if not grid or any(b <= a for a, b in zip(grid, grid[1:])) or grid[0] <= 0 or grid[-1] != 1.0:
        raise ValueError(f"grid must increase within (0, 1] and end at 1.0, got {grid}")
    target = (1.0 - drop) * base
    n_total = scores.numel()
    seen: dict[int, dict] = {}
    history = []

    def acc_at(frac: float) -> tuple[int, float]:
        k = n_select(n_total, frac)
        if k not in seen:  # many fractions round to the same k: evaluate each k once
            m = evaluate(top_fraction(scores, frac))
            m = dict(m) if isinstance(m, Mapping) else {"accuracy": float(m)}
            point = {"frac": k / n_total, "k": k, "accuracy": m["accuracy"],
                     "se": m.get("se"), "phase": "bracket" if frac in grid else "bisect"}
            seen[k] = point
            history.append(point)
        return k, seen[k]["accuracy"]

    def result(k, reached, note=""):
        # crossed: some fraction below 1 brought the accuracy to the target or under it
        crossed = any(p["accuracy"] <= target for p in history if p["k"] < n_total)
        return {"frac": k / n_total, "k": k, "accuracy": seen[k]["accuracy"],
                "se": seen[k].get("se"), "base": base, "target": target, "drop": drop,
                "tol": tol, "reached": reached, "crossed": crossed, "note": note,
                "history": history}

    def inside(acc):
        return target - tol <= acc <= target

    lo = 0.0
    for g in grid:
        k, acc = acc_at(g)
        if inside(acc):
            return result(k, True)
        if acc < target - tol:
            hi = g
            break
        lo = g
    else:
        return result(k, False, f"pruning every neuron leaves accuracy {acc:.3f} "
                                f"above the target {target:.3f}")
    for _ in range(max_iter):
        if n_select(n_total, hi) - n_select(n_total, lo) <= 1:
            break
        mid = (lo + hi) / 2
        k, acc = acc_at(mid)
        if inside(acc):
            return result(k, True)
        if acc > target:
            lo = mid
        else:
            hi = mid
    # closest fraction tried, reported as not reached
    k = min(seen, key=lambda kk: abs(seen[kk]["accuracy"] - (target - tol / 2)))
    note = (f"no fraction lands within [{target - tol:.3f}, {target:.3f}] after "
            f"{len(history)} evaluations; closest accuracy {seen[k]['accuracy']:.3f} at "
            f"{k / n_total:.2%}")
    k_lo, k_hi = n_select(n_total, lo), n_select(n_total, hi)
    if k_hi - k_lo <= 1 and k_lo in seen:  # the window lies inside one neuron's step
        note += (f": pruning one neuron more ({k_lo} -> {k_hi}) steps the accuracy from "
                 f"{seen[k_lo]['accuracy']:.3f} to {seen[k_hi]['accuracy']:.3f}")
    return result(k, False, note)


def cross_evaluate(measure_of: Callable[[str, torch.Tensor | None], float | Mapping],
                   masks: Mapping[str, torch.Tensor], eval_names: Sequence[str],
                   progress: bool = True) -> dict:
    """Accuracy of every eval subset with each forget subset's neurons pruned.

    ``measure_of(eval_name, mask)`` measures one cell (``mask=None``: unpruned) and returns an
    accuracy or a :func:`measurement`. Returns ``{"forget", "eval", "base", "pruned",
    "ratio"}`` (``[eval][forget]``) where ``ratio[i][j]`` = pruned accuracy on ``eval[i]``
    with ``forget[j]``'s neurons removed / unpruned accuracy on ``eval[i]`` (``None`` where
    the unpruned accuracy is 0); with measurements also ``base_se``, ``pruned_se`` and the
    paired ``ratio_se`` and ``diff_se``.
    """
    forget, evals = list(masks), list(eval_names)
    base = {e: measure_of(e, None) for e in evals}
    cells = [(f, e) for f in forget for e in evals]
    it = cells
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(cells, desc="cross-evaluation")
    got = {(f, e): measure_of(e, masks[f]) for f, e in it}

    def acc(m):
        return m["accuracy"] if isinstance(m, Mapping) else float(m)

    out = {"forget": forget, "eval": evals, "base": [acc(base[e]) for e in evals],
           "pruned": [[acc(got[f, e]) for f in forget] for e in evals],
           "ratio": [[acc(got[f, e]) / acc(base[e]) if acc(base[e]) > 0 else None
                      for f in forget] for e in evals]}
    if all(isinstance(m, Mapping) for m in base.values()):
        pairs = {(f, e): paired(got[f, e], base[e]) for f, e in cells}
        out["base_se"] = [base[e]["se"] for e in evals]
        out["pruned_se"] = [[got[f, e]["se"] for f in forget] for e in evals]
        out["ratio_se"] = [[pairs[f, e]["ratio_se"] for f in forget] for e in evals]
        out["diff_se"] = [[pairs[f, e]["diff_se"] for f in forget] for e in evals]
    return out


def summarize(fractions: Mapping[str, dict], matrix: dict, n_boot: int = 2000) -> dict:
    """Headline numbers of one drop target, over the forget subsets that *reached* it.

    A column whose target was not reached holds the closest fraction tried (often every MLP
    neuron), so it says nothing about separability at that drop: the fraction, diagonal and
    off-diagonal means leave it out, and ``n_reached`` of ``n_forget`` says how many remain;
    ``n_crossed`` counts the subsets some fraction below 1 brought to the target or under it
    (reached, or stepped over the window by one neuron). Each mean carries a bootstrap 95%
    interval over subsets (off-diagonal and eval-only: resampling whole forget columns). The ``*_all_columns`` entries include unreached
    columns, labelled as such.
    """
    ratio = np.array([[np.nan if v is None else v for v in r] for r in matrix["ratio"]], float)
    ev, forget = list(matrix["eval"]), list(matrix["forget"])
    reached = [bool(fractions[f]["reached"]) for f in forget]
    fset = set(forget)

    def cells(which: str, columns) -> tuple[list, list]:
        vals, groups = [], []
        for j in columns:
            f = forget[j]
            for i, e in enumerate(ev):
                kind = "diag" if e == f else "off" if e in fset else "other"
                if kind == which:
                    vals.append(ratio[i, j])
                    groups.append(j)
        return vals, groups

    ok_cols = [j for j, r in enumerate(reached) if r]
    all_cols = list(range(len(forget)))
    crossed = [bool(fractions[f].get("crossed", fractions[f]["reached"])) for f in forget]
    out = {"n_forget": len(forget), "n_reached": len(ok_cols),
           "not_reached": [f for f, r in zip(forget, reached) if not r],
           # fell to the target at a fraction below 1 without landing in the window
           "n_crossed": sum(crossed),
           "crossed_not_reached": [f for f, r, c in zip(forget, reached, crossed) if c and not r]}
    fr = np.array([fractions[forget[j]]["frac"] for j in ok_cols], float)
    out["frac_mean"] = float(fr.mean()) if fr.size else None
    out["frac_std"] = float(fr.std()) if fr.size else None
    out["frac_ci"] = bootstrap_mean(fr, n_boot)
    for key, which in (("diagonal", "diag"), ("off_diagonal", "off"), ("eval_only", "other")):
        vals, groups = cells(which, ok_cols)
        b = bootstrap_mean(vals, n_boot, groups=groups)
        out[f"{key}_mean"] = b["mean"]
        out[f"{key}_ci"] = [b["lo"], b["hi"]]
        vals = [v for v in cells(which, all_cols)[0] if np.isfinite(v)]
        out[f"{key}_mean_all_columns"] = float(np.mean(vals)) if vals else None
    # the paired standard error at the target: is the drop measured finely enough?
    if "diff_se" in matrix:
        se = [matrix["diff_se"][ev.index(forget[j])][j] for j in ok_cols if forget[j] in ev]
        se = [s for s in se if s is not None and np.isfinite(s)]
        out["paired_se_at_target_max"] = float(max(se)) if se else None
        out["paired_se_at_target_mean"] = float(np.mean(se)) if se else None
    return out


def finite_or_none(x):
    """JSON has no NaN: store a missing number as null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def drop_label(drop: float) -> str:
    """A drop as people read it, exactly: 0.5 -> "50%", 0.125 -> "12.5%", 0.29 -> "29%"."""
    return f"{drop * 100:.6g}%"


def drop_tag(drop: float) -> str:
    """A drop in file names, exactly: 0.5 -> "drop50", 0.125 -> "drop12.5"."""
    return f"drop{drop * 100:.6g}"


# -- notebook 03 -------------------------------------------------------------------------------

def mask_digest(mask: torch.Tensor | None) -> str:
    """A short content hash of a bool mask (``None``: the unpruned model)."""
    if mask is None:
        return "unpruned"
    import hashlib
    m = mask.to(torch.bool).cpu().numpy()
    return hashlib.sha256(np.packbits(m).tobytes() + str(m.shape).encode()).hexdigest()[:16]


#: bump when the way accuracies are measured changes, so old caches are not trusted
EVAL_VERSION = 2


def eval_inputs(cfg: dict, subset: str) -> dict:
    """Every input that changes an accuracy measurement, except the mask: the model's weights
    (content digest), the data's content, the code version and every parameter."""
    from .activations import model_fingerprint
    from .data import subset_fingerprint
    mc = subset_kind(subset) == "mc"
    return {"model": cfg["model"], "weights": model_fingerprint(cfg["model"]), "subset": subset,
            "data": subset_fingerprint(subset), "n": cfg["mc_n"] if mc else cfg["eval_n"],
            "seed": cfg["seed"], "block_len": cfg["block_len"], "dtype": cfg["dtype"],
            "batch_size": cfg["batch_size"], "mc_method": cfg["mc_method"] if mc else None,
            "version": EVAL_VERSION}


def subset_kind(name: str) -> str:
    return "mc" if name.split(":", 1)[0] in ("quiz", "mmlu") else "other"


class Evaluator:
    """Accuracy of one model on the evaluation split of named subsets, with or without a
    pruning mask, as a :func:`measurement` (accuracy, standard error, per-item counts).
    Every measurement is cached by its inputs and the mask's content, so an unpruned
    baseline, a bisection step or a cross-evaluation cell is never computed twice, and an
    interrupted run resumes where it stopped."""

    def __init__(self, cfg: dict, model, processor):
        self.cfg, self.model, self.processor = cfg, model, processor
        self._subsets: dict = {}

    def subset(self, name: str):
        if name not in self._subsets:
            from .data import load_subset
            n = self.cfg["mc_n"] if subset_kind(name) == "mc" else self.cfg["eval_n"]
            self._subsets[name] = load_subset(name, self.processor, split="eval", n=n,
                                              seed=self.cfg["seed"],
                                              block_len=self.cfg["block_len"])
        return self._subsets[name]

    def __call__(self, name: str, mask: torch.Tensor | None = None) -> dict:
        from .io import cached_json

        def compute():
            kw = dict(processor=self.processor, batch_size=self.cfg["batch_size"],
                      mc_method=self.cfg["mc_method"])
            if mask is None:
                return measurement(*counts(self.model, self.subset(name), **kw))
            with pruned(self.model, mask):
                return measurement(*counts(self.model, self.subset(name), **kw))
        return cached_json("accuracy", [eval_inputs(self.cfg, name), mask_digest(mask)], compute)


def selection_fractions(evaluator: Evaluator, scores: Mapping[str, torch.Tensor],
                        drop: float, progress: bool = True) -> dict[str, dict]:
    """For each forget subset, the result of :func:`find_fraction` at ``drop``, evaluated on
    held-out data (the evaluation split, disjoint from the collection split). Each result
    also holds the paired standard error of pruned minus unpruned accuracy at its fraction."""
    cfg = evaluator.cfg
    it = scores.items()
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(list(it), desc=f"search for a {drop_label(drop)} drop")
    out = {}
    for name, s in it:
        base = evaluator(name)
        res = find_fraction(lambda m, name=name: evaluator(name, m), s, base["accuracy"], drop,
                            cfg["bisect_grid"], cfg["bisect_tol"], cfg["bisect_max_iter"])
        at = evaluator(name, top_fraction(s, res["frac"]))  # cached: measured by the search
        res["base_se"] = base["se"]
        res["paired"] = paired(at, base)
        out[name] = res
    return out


def fraction_params(cfg: Mapping, drop: float) -> dict:
    """What a set of bisected fractions depends on: recorded with them by notebook 03 and
    checked by every notebook that reads them (04, 07)."""
    from .activations import model_fingerprint
    keys = ("model", "forget", "retain", "collect_n", "eval_n", "seed", "block_len", "dtype",
            "eps", "bisect_grid", "bisect_tol", "bisect_max_iter", "batch_size")
    return {**{k: cfg[k] for k in keys}, "weights": model_fingerprint(cfg["model"]),
            "drop": float(drop), "version": EVAL_VERSION}


def step03_path(cfg: Mapping, kind: str, drop: float):
    """Notebook 03's ``03_<kind>_<drop tag>.json`` (``kind``: "fractions" or "cross_eval")."""
    from .config import results_dir
    return results_dir(dict(cfg)) / f"03_{kind}_{drop_tag(drop)}.json"


def fractions_path(cfg: Mapping, drop: float):
    return step03_path(cfg, "fractions", drop)


def save_fractions(cfg: Mapping, drop: float, fractions: Mapping) -> None:
    from .io import write_json
    write_json(fractions_path(cfg, drop), {"params": fraction_params(cfg, drop),
                                           "fractions": fractions})


def load_fractions(cfg: Mapping, drop: float, names: Sequence[str] | None = None) -> dict:
    """Notebook 03's fractions for ``drop``, after checking they were computed with this
    run's parameters (and model weights); a clear error says what differs otherwise."""
    import json
    path = fractions_path(cfg, drop)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebook 03 for this profile first "
                                f"(python -m modsep_utils.run --profile {cfg['profile']} "
                                f"--experiment {cfg['experiment']} --only 03)")
    saved = json.loads(path.read_text())
    if "params" not in saved:
        raise ValueError(f"{path} has no record of its parameters (an older format): "
                         "run notebook 03 again")
    want = json.loads(json.dumps(fraction_params(cfg, drop)))
    diff = sorted(k for k in set(want) | set(saved["params"])
                  if want.get(k) != saved["params"].get(k))
    if diff:
        raise ValueError(f"{path} was computed with other parameters ({', '.join(diff)}: "
                         f"{[saved['params'].get(k) for k in diff]} there, "
                         f"{[want.get(k) for k in diff]} here): run notebook 03 again")
    fr = saved["fractions"]
    if names is not None:
        missing = [n for n in names if n not in fr]
        if missing:
            raise KeyError(f"{path} has no fraction for {missing}: run notebook 03 again")
        fr = {n: fr[n] for n in names}
    return fr


def cross_eval_matrix(evaluator: Evaluator, scores: Mapping[str, torch.Tensor],
                      fractions: Mapping[str, dict], eval_names: Sequence[str],
                      progress: bool = True) -> dict:
    """:func:`cross_evaluate` with each forget subset's neurons at its bisected fraction."""
    masks = {name: top_fraction(scores[name], fractions[name]["frac"]) for name in scores}
    out = cross_evaluate(evaluator, masks, eval_names, progress)
    out["frac"] = [fractions[f]["frac"] for f in masks]
    out["reached"] = [fractions[f]["reached"] for f in masks]
    return out


def short_name(name: str) -> str:
    return name.split(":", 1)[-1]


def short_names(names: Sequence[str]) -> list[str]:
    """Figure labels: each name after its group prefix, but the whole name where two short
    names would read alike (``code:github`` and ``pile:Github``)."""
    short = [short_name(n) for n in names]
    alike = Counter(s.lower() for s in short)
    return [n if alike[s.lower()] > 1 else s for n, s in zip(names, short)]


def plot_cross_eval(matrices: Mapping[str, dict], summaries: Mapping[str, dict] | None = None,
                    title: str = ""):
    """Figures 1 / 2: pruned / unpruned accuracy (%) of every eval subset (rows) after pruning
    each forget subset's neurons (columns), one panel per drop target; each cell shows the
    ratio and, below it, its paired standard error. Columns whose target drop no fraction
    reached are hatched and marked (!): they show the closest fraction tried and are left out
    of the headline means (given in each panel's title with their 95% intervals)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .plots import heatmap
    n = len(matrices)
    first = next(iter(matrices.values()))
    rows, cols = len(first["eval"]), len(first["forget"])
    fig, axes = plt.subplots(1, n, figsize=(max(5, 0.5 * cols + 2.5) * n, 0.36 * rows + 2.6),
                             constrained_layout=True, squeeze=False)
    for ax, (label, m) in zip(axes[0], matrices.items()):
        ratio = np.array([[np.nan if v is None else v for v in r] for r in m["ratio"]], float)
        cols_l = [f"{s}{'' if ok else ' (!)'}" for s, ok in zip(short_names(m["forget"]),
                                                                 m["reached"])]
        panel = f"{title} target drop {label}"
        if summaries and label in summaries:
            panel += "\n" + _summary_line(summaries[label])
        im = heatmap(ax, ratio, short_names(m["eval"]), cols_l, vmin=0.0,
                     vmax=1.1, title=panel, xlabel="pruned for (forget subset)",
                     ylabel="evaluated on")
        if "ratio_se" in m and ratio.size <= 400:  # the standard error under each value
            for i in range(rows):
                for j in range(cols):
                    se = m["ratio_se"][i][j]
                    if se is not None and np.isfinite(se):
                        ax.text(j, i + 0.32, f"±{se * 100:.0f}", ha="center", va="center",
                                fontsize=5.5, color="#333333")
        for j, ok in enumerate(m["reached"]):
            if not ok:  # the target was not reached: this column is the closest fraction tried
                ax.add_patch(Rectangle((j - 0.5, -0.5), 1, rows, fill=False, hatch="///",
                                       edgecolor="grey", lw=0))
        nf = len(m["forget"])
        if rows > nf:  # separate the forget subsets from eval-only (multiple-choice) rows
            ax.axhline(nf - 0.5, color="black", lw=1)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.6, label="pruned / unpruned accuracy")
    return fig


def _ci_text(mean, ci, pct: bool = False) -> str:
    if mean is None:
        return "-"
    f = (lambda x: f"{x:.2%}") if pct else (lambda x: f"{x:.3f}")
    if ci and ci[0] is not None:
        return f"{f(mean)} [{f(ci[0])}, {f(ci[1])}]"
    return f(mean)


def _summary_line(s: Mapping) -> str:
    parts = [f"{s['n_reached']} of {s['n_forget']} reached"]
    if s["n_reached"]:
        parts.append(f"diagonal {_ci_text(s['diagonal_mean'], s['diagonal_ci'])}")
        if s.get("off_diagonal_mean") is not None:
            parts.append(f"off-diagonal {_ci_text(s['off_diagonal_mean'], s['off_diagonal_ci'])}")
    return "; ".join(parts)


def plot_search_curves(fractions_by_drop: Mapping[str, Mapping[str, dict]]):
    """Accuracy against the fraction of neurons pruned, every point the search measured, one
    panel per subset (a curve the paper does not show): the target window shaded per drop,
    the accepted fraction circled, ± one standard error as bars."""
    import matplotlib.pyplot as plt
    names = list(next(iter(fractions_by_drop.values())))
    ncol = min(5, len(names))
    nrow = -(-len(names) // ncol)
    # one x range for all panels: a panel spanning less than a decade would label its minor
    # ticks in full size over its neighbours
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow), squeeze=False,
                             constrained_layout=True, sharey=True, sharex=True)
    data = {}
    for ax, name in zip(axes.flat, names):
        for c, (label, fr) in enumerate(fractions_by_drop.items()):
            f = fr[name]
            pts = sorted(f["history"], key=lambda p: p["frac"])
            x = np.array([max(p["frac"], 1e-4) for p in pts])
            y = np.array([p["accuracy"] for p in pts])
            err = np.array([p.get("se") or 0.0 for p in pts])
            color = f"C{c}"
            ax.errorbar(x, y, yerr=err, fmt="-o", ms=2.5, lw=0.8, color=color,
                        label=f"drop {label}")
            ax.axhspan(f["target"] - f["tol"], f["target"], color=color, alpha=0.15, lw=0)
            ax.plot([max(f["frac"], 1e-4)], [f["accuracy"]], "o", mfc="none", ms=8,
                    color="black" if f["reached"] else "red")
            data.setdefault(name, {})[label] = {"frac": x.tolist(), "accuracy": y.tolist(),
                                                "se": err.tolist(), "target": f["target"],
                                                "reached": f["reached"], "chosen": f["frac"]}
        ax.axhline(next(iter(fractions_by_drop.values()))[name]["base"], color="grey", ls=":",
                   lw=0.8)
        ax.set_xscale("log")
        ax.set_title(short_name(name), fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.supxlabel("fraction of neurons pruned (log scale)", fontsize=8)
    fig.supylabel("accuracy (dotted: unpruned; band: target window)", fontsize=8)
    return fig, data


#: the authors' headline numbers (REFERENCE.md: from their result data)
PAPER = {
    "vit": {"50%": {"frac_mean": 0.1256, "frac_std": 0.0604, "diagonal_mean": 0.496,
                    "off_diagonal_mean": 0.981},
            "80%": {"frac_mean": 0.330, "frac_std": 0.069}},
    "lm": {"20%": {"frac_mean": 0.0338, "frac_std": 0.0257, "diagonal_mean": 0.787,
                   "off_diagonal_mean": 0.957, "eval_only_mean": 0.969}},
}

HEADLINE_KEYS = ("frac_mean", "frac_std", "diagonal_mean", "off_diagonal_mean", "eval_only_mean")


def headline_agrees(summary: Mapping, matrix: Mapping, fractions: Mapping,
                    atol: float = 1e-9) -> bool:
    """Recompute the summary's diagonal and off-diagonal means from the matrix it summarises,
    by a separate plain loop over the reached columns: False when they disagree."""
    forget, ev = matrix["forget"], matrix["eval"]
    diag, off = [], []
    for j, f in enumerate(forget):
        if not fractions[f]["reached"]:
            continue
        for i, e in enumerate(ev):
            v = matrix["ratio"][i][j]
            if v is None:
                continue
            if e == f:
                diag.append(v)
            elif e in forget:
                off.append(v)

    def same(a, b):
        return (a is None and b is None) or (a is not None and b is not None
                                             and abs(a - b) <= atol)
    return (same(summary["diagonal_mean"], sum(diag) / len(diag) if diag else None)
            and same(summary["off_diagonal_mean"], sum(off) / len(off) if off else None)
            and summary["n_reached"] == sum(bool(fractions[f]["reached"]) for f in forget))


def headline(experiment: str, summaries: Mapping[str, dict]) -> dict:
    """Per drop label: the measured summary beside the paper's values."""
    return {label: {"measured": dict(s), "paper": PAPER.get(experiment, {}).get(label, {})}
            for label, s in summaries.items()}


def format_headline(h: dict) -> str:
    """A small text table of :func:`headline`, means with their 95% intervals."""
    rows = [f"{'drop':>5} {'quantity':<20} {'measured [95% interval]':>32} {'paper':>8}"]
    for label, d in h.items():
        m = d["measured"]
        rows.append(f"{label:>5} reached: {m['n_reached']} of {m['n_forget']} forget subsets")
        for key in HEADLINE_KEYS:
            p = d["paper"].get(key)
            pct = key.startswith("frac")
            ci = (m["frac_ci"]["lo"], m["frac_ci"]["hi"]) if key == "frac_mean" else \
                m.get(key.replace("_mean", "_ci"))
            val = _ci_text(m.get(key), ci if key != "frac_std" else None, pct)
            ptxt = "-" if p is None else (f"{p:.2%}" if pct else f"{p:.3f}")
            rows.append(f"{label:>5} {key:<20} {val:>32} {ptxt:>8}")
        if m.get("paired_se_at_target_max") is not None:
            rows.append(f"{label:>5} paired SE of the drop at the target: max "
                        f"{m['paired_se_at_target_max'] * 100:.2f} points")
        if m.get("not_reached"):
            rows.append(f"{label:>5} not reached: {', '.join(m['not_reached'])}")
        if m.get("crossed_not_reached"):
            rows.append(f"{label:>5} of these, fell past the target at a fraction below 1 (one "
                        f"neuron steps over the window): {', '.join(m['crossed_not_reached'])}")
    return "\n".join(rows)


def compare_mc_methods(evaluator: Evaluator, names: Sequence[str]) -> dict:
    """Unpruned accuracy of the multiple-choice subsets ``names`` under both scorings (the
    authors' letter format and continuation log-likelihood), with chance (1 / choices), so a
    run can say which format the model is clearly above chance on. Cached like every
    measurement."""
    out = {}
    for method in ("letter", "loglik"):
        ev = Evaluator({**evaluator.cfg, "mc_method": method}, evaluator.model,
                       evaluator.processor)
        ev._subsets = evaluator._subsets  # same questions, no reload
        ms = {n: ev(n) for n in names}
        pooled = measurement(np.concatenate([m["correct"] for m in ms.values()]),
                             np.concatenate([m["total"] for m in ms.values()]))
        out[method] = {"per_subject": {n: m["accuracy"] for n, m in ms.items()},
                       "per_subject_se": {n: m["se"] for n, m in ms.items()},
                       "mean": float(np.mean([m["accuracy"] for m in ms.values()])),
                       "pooled": pooled["accuracy"], "pooled_se": pooled["se"]}
    out["chance"] = 1 / len(LETTERS)
    out["used"] = evaluator.cfg["mc_method"]
    return out
