"""Label-to-label distances W_2^2(alpha_c, alpha_c') between the class-conditional feature distributions.

Three variants, chosen in YAML by class_path:

* :class:`GaussianLabelDistance`: each class is approximated by N(mu_c, cov_c) and compared in closed form
  (Bures-Wasserstein, :mod:`dsflow.ot.labels.bures`).
* :class:`DiagonalGaussianLabelDistance`: the same with the variances only, N(mu_c, diag(var_c)) (cheap in high d).
* :class:`ExactLabelDistance`: OT between the samples of the two classes themselves (debiased Sinkhorn with a
  small blur, all class pairs in one batched geomloss call), differentiable in the samples.

Each variant turns a labeled set into a *summary* once (:meth:`LabelDistance.summarize`), and compares two
summaries (:meth:`LabelDistance.table`), so that the summary of a fixed reference dataset is computed once. The
Gaussian variants also compare label Gaussians that are parameters (jd-fl, jd-vl, :mod:`dsflow.flows.joint`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from geomloss import SamplesLoss
from torch import Tensor

from dsflow.ot.distances import bounding_diameter, squared_distances
from dsflow.ot.labels.bures import bures_pair_table, bures_wasserstein_table
from dsflow.ot.labels.class_layout import ClassLayout, LayoutCache
from dsflow.ot.labels.nuclear import NuclearNorms, default_nuclear_norms
from dsflow.ot.labels.products import SharedProducts
from dsflow.ot.labels.stats import LabelStats, class_stats, group_by_class

__all__ = [
    "LabelDistance", "BaseGaussianLabelDistance", "GaussianLabelDistance", "DiagonalGaussianLabelDistance",
    "DiagonalStats", "ExactLabelDistance", "ClassSamples",
]


class LabelDistance(ABC):
    """Distances between the classes of two labeled sets."""

    #: fewest samples a (non-empty) class may have
    min_class_size: int = 1

    @abstractmethod
    def summarize(self, x: Tensor, y: Tensor, num_classes: int, layouts: LayoutCache | None = None) -> Any:
        """What :meth:`table` needs of the labeled set x (n, d), y (n,); ``layouts`` keeps the class layout of y
        for the next call (:mod:`dsflow.ot.labels.class_layout`; None: computed afresh)."""

    @abstractmethod
    def table(self, a: Any, b: Any, products: SharedProducts | None = None) -> Tensor:
        """(Ca, Cb) squared label distances between the classes of two summaries; ``products`` receives the
        inner products a solver may reuse (:mod:`dsflow.ot.labels.products`; variants that compute none ignore it)."""

    def self_table(self, a: Any, products: SharedProducts | None = None) -> Tensor:
        """(Ca, Ca) squared label distances among the classes of one summary (symmetric, zero diagonal)."""
        return self.table(a, a, products)

    def __call__(self, x_a: Tensor, y_a: Tensor, c_a: int, x_b: Tensor, y_b: Tensor, c_b: int) -> Tensor:
        """(Ca, Cb) squared distances between the classes of (x_a, y_a) and (x_b, y_b)."""
        return self.table(self.summarize(x_a, y_a, c_a), self.summarize(x_b, y_b, c_b))


def _layout(layouts: LayoutCache | None, y: Tensor, num_classes: int) -> ClassLayout | None:
    return None if layouts is None else layouts.get(y, num_classes)


class BaseGaussianLabelDistance(LabelDistance, ABC):
    """A label distance between class Gaussians, which also compares label Gaussians given as parameters."""

    min_class_size = 2

    @abstractmethod
    def gaussians(self, stats: LabelStats) -> Any:
        """The summary of class Gaussians given by means and covariances (or factors), e.g. parameters (jd-fl)."""

    @abstractmethod
    def table_from_diagonal(self, means: Tensor, stds: Tensor, b: Any) -> Tensor:
        """(n, Cb) distances from the Gaussians N(means_i, diag(stds_i^2)) (means, stds (n, d)) to the classes of
        summary ``b`` (jd-vl: one Gaussian per particle); differentiable in means and stds."""


class GaussianLabelDistance(BaseGaussianLabelDistance):
    """Bures-Wasserstein distance between class Gaussians N(mu_c, cov_c); summaries are :class:`LabelStats`.

    Args:
        nuclear: how the cross terms (nuclear norms) are computed, :class:`~dsflow.ot.labels.nuclear.EigenNuclearNorms` or
            :class:`~dsflow.ot.labels.nuclear.NewtonSchulzNuclearNorms`; None: by the device of the data at each call
            (eigensolvers on a CPU, matrix products elsewhere: :func:`~dsflow.ot.labels.nuclear.default_nuclear_norms`).
    """

    def __init__(self, nuclear: NuclearNorms | None = None) -> None:
        self.nuclear = nuclear

    def _nuclear(self, a: LabelStats) -> NuclearNorms:
        return self.nuclear if self.nuclear is not None else default_nuclear_norms(a.means.device)

    def summarize(self, x: Tensor, y: Tensor, num_classes: int, layouts: LayoutCache | None = None) -> LabelStats:
        return class_stats(x, y, num_classes, layout=_layout(layouts, y, num_classes))

    def table(self, a: LabelStats, b: LabelStats, products: SharedProducts | None = None) -> Tensor:
        if _needs_grad(a, b):
            return bures_wasserstein_table(a, b, self._nuclear(a))
        return bures_pair_table(a, b, products, self._nuclear(a))  # batched over pairs: same values, no autograd

    def self_table(self, a: LabelStats, products: SharedProducts | None = None) -> Tensor:
        if _needs_grad(a):
            return self.table(a, a)
        return bures_pair_table(a, products=products, nuclear=self._nuclear(a))  # upper triangle only

    def gaussians(self, stats: LabelStats) -> LabelStats:
        return stats

    def table_from_diagonal(self, means: Tensor, stds: Tensor, b: LabelStats) -> Tensor:
        src = LabelStats(means, torch.diag_embed(stds.pow(2)), None, means.new_ones(means.shape[0]))
        return self.table(b, src).transpose(0, 1)  # (n, Cb); square roots of b's (fixed) side only


def _needs_grad(*stats: LabelStats) -> bool:
    """Whether a table of these statistics must be differentiable."""
    tensors = [t for s in stats for t in (s.means, s.covs, s.factors) if t is not None]
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


@dataclass(frozen=True)
class DiagonalStats:
    """Diagonal Gaussian summary of each class.

    Attributes:
        means: (C, d) class means mu_c.
        variances: (C, d) per-feature class variances var_c (the diagonal of cov_c).
        counts: (C,) samples per class (float; weights for parameters).
    """

    means: Tensor
    variances: Tensor
    counts: Tensor

    @classmethod
    def of(cls, stats: LabelStats) -> "DiagonalStats":
        """The diagonals of full class statistics."""
        if stats.factors is not None:
            var = stats.factors.pow(2).sum(-1)  # (C, d)
        else:
            var = torch.diagonal(stats.full_covs(), dim1=-2, dim2=-1)  # the stored covs: factors are None
        return cls(stats.means, var, stats.counts)


def diagonal_bures_table(a: DiagonalStats, b: DiagonalStats) -> Tensor:
    """(Ca, Cb) W_2^2 = |mu - mu'|^2 + |sqrt(var) - sqrt(var')|^2 between diagonal Gaussians."""
    mean_term = torch.cdist(a.means, b.means).pow(2)  # (Ca, Cb)
    sd_term = torch.cdist(a.variances.clamp_min(0).sqrt(), b.variances.clamp_min(0).sqrt()).pow(2)
    return mean_term + sd_term


class DiagonalGaussianLabelDistance(BaseGaussianLabelDistance):
    """Bures-Wasserstein distance between diagonal class Gaussians N(mu_c, diag(var_c)), W_2^2 =
    |mu - mu'|^2 + |sqrt(var) - sqrt(var')|^2 (diagonal Gaussians commute); summaries are :class:`DiagonalStats`."""

    def summarize(self, x: Tensor, y: Tensor, num_classes: int, layouts: LayoutCache | None = None) -> DiagonalStats:
        return DiagonalStats.of(class_stats(x, y, num_classes, layout=_layout(layouts, y, num_classes)))

    def table(self, a: DiagonalStats, b: DiagonalStats, products: SharedProducts | None = None) -> Tensor:
        return diagonal_bures_table(a, b)

    def gaussians(self, stats: LabelStats) -> DiagonalStats:
        return DiagonalStats.of(stats)

    def table_from_diagonal(self, means: Tensor, stds: Tensor, b: DiagonalStats) -> Tensor:
        return diagonal_bures_table(DiagonalStats(means, stds.pow(2), means.new_ones(means.shape[0])), b)  # (n, Cb)


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

    def summarize(self, x: Tensor, y: Tensor, num_classes: int, layouts: LayoutCache | None = None) -> ClassSamples:
        layout = _layout(layouts, y, num_classes)
        points = group_by_class(x, y, num_classes, layout)  # (C, r, d)
        counts = layout.counts if layout is not None else torch.bincount(y, minlength=num_classes)
        r = points.shape[1]
        mask = torch.arange(r, device=x.device)[None, :] < counts[:, None]  # (C, r)
        weights = mask.to(x.dtype) / counts.clamp_min(1).to(x.dtype)[:, None]
        return ClassSamples(points, weights)

    def table(self, a: ClassSamples, b: ClassSamples, products: SharedProducts | None = None) -> Tensor:
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
        values: Tensor = loss(wa, pa, wb, pb)  # (Ca Cb,)
        return values.reshape(ca, cb).clamp_min(0)
