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


def cross_evaluate(accuracy_of: Callable[[str, torch.Tensor | None], float],
                   masks: Mapping[str, torch.Tensor], eval_names: Sequence[str],
                   progress: bool = True) -> dict:
    """Accuracy of every eval subset with each forget subset's neurons pruned.

    ``accuracy_of(eval_name, mask)`` measures one cell (``mask=None``: unpruned). Returns
    ``{"forget", "eval", "base", "pruned", "ratio"}`` where ``ratio[i][j]`` = pruned accuracy on
    ``eval[i]`` with ``forget[j]``'s neurons removed / unpruned accuracy on ``eval[i]``
    (``None`` where the unpruned accuracy is 0).
    """
    forget, evals = list(masks), list(eval_names)
    base = {e: accuracy_of(e, None) for e in evals}
    cells = [(f, e) for f in forget for e in evals]
    it = cells
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(cells, desc="cross-evaluation")
    acc = {(f, e): accuracy_of(e, masks[f]) for f, e in it}
    return {"forget": forget, "eval": evals, "base": [base[e] for e in evals],
            "pruned": [[acc[f, e] for f in forget] for e in evals],
            "ratio": [[acc[f, e] / base[e] if base[e] > 0 else None for f in forget]
                      for e in evals]}


def summarize(fractions: Mapping[str, dict], matrix: dict) -> dict:
    """Headline numbers of one drop target: fraction of neurons (mean, std over subsets that
    reached the target), diagonal mean and off-diagonal mean of the pruned/unpruned ratio
    among the forget subsets, the mean over eval-only subsets, and which subsets did not
    reach the target."""
    fr = np.array([f["frac"] for f in fractions.values() if f["reached"]])
    ratio = np.array([[np.nan if v is None else v for v in r] for r in matrix["ratio"]])
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


# -- notebook 03 -------------------------------------------------------------------------------

def mask_digest(mask: torch.Tensor | None) -> str:
    """A short content hash of a bool mask (``None``: the unpruned model)."""
    if mask is None:
        return "unpruned"
    import hashlib
    m = mask.to(torch.bool).cpu().numpy()
    return hashlib.sha256(np.packbits(m).tobytes() + str(m.shape).encode()).hexdigest()[:16]


def eval_inputs(cfg: dict, subset: str) -> dict:
    """Every input that changes an accuracy measurement, except the mask."""
    from .activations import model_fingerprint
    return {"model": cfg["model"], "weights": model_fingerprint(cfg["model"]), "subset": subset,
            "n": cfg["mc_n"] if subset_kind(subset) == "mc" else cfg["eval_n"],
            "seed": cfg["seed"], "block_len": cfg["block_len"], "dtype": cfg["dtype"],
            "mc_method": cfg["mc_method"] if subset_kind(subset) == "mc" else None}


def subset_kind(name: str) -> str:
    return "mc" if name.split(":", 1)[0] in ("quiz", "mmlu") else "other"


class Evaluator:
    """Accuracy of one model on the evaluation split of named subsets, with or without a
    pruning mask. Every measurement is cached by its inputs and the mask's content, so an
    unpruned baseline, a bisection step or a cross-evaluation cell is never computed twice,
    and an interrupted run resumes where it stopped."""

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

    def __call__(self, name: str, mask: torch.Tensor | None = None) -> float:
        from .io import cached_json

        def compute():
            kw = dict(processor=self.processor, batch_size=self.cfg["batch_size"],
                      mc_method=self.cfg["mc_method"])
            if mask is None:
                return accuracy(self.model, self.subset(name), **kw)
            return pruned_accuracy(self.model, mask, self.subset(name), **kw)
        return cached_json("accuracy", [eval_inputs(self.cfg, name), mask_digest(mask)], compute)


def selection_fractions(evaluator: Evaluator, scores: Mapping[str, torch.Tensor],
                        drop: float, progress: bool = True) -> dict[str, dict]:
    """For each forget subset, the bisection result of :func:`find_fraction` at ``drop``,
    evaluated on held-out data (the evaluation split, disjoint from the collection split)."""
    cfg = evaluator.cfg
    it = scores.items()
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(list(it), desc=f"bisection to a {drop:.0%} drop")
    out = {}
    for name, s in it:
        out[name] = find_fraction(lambda m, name=name: evaluator(name, m), s, evaluator(name),
                                  drop, cfg["bisect_upper"], cfg["bisect_tol"],
                                  cfg["bisect_max_iter"])
    return out


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


def plot_cross_eval(matrices: Mapping[str, dict], title: str = ""):
    """Figures 1 / 2: pruned / unpruned accuracy (%) of every eval subset (rows) after pruning
    each forget subset's neurons (columns), one panel per drop target. Columns whose target
    drop no fraction reached are hatched and marked (!): they show the closest fraction tried."""
    import matplotlib.pyplot as plt

    from .plots import heatmap
    n = len(matrices)
    first = next(iter(matrices.values()))
    rows, cols = len(first["eval"]), len(first["forget"])
    fig, axes = plt.subplots(1, n, figsize=(max(5, 0.42 * cols + 2.5) * n, 0.3 * rows + 2.2),
                             constrained_layout=True, squeeze=False)
    for ax, (label, m) in zip(axes[0], matrices.items()):
        ratio = np.array([[np.nan if v is None else v for v in r] for r in m["ratio"]])
        cols_l = [f"{short_name(f)}{'' if ok else ' (!)'}" for f, ok in zip(m["forget"],
                                                                            m["reached"])]
        im = heatmap(ax, ratio, [short_name(e) for e in m["eval"]], cols_l, vmin=0.0,
                     vmax=1.1, title=f"{title} target drop {label}",
                     xlabel="pruned for (forget subset)", ylabel="evaluated on")
        from matplotlib.patches import Rectangle
        for j, ok in enumerate(m["reached"]):
            if not ok:  # the target was not reached: this column is the closest fraction tried
                ax.add_patch(Rectangle((j - 0.5, -0.5), 1, rows, fill=False, hatch="///",
                                       edgecolor="grey", lw=0))
        nf = len(m["forget"])
        if rows > nf:  # separate the forget subsets from eval-only (multiple-choice) rows
            ax.axhline(nf - 0.5, color="black", lw=1)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.6, label="pruned / unpruned accuracy")
    return fig


#: the authors' headline numbers (REFERENCE.md: from their result data)
PAPER = {
    "vit": {"50%": {"frac_mean": 0.1256, "frac_std": 0.0604, "diagonal_mean": 0.496,
                    "off_diagonal_mean": 0.981},
            "80%": {"frac_mean": 0.330, "frac_std": 0.069}},
    "lm": {"20%": {"frac_mean": 0.0338, "frac_std": 0.0257, "diagonal_mean": 0.787,
                   "off_diagonal_mean": 0.957, "eval_only_mean": 0.969}},
}


def all_within_window(fractions: Mapping[str, dict]) -> bool:
    """True when every subset that reached its target has ``target - tol <= acc <= target``."""
    return all(f["target"] - f["tol"] - 1e-12 <= f["accuracy"] <= f["target"] + 1e-12
               for f in fractions.values() if f["reached"])


def headline(experiment: str, summaries: Mapping[str, dict]) -> dict:
    """Per drop label: the measured summary (NaN as null) beside the paper's values."""
    return {label: {"measured": {k: finite_or_none(v) if isinstance(v, float) else v
                                 for k, v in s.items()},
                    "paper": PAPER.get(experiment, {}).get(label, {})}
            for label, s in summaries.items()}


def format_headline(h: dict) -> str:
    """A small text table of :func:`headline`."""
    rows = [f"{'drop':>5} {'quantity':<20} {'measured':>10} {'paper':>10}"]
    for label, d in h.items():
        for key in ("frac_mean", "frac_std", "diagonal_mean", "off_diagonal_mean",
                    "eval_only_mean"):
            m, p = d["measured"].get(key), d["paper"].get(key)
            fmt = (lambda x: "-" if x is None else (f"{x:.2%}" if key.startswith("frac")
                                                     else f"{x:.3f}"))
            rows.append(f"{label:>5} {key:<20} {fmt(m):>10} {fmt(p):>10}")
        if d["measured"].get("not_reached"):
            rows.append(f"{label:>5} not reached: {', '.join(d['measured']['not_reached'])}")
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
        accs = {n: ev(n) for n in names}
        out[method] = {"per_subject": accs, "mean": float(np.mean(list(accs.values())))}
    out["chance"] = 1 / len(LETTERS)
    out["used"] = evaluator.cfg["mc_method"]
    return out
