"""Feature maps chosen per target from its images alone: thin strokes (characters, digits) or filled shapes.

Characters and digits are line drawings: the strokes are a few pixels wide, so almost no ink lies deeper than two
pixels inside the ink. Clothing, objects and natural images are filled shapes with areas of ink. What tells
classes apart differs: the arrangement of many short strokes (fine gradient-histogram cells pay, docs/pseudo_labels.md)
against silhouettes and large-scale layout (coarse cells pay). :class:`ByStrokeWidth` measures the target's
"deep ink" (:func:`deep_ink_fraction`) and hands the images to one of two feature maps. It reads pixels only,
never a label.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dsflow.data.pseudo.features import ClusterFeatures
from dsflow.data.pseudo.image_features import _gray

__all__ = ["ByStrokeWidth", "StrokeReading", "deep_ink_fraction"]


class StrokeReading(NamedTuple):
    """What :class:`ByStrokeWidth` measured on a target and which map it chose."""

    deep_ink: float  # the median image's fraction of ink lying deeper than ``depth`` pixels inside the ink
    thin: bool  # True: ``thin`` features were used (deep_ink <= max_deep_ink)


def deep_ink_fraction(x: Tensor, depth: float = 2.0, level: float = 0.5) -> Tensor:
    """(n,) per image: the fraction of its ink pixels whose whole (2r+1) x (2r+1) neighbourhood is ink,
    r = round(depth * h / 28), ink being the pixels above ``level`` times the image's peak value.

    A stroke at most 2r pixels wide has no such pixel, so line drawings give 0; filled shapes give a sizeable
    fraction. x: (n, c, h, w) or (n, h, w) images, any scale (channels are averaged to gray). An image without
    ink gives 0.
    """
    if depth <= 0 or not 0 < level < 1:
        raise ValueError(f"deep_ink_fraction: need depth > 0 and 0 < level < 1, got {depth}, {level}")
    img = _gray(x)  # (n, 1, h, w)
    peak = img.amax(dim=(1, 2, 3), keepdim=True)  # (n, 1, 1, 1)
    ink = (img > level * peak).double() * (peak > 0)  # (n, 1, h, w)
    r = max(1, round(depth * img.shape[-2] / 28))
    deep = -F.max_pool2d(-F.pad(ink, (r, r, r, r), value=0.0), 2 * r + 1, stride=1)  # erosion: (n, 1, h, w)
    return deep.sum((1, 2, 3)) / ink.sum((1, 2, 3)).clamp_min(1.0)


class ByStrokeWidth(ClusterFeatures):
    """``thin`` features for a target drawn in thin strokes, ``thick`` features otherwise (n, p), chosen from the
    median of :func:`deep_ink_fraction` over the target's images: thin when it is at most ``max_deep_ink``.

    Args:
        thin: the feature map for line drawings (characters, digits).
        thick: the feature map for filled shapes (clothing, objects, natural images).
        depth: how deep (pixels at 28 x 28) ink must lie to count as deep: 2 px, so strokes up to 4 px wide are thin.
        max_deep_ink: the largest median deep-ink fraction of a thin target. How 0.1 was set: docs/pseudo_labels.md
            ("Thin strokes, fine cells").
    """

    def __init__(self, thin: ClusterFeatures, thick: ClusterFeatures, depth: float = 2.0,
                 max_deep_ink: float = 0.1) -> None:
        if depth <= 0 or not 0 <= max_deep_ink < 1:
            raise ValueError(f"ByStrokeWidth: need depth > 0 and 0 <= max_deep_ink < 1, got {depth}, {max_deep_ink}")
        self.thin, self.thick, self.depth, self.max_deep_ink = thin, thick, depth, max_deep_ink
        self.last: StrokeReading | None = None

    def default_checkpoint(self, path: str) -> None:
        self.thin.default_checkpoint(path)
        self.thick.default_checkpoint(path)

    def reading(self, x: Tensor) -> StrokeReading:
        """What the target's images say (x: (n, ...) images), without computing any features."""
        if x.shape[0] == 0:
            raise ValueError("ByStrokeWidth: no images")
        deep = float(torch.median(deep_ink_fraction(x, self.depth)))
        return StrokeReading(deep, deep <= self.max_deep_ink)

    def describe(self) -> str | None:
        """The last choice in words (None before any): which features, and the reading that chose them."""
        r = self.last
        if r is None:
            return None
        return (f"{'thin' if r.thin else 'thick'}-stroke features (median deep ink {r.deep_ink:.3f} "
                f"{'<=' if r.thin else '>'} {self.max_deep_ink})")

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        self.last = self.reading(x)
        return (self.thin if self.last.thin else self.thick)(x, num_clusters)
