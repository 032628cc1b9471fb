"""Labeled datasets as tensors, and the interface every dataset source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from dsflow.ot.labels.stats import check_labels

__all__ = ["LabeledData", "DatasetSource"]


@dataclass(frozen=True)
class LabeledData:
    """A labeled dataset held in memory, validated on construction.

    Attributes:
        x: (n, *feature_shape) float features (images are (n, c, h, w)).
        y: (n,) int64 labels in [0, num_classes).
        num_classes: C, the size of the label set (a class may be absent from a subset).
        name: what error messages call this dataset.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    name: str = "dataset"

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or self.x.shape[0] == 0:
            raise ValueError(f"{self.name}: expected features of shape (n, ...) with n >= 1, got {tuple(self.x.shape)}")
        if not self.x.dtype.is_floating_point:
            raise ValueError(f"{self.name}: features must be floating point, got {self.x.dtype}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"{self.name}: {self.x.shape[0]} samples but labels of shape {tuple(self.y.shape)}")
        bad = int((~torch.isfinite(self.x)).sum())
        if bad:
            raise ValueError(f"{self.name}: {bad} non-finite (NaN or inf) feature values")
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes must be >= 1, got {self.num_classes}")
        check_labels(self.y, self.num_classes, name=f"{self.name} labels", min_count=0)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def dim(self) -> int:
        return int(torch.tensor(self.feature_shape).prod())

    def flat(self) -> Tensor:
        """(n, d) the features flattened."""
        return self.x.reshape(self.x.shape[0], -1)


class DatasetSource(ABC):
    """Something that yields a :class:`LabeledData` (synthetic generators, real datasets, array files)."""

    @abstractmethod
    def load(self) -> LabeledData:
        """Build or read the dataset."""
