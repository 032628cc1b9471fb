"""The synthetic-script generator (dsflow.data.glyphs), its runner and registry, on Pillow's own font.

CI has no Noto fonts, so every test renders with the FreeType font Pillow ships (Aileron, written to a temporary
folder and found there by file name like any other font).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ImageFont

from dsflow.data import ArrayFile, GlyphDistortion, GlyphSpec, MissingFontError, render_glyph_dataset
from dsflow.data.glyph_scripts import SCRIPTS
from dsflow.data.glyphs import find_fonts, mnist_placement
from dsflow.experiments import make_scripts
from dsflow.experiments.datasets import DATASETS, development_datasets, require_files, script_datasets
from dsflow.experiments.pseudo_labels import parse as parse_pseudo_labels

FONT = "Aileron-Regular.otf"


@pytest.fixture
def fonts(tmp_path: Path) -> Path:
    """A folder holding Pillow's built-in FreeType font as a file."""
    folder = tmp_path / "fonts" / "nested"
    folder.mkdir(parents=True)
    (folder / FONT).write_bytes(ImageFont.load_default(size=20).font_bytes)
    return tmp_path / "fonts"


def test_shapes_balance_and_determinism(fonts: Path) -> None:
    spec = GlyphSpec("OXL", (FONT,))
    x, y = render_glyph_dataset(spec, 8, seed=3, fonts_dir=fonts, chunk=5)
    assert x.shape == (24, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [8, 8, 8] and (np.diff(y) != 0).any()  # balanced, shuffled
    assert (x.reshape(24, -1).max(1) == 255).all()  # every image has full-intensity ink
    assert ((x.reshape(24, -1) == 0).mean(1) > 0.4).all()  # white on black: mostly exact-zero background
    x2, y2 = render_glyph_dataset(spec, 8, seed=3, fonts_dir=fonts, chunk=24)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # same seed, any chunking: the same arrays
    x3, _ = render_glyph_dataset(spec, 8, seed=4, fonts_dir=fonts)
    assert not np.array_equal(x, x3)


def test_classes_distinguishable_and_varied(fonts: Path) -> None:
    """Class means differ far more than two halves of one class; images within a class differ (distortion)."""
    x, y = render_glyph_dataset(GlyphSpec("OI", (FONT,)), 40, seed=0, fonts_dir=fonts)
    xf = torch.from_numpy(x).double() / 255
    o, i = xf[torch.from_numpy(y) == 0], xf[torch.from_numpy(y) == 1]
    between = (o.mean(0) - i.mean(0)).abs().mean()
    within = (o[:20].mean(0) - o[20:].mean(0)).abs().mean()
    assert between > 3 * within
    assert (o[0] - o[1]).abs().mean() > 0.01  # not the same print twice
    assert float(o.sum((1, 2)).mean()) > 1.3 * float(i.sum((1, 2)).mean())  # an O has more ink than an I


def test_mnist_placement_box_and_centre_of_mass() -> None:
    """MNIST's normalisation: the ink fits a 20 x 20 box with one side ~20 px; centre of mass at the centre."""
    x = torch.zeros(2, 1, 64, 64)
    x[0, 0, 5:45, 10:20] = 1.0  # a tall bar, off-centre
    x[1, 0, 30:36, 2:60] = 1.0  # a wide bar
    out = mnist_placement(x)[:, 0]  # (2, 28, 28)
    idx = torch.arange(28, dtype=out.dtype)
    for img in out:
        ink = img > 0.25  # (bilinear edges spill faint ink one pixel further)
        rows, cols = idx[ink.any(1)], idx[ink.any(0)]
        extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        assert 19 <= extent <= 21
        m = img.sum()
        cy, cx = (img.sum(1) * idx).sum() / m, (img.sum(0) * idx).sum() / m
        assert abs(cy - 13.5) < 0.3 and abs(cx - 13.5) < 0.3
    with pytest.raises(ValueError, match="no ink"):
        mnist_placement(torch.zeros(1, 1, 64, 64))


def test_missing_font_and_glyph_errors(fonts: Path) -> None:
    with pytest.raises(MissingFontError, match="NoSuch-Regular.ttf") as err:
        find_fonts(("NoSuch-Regular.ttf", FONT), fonts, package="apt-get download fonts-nosuch")
    assert "apt-get download fonts-nosuch" in str(err.value) and str(fonts) in str(err.value)
    assert err.value.missing == ["NoSuch-Regular.ttf"]
    with pytest.raises(ValueError, match="no glyph"):  # Aileron has no Devanagari digits
        render_glyph_dataset(GlyphSpec("\u0966\u0967", (FONT,)), 1, fonts_dir=fonts)
    with pytest.raises(ValueError, match="distinct"):
        GlyphSpec("OO", (FONT,))
    with pytest.raises(ValueError, match="stroke"):
        GlyphDistortion(stroke=(0.6, 0.4))


def test_runner_writes_arrayfile_npz(fonts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_scripts writes npz files ArrayFile reads back, a MANIFEST saying synthetic, and the grid figures."""
    monkeypatch.setattr(make_scripts, "SCRIPTS", {"latin-test": GlyphSpec("ABCDEFGHIJ", (FONT,), about="test")})
    out, figs = tmp_path / "scripts", tmp_path / "figs"
    files = make_scripts.main(["--out", str(out), "--fonts", str(fonts), "--per-class", "6", "--figures", str(figs)])
    assert files == {"latin-test": out / "latin-test.npz"}
    data = ArrayFile(str(out / "latin-test.npz"), name="latin-test").load()
    assert data.x.shape == (60, 1, 28, 28) and data.num_classes == 10
    assert torch.bincount(data.y).tolist() == [6] * 10
    with np.load(out / "latin-test.npz", allow_pickle=False) as z:
        assert z["class_names"].tolist() == list("ABCDEFGHIJ")
    manifest = (out / "MANIFEST.md").read_text()
    assert "SYNTHETIC" in manifest and FONT in manifest and "U+0041" in manifest
    assert (figs / "scripts_latin-test.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        make_scripts.main(["--out", str(out), "--names", "no-such-script"])


def test_registry_and_study_options(tmp_path: Path) -> None:
    """Every script has 10 distinct characters and >= 2 fonts; the study lists them only when asked."""
    for name, spec in SCRIPTS.items():
        assert len(spec.chars) == 10 and len(spec.fonts) >= 2 and spec.package, name
        assert DATASETS[name].sample is not None and "SYNTHETIC" in DATASETS[name].about
    assert list(script_datasets()) == list(SCRIPTS)
    assert not set(SCRIPTS) & set(development_datasets())  # the default protocol needs no fonts
    assert list(development_datasets(scripts=True))[-len(SCRIPTS):] == list(SCRIPTS)
    assert parse_pseudo_labels(["--datasets", "mnist", "--scripts"]).datasets == ["mnist", *SCRIPTS]
    assert parse_pseudo_labels([]).datasets == list(development_datasets())
    with pytest.raises(FileNotFoundError, match="make_scripts.py --out"):
        require_files(["mnist", "hiragana"], root=str(tmp_path))
    require_files(["mnist"], root=str(tmp_path))  # only synthetic-script files are checked here
