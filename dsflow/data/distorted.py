"""Randomly warped images: a development stand-in for handwriting with more styles per class than MNIST.

:class:`Distorted` wraps an image source and warps every image independently (seeded): a random affine map
(rotation, anisotropic scale, shear), a smooth elastic displacement field (Simard, Steinkraus & Platt 2003) and,
at random, a thicker stroke (3 x 3 grey dilation). Labels are kept. Warped MNIST is NOT
KMNIST: it only adds within-class variation of the kinds KMNIST has (slant, size, stroke width, wobble) to digits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.pseudo.image_features import affine_theta, gaussian_blur

__all__ = ["Distorted", "random_affine"]


def random_affine(n: int, rotation: float, scale: float, shear: float, gen: torch.Generator) -> Tensor:
    """(n, 2, 3) random affine maps for ``F.affine_grid``: rotation (degrees, uniform in [-rotation, rotation]) after a
    horizontal shear (uniform in [-shear, shear]), each row scaled by its own factor in [1 - scale, 1 + scale].

    Draws, in this order, from ``gen``: the angles, the two scales and the shears (n each).
    """
    u = lambda *shape: 2 * torch.rand(*shape, generator=gen) - 1  # noqa: E731  uniform in [-1, 1]
    angle = u(n) * math.radians(rotation)
    sx, sy, sh = 1 + scale * u(n), 1 + scale * u(n), shear * u(n)
    return affine_theta(angle, sx, sy, sh)


class Distorted(DatasetSource):
    """Images of ``source`` (n, c, h, w), each randomly warped; labels unchanged.

    Args:
        source: the image source.
        rotation: largest rotation (degrees, uniform in [-rotation, rotation]).
        scale: largest relative change of each axis' scale (uniform in [1 - scale, 1 + scale]).
        shear: largest horizontal shear (uniform).
        elastic: elastic displacement amplitude (pixels at 28 x 28; the field is smoothed over 4 pixels).
        stroke: probability of thickening the strokes.
        seed: seed of the warps.
    """

    def __init__(self, source: DatasetSource, rotation: float = 25.0, scale: float = 0.15, shear: float = 0.3,
                 elastic: float = 1.5, stroke: float = 0.3, seed: int = 0) -> None:
        if rotation < 0 or not 0 <= scale < 1 or shear < 0 or elastic < 0 or not 0 <= stroke <= 1:
            raise ValueError(f"Distorted: need rotation, shear, elastic >= 0, 0 <= scale < 1, 0 <= stroke <= 1, got "
                             f"{rotation}, {scale}, {shear}, {elastic}, {stroke}")
        self.source, self.rotation, self.scale, self.shear = source, rotation, scale, shear
        self.elastic, self.stroke, self.seed = elastic, stroke, seed

    def warp(self, x: Tensor) -> Tensor:
        """(n, c, h, w) images warped at random (seeded by ``seed``)."""
        gen = torch.Generator().manual_seed(self.seed)
        n, c, h, w = x.shape
        theta = random_affine(n, self.rotation, self.scale, self.shear, gen)  # (n, 2, 3)
        u = lambda *shape: 2 * torch.rand(*shape, generator=gen) - 1  # noqa: E731  uniform in [-1, 1]
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)  # (n, h, w, 2)
        field = gaussian_blur(u(2 * n, 1, h, w).double(), 4.0 * h / 28).float().reshape(n, 2, h, w)
        field = field - field.mean((2, 3), keepdim=True)  # no net translation: the warp is a wobble, not a shift
        field = field / field.flatten(1).std(1).clamp_min(1e-8).view(n, 1, 1, 1)  # unit spread per image
        grid = grid + (self.elastic * 2 / h) * field.permute(0, 2, 3, 1)  # pixels -> normalised units
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        thick = torch.rand(n, generator=gen) < self.stroke
        out[thick] = F.max_pool2d(out[thick], 3, stride=1, padding=1)  # grey dilation (erosion breaks MNIST's thin strokes)
        return out.clamp_(0.0, 1.0)  # (n, c, h, w)

    def load(self) -> LabeledData:
        data = self.source.load()
        if data.x.ndim != 4:
            raise ValueError(f"Distorted: expected (n, c, h, w) images, got {tuple(data.x.shape)}")
        return LabeledData(self.warp(data.x).to(data.x.dtype), data.y, data.num_classes, f"{data.name} (warped)")
