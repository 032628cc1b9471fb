"""Radial interaction kernels W(z - z') = k(|x - x'|^2) for interaction energies (paper eq. 11, section 5).

Each kernel maps the (n, n) squared distances to the (n, n) values of W. Variants are classes (chosen in YAML by
class_path); all are differentiable, with finite gradients at zero distance (the diagonal i = j).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Kernel", "ExponentialKernel", "GaussianKernel", "NegativeSquaredDistance", "InverseMultiquadricKernel"]


class Kernel(ABC):
    """A radial kernel W as a function of squared distances."""

    @abstractmethod
    def __call__(self, sq: Tensor) -> Tensor:
        """(n, n) W from (n, n) squared distances |x_i - x_j|^2."""


def _positive(value: float, what: str, who: str) -> float:
    if not value > 0:
        raise ValueError(f"{who}: {what} must be positive, got {value}")
    return float(value)


class ExponentialKernel(Kernel):
    """W = exp(-|x - x'| / scale): the paper's class-repulsion kernel (scale 1)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = _positive(scale, "scale", "ExponentialKernel")

    def __call__(self, sq: Tensor) -> Tensor:
        dist = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() * (sq > 0)  # zero gradient at 0, not NaN
        return torch.exp(-dist / self.scale)


class GaussianKernel(Kernel):
    """W = exp(-|x - x'|^2 / (2 bandwidth^2))."""

    def __init__(self, bandwidth: float = 1.0) -> None:
        self.bandwidth = _positive(bandwidth, "bandwidth", "GaussianKernel")

    def __call__(self, sq: Tensor) -> Tensor:
        return torch.exp(-sq / (2 * self.bandwidth**2))


class InverseMultiquadricKernel(Kernel):
    """W = (1 + |x - x'|^2 / scale^2)^(-1/2): a heavy-tailed repulsion."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = _positive(scale, "scale", "InverseMultiquadricKernel")

    def __call__(self, sq: Tensor) -> Tensor:
        return (1 + sq / self.scale**2).rsqrt()


class NegativeSquaredDistance(Kernel):
    """W = -|x - x'|^2 (paper Fig. 8c-d): unbounded below, it spreads the pairs it acts on apart linearly."""

    def __call__(self, sq: Tensor) -> Tensor:
        return -sq
