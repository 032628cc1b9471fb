"""A 3-D swiss roll whose classes are consecutive segments along the roll (paper Fig. 1 bottom row, Fig. 12)."""

from __future__ import annotations

import math

import torch

from dsflow.data.base import DatasetSource, LabeledData

__all__ = ["SwissRoll"]


class SwissRoll(DatasetSource):
    """Points (t cos t, h, t sin t) * scale + noise, with t uniform in [1.5 pi, 4.5 pi] and h uniform in [0, height].

    The roll parameter t is cut into ``num_classes`` segments of equal length: class c holds the points of the
    c-th segment, so the classes follow one another along the spiral (the structure feature-only OT ignores).

    Args:
        n: number of points.
        num_classes: segments along the roll.
        height: extent of the flat axis (before ``scale``).
        noise: standard deviation of the isotropic Gaussian noise (after ``scale``).
        scale: overall size factor (the default 0.25 keeps coordinates within about [-3.5, 3.5]).
        centre: (3,) offset added to every point.
        seed: generator seed; the same arguments always give the same dataset.
        name: dataset name used in messages and figures.
    """

    def __init__(
        self,
        n: int = 300,
        num_classes: int = 3,
        height: float = 10.0,
        noise: float = 0.05,
        scale: float = 0.25,
        centre: list[float] | None = None,
        seed: int = 0,
        name: str = "swiss_roll",
    ) -> None:
        if n < 1 or not 1 <= num_classes <= n:
            raise ValueError(f"SwissRoll: need n >= 1 and 1 <= num_classes <= n, got n={n}, num_classes={num_classes}")
        if height < 0 or noise < 0 or scale <= 0:
            raise ValueError(f"SwissRoll: need height, noise >= 0 and scale > 0, got {height}, {noise}, {scale}")
        self.centre = torch.as_tensor(centre if centre is not None else [0.0, 0.0, 0.0], dtype=torch.float32)
        if self.centre.shape != (3,):
            raise ValueError(f"SwissRoll: centre must have 3 coordinates, got shape {tuple(self.centre.shape)}")
        self.n, self.num_classes, self.height, self.noise, self.scale = n, num_classes, height, noise, scale
        self.seed, self.name = seed, name

    def load(self) -> LabeledData:
        gen = torch.Generator().manual_seed(self.seed)
        u = torch.rand(self.n, generator=gen)
        t = 1.5 * math.pi * (1 + 2 * u)  # (n,) position along the roll
        h = self.height * torch.rand(self.n, generator=gen)
        x = torch.stack([t * torch.cos(t), h - self.height / 2, t * torch.sin(t)], 1) * self.scale  # (n, 3)
        x = x + self.noise * torch.randn(self.n, 3, generator=gen) + self.centre
        y = (u * self.num_classes).long().clamp_max(self.num_classes - 1)  # equal segments of t
        order = torch.argsort(y, stable=True)
        return LabeledData(x[order], y[order], self.num_classes, self.name)
