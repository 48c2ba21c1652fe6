"""Search for a vision stand-in whose MLP neurons matter (issue 10).

Trains candidate ViTs on Fashion-MNIST with the project's recipe (``models.train_vit``) and
measures, for each, the test accuracy and the accuracy with every MLP neuron pruned, overall and
per class. A class can reach a pruning drop ``d`` at a fraction below 1 only if its pruned-all
accuracy is at most ``(1 - d)`` times its unpruned accuracy, so this screens candidates exactly
for the property the paper's experiment needs, before any pipeline runs.

    python bench/vit_search.py --device cuda --n-train 30000 --out bench/results/vit_search.json

After the grid, the best candidates are retrained with two more seeds (which classes survive
pruning varies with the seed). Results are written after every candidate.

``--glyphs`` screens candidates on Glyphs-100 (modsep_utils.glyphs) instead, per superclass
(script): a script's accuracy is on the fine labels, as the pipeline measures it::

    python bench/vit_search.py --glyphs --out bench/results/vit_search_glyphs.json
    python bench/vit_search.py --glyphs --data glyphs.npz.xz   # a rendered copy (GPU machine)

``--shipped`` measures the committed models the same way, without training::

    python bench/vit_search.py --shipped embedded-vit-glyphs embedded-vit \\
        --out bench/results/vit_shipped.json
"""
from __future__ import annotations

import argparse
import json
import lzma
import time
from pathlib import Path

import numpy as np
import torch

from modsep_utils import models
from modsep_utils.io import write_json

BASE = dict(image_size=28, num_channels=1, num_labels=10)
HP = dict(models.VIT_TRAINING, epochs=6)


def cand(layers, hidden, heads, mlp, patch=7, epochs=6, seed=0, **extra):
    recipe_keys = set(HP) | {"mlp_free_uniform"}
    hp = dict(HP, epochs=epochs, seed=seed,
              **{k: extra.pop(k) for k in list(extra) if k in recipe_keys})
    return {"config": dict(BASE, num_hidden_layers=layers, hidden_size=hidden,
                           num_attention_heads=heads, intermediate_size=mlp, patch_size=patch,
                           **extra), "training": hp}


GRID = [
    cand(8, 64, 4, 512), cand(6, 96, 4, 768),    # the two best
    cand(4, 128, 4, 512, epochs=3),             # the embedded ViT of today
    cand(8, 64, 4, 1024), cand(12, 64, 4, 512), cand(8, 48, 4, 768), cand(8, 32, 2, 512),
    cand(8, 64, 1, 512), cand(10, 64, 2, 768, epochs=8), cand(8, 64, 4, 512, hflip=False),
    cand(8, 64, 4, 512, epochs=10), cand(16, 64, 4, 512), cand(6, 64, 4, 1536),
    cand(8, 96, 4, 1536), cand(12, 48, 4, 768), cand(8, 64, 4, 512, attention_probs_dropout_prob=0.2),
    cand(8, 64, 4, 512, patch=4),
]

ROUND2 = [
    cand(8, 48, 4, 768, seed=1), cand(8, 48, 4, 768, seed=2), cand(8, 64, 4, 1024, seed=1),
    cand(8, 64, 4, 1024, seed=2), cand(8, 48, 4, 768, epochs=10), cand(8, 48, 4, 1024),
    cand(8, 64, 4, 1536), cand(10, 48, 4, 768), cand(8, 64, 4, 1024, epochs=10),
    cand(6, 48, 4, 768), cand(8, 48, 4, 768, seed=3),
]

#: after the grid and round 2 every candidate still kept one "sink" class (the class the
#: MLP-less model predicts) above half its accuracy; round 3 trains the attention path alone
#: towards the uniform distribution (models.train_vit's ``mlp_free_uniform``). Run on the CPU
#: with one thread on all 60k images: ``OMP_NUM_THREADS=1 python bench/vit_search.py --round3
#: --append --device cpu``
ROUND3 = [cand(8, 64, 4, 1024, mlp_free_uniform=0.3)]


def gcand(layers, hidden, heads, mlp, patch=8, epochs=6, seed=0, **extra):
    """A Glyphs-100 candidate: 32x32 images, 100 labels, no flips (mirrored letters differ)."""
    c = cand(layers, hidden, heads, mlp, patch, epochs, seed, hflip=False, **extra)
    c["config"].update(image_size=32, num_labels=100)
    return c


#: the shipped recipe first (the screen runs in order until its time budget is spent)
GLYPH_GRID = [
    gcand(8, 64, 4, 1024, epochs=10), gcand(8, 64, 4, 1024, epochs=10, seed=1),
    gcand(8, 64, 4, 1024), gcand(4, 128, 4, 512), gcand(6, 96, 4, 768), gcand(8, 48, 4, 768),
    gcand(8, 64, 4, 1024, patch=4), gcand(12, 64, 4, 1024), gcand(8, 64, 4, 512),
    gcand(8, 96, 4, 1536),
]


def load(path: str | None, n_train: int, glyphs: bool = False) -> tuple:
    """Normalised tensors from the Debian package (``glyphs``: rendered Glyphs-100), or from an
    ``.npz.xz`` copy of either (GPU machine: train_images, train_labels, test_images, test_labels)."""
    if path is None:
        return models.glyph_tensors(n_train) if glyphs else models.fmnist_tensors(n_train)
    arrays = np.load(__import__("io").BytesIO(lzma.decompress(Path(path).read_bytes())))
    tr, trl = arrays["train_images"][:n_train], arrays["train_labels"][:n_train]
    mean, std = float((tr / 255.0).mean()), float((tr / 255.0).std())
    return (models._normalise(tr, mean, std), torch.from_numpy(trl).long(),
            models._normalise(arrays["test_images"], mean, std),
            torch.from_numpy(arrays["test_labels"]).long(), mean, std)


def pruned_all(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Accuracy with and without every MLP neuron, per class or, on Glyphs-100, per script
    (the mean of its five equally many fine labels' accuracies), and how many classes could
    reach the 50% / 80% drop by pruning (pruned-all at most 0.5 / 0.2 of unpruned)."""
    from modsep_utils import glyphs
    base = models.class_accuracy(model, x, y)
    cut = models.class_accuracy(model, x, y, prune_all=True)
    out = {"test_accuracy": round(float(base.mean()), 4), "pruned_all": round(float(cut.mean()), 4)}
    if len(base) == len(glyphs.CLASSES):
        base, cut = (a.reshape(len(glyphs.SCRIPTS), -1).mean(1) for a in (base, cut))
    ratio = cut / np.maximum(base, 1e-9)
    return {**out, "class_base": [round(float(v), 4) for v in base],
            "class_pruned_all": [round(float(v), 4) for v in cut],
            "reach50": int((ratio <= 0.5).sum()), "reach80": int((ratio <= 0.2).sum())}


def evaluate(c: dict, data: tuple, device: str) -> dict:
    """Train ``c`` and measure it with :func:`pruned_all` on the test images."""
    from modsep_utils import glyphs
    glyph = c["config"]["num_labels"] == len(glyphs.CLASSES)
    t0 = time.perf_counter()
    model, history = models.train_vit(c["config"], c["training"], data, device=device,
                                      progress=False,
                                      labels=glyphs.CLASSES if glyph else models.FASHION_MNIST_CLASSES)
    seconds = time.perf_counter() - t0
    m = pruned_all(model, data[2].to(device), data[3].to(device))
    return {**c, **m, "test_accuracy": history[-1]["test_accuracy"],
            "train_seconds": round(seconds, 1)}


def shipped(names: list[str], out: str) -> None:
    """:func:`pruned_all` of the shipped embedded ViTs on their own test sets, each image
    processed by the model's saved processor (what the pipeline feeds it)."""
    from modsep_utils import glyphs
    rows = {}
    for name in names:
        model, proc = models.load_model(str(models.shipped_dir(name)))
        data = models.vit_recipe(name)["data"]
        images, labels = (glyphs.glyph_arrays("test") if data == "glyphs"
                          else models.load_fashion_mnist("test"))
        x = proc(images=[im[None] for im in images], input_data_format="channels_first",
                 return_tensors="pt")["pixel_values"]
        rows[name] = {"data": data, "chance": 1 / model.config.num_labels,
                      "per": "script" if data == "glyphs" else "class",
                      **pruned_all(model, x, torch.from_numpy(labels).long())}
        print(name, {k: v for k, v in rows[name].items() if not k.startswith("class_")})
    write_json(out, rows)


def rank(r: dict) -> tuple:
    return (r["reach50"], r["reach80"], -r["pruned_all"], r["test_accuracy"])


def label(r: dict) -> str:
    c, t = r["config"], r["training"]
    extra = ("" if t["hflip"] else " no flip") + (
        f" attn drop {c['attention_probs_dropout_prob']}" if "attention_probs_dropout_prob" in c else "") + (
        f" +unif {t['mlp_free_uniform']}" if t.get("mlp_free_uniform") else "") + (
        f" ({r['n_train'] // 1000}k {r['device']})" if "n_train" in r else "")
    return (f"L{c['num_hidden_layers']} H{c['hidden_size']} M{c['intermediate_size']} "
            f"h{c['num_attention_heads']} p{c['patch_size']} e{t['epochs']} s{t['seed']}{extra}")


def plot(result: dict, path: str) -> None:
    """Per class, accuracy with every MLP neuron pruned over unpruned accuracy, one row per
    candidate (best first): a class whose ratio stays above 0.5 (0.2) cannot reach the 50%
    (80%) drop by pruning every neuron."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted(result["rows"], key=rank, reverse=True)
    ratio = np.array([np.array(r["class_pruned_all"]) / np.maximum(r["class_base"], 1e-9)
                      for r in rows])
    fig, ax = plt.subplots(figsize=(13, 0.34 * len(rows) + 1.8))
    im = ax.imshow(ratio, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    for i, j in np.ndindex(ratio.shape):
        ax.text(j, i, f"{ratio[i, j]:.2f}", ha="center", va="center", fontsize=7)
    from modsep_utils import glyphs
    names = list(glyphs.SCRIPTS) if ratio.shape[1] == len(glyphs.SCRIPTS) else models.FASHION_MNIST_CLASSES
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [
        f"{label(r)}: test {r['test_accuracy']:.1%}, all pruned {r['pruned_all']:.1%}, "
        f"reach {r['reach50']}/{r['reach80']}" for r in rows], fontsize=7)
    fig.colorbar(im, ax=ax, label="pruned-all / unpruned accuracy")
    ax.set_title(f"ViT candidates on {result.get('dataset', 'Fashion-MNIST')} "
                 f"({result['n_train']} training images, "
                 f"{result['device']}, unless the row says otherwise)\n"
                 f"per {'script (fine-label accuracy)' if len(names) != 10 else 'class'}, accuracy "
                 "left with every MLP neuron pruned over unpruned accuracy",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    write_json(Path(path).with_suffix(".json"), {**result, "rows": rows, "ratio": ratio.round(4).tolist()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--data", default=None, help="an .npz.xz copy of Fashion-MNIST")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds; no new run after it")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--round2", action="store_true")
    ap.add_argument("--round3", action="store_true")
    ap.add_argument("--glyphs", action="store_true", help="Glyphs-100 candidates, per script")
    ap.add_argument("--append", action="store_true", help="add rows to --out's (each row then "
                    "records its device and training-set size)")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--out", default="bench/results/vit_search.json")
    ap.add_argument("--plot", default=None, help="draw --out's rows into this PNG and stop")
    ap.add_argument("--shipped", nargs="+", default=None, metavar="NAME",
                    help="measure these shipped ViTs (no training) into --out and stop")
    a = ap.parse_args()
    if a.shipped:
        return shipped(a.shipped, a.out)
    if a.plot:
        return plot(json.loads(Path(a.out).read_text()), a.plot)
    torch.backends.cuda.matmul.allow_tf32 = False  # the same arithmetic as the CPU recipe
    data = load(a.data, a.n_train, a.glyphs)
    t0, rows = time.perf_counter(), []
    device = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu x{torch.get_num_threads()}"
    head = {"device": device, "n_train": len(data[0]),
            "dataset": "Glyphs-100" if a.glyphs else "Fashion-MNIST"}
    if a.append:
        head = json.loads(Path(a.out).read_text())
        rows = head.pop("rows")

    def run(c):
        if time.perf_counter() - t0 > a.budget:
            return
        r = evaluate(c, data, a.device)
        if a.append:
            r.update(device=device, n_train=len(data[0]))
        rows.append(r)
        cfg = r["config"]
        print(f"L{cfg['num_hidden_layers']} H{cfg['hidden_size']} h{cfg['num_attention_heads']} "
              f"M{cfg['intermediate_size']} p{cfg['patch_size']} e{r['training']['epochs']} "
              f"s{r['training']['seed']} {'' if r['training']['hflip'] else 'noflip '}"
              f"test {r['test_accuracy']:.3f} pruned-all {r['pruned_all']:.3f} "
              f"reach50 {r['reach50']} reach80 {r['reach80']} ({r['train_seconds']} s) "
              f"{r['class_pruned_all']}", flush=True)
        write_json(a.out, {**head, "rows": rows})

    for c in (GLYPH_GRID if a.glyphs else ROUND3 if a.round3 else ROUND2 if a.round2 else GRID):
        run(c)
    for r in [] if a.round3 else sorted(list(rows), key=rank, reverse=True)[:a.top]:
        for s in a.seeds:
            run({"config": r["config"], "training": dict(r["training"], seed=s)})


if __name__ == "__main__":
    main()
