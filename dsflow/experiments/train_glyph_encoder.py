"""Train the frozen character encoder of :class:`~dsflow.data.GlyphEncoderFeatures` on the kanji corpus.

    python benchmarks/train_glyph_encoder.py --out runs/glyph_encoder [--classes 1000 --per-class 64 --epochs 6]

The corpus (:mod:`dsflow.data.glyph_corpus`): ``--classes`` ideographs chosen by a written rule (none a character
of any development set or hold-out), rendered by :func:`~dsflow.data.render_glyph_dataset` from brush, handwriting
and print fonts with the handwriting distortion profile and MNIST's normalisation: ``--per-class`` training images
per class (seed ``--seed``) and ``--held-out`` per class for a within-corpus check (seed ``--seed + 1``). A
:class:`~dsflow.data.pseudo.glyph_encoder.GlyphEncoder` and a linear classifier on its 128-d embedding learn the
corpus labels by cross-entropy (label smoothing 0.1; AdamW, one-cycle learning rate), each batch moved by a
small random affine map (rotation, scale, shift) on top of the rendered distortions. Prints train and held-out
accuracy per epoch. Writes ``glyph_encoder.pt`` (the encoder's state_dict, float32, no classifier) and
``glyph_encoder.json`` (corpus rule and characters, fonts with sha256, seed, epochs, accuracies, seconds) under
``--out``. Seeded: the same arguments and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsflow.data.glyph_corpus import CORPUS_FONTS, EXCLUDED, corpus_chars, corpus_spec
from dsflow.data.glyph_scripts import HANDWRITING_FONTS
from dsflow.data.glyphs import find_fonts, render_glyph_dataset
from dsflow.data.pseudo.glyph_encoder import GlyphEncoder
from dsflow.experiments.common import parser
from dsflow.io import atomic_write

__all__ = ["main", "parse", "Corpus", "render_corpus", "random_affine_batch", "train", "EpochScore"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, out=None, seeds=None, passthrough=None)
    p.set_defaults(threads=2)
    p.add_argument("--classes", type=int, default=1000, help="corpus ideographs (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=64, help="training images per class (default: %(default)s)")
    p.add_argument("--held-out", type=int, default=8, help="held-out images per class (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=6, help="passes over the training images (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rendering, initialisation and batches")
    p.add_argument("--fonts", default=None, help="folder of the font files (searched recursively)")
    args = p.parse_args(argv)
    if args.out is None:
        p.error("--out is required (e.g. --out runs/glyph_encoder)")
    return args


class Corpus(NamedTuple):
    """The rendered corpus: characters (class c is ``chars[c]``), training and held-out images uint8 (N, 28, 28)
    and labels int64 (N,)."""

    chars: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def render_corpus(classes: int, per_class: int, held_out: int, seed: int, fonts_dir: str | None = None) -> Corpus:
    """The corpus of :mod:`dsflow.data.glyph_corpus`: training images with ``seed``, held-out ones with seed + 1."""
    chars = corpus_chars(classes, fonts_dir)
    spec = corpus_spec(chars)
    x_train, y_train = render_glyph_dataset(spec, per_class, seed, fonts_dir)
    x_test, y_test = render_glyph_dataset(spec, held_out, seed + 1, fonts_dir)
    return Corpus(chars, x_train, y_train, x_test, y_test)


def random_affine_batch(x: Tensor, gen: torch.Generator, rotation: float = 8.0, scale: float = 0.1,
                        shift: float = 2.0) -> Tensor:
    """(b, 1, h, w) images, each rotated by up to ``rotation`` degrees, scaled by up to ``scale`` and shifted by up
    to ``shift`` pixels (uniform draws)."""
    b, _, h, _ = x.shape
    u = 2 * torch.rand(b, 4, generator=gen) - 1  # (b, 4) uniform in [-1, 1]
    a = u[:, 0] * math.radians(rotation)
    s = 1 + scale * u[:, 1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
    theta[:, :, 2] = u[:, 2:] * shift * 2 / h  # pixels -> normalised grid units
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (b, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class EpochScore(NamedTuple):
    """One epoch: mean training loss, training accuracy (on the moved batches) and held-out accuracy (%), seconds."""

    epoch: int
    loss: float
    train_accuracy: float
    held_out_accuracy: float
    seconds: float


@torch.no_grad()
def _accuracy(net: nn.Module, head: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    net.eval()
    xs = torch.from_numpy(x).float().div(255).unsqueeze(1)  # (N, 1, 28, 28)
    pred = torch.cat([head(net(b)).argmax(1) for b in xs.split(1000)])
    return 100.0 * float((pred == torch.from_numpy(y)).float().mean())


def train(corpus: Corpus, args: argparse.Namespace) -> tuple[GlyphEncoder, list[EpochScore]]:
    """The encoder trained on the corpus (see the module docstring), and its per-epoch scores."""
    torch.manual_seed(args.seed)
    net, head = GlyphEncoder(), nn.Linear(128, len(corpus.chars))
    params = [*net.parameters(), *head.parameters()]
    x = torch.from_numpy(corpus.x_train).float().div(255).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(corpus.y_train)
    steps = math.ceil(len(y) / args.batch_size)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps)
    gen = torch.Generator().manual_seed(args.seed)
    scores = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        net.train()
        order, total, correct = torch.randperm(len(y), generator=gen), 0.0, 0
        for i in range(steps):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            logits = head(net(random_affine_batch(x[idx], gen)))
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        held = _accuracy(net, head, corpus.x_test, corpus.y_test)
        score = EpochScore(epoch + 1, total / len(y), 100.0 * correct / len(y), held, time.perf_counter() - t0)
        scores.append(score)
        print(f"epoch {score.epoch}/{args.epochs}: loss {score.loss:.3f}, train {score.train_accuracy:.1f} %, "
              f"held-out {score.held_out_accuracy:.1f} % ({score.seconds:.0f} s)", flush=True)
    net.eval()
    return net, scores


def _fonts(fonts_dir: str | None) -> list[dict[str, str]]:
    paths = find_fonts(CORPUS_FONTS, fonts_dir, HANDWRITING_FONTS)
    return [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in paths]


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        t0 = time.perf_counter()
        corpus = render_corpus(args.classes, args.per_class, args.held_out, args.seed, args.fonts)
        render_s = time.perf_counter() - t0
        print(f"corpus: {len(corpus.chars)} ideographs, {len(corpus.y_train)} training and {len(corpus.y_test)} "
              f"held-out images in {render_s:.0f} s", flush=True)
        net, scores = train(corpus, args)
    finally:
        torch.set_num_threads(before)
    out = Path(args.out)
    weights = atomic_write(out / "glyph_encoder.pt", lambda tmp: torch.save(net.state_dict(), tmp))
    info = {
        "what": "GlyphEncoder state_dict (dsflow/data/pseudo/glyph_encoder.py), trained by "
                "dsflow/experiments/train_glyph_encoder.py on a synthetic kanji corpus; no target image or label",
        "command": "python benchmarks/train_glyph_encoder.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "corpus_rule": "dsflow.data.glyph_corpus.corpus_chars: U+4E00-U+9FFF less EXCLUDED and every glyph_scripts "
                       "character; drawn (not .notdef) by every corpus font; the least ink in Noto Sans CJK Regular",
        "excluded": "".join(sorted(EXCLUDED)), "classes": len(corpus.chars), "chars": corpus.chars,
        "distortion": "GlyphDistortion.handwriting(), then a batch affine map (rotation 8 deg, scale 0.1, shift 2 px)",
        "fonts": _fonts(args.fonts), "seed": args.seed, "epochs": args.epochs, "per_class": args.per_class,
        "held_out_per_class": args.held_out, "threads": args.threads, "torch": torch.__version__,
        "render_seconds": round(render_s, 1), "scores": [s._asdict() for s in scores],
        "train_accuracy": scores[-1].train_accuracy, "held_out_accuracy": scores[-1].held_out_accuracy,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    atomic_write(out / "glyph_encoder.json", lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1) + "\n"))
    print(f"wrote {weights} and {out / 'glyph_encoder.json'}", flush=True)
    return weights
