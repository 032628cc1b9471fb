"""How the samples of a label vector fall into classes, computed once per label vector and kept by its owner.

Labels rarely change during a flow (fd-fl: never), so the class counts are read to the host once per label
vector (one device synchronisation) rather than at every step. :class:`ClassLayout` is that reading;
:class:`LayoutCache` keeps the layouts of the label vectors one owner has seen (an OTDD term keeps one for its
flow: two flows in one process never share it). Nothing here is module-global.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ClassLayout", "LayoutCache", "class_layout"]


class ClassLayout(NamedTuple):
    """The grouping of labels y (n,) into C classes.

    Attributes:
        counts: (C,) samples per class, on y's device.
        host_counts: the same on the host.
        order: (n,) samples grouped by class (stable).
        ys: (n,) class of sample order[k].
        pos: (n,) rank of sample order[k] within its class.
        index: (C, r) index of the samples of each class (padding: 0), r the largest class size.
        mask: (C, r) real entries of ``index``.
    """

    counts: Tensor
    host_counts: tuple[int, ...]
    order: Tensor
    ys: Tensor
    pos: Tensor
    index: Tensor  # type: ignore[assignment]  # the field shadows tuple.index, which nothing here calls
    mask: Tensor

    @property
    def largest(self) -> int:
        """r, the largest class size."""
        return max(self.host_counts)

    def check(self, y: Tensor, num_classes: int, who: str) -> None:
        """Raise unless this layout can be one of y (n,) in ``num_classes`` classes (no device synchronisation)."""
        if self.order.shape != y.shape or len(self.host_counts) != num_classes:
            raise ValueError(
                f"{who}: the class layout covers {self.order.shape[0]} samples in {len(self.host_counts)} classes, "
                f"but the labels are {tuple(y.shape)} in {num_classes} classes"
            )


def class_layout(y: Tensor, num_classes: int) -> ClassLayout:
    """The :class:`ClassLayout` of labels y (n,) in [0, num_classes) (one host read of the counts)."""
    counts = torch.bincount(y, minlength=num_classes)
    order = torch.argsort(y, stable=True)
    ys = y[order]
    starts = torch.cumsum(counts, 0) - counts  # (C,) first position of each class in `order`
    pos = torch.arange(y.shape[0], device=y.device) - starts[ys]
    host = tuple(counts.tolist())
    index = torch.zeros(num_classes, max(host), dtype=torch.long, device=y.device).index_put_((ys, pos), order)
    mask = torch.arange(max(host), device=y.device)[None, :] < counts[:, None]
    return ClassLayout(counts, host, order, ys, pos, index, mask)


class LayoutCache:
    """Layouts of the last ``size`` label vectors seen, each computed once while its labels are unchanged.

    An entry holds a reference to its labels (their storage cannot be reused while it lives) and their version
    counter (an in-place relabelling invalidates it).
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"LayoutCache: size must be >= 1, got {size}")
        self.size = size
        # (key, labels kept alive, layout), newest last
        self._entries: list[tuple[tuple[object, ...], Tensor, ClassLayout]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, y: Tensor, num_classes: int) -> ClassLayout:
        """The layout of labels y (n,) in [0, num_classes), computed on first sight."""
        key = (y.data_ptr(), y._version, tuple(y.shape), y.dtype, y.device, num_classes)
        for k, _, layout in self._entries:
            if k == key:
                return layout
        layout = class_layout(y, num_classes)
        self._entries.append((key, y, layout))
        del self._entries[:-self.size]
        return layout
