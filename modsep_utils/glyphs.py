"""Glyphs-100: 32x32 images of 100 characters of 20 scripts, rendered from Debian's fonts.

The embedded vision task (issue 10). Fine label = one character, superclass = its script
(20 scripts x 5 characters), the structure of CIFAR-100 over CIFAR-20: forget sets are whole
scripts, accuracy is on the 100 fine labels. The images are real glyphs of real fonts, every
font file from :data:`FONT_PACKAGES` whose character map covers all five characters of a
script, each drawn at a random size, rotation and position (white on black, like MNIST).

Within a script the splits never share a font file: a quarter of the script's files (at least
one; the first in the order of a hash of their names) render only test images, the others only
training images. A script's test images are thus other typefaces, or other weights and styles
of a typeface, than its training images, never new renderings of a training font.

:func:`glyph_arrays` renders a split once (about 15 s for both on 2 cores) into
``DATA/raw/glyphs-v1/<split>.npz`` (atomic), keyed by the font files' digests, which split each
file draws for each script, the rendering code's version, its parameters and Pillow's version:
other fonts, splits or code render again. :func:`shuffled_arrays` gives a split in one seeded
order, the order training and the named subsets take it in.
"""
from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from .data import DataUnavailable, _file_sha256
from .io import DATA, atomic_path, content_key

__all__ = ["SCRIPTS", "SCRIPT_FAMILY", "CLASSES", "SUPERCLASSES", "FONT_PACKAGES", "IMAGE_SIZE",
           "script_fonts", "render", "glyph_arrays", "shuffled_arrays", "glyphs_fingerprint",
           "GlyphsUnavailable"]

#: script -> its five characters (letters with no look-alike in another script here)
SCRIPTS = {
    "latin": "gkrsf", "greek": "λψωξδ", "cyrillic": "жяшдб", "armenian": "աբգդժ",
    "georgian": "აბგდჟ", "hebrew": "אשלגצ", "arabic": "عجسكه", "devanagari": "कगहशज",
    "bengali": "কখগঘচ", "gurmukhi": "ਕਖਗਘਚ", "gujarati": "કખગઘચ", "tamil": "கஙசஞட",
    "malayalam": "കഖഗഘച", "sinhala": "කඛගඝච", "thai": "กมฟฮษ", "lao": "ກຂຄງຈ",
    "ethiopic": "ሀለመሰቀ", "khmer": "កខគឃង", "canadian": "ᐁᐅᑎᑭᒥ", "cherokee": "ᎠᎣᎦᎧᎨ",
}
#: script -> its family, which orders the rows and columns of figures
SCRIPT_FAMILY = {
    **dict.fromkeys(("latin", "greek", "cyrillic", "armenian", "georgian"), "europe-caucasus"),
    **dict.fromkeys(("hebrew", "arabic"), "semitic"),
    **dict.fromkeys(("devanagari", "bengali", "gurmukhi", "gujarati", "tamil", "malayalam",
                     "sinhala"), "brahmic-south-asia"),
    **dict.fromkeys(("thai", "lao", "khmer"), "brahmic-southeast-asia"),
    **dict.fromkeys(("ethiopic", "canadian", "cherokee"), "africa-americas"),
}
#: fine label names in label order, ``<script>-<U+XXXX>`` (``[100]``)
CLASSES = tuple(f"{s}-U+{ord(c):04X}" for s, chars in SCRIPTS.items() for c in chars)
#: superclass -> its fine label names
SUPERCLASSES = {s: CLASSES[5 * i:5 * i + 5] for i, s in enumerate(SCRIPTS)}
#: Debian packages whose font files are rendered (installed by ``make setup``)
FONT_PACKAGES = ("fonts-noto-core", "fonts-freefont-ttf", "fonts-dejavu-core",
                 "fonts-dejavu-extra", "fonts-liberation", "fonts-urw-base35")
IMAGE_SIZE = 32
RENDER_PX = 64               # font size drawn before scaling down
SIDE = (14.0, 26.0)          # longest side of the glyph in the image, pixels (uniform)
ROTATE = 15.0                # degrees either way (uniform)
N_PER_CLASS = {"train": 500, "test": 100}
EVAL_EVERY = 4               # a quarter of each script's font files are test-only
VERSION = "glyphs-v1"        # the rendering and split code: bump on any change (keys caches)
GLYPH_DIR = DATA / "raw" / VERSION


class GlyphsUnavailable(DataUnavailable):
    """The font packages are not installed; the message says how to install them."""


def _install_hint() -> str:
    return "apt-get install -y " + " ".join(FONT_PACKAGES) + " (make setup does it)"


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """The TrueType/OpenType files of :data:`FONT_PACKAGES`, sorted (from ``dpkg -L``)."""
    files, missing = set(), []
    for pkg in FONT_PACKAGES:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
        if out.returncode != 0:
            missing.append(pkg)
            continue
        files.update(Path(f) for f in out.stdout.split() if f.endswith((".ttf", ".otf")))
    if missing:
        raise GlyphsUnavailable(f"font packages not installed: {' '.join(missing)}; "
                                f"{_install_hint()}")
    return tuple(sorted((f for f in files if f.is_file()), key=lambda p: p.name))


def _name_hash(font: Path) -> str:
    return hashlib.sha1(font.name.encode()).hexdigest()


@lru_cache(maxsize=1)
def script_fonts() -> dict[str, dict[str, tuple[Path, ...]]]:
    """``{script: {"train": fonts, "test": fonts}}``: the font files whose character map has
    all five characters of the script and draws each, split by file name (see module doc)."""
    from fontTools.ttLib import TTFont
    cmaps = {}
    for f in font_files():
        try:
            cmaps[f] = set(TTFont(f, lazy=True).getBestCmap() or ())
        except Exception as e:  # a font fontTools cannot read is not one we can rely on
            raise GlyphsUnavailable(f"cannot read the font file {f} ({e}); reinstall its "
                                    f"package: {_install_hint()}") from None
    out = {}
    for script, chars in SCRIPTS.items():
        fonts = [f for f in font_files()
                 if all(ord(c) in cmaps[f] for c in chars) and all(_ink(f, c) for c in chars)]
        if len(fonts) < 2:
            raise GlyphsUnavailable(f"{script}: {len(fonts)} font file(s) draw all of "
                                    f"{chars!r}, 2 are needed (one per split); {_install_hint()}")
        # a quarter of the files (at least one), in the order of their names' hashes
        fonts.sort(key=_name_hash)
        n_test = max(1, round(len(fonts) / EVAL_EVERY))
        test, train = fonts[:n_test], fonts[n_test:]
        out[script] = {"train": tuple(train), "test": tuple(test)}
    return out


@lru_cache(maxsize=512)
def _font(path: Path):
    from PIL import ImageFont
    return ImageFont.truetype(str(path), RENDER_PX)


def _draw(font: Path, char: str):
    """The glyph drawn at :data:`RENDER_PX`, cropped to its ink (PIL ``L`` image), or None."""
    from PIL import Image, ImageDraw
    canvas = Image.new("L", (3 * RENDER_PX, 3 * RENDER_PX), 0)
    ImageDraw.Draw(canvas).text((1.5 * RENDER_PX, 1.5 * RENDER_PX), char, fill=255,
                                font=_font(font), anchor="mm")
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


@lru_cache(maxsize=None)
def _ink(font: Path, char: str) -> bool:
    """Whether ``font`` draws ``char`` as more than a dot (a mapped but empty glyph is not)."""
    glyph = _draw(font, char)
    return glyph is not None and max(glyph.size) >= RENDER_PX // 4


def render(char: str, font: Path, rng: np.random.Generator) -> np.ndarray:
    """One image ``[32, 32]`` uint8 of ``char`` in ``font``: the glyph scaled so its longest
    side is uniform in :data:`SIDE`, rotated uniformly within +-:data:`ROTATE` degrees and
    placed uniformly where it fits."""
    from PIL import Image
    glyph = _draw(font, char)
    if glyph is None:
        raise ValueError(f"{font.name} draws nothing for {char!r} (U+{ord(char):04X})")
    side, angle = rng.uniform(*SIDE), rng.uniform(-ROTATE, ROTATE)
    scale = side / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.LANCZOS)
    glyph = glyph.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    if max(glyph.size) > IMAGE_SIZE:  # a rotated wide glyph: shrink to fit, keep the shape
        s = IMAGE_SIZE / max(glyph.size)
        glyph = glyph.resize((max(1, int(glyph.width * s)), max(1, int(glyph.height * s))),
                             Image.Resampling.LANCZOS)
    image = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    x = int(rng.integers(0, IMAGE_SIZE - glyph.width + 1))
    y = int(rng.integers(0, IMAGE_SIZE - glyph.height + 1))
    image.paste(glyph, (x, y))
    return np.asarray(image, dtype=np.uint8)


def _params() -> dict:
    return {"version": VERSION, "scripts": SCRIPTS, "size": IMAGE_SIZE, "render_px": RENDER_PX,
            "side": SIDE, "rotate": ROTATE, "n": N_PER_CLASS, "eval_every": EVAL_EVERY}


def glyphs_fingerprint() -> str:
    """Digest of what the images are made from: every font file used (name and content), which
    split each renders for each script, the rendering code's version and its parameters, and
    Pillow's version (it draws them)."""
    import PIL
    fonts = script_fonts()
    files = sorted({f for sides in fonts.values() for fs in sides.values() for f in fs})
    splits = {s: {side: [f.name for f in fs] for side, fs in sides.items()}
              for s, sides in fonts.items()}
    return content_key(_params(), PIL.__version__, [(f.name, _file_sha256(f)) for f in files],
                       splits)


def _render_split(split: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm
    n = N_PER_CLASS[split]
    images = np.zeros((len(CLASSES) * n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.repeat(np.arange(len(CLASSES)), n)
    fonts = script_fonts()
    bar = tqdm(total=len(CLASSES), desc=f"rendering glyphs ({split})", disable=not progress)
    for label, name in enumerate(CLASSES):
        script, char = name.split("-")[0], chr(int(name.split("U+")[1], 16))
        # one generator per (split, class): a class renders the same wherever it is listed
        rng = np.random.default_rng([0 if split == "train" else 1, label])
        pool = fonts[script][split]
        for i in range(n):
            images[label * n + i] = render(char, pool[int(rng.integers(len(pool)))], rng)
        bar.update()
    bar.close()
    return images, labels


def glyph_arrays(split: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 32, 32] uint8, labels [n])`` of split ``"train"`` (500 a class) or
    ``"test"`` (100 a class), labels indexing :data:`CLASSES`; rendered once, then read from
    ``DATA/raw/glyphs-v1/<split>.npz`` while the fingerprint is the same."""
    if split not in N_PER_CLASS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _arrays(split, glyphs_fingerprint(), progress)


@lru_cache(maxsize=2)
def _arrays(split: str, key: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    path = GLYPH_DIR / f"{split}.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                return z["images"], z["labels"]
    images, labels = _render_split(split, progress)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels, key=np.array(key))
    return images, labels


def shuffled_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`glyph_arrays` in one seeded shuffled order (a permutation with seed 0). The
    arrays are stored character by character; training batches and the named subsets take
    them in this order, so that the first ``n`` images, or either half of a subset
    (``activations.halves``), hold every character, as Fashion-MNIST's shuffled files do."""
    return _shuffled(split, glyphs_fingerprint())


@lru_cache(maxsize=2)
def _shuffled(split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = glyph_arrays(split)
    order = np.random.default_rng(0).permutation(len(labels))
    return images[order], labels[order]
