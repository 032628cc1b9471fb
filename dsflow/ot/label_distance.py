"""Label-to-label distances W_2^2(alpha_c, alpha_c') between the class-conditional feature distributions.

Two variants, chosen in YAML by class_path:

* :class:`GaussianLabelDistance`: each class is approximated by N(mu_c, cov_c) and compared in closed form
  (Bures-Wasserstein, :mod:`dsflow.ot.bures`). ``diagonal=True`` keeps only the variances (cheap in high d).
* :class:`ExactLabelDistance`: OT between the samples of the two classes themselves (debiased Sinkhorn with a
  small blur, all class pairs in one batched geomloss call), differentiable in the samples.

Each variant turns a labeled set into a *summary* once (:meth:`summarize`), and compares two summaries
(:meth:`table`), so that the summary of a fixed reference dataset is computed once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from geomloss import SamplesLoss
from torch import Tensor

from dsflow.ot.bures import bures_pair_table, bures_wasserstein_table
from dsflow.ot.distances import bounding_diameter, squared_distances
from dsflow.ot.stats import LabelStats, class_counts, class_stats, group_by_class

__all__ = ["LabelDistance", "GaussianLabelDistance", "ExactLabelDistance", "ClassSamples"]


class LabelDistance(ABC):
    """Distances between the classes of two labeled sets."""

    #: fewest samples a (non-empty) class may have
    min_class_size: int = 1

    @abstractmethod
    def summarize(self, x: Tensor, y: Tensor, num_classes: int) -> Any:
        """What :meth:`table` needs of the labeled set x (n, d), y (n,)."""

    @abstractmethod
    def table(self, a: Any, b: Any) -> Tensor:
        """(Ca, Cb) squared label distances between the classes of two summaries."""

    def self_table(self, a: Any) -> Tensor:
        """(Ca, Ca) squared label distances among the classes of one summary (symmetric, zero diagonal)."""
        return self.table(a, a)

    def __call__(self, x_a: Tensor, y_a: Tensor, c_a: int, x_b: Tensor, y_b: Tensor, c_b: int) -> Tensor:
        """(Ca, Cb) squared distances between the classes of (x_a, y_a) and (x_b, y_b)."""
        return self.table(self.summarize(x_a, y_a, c_a), self.summarize(x_b, y_b, c_b))


class GaussianLabelDistance(LabelDistance):
    """Bures-Wasserstein distance between class Gaussians N(mu_c, cov_c).

    Args:
        diagonal: keep only the per-feature variances; W_2^2 = |mu - mu'|^2 + |sqrt(var) - sqrt(var')|^2.
    """

    min_class_size = 2

    def __init__(self, diagonal: bool = False) -> None:
        self.diagonal = diagonal

    def summarize(self, x: Tensor, y: Tensor, num_classes: int) -> LabelStats:
        stats = class_stats(x, y, num_classes)
        if self.diagonal:
            return diagonal_stats(stats)
        return stats

    def table(self, a: LabelStats, b: LabelStats) -> Tensor:
        if self.diagonal:
            return diagonal_bures_table(a, b)
        if _needs_grad(a, b):
            return bures_wasserstein_table(a, b)
        return bures_pair_table(a, b)  # batched Gram eigenvalues: same values, no autograd

    def self_table(self, a: LabelStats) -> Tensor:
        if self.diagonal or _needs_grad(a):
            return self.table(a, a)
        return bures_pair_table(a)  # upper triangle only


def _needs_grad(*stats: LabelStats) -> bool:
    """Whether a table of these statistics must be differentiable."""
    tensors = [t for s in stats for t in (s.means, s.covs, s.factors) if t is not None]
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def diagonal_stats(stats: LabelStats) -> LabelStats:
    """Keep the variances only: covs becomes (C, d) (the diagonals)."""
    if stats.factors is not None:
        var = stats.factors.pow(2).sum(-1)  # (C, d)
    else:
        assert stats.covs is not None
        var = torch.diagonal(stats.covs, dim1=-2, dim2=-1)
    return LabelStats(stats.means, var, None, stats.counts)


def diagonal_bures_table(a: LabelStats, b: LabelStats) -> Tensor:
    """(Ca, Cb) W_2^2 between diagonal Gaussians; ``covs`` hold the (C, d) variances."""
    assert a.covs is not None and b.covs is not None
    mean_term = torch.cdist(a.means, b.means).pow(2)  # (Ca, Cb)
    sd_term = torch.cdist(a.covs.clamp_min(0).sqrt(), b.covs.clamp_min(0).sqrt()).pow(2)
    return mean_term + sd_term


@dataclass(frozen=True)
class ClassSamples:
    """Samples of each class, zero-padded: points (C, r, d) and weights (C, r) summing to 1 per class."""

    points: Tensor
    weights: Tensor


class ExactLabelDistance(LabelDistance):
    """Non-parametric label distance: debiased Sinkhorn divergence between the class samples (squared cost).

    Args:
        eps: entropic regularisation in squared-distance units; small values approach the exact W_2^2.
        scaling: epsilon-scaling factor of geomloss's Sinkhorn (closer to 1: more iterations, more accurate).
    """

    def __init__(self, eps: float = 1e-3, scaling: float = 0.9) -> None:
        if eps <= 0 or not 0 < scaling < 1:
            raise ValueError(f"ExactLabelDistance: need eps > 0 and 0 < scaling < 1, got {eps}, {scaling}")
        self.eps = eps
        self.scaling = scaling

    def summarize(self, x: Tensor, y: Tensor, num_classes: int) -> ClassSamples:
        points = group_by_class(x, y, num_classes)  # (C, r, d)
        counts = class_counts(y, num_classes)
        r = points.shape[1]
        mask = torch.arange(r, device=x.device)[None, :] < counts[:, None]  # (C, r)
        weights = mask.to(x.dtype) / counts.clamp_min(1).to(x.dtype)[:, None]
        return ClassSamples(points, weights)

    def table(self, a: ClassSamples, b: ClassSamples) -> Tensor:
        ca, cb = a.points.shape[0], b.points.shape[0]
        pa = a.points[:, None].expand(-1, cb, -1, -1).reshape(ca * cb, *a.points.shape[1:])  # (Ca*Cb, ra, d)
        pb = b.points[None].expand(ca, -1, -1, -1).reshape(ca * cb, *b.points.shape[1:])  # (Ca*Cb, rb, d)
        wa = a.weights[:, None].expand(-1, cb, -1).reshape(ca * cb, -1)
        wb = b.weights[None].expand(ca, -1, -1).reshape(ca * cb, -1)
        diameter = bounding_diameter(a.points.flatten(0, 1), b.points.flatten(0, 1))
        loss = SamplesLoss(
            "sinkhorn", p=2, blur=self.eps**0.5, scaling=self.scaling, cost=squared_distances, debias=True,
            diameter=diameter, backend="tensorized",
        )
        return loss(wa, pa, wb, pb).reshape(ca, cb).clamp_min(0)
