"""Subset: a seeded, class-stratified part of another dataset source, or the rest of it.

Two disjoint parts of one sample, e.g. the samples a flow moves and further samples its flow map pushes
(paper 7.2): ``Subset(pool, n, seed)`` and ``Subset(pool, n, seed, rest=True)``.
"""

from __future__ import annotations

import torch

from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.images import stratified_indices

__all__ = ["Subset"]


class Subset(DatasetSource):
    """``n`` samples of ``source`` drawn per class in proportion to the class sizes (or all the others).

    Args:
        source: the dataset to draw from (loaded once per :meth:`load`).
        n: size of the part.
        seed: seed of the draw within each class.
        rest: return the samples not drawn instead (in their order in ``source``).
    """

    def __init__(self, source: DatasetSource, n: int, seed: int = 0, rest: bool = False) -> None:
        if n < 1:
            raise ValueError(f"Subset: n must be >= 1, got {n}")
        self.source, self.n, self.seed, self.rest = source, n, seed, rest

    def complement(self) -> "Subset":
        """The other part of the same draw."""
        return Subset(self.source, self.n, self.seed, not self.rest)

    def load(self) -> LabeledData:
        data = self.source.load()
        idx = stratified_indices(data.y, self.n, data.num_classes, self.seed, name=data.name)  # (n,) sorted
        if self.rest:
            keep = torch.ones(data.y.shape[0], dtype=torch.bool)
            keep[idx] = False
            if not bool(keep.any()):
                raise ValueError(f"Subset: n = {self.n} takes all {data.y.shape[0]} samples of {data.name}; no rest")
            idx = torch.nonzero(keep).flatten()
        part = "rest" if self.rest else "part"
        return LabeledData(data.x[idx], data.y[idx], data.num_classes, f"{data.name}/{part}")
