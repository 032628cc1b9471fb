"""Write the synthetic-script development datasets (:data:`dsflow.data.glyph_scripts.SCRIPTS`) as ``.npz`` files.

    python benchmarks/make_scripts.py --out $DSFLOW_DATA/scripts [--fonts DIR] [--names thai-digits ...]

One ``<name>.npz`` per dataset in :class:`~dsflow.data.ArrayFile`'s format (``images`` uint8 (N, 28, 28), white on
black, ``labels`` int64 (N,), and ``class_names``: the characters), ``--per-class`` images per class, shuffled;
a ``MANIFEST.md`` saying they are synthetic, how they were made and from which font files (name, version, sha256);
with ``--figures DIR``, a 10 x 10 grid per dataset (``scripts_<name>.png``, a row per class). Fonts: see
:func:`dsflow.data.glyphs.find_fonts` (``--fonts DIR``, ``$DSFLOW_FONTS``, ``~/.cache/dsflow/fonts``, system
folders); a missing font is an error naming the file and how to get it.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from dsflow.data.glyph_scripts import SCRIPTS
from dsflow.data.glyphs import GlyphDistortion, GlyphSpec, find_fonts, render_glyph_dataset
from dsflow.experiments.common import parser, set_threads
from dsflow.io import atomic_write, save_npz

__all__ = ["main", "parse", "manifest", "save_grid"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, out=None, seeds=None, passthrough=None)
    p.add_argument("--names", nargs="*", default=list(SCRIPTS), help="datasets, from: " + ", ".join(SCRIPTS))
    p.add_argument("--fonts", default=None, help="folder of the font files (searched recursively)")
    p.add_argument("--per-class", type=int, default=1000, help="images per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    p.add_argument("--figures", default=None, help="folder for one scripts_<name>.png grid per dataset")
    args = p.parse_args(argv)
    if args.out is None:
        p.error("--out is required (e.g. --out $DSFLOW_DATA/scripts)")
    unknown = [n for n in args.names if n not in SCRIPTS]
    if unknown:
        p.error(f"unknown datasets {unknown}; known: {', '.join(SCRIPTS)}")
    return args


def save_grid(path: Path, images: np.ndarray, labels: np.ndarray, per_row: int = 10) -> None:
    """A PNG of ``per_row`` images of each class (a row per class; fewer if a class has fewer), 28 x 28, no gaps."""
    from PIL import Image

    c = int(labels.max()) + 1
    per_row = min(per_row, int(np.bincount(labels).min()))
    rows = [images[np.flatnonzero(labels == k)[:per_row]] for k in range(c)]  # each (per_row, 28, 28)
    grid = np.stack(rows).transpose(0, 2, 1, 3).reshape(c * 28, per_row * 28)  # (C*28, per_row*28)
    atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG", optimize=True), suffix=".png")


def _font_line(path: Path) -> str:
    from fontTools.ttLib import TTFont

    font = TTFont(str(path), fontNumber=0, lazy=True)
    version = (font["name"].getDebugName(5) or "version unknown").split(";")[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"`{path.name}` ({version}; sha256 {digest}...)"


def manifest(args: argparse.Namespace, made: dict[str, tuple[GlyphSpec, int, float]]) -> str:
    """MANIFEST.md: what the files are (synthetic), how they were made, the fonts."""
    d = GlyphDistortion()
    lines = [
        "# Synthetic-script datasets (SYNTHETIC: printed glyphs, distorted; not handwriting)", "",
        "Development data for dsflow's label-free pseudo-label choices (docs/pseudo_labels.md). Every image is a",
        "character rendered from a font (FreeType via Pillow) and distorted at random; none was written by hand.",
        f"Made by `python benchmarks/make_scripts.py --out <this folder> --per-class {args.per_class} --seed {args.seed}`",
        "(dsflow.data.glyphs.render_glyph_dataset; the character lists and fonts: dsflow/data/glyph_scripts.py).", "",
        "Per image: a font drawn uniformly from the dataset's list; the glyph fit in a 40 x 40 box of a 64 x 64 canvas;",
        f"rotation +-{d.rotation} deg, horizontal shear +-{d.shear}, scale +-{100 * d.scale:.0f} % per axis, an elastic",
        f"wobble (spread {d.elastic} px, smoothed over {d.smooth} px), stroke width by a {d.pen} px blur and a threshold",
        f"drawn in {list(d.stroke)} (px: pixels of the 20 x 20 digit box); then MNIST's normalisation: ink box fit",
        "in 20 x 20 (aspect kept, area-averaged), centre of mass at the centre of 28 x 28, max intensity 255.", "",
        "Files (ArrayFile format): `images` uint8 (N, 28, 28) white on black, `labels` int64 (N,) (digit sets: the",
        "digit's value), `class_names` (the characters, label order). Classes balanced, order shuffled.", "",
        "| file | N | classes | what | seconds |", "|---|---|---|---|---|",
    ]
    for name, (spec, n, secs) in made.items():
        chars = " ".join(f"{ch} U+{ord(ch):04X}" for ch in spec.chars)
        lines.append(f"| `{name}.npz` | {n} | {chars} | {spec.about} | {secs:.1f} |")
    lines += ["", "## Fonts (SIL Open Font License; Debian packages fonts-noto-core, fonts-noto-extra, fonts-noto-cjk)", ""]
    for name, (spec, _, _) in made.items():
        paths = find_fonts(spec.fonts, args.fonts, spec.package)
        lines.append(f"- {name}: " + ", ".join(_font_line(p) for p in paths))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse(argv)
    before = torch.get_num_threads()
    set_threads(args.threads)
    try:
        return _make(args)
    finally:
        torch.set_num_threads(before)


def _make(args: argparse.Namespace) -> dict[str, Path]:
    out, made, files = Path(args.out), {}, {}
    for name in args.names:
        spec = SCRIPTS[name]
        t0 = time.perf_counter()
        images, labels = render_glyph_dataset(spec, args.per_class, args.seed, args.fonts)
        secs = time.perf_counter() - t0
        files[name] = save_npz(out / f"{name}.npz", images=images, labels=labels, class_names=np.array(list(spec.chars)))
        made[name] = (spec, len(labels), secs)
        print(f"{name}: {len(labels)} images in {secs:.1f} s -> {files[name]}", flush=True)
        if args.figures:
            save_grid(Path(args.figures) / f"scripts_{name}.png", images, labels)
    atomic_write(out / "MANIFEST.md", lambda tmp: Path(tmp).write_text(manifest(args, made)))
    return files
