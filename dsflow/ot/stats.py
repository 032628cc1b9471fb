"""Class statistics of a labeled point cloud (paper section 3.3, the Gaussian label approximation).

Notation: x (n, d) features, y (n,) integer labels in [0, C), mu (C, d) class means, cov (C, d, d) class
covariances, r the largest class size. Covariances are the unbiased sample covariances (divisor n_c - 1), so
every class needs at least two samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LabelStats", "class_counts", "class_means", "class_factors", "class_stats", "group_by_class", "class_index",
           "check_labels"]


@dataclass(frozen=True)
class LabelStats:
    """Gaussian summary of each class.

    Attributes:
        means: (C, d) class means mu_c.
        covs: (C, d, d) class covariances, or None when only ``factors`` are kept (high dimension).
        factors: (C, d, r) centred samples scaled by 1/sqrt(n_c - 1), zero-padded to the largest class, so that
            cov_c = factors_c @ factors_c^T; None when the statistics are parameters rather than sample moments.
        counts: (C,) samples per class (float; weights for parameters).
        samples: the (n, d) features and (n,) labels the moments were taken from, when they were (the fast
            tables then take the factors' products from a GEMM shared with the outer cost, :mod:`dsflow.ot.products`).
    """

    means: Tensor
    covs: Tensor | None
    factors: Tensor | None
    counts: Tensor
    samples: tuple[Tensor, Tensor] | None = None

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def full_covs(self) -> Tensor:
        """(C, d, d) covariances, formed from the factors when they are not stored."""
        if self.covs is not None:
            return self.covs
        assert self.factors is not None
        return self.factors @ self.factors.transpose(-1, -2)  # (C, d, d)

    def detach(self) -> "LabelStats":
        def d(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach()

        samples = None if self.samples is None else (self.samples[0].detach(), self.samples[1])
        return LabelStats(self.means.detach(), d(self.covs), d(self.factors), self.counts.detach(), samples)


def check_labels(y: Tensor, num_classes: int, name: str = "labels", min_count: int = 1) -> Tensor:
    """Validate integer labels and return the (C,) class counts.

    Raises:
        ValueError: if ``y`` is not 1-D integer, has labels outside [0, num_classes), or a class has fewer
            than ``min_count`` samples.
    """
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name}: expected a 1-D integer tensor of labels, got dtype {y.dtype} shape {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError(f"{name}: no samples")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), found range [{lo}, {hi}]")
    counts = torch.bincount(y, minlength=num_classes)
    if min_count > 0 and bool((counts < min_count).any()):
        bad = torch.nonzero(counts < min_count).flatten().tolist()
        raise ValueError(
            f"{name}: classes {bad} have fewer than {min_count} samples (counts {counts[bad].tolist()}); "
            f"a class covariance needs at least 2 samples: drop those classes or add samples"
        )
    return counts


class _Layout(NamedTuple):
    """How the samples of a label vector fall into classes (see :func:`_layout`)."""

    counts: Tensor  # (C,) samples per class, on y's device
    host_counts: tuple[int, ...]  # the same on the host
    order: Tensor  # (n,) samples grouped by class
    ys: Tensor  # (n,) class of sample order[k]
    pos: Tensor  # (n,) rank of sample order[k] within its class
    index: Tensor  # (C, r) index of the samples of each class (padding: 0), r the largest class size
    mask: Tensor  # (C, r) real entries of index


_LAYOUTS: list[tuple[tuple, Tensor, _Layout]] = []  # (key, labels kept alive, layout), most recent last
_MAX_LAYOUTS = 4


def _layout(y: Tensor, num_classes: int) -> _Layout:
    """Class counts and grouping of labels y (n,), memoised while y is unchanged.

    Labels rarely change during a flow (fd-fl: never), so the counts are read to the host once per label vector
    (one device synchronisation) rather than at every step; the memo holds a reference to y (its storage cannot
    be reused) and its version counter (an in-place relabelling invalidates the entry).
    """
    key = (y.data_ptr(), y._version, tuple(y.shape), y.dtype, y.device, num_classes)
    for k, _, layout in _LAYOUTS:
        if k == key:
            return layout
    counts = torch.bincount(y, minlength=num_classes)
    order = torch.argsort(y, stable=True)
    ys = y[order]
    starts = torch.cumsum(counts, 0) - counts  # (C,) first position of each class in `order`
    pos = torch.arange(y.shape[0], device=y.device) - starts[ys]
    host = tuple(counts.tolist())
    index = torch.zeros(num_classes, max(host), dtype=torch.long, device=y.device).index_put_((ys, pos), order)
    mask = torch.arange(max(host), device=y.device)[None, :] < counts[:, None]
    layout = _Layout(counts, host, order, ys, pos, index, mask)
    _LAYOUTS.append((key, y, layout))
    del _LAYOUTS[:-_MAX_LAYOUTS]
    return layout


def class_counts(y: Tensor, num_classes: int) -> Tensor:
    """(C,) number of samples of each class (memoised per label vector, :func:`_layout`)."""
    return _layout(y, num_classes).counts


def class_means(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(C, d) class means; differentiable in x. Empty classes get a zero mean."""
    sums = x.new_zeros(num_classes, x.shape[1]).index_add(0, y, x)  # (C, d)
    counts = class_counts(y, num_classes).clamp_min(1).to(x.dtype)
    return sums / counts[:, None]


def _slots(y: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """Samples grouped by class: order (n,), the class ys (n,) and rank pos (n,) of sample order[k] within its
    class, and the largest class size r."""
    layout = _layout(y, num_classes)
    return layout.order, layout.ys, layout.pos, max(layout.host_counts)


def group_by_class(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(C, r, d) the samples of each class, zero-padded to the largest class size r; differentiable in x."""
    order, ys, pos, r = _slots(y, num_classes)
    return x.new_zeros(num_classes, r, *x.shape[1:]).index_put((ys, pos), x[order])  # (C, r, d)


def class_index(y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(C, r) index of the samples of each class in the order of :func:`group_by_class` (padding: 0) and the
    (C, r) mask of real entries."""
    layout = _layout(y, num_classes)  # made once per label vector, with the counts
    return layout.index, layout.mask


def class_factors(x: Tensor, y: Tensor, num_classes: int, means: Tensor | None = None) -> Tensor:
    """(C, d, r) factors A_c with A_c A_c^T = cov_c (unbiased), r the largest class size; differentiable in x.

    Column j of A_c is (x_i - mu_c) / sqrt(n_c - 1) for the j-th sample i of class c; missing columns are zero.
    """
    if means is None:
        means = class_means(x, y, num_classes)
    scale = (class_counts(y, num_classes) - 1).clamp_min(1).to(x.dtype).rsqrt()  # (C,)
    centred = group_by_class(x - means[y], y, num_classes)  # (C, r, d)
    return (centred * scale[:, None, None]).transpose(1, 2)  # (C, d, r)


def class_stats(
    x: Tensor, y: Tensor, num_classes: int, keep_covs: bool | None = None, singletons: bool = False
) -> LabelStats:
    """Means, covariances (or their factors) and counts of each class of (x, y).

    Args:
        x: (n, d) features.
        y: (n,) labels in [0, num_classes).
        num_classes: C.
        keep_covs: store the (C, d, d) covariances; by default only when the largest class has at least d
            samples (otherwise the (C, d, r) factors are smaller and give the small-SVD Bures form).
        singletons: accept one-sample classes, whose covariance is then zero (for callers that regularise it);
            by default they raise, as their covariance is undefined.
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"class_stats: expected x (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    layout = _layout(y, num_classes)
    counts = layout.counts
    if not singletons and 1 in layout.host_counts:
        single = [c for c, k in enumerate(layout.host_counts) if k == 1]
        raise ValueError(f"class_stats: classes {single} have a single sample; a covariance needs at least 2")
    means = class_means(x, y, num_classes)
    factors = class_factors(x, y, num_classes, means)
    counts = counts.to(x.dtype)
    if keep_covs is None:
        keep_covs = factors.shape[-1] >= x.shape[1]
    covs = factors @ factors.transpose(-1, -2) if keep_covs else None  # (C, d, d)
    return LabelStats(means, covs, None if keep_covs else factors, counts, (x, y))
