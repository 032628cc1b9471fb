"""Synthetic workloads of the speed benchmarks (``benchmarks/step_speed.py``, ``benchmarks/ddp_speed.py``).

* :class:`ClassBlobs`: MNIST-sized classes, each a random low-rank Gaussian blob around its own centre, at
  pixel-like scale (|x - x'|^2 ~ 10^2 in 784-d);
* :class:`CyclicMixture`: an isotropic Gaussian mixture whose labels cycle 0, 1, ..., C - 1 over the samples
  (any n, classes within one sample of each other).
"""

from __future__ import annotations

import torch

from dsflow.data.base import DatasetSource, LabeledData

__all__ = ["ClassBlobs", "CyclicMixture"]


class ClassBlobs(DatasetSource):
    """``num_classes`` classes of n / num_classes points in ``dim`` dimensions: centre + rank-``rank`` Gaussian
    blob + small isotropic noise; labels cycle over the classes.

    Args:
        n: samples, a multiple of ``num_classes`` (equal classes).
        shift: added to every centre (centres are uniform in [shift, shift + 0.5]^dim).
        seed: generator seed.
    """

    def __init__(self, n: int, num_classes: int = 10, dim: int = 784, rank: int = 32, shift: float = 0.0,
                 seed: int = 0, name: str = "blobs") -> None:
        if n < 1 or n % num_classes:
            raise ValueError(f"ClassBlobs: n must be a positive multiple of {num_classes} (equal classes), got {n}")
        self.n, self.c, self.d, self.k, self.shift, self.seed, self.name = n, num_classes, dim, rank, shift, seed, name

    def load(self) -> LabeledData:
        gen = torch.Generator().manual_seed(self.seed)
        n, c, d, k = self.n, self.c, self.d, self.k
        centres = 0.5 * torch.rand(c, d, generator=gen) + self.shift  # (C, d)
        basis = torch.randn(c, k, d, generator=gen) * (0.3 / k**0.5)  # (C, k, d)
        y = torch.arange(n) % c  # (n,)
        z = torch.randn(n, k, generator=gen)  # (n, k)
        blob = torch.bmm(z.view(n // c, c, k).transpose(0, 1), basis).transpose(0, 1).reshape(n, d)  # (n, d), row i: z_i basis[y_i]
        x = centres[y] + blob + 0.05 * torch.randn(n, d, generator=gen)
        return LabeledData(x, y, c, f"{self.name}-{self.seed}")


class CyclicMixture(DatasetSource):
    """x_i = means[y_i] + std * xi_i with y_i = i mod C.

    Args:
        means: (C, d) class centres.
        std: standard deviation of every class.
        n: samples.
        seed: generator seed.
    """

    def __init__(self, means: list[list[float]], std: float = 1.0, n: int = 300, seed: int = 0, name: str = "mixture") -> None:
        self.means = torch.as_tensor(means, dtype=torch.float32)
        if self.means.ndim != 2 or n < self.means.shape[0] or std <= 0:
            raise ValueError(f"CyclicMixture: need (C, d) means, n >= C and std > 0, got {tuple(self.means.shape)}, {n}, {std}")
        self.std, self.n, self.seed, self.name = float(std), n, seed, name

    def load(self) -> LabeledData:
        gen = torch.Generator().manual_seed(self.seed)
        c, d = self.means.shape
        y = torch.arange(self.n) % c
        x = self.means[y] + self.std * torch.randn(self.n, d, generator=gen)
        return LabeledData(x, y, c, f"{self.name}-{self.seed}")
