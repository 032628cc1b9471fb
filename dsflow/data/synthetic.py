"""Synthetic labeled datasets: Gaussian mixtures (paper Fig. 1, 2, 7, 8)."""

from __future__ import annotations

import torch

from dsflow.data.base import DatasetSource, LabeledData

__all__ = ["GaussianMixture"]


class GaussianMixture(DatasetSource):
    """A labeled mixture of isotropic Gaussians in any dimension, one component per class.

    Args:
        means: (C, d) class centres, for instance ``[[0, 0], [4, 0]]``.
        std: one standard deviation for every class, or one per class.
        n_per_class: samples of each class, one number for all or one per class.
        seed: generator seed; the same arguments always give the same dataset.
        labels: the label of each component (default 0..C-1); repeat a label to make a multi-modal class.
        name: dataset name used in messages and figures.
    """

    def __init__(
        self,
        means: list[list[float]],
        std: float | list[float] = 1.0,
        n_per_class: int | list[int] = 100,
        seed: int = 0,
        labels: list[int] | None = None,
        name: str = "gaussians",
    ) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float32)
        if self.means.ndim != 2 or self.means.shape[0] == 0:
            raise ValueError(f"GaussianMixture: means must be a non-empty (C, d) list, got shape {tuple(self.means.shape)}")
        c = self.means.shape[0]
        self.std = _per_class(std, c, "std", float)
        self.sizes = _per_class(n_per_class, c, "n_per_class", int)
        if any(s <= 0 for s in self.std) or any(n <= 0 for n in self.sizes):
            raise ValueError(f"GaussianMixture: std and n_per_class must be positive, got {self.std}, {self.sizes}")
        self.labels = list(range(c)) if labels is None else list(labels)
        if len(self.labels) != c:
            raise ValueError(f"GaussianMixture: {c} components but {len(self.labels)} labels")
        self.seed = seed
        self.name = name

    def load(self) -> LabeledData:
        gen = torch.Generator().manual_seed(self.seed)
        xs, ys = [], []
        for mean, std, n, label in zip(self.means, self.std, self.sizes, self.labels):
            xs.append(mean + std * torch.randn(n, self.means.shape[1], generator=gen))
            ys.append(torch.full((n,), label, dtype=torch.long))
        return LabeledData(torch.cat(xs), torch.cat(ys), max(self.labels) + 1, self.name)


def _per_class(value: float | int | list, c: int, what: str, cast: type) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * c
    if len(values) != c:
        raise ValueError(f"GaussianMixture: {what} has {len(values)} entries for {c} classes")
    return [cast(v) for v in values]
