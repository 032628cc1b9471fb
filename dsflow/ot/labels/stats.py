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

from dsflow.ot.labels.class_layout import ClassLayout, class_layout

__all__ = ["LabelStats", "Samples", "class_counts", "class_means", "class_factors", "class_stats", "group_by_class",
           "check_labels"]


class Samples(NamedTuple):
    """The samples class statistics were taken from: features x (n, d), labels y (n,) and their class layout."""

    x: Tensor
    y: Tensor
    layout: ClassLayout


@dataclass(frozen=True)
class LabelStats:
    """Gaussian summary of each class.

    Attributes:
        means: (C, d) class means mu_c.
        covs: (C, d, d) class covariances, or None when only ``factors`` are kept (high dimension).
        factors: (C, d, r) centred samples scaled by 1/sqrt(n_c - 1), zero-padded to the largest class, so that
            cov_c = factors_c @ factors_c^T; None when the statistics are parameters rather than sample moments.
        counts: (C,) samples per class (float; weights for parameters).
        samples: the samples the moments were taken from, when they were (the fast tables may then take the
            factors' products from a GEMM shared with the outer cost, :mod:`dsflow.ot.labels.products`).
    """

    means: Tensor
    covs: Tensor | None
    factors: Tensor | None
    counts: Tensor
    samples: Samples | None = None

    def __post_init__(self) -> None:
        if self.covs is None and self.factors is None:
            raise ValueError("LabelStats: covs and factors are both None; the class covariances need one of them")

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
        if self.factors is None:  # unreachable past __post_init__, unless a field was replaced by force
            raise ValueError("LabelStats.full_covs: covs and factors are both None")
        return self.factors @ self.factors.transpose(-1, -2)  # (C, d, d)

    def detach(self) -> "LabelStats":
        def d(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach()

        samples = None if self.samples is None else self.samples._replace(x=self.samples.x.detach())
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


def class_counts(y: Tensor, num_classes: int) -> Tensor:
    """(C,) number of samples of each class."""
    return torch.bincount(y, minlength=num_classes)


def _layout(y: Tensor, num_classes: int, layout: ClassLayout | None, who: str) -> ClassLayout:
    """``layout`` (checked against y), or the layout of y computed now (one host read)."""
    if layout is None:
        return class_layout(y, num_classes)
    layout.check(y, num_classes, who)
    return layout


def class_means(x: Tensor, y: Tensor, num_classes: int, layout: ClassLayout | None = None) -> Tensor:
    """(C, d) class means; differentiable in x. Empty classes get a zero mean.

    Args: x (n, d), y (n,), num_classes C, layout of y if known (:mod:`dsflow.ot.labels.class_layout`).
    """
    sums = x.new_zeros(num_classes, x.shape[1]).index_add(0, y, x)  # (C, d)
    counts = layout.counts if layout is not None else class_counts(y, num_classes)
    return sums / counts.clamp_min(1).to(x.dtype)[:, None]


def group_by_class(x: Tensor, y: Tensor, num_classes: int, layout: ClassLayout | None = None) -> Tensor:
    """(C, r, d) the samples x (n, ...) of each class, zero-padded to the largest class size r; differentiable in x."""
    layout = _layout(y, num_classes, layout, "group_by_class")
    out = x.new_zeros(num_classes, layout.largest, *x.shape[1:])
    return out.index_put((layout.ys, layout.pos), x[layout.order])  # (C, r, d)


def class_factors(x: Tensor, y: Tensor, num_classes: int, means: Tensor | None = None,
                  layout: ClassLayout | None = None) -> Tensor:
    """(C, d, r) factors A_c with A_c A_c^T = cov_c (unbiased), r the largest class size; differentiable in x.

    Column j of A_c is (x_i - mu_c) / sqrt(n_c - 1) for the j-th sample i of class c; missing columns are zero.
    """
    layout = _layout(y, num_classes, layout, "class_factors")
    if means is None:
        means = class_means(x, y, num_classes, layout)
    scale = (layout.counts - 1).clamp_min(1).to(x.dtype).rsqrt()  # (C,)
    centred = group_by_class(x - means[y], y, num_classes, layout)  # (C, r, d)
    return (centred * scale[:, None, None]).transpose(1, 2)  # (C, d, r)


def class_stats(
    x: Tensor, y: Tensor, num_classes: int, keep_covs: bool | None = None, singletons: bool = False,
    layout: ClassLayout | None = None,
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
        layout: the class layout of y, when its owner keeps it (:class:`~dsflow.ot.labels.class_layout.LayoutCache`);
            None: computed here (one host read).
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"class_stats: expected x (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    layout = _layout(y, num_classes, layout, "class_stats")
    if not singletons and 1 in layout.host_counts:
        single = [c for c, k in enumerate(layout.host_counts) if k == 1]
        raise ValueError(f"class_stats: classes {single} have a single sample; a covariance needs at least 2")
    means = class_means(x, y, num_classes, layout)
    factors = class_factors(x, y, num_classes, means, layout)
    counts = layout.counts.to(x.dtype)
    if keep_covs is None:
        keep_covs = factors.shape[-1] >= x.shape[1]
    covs = factors @ factors.transpose(-1, -2) if keep_covs else None  # (C, d, d)
    return LabelStats(means, covs, None if keep_covs else factors, counts, Samples(x, y, layout))
