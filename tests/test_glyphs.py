"""Glyphs-100: fonts, splits, rendering, the cached arrays and the subsets built on them."""
import subprocess

import numpy as np
import pytest

from modsep_utils import data, glyphs


def _installed(pkg: str) -> bool:
    return subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode == 0


fonts_installed = pytest.mark.skipif(
    not all(_installed(p) for p in glyphs.FONT_PACKAGES),
    reason=f"font packages not installed ({glyphs._install_hint()})")


@pytest.fixture
def small(tmp_path, monkeypatch):
    """Glyphs-100 with 3 training and 2 test images a class, rendered into ``tmp_path``."""
    monkeypatch.setattr(glyphs, "N_PER_CLASS", {"train": 3, "test": 2})
    monkeypatch.setattr(glyphs, "GLYPH_DIR", tmp_path)
    glyphs._arrays.cache_clear()
    yield tmp_path
    glyphs._arrays.cache_clear()


def test_names_and_superclasses():
    assert len(glyphs.CLASSES) == 100 and len(set(glyphs.CLASSES)) == 100
    assert len(glyphs.SUPERCLASSES) == 20
    assert all(len(v) == 5 for v in glyphs.SUPERCLASSES.values())
    assert glyphs.SUPERCLASSES["latin"][0] == "latin-U+0067"  # g
    chars = "".join(glyphs.SCRIPTS.values())
    assert len(set(chars)) == 100  # no character in two scripts
    assert set(glyphs.SCRIPT_FAMILY) == set(glyphs.SCRIPTS)
    assert data.subset_names("script")[0] == "script:latin"
    assert data.family_of("glyph:thai-U+0E01") == data.family_of("script:lao")
    assert data.family_of("glyph:all") == "all"
    for bad in ("script:klingon", "glyph:latin-U+0041", "glyph:g"):
        with pytest.raises(ValueError, match="script:<latin"):
            data.family_of(bad)


@fonts_installed
def test_each_script_renders_from_fonts_its_test_images_never_use():
    fonts = glyphs.script_fonts()
    assert list(fonts) == list(glyphs.SCRIPTS)
    for script, sides in fonts.items():
        assert sides["train"] and sides["test"], script
        assert not set(sides["train"]) & set(sides["test"]), script
        assert len(sides["test"]) == max(1, round((len(sides["train"]) + len(sides["test"])) / 4))
    assert len(fonts["latin"]["train"]) > 50  # many typefaces where Debian has them


@fonts_installed
def test_render_is_a_seeded_glyph_inside_the_image():
    font = glyphs.script_fonts()["greek"]["train"][0]
    a = glyphs.render("λ", font, np.random.default_rng(3))
    b = glyphs.render("λ", font, np.random.default_rng(3))
    c = glyphs.render("λ", font, np.random.default_rng(4))
    assert a.shape == (32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ink = np.argwhere(a > 64)
    span = ink.max(0) - ink.min(0) + 1
    assert 8 <= span.max() <= 32  # scaled to SIDE, then rotated: not a dot, not clipped away


@fonts_installed
def test_arrays_are_rendered_once_and_rendered_again_for_other_inputs(small, monkeypatch):
    images, labels = glyphs.glyph_arrays("train", progress=False)
    assert images.shape == (300, 32, 32) and np.bincount(labels).tolist() == [3] * 100
    assert (images.reshape(300, -1).max(1) > 128).all()  # every image holds a glyph
    assert sorted(p.name for p in small.iterdir()) == ["train.npz"]  # nothing half-written
    glyphs._arrays.cache_clear()

    def boom(*a):
        raise AssertionError("rendered again although the inputs are the same")
    monkeypatch.setattr(glyphs, "_render_split", boom)
    again, _ = glyphs.glyph_arrays("train", progress=False)
    assert np.array_equal(again, images)
    monkeypatch.setattr(glyphs, "ROTATE", 5.0)  # other parameters: another fingerprint
    with pytest.raises(AssertionError, match="rendered again"):
        glyphs.glyph_arrays("train", progress=False)
    monkeypatch.setattr(glyphs, "ROTATE", 15.0)
    # the same font files split otherwise between training and test: another fingerprint too
    # (a split changed under an unchanged key once left test images of the old split in use)
    fonts = glyphs.script_fonts()
    swapped = {**fonts, "khmer": {"train": fonts["khmer"]["test"], "test": fonts["khmer"]["train"]}}
    monkeypatch.setattr(glyphs, "script_fonts", lambda: swapped)
    with pytest.raises(AssertionError, match="rendered again"):
        glyphs.glyph_arrays("train", progress=False)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        glyphs.glyph_arrays("eval")


@fonts_installed
def test_script_subsets_hold_the_scripts_fine_labels(small, gray_processor):
    ev = data.load_subset("script:thai", gray_processor, split="eval", n=10)
    thai = [glyphs.CLASSES.index(c) for c in glyphs.SUPERCLASSES["thai"]]
    assert ev.pixel_values.shape == (10, 1, 32, 32)
    assert sorted(set(ev.labels.tolist())) == thai  # fine labels, all five
    one = data.load_subset("glyph:latin-U+006B", gray_processor, split="collect", n=3)
    assert one.labels.tolist() == [glyphs.CLASSES.index("latin-U+006B")] * 3
    with pytest.raises(ValueError, match=r"script:thai \(eval split\) has 10 images, 11"):
        data.load_subset("script:thai", gray_processor, split="eval", n=11)
    f = data.subset_fingerprint("script:thai")
    assert f == data.subset_fingerprint("script:thai") != data.subset_fingerprint("script:lao")


def test_missing_font_package_names_the_install(monkeypatch):
    monkeypatch.setattr(glyphs, "FONT_PACKAGES", ("fonts-surely-not-installed",))
    glyphs.font_files.cache_clear()
    glyphs.script_fonts.cache_clear()
    try:
        with pytest.raises(data.DataUnavailable, match="apt-get install -y fonts-surely-not"):
            glyphs.script_fonts()
    finally:
        glyphs.font_files.cache_clear()
        glyphs.script_fonts.cache_clear()


def test_make_setup_installs_the_font_packages():
    from modsep_utils.io import ROOT
    make = (ROOT / "Makefile").read_text()
    listed = make.split("APT_PACKAGES :=")[1].split("\n# ")[0].split()
    assert set(glyphs.FONT_PACKAGES) <= set(listed)


@fonts_installed
def test_both_halves_of_a_script_hold_all_its_characters(small, gray_processor):
    """Split-half reliability compares two halves of a collection subset: each must be the
    whole script, not two of its characters against the other three (the stored order)."""
    from modsep_utils.activations import halves
    sub = data.load_subset("script:thai", gray_processor, split="collect", n=15)  # all of it
    for half in halves(sub):
        assert len(set(half.labels.tolist())) >= 4
