"""Step 03: selective pruning. Accuracy of a (pruned) model on a subset, the fraction of
top-scored neurons that reaches a target drop (bisection), and cross-evaluation.

Accuracy (REFERENCE.md): text = top-1 next-token prediction over the whole vocabulary at
every position (``logits[:-1]`` vs ``ids[1:]``), padding excluded; images = top-1 over all
labels; multiple choice = the authors' zero-shot letter format or the continuation
log-likelihood of each choice.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .neurons import _model_device, pruned
from .scoring import n_select, top_fraction

LETTERS = "ABCD"


def _batches_on(model, subset, batch_size):
    device = _model_device(model)
    for batch in subset.batches(batch_size):
        yield {k: v.to(device) for k, v in batch.items()}


def text_accuracy(model: nn.Module, subset, batch_size: int = 8) -> float:
    """Top-1 next-token accuracy over all non-padding positions of a text subset."""
    correct = total = 0
    with torch.inference_mode():
        for batch in _batches_on(model, subset, batch_size):
            ids, mask = batch["input_ids"], batch["attention_mask"].bool()
            logits = model(**batch).logits[:, :-1]
            valid = mask[:, 1:] & mask[:, :-1]
            hit = (logits.argmax(-1) == ids[:, 1:]) & valid
            correct += int(hit.sum())
            total += int(valid.sum())
    if total == 0:
        raise ValueError(f"subset {subset.name} has no token to predict")
    return correct / total


def image_accuracy(model: nn.Module, subset, batch_size: int = 64) -> float:
    """Top-1 accuracy over all labels on the images of a subset (``subset.labels`` ``[n]``)."""
    preds = []
    with torch.inference_mode():
        for batch in _batches_on(model, subset, batch_size):
            preds.append(model(**batch).logits.argmax(-1).cpu())
    if not preds:
        raise ValueError(f"subset {subset.name} has no image")
    return float((torch.cat(preds) == subset.labels).double().mean())


def _pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)


def mc_accuracy(model: nn.Module, tokenizer, subset, method: str = "loglik",
                batch_size: int = 16) -> float:
    """Accuracy on a multiple-choice subset.

    ``method="letter"``: the authors' zero-shot MMLU format; correct when the top-1 next token
    over the whole vocabulary is the gold letter. ``method="loglik"``: each choice scored by the
    mean log-probability of its tokens as a continuation of the question; correct when the
    gold choice scores highest.
    """
    if method not in ("letter", "loglik"):
        raise ValueError(f"unknown multiple-choice method {method!r}; use 'letter' or 'loglik'")
    qs = subset.questions
    if not qs:
        raise ValueError(f"subset {subset.name} has no question")
    device = _model_device(model)
    pad = _pad_id(tokenizer)
    correct = 0
    with torch.inference_mode():
        if method == "letter":
            from .data import mc_prompt
            for start in range(0, len(qs), batch_size):
                chunk = qs[start:start + batch_size]
                seqs = [tokenizer(mc_prompt(q), add_special_tokens=True)["input_ids"]
                        for q in chunk]
                ids, mask = _pad_right(seqs, pad)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                last = mask.sum(1) - 1
                top = logits[torch.arange(len(chunk)), last.to(device)].argmax(-1).cpu()
                for q, t in zip(chunk, top.tolist()):
                    correct += tokenizer.decode([t]).strip() == LETTERS[q.answer]
        else:
            per_batch = max(1, batch_size // 4)
            for start in range(0, len(qs), per_batch):
                chunk = qs[start:start + per_batch]
                seqs, spans = [], []
                for q in chunk:
                    prompt = tokenizer(f"Question: {q.question}\nAnswer:",
                                       add_special_tokens=True)["input_ids"]
                    for choice in q.choices:
                        cont = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
                        seqs.append(prompt + cont)
                        spans.append((len(prompt), len(prompt) + len(cont)))
                ids, mask = _pad_right(seqs, pad)
                logp = torch.log_softmax(
                    model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(),
                    -1).cpu()
                scores = []
                for i, (a, b) in enumerate(spans):
                    # token t is predicted at position t-1
                    tok = ids[i, a:b]
                    scores.append(float(logp[i, a - 1:b - 1].gather(1, tok[:, None]).mean()))
                scores = torch.tensor(scores).view(len(chunk), len(LETTERS))
                correct += int((scores.argmax(1) == torch.tensor([q.answer for q in chunk])).sum())
    return correct / len(qs)


def accuracy(model: nn.Module, subset, processor=None, batch_size: int = 8,
             mc_method: str = "loglik") -> float:
    """Accuracy of ``model`` on ``subset`` by its kind (text, image or multiple choice)."""
    if subset.kind == "text":
        return text_accuracy(model, subset, batch_size)
    if subset.kind == "image":
        return image_accuracy(model, subset, batch_size)
    if subset.kind == "mc":
        return mc_accuracy(model, processor, subset, mc_method, batch_size)
    raise ValueError(f"subset {subset.name} has unknown kind {subset.kind!r}")


def pruned_accuracy(model, mask, subset, **kw) -> float:
    """Accuracy of ``model`` with the neurons of ``mask`` zeroed (a fresh, unpruned model
    outside the call: the hooks are removed afterwards)."""
    with pruned(model, mask):
        return accuracy(model, subset, **kw)


def find_fraction(evaluate: Callable[[torch.Tensor], float], scores: torch.Tensor,
                  base: float, drop: float, upper: float, tol: float = 0.02,
                  max_iter: int = 16) -> dict:
    """Bisection for the fraction of top-scored neurons whose pruning costs ``drop`` of ``base``.

    ``evaluate(mask) -> accuracy``. Accepted when ``target - tol <= acc <= target`` with
    ``target = (1 - drop) * base`` (accuracies as fractions, so tol = 0.02 is the authors'
    2 percentage points). The search starts on ``[0, upper]`` and widens to ``[0, 1]`` if
    ``upper`` does not reach the target. Returns ``frac``, ``accuracy``, ``target``,
    ``reached`` (False when no fraction lands in the window: the result then says so and
    holds the closest fraction tried; it never holds a placeholder) and the ``history``.
    """
    target = (1.0 - drop) * base
    n_total = scores.numel()
    seen: dict[int, float] = {}
    history = []

    def acc_at(frac: float) -> tuple[int, float]:
        k = n_select(n_total, frac)
        if k not in seen:  # many fractions round to the same k: evaluate each k once
            seen[k] = evaluate(top_fraction(scores, frac))
            history.append({"frac": k / n_total, "k": k, "accuracy": seen[k]})
        return k, seen[k]

    def result(k, acc, reached, note=""):
        return {"frac": k / n_total, "k": k, "accuracy": acc, "base": base, "target": target,
                "drop": drop, "tol": tol, "reached": reached, "note": note,
                "history": history}

    lo, hi = 0.0, upper
    k_hi, acc_hi = acc_at(hi)
    if acc_hi > target and hi < 1.0:
        hi = 1.0
        k_hi, acc_hi = acc_at(hi)
    if acc_hi > target:
        return result(k_hi, acc_hi, False, f"pruning every neuron leaves accuracy {acc_hi:.3f} "
                      f"above the target {target:.3f}")
    if target - tol <= acc_hi:
        return result(k_hi, acc_hi, True)
    for _ in range(max_iter):
        mid = (lo + hi) / 2
        k, acc = acc_at(mid)
        if target - tol <= acc <= target:
            return result(k, acc, True)
        if acc > target:
            lo = mid
        else:
            hi = mid
        if n_select(n_total, hi) - n_select(n_total, lo) <= 1:
            break
    # closest fraction tried, reported as not reached
    k, acc = min(seen.items(), key=lambda kv: abs(kv[1] - (target - tol / 2)))
    return result(k, acc, False, f"no fraction lands within [{target - tol:.3f}, {target:.3f}] "
                  f"after {len(history)} evaluations; closest accuracy {acc:.3f}")


def cross_evaluate(model, masks: Mapping[str, torch.Tensor], eval_subsets: Mapping[str, object],
                   base: Mapping[str, float], progress: bool = True, cache=None, **acc_kw) -> dict:
    """Accuracy of every eval subset with each forget subset's neurons pruned.

    Returns ``{"forget": [...], "eval": [...], "pruned": [[eval x forget]], "ratio": ...}``
    where ``ratio[i][j] = pruned accuracy on eval[i] / unpruned accuracy on eval[i]`` with
    forget[j]'s neurons removed. ``cache(forget, eval, compute)`` may memoise each cell so an
    interrupted run resumes where it stopped.
    """
    forget, evals = list(masks), list(eval_subsets)
    pruned_acc = np.full((len(evals), len(forget)), np.nan)
    cells = [(i, j) for j in range(len(forget)) for i in range(len(evals))]
    it = cells
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(cells, desc="cross-evaluation")
    for i, j in it:
        def compute(i=i, j=j):
            return pruned_accuracy(model, masks[forget[j]], eval_subsets[evals[i]], **acc_kw)
        pruned_acc[i, j] = cache(forget[j], evals[i], compute) if cache else compute()
    base_col = np.array([base[e] for e in evals])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base_col > 0, pruned_acc / base_col, np.nan)
    return {"forget": forget, "eval": evals, "base": [base[e] for e in evals],
            "pruned": pruned_acc.tolist(), "ratio": ratio.tolist()}


def summarize(fractions: Mapping[str, dict], matrix: dict) -> dict:
    """Headline numbers of one drop target: fraction of neurons (mean, std over subsets that
    reached the target), diagonal mean and off-diagonal mean of the pruned/unpruned ratio
    among the forget subsets, the mean over eval-only subsets, and which subsets did not
    reach the target."""
    fr = np.array([f["frac"] for f in fractions.values() if f["reached"]])
    ratio = np.asarray(matrix["ratio"], dtype=float)
    ev = matrix["eval"]
    forget = set(matrix["forget"])
    diag, off, other = [], [], []
    for j, f in enumerate(matrix["forget"]):
        for i, e in enumerate(ev):
            (diag if e == f else off if e in forget else other).append(ratio[i, j])
    diag, off, other = np.array(diag), np.array(off), np.array(other)
    nan = float("nan")
    return {
        "frac_mean": float(fr.mean()) if fr.size else nan,
        "frac_std": float(fr.std()) if fr.size else nan,
        "n_reached": int(fr.size),
        "not_reached": [k for k, f in fractions.items() if not f["reached"]],
        "diagonal_mean": float(np.nanmean(diag)) if diag.size else nan,
        "off_diagonal_mean": float(np.nanmean(off)) if off.size else nan,
        # eval-only subsets (multiple choice), the paper's "MMLU mean"
        "eval_only_mean": float(np.nanmean(other)) if other.size else nan,
    }


def finite_or_none(x: float):
    """JSON has no NaN: store a missing number as null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
