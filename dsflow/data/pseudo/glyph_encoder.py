"""A frozen character encoder pretrained on rendered kanji, as a feature map for clustering.

* :class:`GlyphEncoder`: a 4-block CNN, (n, 1, 28, 28) -> (n, 128) embeddings (388k weights). It was trained with
  cross-entropy to tell apart the classes of a synthetic kanji corpus (:mod:`dsflow.data.glyph_corpus`: ideographs
  only, none a character of any development set or hold-out; brush, handwriting and print fonts; the handwriting
  distortion profile). The corpus labels are not any target's classes: what transfers is what tells strokes and
  their arrangement apart.
* :class:`GlyphEncoderFeatures`: the L2-normalised embeddings of the shipped weights (``weights/glyph_encoder.pt``,
  trained by ``python benchmarks/train_glyph_encoder.py``; the corpus, fonts, seed and accuracies are in
  ``weights/glyph_encoder.json``), frozen, in eval mode. No target image or label changes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from dsflow.data.pseudo.features import ClusterFeatures

__all__ = ["GlyphEncoder", "GlyphEncoderFeatures", "load_encoder", "DEFAULT_WEIGHTS", "EMBEDDING", "TRAIN_COMMAND"]

#: the shipped weights (a state_dict of :class:`GlyphEncoder`)
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "glyph_encoder.pt"
#: embedding size
EMBEDDING = 128
#: how the shipped weights were made (named in the error when a weights file is missing)
TRAIN_COMMAND = "python benchmarks/train_glyph_encoder.py --out DIR (then copy DIR/glyph_encoder.pt)"


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class GlyphEncoder(nn.Module):
    """(n, 1, 28, 28) images in [0, 1] -> (n, 128) embeddings (the input of the corpus classifier).

    conv 32 @ 28 -> pool -> conv 64 @ 14 -> pool -> conv 128 @ 7 -> pool -> conv 128 @ 3 -> linear 1152 -> 128,
    each conv 3 x 3 with BatchNorm and ReLU; the embedding is batch-normalised.
    """

    def __init__(self, width: int = 32, embedding: int = EMBEDDING) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(*_block(1, w), nn.MaxPool2d(2), *_block(w, 2 * w), nn.MaxPool2d(2),
                                      *_block(2 * w, 4 * w), nn.MaxPool2d(2), *_block(4 * w, 4 * w))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 9, embedding), nn.BatchNorm1d(embedding))

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.features(x))  # (n, 1, 28, 28) -> (n, 4w, 3, 3) -> (n, embedding)


def load_encoder(path: str | os.PathLike) -> GlyphEncoder:
    """A :class:`GlyphEncoder` with the state_dict at ``path``, frozen and in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"glyph encoder weights not found: {path}; they are made by {TRAIN_COMMAND}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    width = state["features.0.weight"].shape[0]
    net = GlyphEncoder(width, state["embed.1.weight"].shape[0])
    net.load_state_dict(state)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class GlyphEncoderFeatures(ClusterFeatures):
    """(n, 128) float64 L2-normalised embeddings of a frozen :class:`GlyphEncoder`.

    Args:
        checkpoint: a state_dict file of :class:`GlyphEncoder` (default: the shipped ``weights/glyph_encoder.pt``).
        batch_size: images per forward pass.

    Input: (n, 1, 28, 28) or (n, 28, 28) gray images in [0, 1], white ink on black (MNIST's convention).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, batch_size: int = 1000) -> None:
        if batch_size < 1:
            raise ValueError(f"GlyphEncoderFeatures: batch_size must be >= 1, got {batch_size}")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_WEIGHTS
        self.batch_size = batch_size
        self._net: GlyphEncoder | None = None

    @property
    def net(self) -> GlyphEncoder:
        """The frozen encoder (loaded once)."""
        if self._net is None:
            self._net = load_encoder(self.checkpoint)
        return self._net

    @torch.no_grad()
    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"GlyphEncoderFeatures: need (n, 1, 28, 28) or (n, 28, 28) gray images, got shape "
                             f"{tuple(x.shape)}")
        net = self.net.to(x.device)  # the images' device: CPU, or a GPU when the caller's tensors live there
        z = torch.cat([net(batch) for batch in x.float().split(self.batch_size)])  # (n, 128)
        z = z.double()
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
