"""The paper profile's whole code path (configs/paper/lm.yaml and vit.yaml) on CPU, offline:
a tiny Mistral-architecture model and a tiny ViT saved with ``save_pretrained``, and local
dataset repositories shaped like the hub's (``MODSEP_HUB_DIR``): the Pile (``text``,
``meta.pile_set_name``, train/test), codeparrot (config ``all-all``, ``code``), camel-ai
(``message_2``), MMLU (config ``all``, test), CIFAR-100 (``img``, ``fine_label``,
``coarse_label`` with the dataset's own names). Every notebook runs in this process
(``notebooks/NN_*.py``, the parameters injected as papermill would), only smaller: fewer
subsets and samples. Nothing but the downloads is left untested."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
WORDS = [f"w{i}" for i in range(200)] + list("ABCD") + ["Question:", "Answer:", "?"]
PILE = ("ArXiv", "Github", "Wikipedia (en)")


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(  # BOS before every text, as Mistral
        single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def _save_mistral(folder: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=224,  # k = 2
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
    MistralForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def _save_vit(folder: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, image_size=32, patch_size=8, num_labels=100)  # k = 2
    ViTForImageClassification(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _repo(folder: Path, configs: dict[str | None, dict[str, "datasets.Dataset"]]) -> None:
    """A dataset repository as on the hub: parquet files, configs declared in README.md."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        name = config or "default"
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, ds in splits.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(folder / name / f"{split}-00000-of-00001.parquet"))
            lines += [f"  - split: {split}", f"    path: {name}/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join(lines + ["---", ""]))


def _docs(rng, n, words=60):
    return [" ".join(rng.choice(WORDS[:200], words)) for _ in range(n)]


def _hub(folder: Path) -> None:
    import datasets
    from PIL import Image

    from modsep_utils.data import CIFAR20_NAMES
    rng = np.random.default_rng(0)

    def pile(n):
        return datasets.Dataset.from_list([{"text": t, "meta": {"pile_set_name": s}}
                                           for s in PILE for t in _docs(rng, n)])
    _repo(folder / "monology/pile-uncopyrighted", {None: {"train": pile(40), "test": pile(40)}})
    _repo(folder / "codeparrot/github-code-clean",
          {"all-all": {"train": datasets.Dataset.from_dict({"code": _docs(rng, 150)})}})
    _repo(folder / "camel-ai/biology",
          {None: {"train": datasets.Dataset.from_dict({"message_2": _docs(rng, 150)})}})
    feats = datasets.Features({"question": datasets.Value("string"),
                               "subject": datasets.Value("string"),
                               "choices": datasets.Sequence(datasets.Value("string")),
                               "answer": datasets.ClassLabel(names=list("ABCD"))})
    mmlu = [{"question": " ".join(rng.choice(WORDS[:200], 8)) + " ?", "subject": s,
             "choices": list(rng.choice(WORDS[:200], 4)), "answer": int(rng.integers(4))}
            for s in ("anatomy", "virology") for _ in range(6)]
    _repo(folder / "cais/mmlu", {"all": {"test": datasets.Dataset.from_list(mmlu, features=feats)}})
    cifar_feats = datasets.Features({
        "img": datasets.Image(),
        "fine_label": datasets.ClassLabel(names=[f"fine{i}" for i in range(100)]),
        "coarse_label": datasets.ClassLabel(names=list(CIFAR20_NAMES))})

    def cifar(per_class):
        fine = [c + 20 * (i % 5) for c in range(20) for i in range(per_class)]
        return datasets.Dataset.from_dict(
            {"img": [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                     for _ in fine],
             "fine_label": fine, "coarse_label": [f % 20 for f in fine]}, features=cifar_feats)
    _repo(folder / "uoft-cs/cifar100", {None: {"train": cifar(8), "test": cifar(4)}})


OVERRIDES = {
    "lm": {"forget": ["code:github", "camel:biology", "pile:ArXiv", "pile:Github"],
           "extra_eval": ["mmlu:anatomy", "mmlu:virology"], "collect_n": 1024, "eval_n": 1024,
           "random_seeds": [0, 1]},
    "vit": {"forget": ["cifar20:fish", "cifar20:flowers", "cifar20:people"], "collect_n": 4,
            "eval_n": 4, "random_seeds": [0, 1]},
}


def _notebook_source(path: Path, params: dict) -> str:
    """The notebook's code (jupytext percent format) with ``params`` assigned after its
    parameters cell, as papermill injects them; IPython magics dropped."""
    cells = path.read_text().split("\n# %%")
    out = []
    for cell in cells:
        if cell.lstrip().startswith("[markdown]"):
            continue
        out.append("\n".join(line for line in cell.splitlines()[1:]
                             if not line.lstrip().startswith(("%", "!"))))
        if 'tags=["parameters"]' in cell.splitlines()[0]:
            out.append("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    return "\n".join(out)


@pytest.fixture(scope="module")
def paper_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    _hub(root / "hub")
    _save_mistral(root / "mistral")
    _save_vit(root / "vit")
    return root


@pytest.mark.parametrize("experiment", ["lm", "vit"])
def test_paper_profile_runs_every_notebook(paper_env, experiment, monkeypatch):
    import datasets
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modsep_utils import activations, config, io
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("MODSEP_HUB_DIR", str(paper_env / "hub"))
    out = paper_env / f"out-{experiment}"
    monkeypatch.setattr(config, "ROOT", out)  # results/, figures/ of this run
    monkeypatch.setattr(io, "DATA", out / "data")  # caches
    activations._load.cache_clear()
    model = str(paper_env / ("mistral" if experiment == "lm" else "vit"))
    params = {"profile": "paper", "experiment": experiment,
              "overrides": {"model": model, **OVERRIDES[experiment]}}
    monkeypatch.chdir(ROOT / "notebooks")
    for book in sorted((ROOT / "notebooks").glob("0[1-7]_*.py")):
        code = compile(_notebook_source(book, params), str(book), "exec")
        exec(code, {"__name__": "__main__", "display": print})
        plt.close("all")
    results = next((out / "results" / "paper").rglob(f"{experiment}/headline.json"))
    headline = io.read_json(results)
    assert "03_selective_pruning" in headline
    stats = list((out / "data" / "cache" / "stats").iterdir())
    n_subsets = len(OVERRIDES[experiment]["forget"]) + 1  # + the retain set
    assert len(stats) == n_subsets * 2 * 3  # halves x (trained + 2 random seeds)
    figures = list((out / "figures" / "paper").rglob("*.png"))
    assert len(figures) >= 5


def test_gpu_benchmark_runs_at_toy_size(tmp_path):
    """bench/bench_gpu.py (run once on a GPU machine) at toy size on the CPU: every
    measurement and the estimate are there."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--tiny", "--batches", "1", "--rounds", "1", "--out",
                      str(tmp_path / "b.json")])
    saved = __import__("json").loads((tmp_path / "b.json").read_text())
    for name in ("lm", "vit"):
        for key in ("bare_tokens_per_s", "collect_tokens_per_s", "bisection_step_s"):
            assert saved[name][key] > 0
        assert saved["estimate"][name]["total_h"] > 0
    assert saved["estimate"]["total_h"] == pytest.approx(res["estimate"]["total_h"])
