"""Synthetic 10-class character datasets in scripts the pipeline has never seen: printed glyphs, distorted.

Development data for label-free choices (docs/pseudo_labels.md, "Synthetic-script development datasets"):
each class is one character (a digit or a letter of a non-Latin script), rendered from several fonts and weights
and then distorted per image in the ways handwriting varies: stroke width, rotation, shear, anisotropic scale and
a smooth elastic wobble. They are SYNTHETIC printed glyphs, not handwriting: the variation within a class is what
the distortions and the fonts give, nothing more.

Pipeline (:func:`render_glyph_dataset`), every random draw from one seeded generator:

1. prototypes: each (font, character) rendered once with FreeType (Pillow), cropped to its ink, resized to fit a
   40 x 40 box and centred on a 64 x 64 canvas (:func:`glyph_bank`);
2. per image: a random font of its class, a random affine map (rotation, shear, scale per axis) and elastic field
   (:func:`draw_warps`, :func:`warp_glyphs`), then a stroke width: Gaussian blur and a soft threshold at a random level (a low level
   thickens the strokes, a high one thins them);
3. MNIST's normalisation (LeCun et al. 1998): the ink's bounding box scaled to fit a 20 x 20 box (aspect kept,
   area-averaged from a 4x supersampled grid), the centre of mass put at the centre of the 28 x 28 image
   (:func:`mnist_placement`). White on black, uint8.

Fonts are looked up by file name (:func:`find_fonts`) in ``fonts_dir`` if given, else in ``$DSFLOW_FONTS``, the
cache folder ``$XDG_CACHE_HOME/dsflow/fonts`` (``~/.cache/dsflow/fonts``) and the usual system font folders, all
searched recursively; a missing file is an error naming it and the Debian package that provides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dsflow.data.glyph_warps import (
    BOX, CANVAS, GlyphDistortion, WarpDraws, draw_warps, mnist_placement, warp_glyphs,
)

__all__ = ["GlyphSpec", "GlyphDistortion", "MissingFontError", "WarpDraws", "font_dirs", "find_fonts", "glyph_bank",
           "draw_warps", "warp_glyphs", "mnist_placement", "render_glyph_dataset", "FONTS_ENV"]

#: environment variable naming a folder of font files (searched first)
FONTS_ENV = "DSFLOW_FONTS"


@dataclass(frozen=True)
class GlyphSpec:
    """A 10-class (or C-class) character dataset: class c is character ``chars[c]``.

    Attributes:
        chars: one character per class, in label order.
        fonts: font file names (``.ttf``/``.otf``/``.ttc``, face 0), each drawn with equal probability per image.
        package: how to get the fonts (named in the error when one is missing).
        about: what the dataset is.
        distortion: its per-image random variation (default: the print profile).
    """

    chars: str
    fonts: tuple[str, ...]
    package: str = ""
    about: str = ""
    distortion: GlyphDistortion = GlyphDistortion()

    def __post_init__(self) -> None:
        if len(self.chars) < 2 or len(set(self.chars)) != len(self.chars) or not self.fonts:
            raise ValueError(f"GlyphSpec: need >= 2 distinct characters and >= 1 font, got {self.chars!r}, {self.fonts}")


class MissingFontError(FileNotFoundError):
    """Font files not found; the message names them, where they were looked for and how to get them."""

    def __init__(self, missing: list[str], dirs: list[Path], package: str = "") -> None:
        lines = [f"font files not found: {', '.join(missing)}",
                 "searched (recursively): " + (", ".join(str(d) for d in dirs) or "no existing folder")]
        if package:
            lines.append(f"get them: {package}")
        lines.append(f"then pass the folder holding them (fonts_dir, --fonts DIR) or set ${FONTS_ENV}")
        super().__init__("\n".join(lines))
        self.missing = missing


def font_dirs(fonts_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where fonts are looked for: ``fonts_dir`` alone if given, else ``$DSFLOW_FONTS``, the dsflow font cache and
    the system font folders (those that exist)."""
    if fonts_dir is not None:
        return [Path(fonts_dir).expanduser()]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsflow" / "fonts"
    env = os.environ.get(FONTS_ENV)
    dirs = [Path(env).expanduser()] if env else []
    dirs += [cache, Path.home() / ".local/share/fonts", Path.home() / ".fonts", Path("/usr/local/share/fonts"),
             Path("/usr/share/fonts")]
    return [d for d in dirs if d.is_dir()]


def find_fonts(names: tuple[str, ...] | list[str], fonts_dir: str | os.PathLike | None = None,
               package: str = "") -> list[Path]:
    """The paths of the font files ``names`` (first match in :func:`font_dirs` order); raises
    :class:`MissingFontError` naming every missing one."""
    dirs = font_dirs(fonts_dir)
    found: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if path.name in names and path.name not in found and path.is_file():
                found[path.name] = path
    missing = [n for n in names if n not in found]
    if missing:
        raise MissingFontError(missing, dirs, package)
    return [found[n] for n in names]


def _ink(font_path: Path, char: str, size: int = 96) -> np.ndarray:
    """(h, w) float ink of ``char`` in the font, cropped to its bounding box."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), size, layout_engine=ImageFont.Layout.BASIC)

    def draw(c: str) -> np.ndarray:
        img = Image.new("L", (3 * size, 3 * size), 0)
        ImageDraw.Draw(img).text((size, size), c, fill=255, font=font)
        return np.asarray(img, dtype=np.float32) / 255.0

    ink, notdef = draw(char), draw("\uffff")  # U+FFFF is a non-character: every font draws it as .notdef
    if ink.max() <= 0 or (notdef.max() > 0 and np.array_equal(ink, notdef)):
        raise ValueError(f"{font_path.name} has no glyph for {char!r} (U+{ord(char):04X})")
    rows, cols = np.nonzero(ink > 0.05)
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def glyph_bank(spec: GlyphSpec, fonts_dir: str | os.PathLike | None = None) -> Tensor:
    """(F, C, 64, 64) float prototypes: font f, class c, the glyph fit in a centred 40 x 40 box, values in [0, 1]."""
    from PIL import Image

    paths = find_fonts(spec.fonts, fonts_dir, spec.package)
    bank = np.zeros((len(paths), len(spec.chars), CANVAS, CANVAS), dtype=np.float32)
    for f, path in enumerate(paths):
        for c, char in enumerate(spec.chars):
            ink = _ink(path, char)
            h, w = ink.shape
            k = BOX / max(h, w)
            hh, ww = max(1, round(h * k)), max(1, round(w * k))
            small = np.asarray(Image.fromarray(ink).resize((ww, hh), Image.Resampling.LANCZOS)).clip(0, 1)
            top, left = (CANVAS - hh) // 2, (CANVAS - ww) // 2
            bank[f, c, top:top + hh, left:left + ww] = small
    return torch.from_numpy(bank)


def render_glyph_dataset(spec: GlyphSpec, n_per_class: int, seed: int = 0, fonts_dir: str | os.PathLike | None = None,
                         distortion: GlyphDistortion | None = None, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` distorted glyphs per class of ``spec``, shuffled: images uint8 (N, 28, 28) white on black,
    labels int64 (N,), N = C * n_per_class. ``distortion``: default the spec's. The same seed, spec, fonts and
    distortion give the same arrays (whatever ``chunk``, the number of images warped at once)."""
    distortion = spec.distortion if distortion is None else distortion
    if n_per_class < 1 or chunk < 1:
        raise ValueError(f"render_glyph_dataset: need n_per_class >= 1 and chunk >= 1, got {n_per_class}, {chunk}")
    bank = glyph_bank(spec, fonts_dir)  # (F, C, 64, 64)
    n_fonts, c = bank.shape[:2]
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(c).repeat_interleave(n_per_class)[torch.randperm(c * n_per_class, generator=gen)]  # (N,)
    fonts = torch.randint(n_fonts, (labels.numel(),), generator=gen)  # (N,)
    draws, parts = draw_warps(labels.numel(), distortion, gen), []
    for start in range(0, labels.numel(), chunk):
        x = bank[fonts[start:start + chunk], labels[start:start + chunk]].unsqueeze(1)  # (b, 1, 64, 64)
        parts.append(mnist_placement(warp_glyphs(x, draws.part(start, start + chunk), distortion)))
    images = (torch.cat(parts)[:, 0] * 255).round().clamp(0, 255).to(torch.uint8)  # (N, 28, 28)
    return images.numpy(), labels.numpy().astype(np.int64)
