"""The optimal transport dataset distance (OTDD) with a Sinkhorn divergence as outer problem (paper section 3.3).

A labeled sample z = (x, y) is compared to z' = (x', y') with the label-augmented ground cost

.. math::
    d_Z(z, z')^2 = \\lambda_x |x - x'|^2 + \\lambda_y W_2^2(\\alpha_y, \\alpha_{y'}),

where alpha_y is the feature distribution of class y. The OTDD is the debiased entropic OT cost
(Sinkhorn divergence, Feydy et al. 2019)

.. math::
    S_\\varepsilon(\\rho, \\beta) = OT_\\varepsilon(\\rho, \\beta) - OT_\\varepsilon(\\rho, \\rho)/2 - OT_\\varepsilon(\\beta, \\beta)/2,

with OT_eps(a, b) = min_pi <pi, C> + eps KL(pi | a x b). The three problems need the label tables between the
source classes (ss), source and reference classes (sr) and reference classes (rr). Labels are carried as row
indices into these tables, so a "label" may be a class (fd-fl, jd-fl) or a particle's own Gaussian (jd-vl).

geomloss solves the three problems (log-domain, epsilon-scaling) and differentiates the value through the
converged potentials (the envelope theorem), not through the iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from geomloss import SamplesLoss
from torch import Tensor

from dsflow.ot.distances import bounding_diameter, squared_distances

if TYPE_CHECKING:
    from dsflow.ot.solvers import OuterSolver

__all__ = ["LabelCosts", "OTDDSettings", "otdd", "augmented_cost"]


class LabelCosts(NamedTuple):
    """Squared label distances and which row each sample uses.

    Attributes:
        src_index: (n,) row of each source sample in ``ss`` and ``sr``.
        ref_index: (m,) row of each reference sample in ``rr`` (column in ``sr``).
        ss: (Ls, Ls) distances among source labels.
        sr: (Ls, Lr) distances from source to reference labels.
        rr: (Lr, Lr) distances among reference labels.
    """

    src_index: Tensor
    ref_index: Tensor
    ss: Tensor
    sr: Tensor
    rr: Tensor

    def joint(self) -> Tensor:
        """((Ls + Lr), (Ls + Lr)) table over source labels followed by reference labels."""
        top = torch.cat([self.ss, self.sr], 1)
        bottom = torch.cat([self.sr.transpose(0, 1), self.rr], 1)
        return torch.cat([top, bottom], 0)


@dataclass(frozen=True)
class OTDDSettings:
    """Settings of the outer OT problem.

    Attributes:
        eps: entropic regularisation epsilon, in units of the ground cost d_Z^2 (geomloss blur = eps ** 0.5).
        lambda_x: weight of the feature cost |x - x'|^2.
        lambda_y: weight of the label cost W_2^2(alpha_y, alpha_y').
        scaling: epsilon-scaling ratio in (0, 1): closer to 1 is more accurate and slower.
        debias: subtract the self terms (Sinkhorn divergence; zero for identical datasets).
    """

    eps: float = 0.01
    lambda_x: float = 1.0
    lambda_y: float = 1.0
    scaling: float = 0.7
    debias: bool = True

    def __post_init__(self) -> None:
        if self.eps <= 0:
            raise ValueError(f"OTDDSettings: eps must be positive, got {self.eps}")
        if self.lambda_x < 0 or self.lambda_y < 0:
            raise ValueError(f"OTDDSettings: lambda_x and lambda_y must be >= 0, got {self.lambda_x}, {self.lambda_y}")
        if not 0 < self.scaling < 1:
            raise ValueError(f"OTDDSettings: scaling must lie in (0, 1), got {self.scaling}")


def augmented_cost(x_a: Tensor, x_b: Tensor, table: Tensor, lambda_x: float, lambda_y: float) -> Tensor:
    """(..., N, M) OTDD ground cost between samples that carry their label row as a last coordinate.

    Args:
        x_a: (..., N, d + 1) features followed by a row index into ``table``.
        x_b: (..., M, d + 1) same.
        table: (L, L) squared label distances.
    """
    ia = x_a[..., -1].round().long()
    ib = x_b[..., -1].round().long()
    feat = squared_distances(x_a[..., :-1], x_b[..., :-1])  # (..., N, M)
    label = table[ia[..., :, None], ib[..., None, :]]  # (..., N, M)
    return lambda_x * feat + lambda_y * label


def otdd(
    x: Tensor,
    x_ref: Tensor,
    labels: LabelCosts,
    settings: OTDDSettings = OTDDSettings(),
    weights: Tensor | None = None,
    ref_weights: Tensor | None = None,
    solver: OuterSolver | None = None,
) -> Tensor:
    """Debiased entropic OTDD between (x, labels) and (x_ref, labels); a scalar, differentiable in x and the tables.

    Args:
        x: (n, d) source features.
        x_ref: (m, d) reference features.
        labels: label rows and tables, see :class:`LabelCosts`.
        settings: outer OT settings.
        weights: (n,) source masses summing to 1 (uniform by default).
        ref_weights: (m,) reference masses summing to 1 (uniform by default).
        solver: how the outer problem is solved (:mod:`dsflow.ot.solvers`); None: this function's dense
            geomloss path, the reference every faster solver is tested against.
    """
    if x.ndim != 2 or x_ref.ndim != 2 or x.shape[1] != x_ref.shape[1]:
        raise ValueError(f"otdd: expected x (n, d) and x_ref (m, d), got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    if solver is not None:
        return solver(x, x_ref, labels, settings, weights, ref_weights)
    ls = labels.ss.shape[0]
    # geomloss differentiates each cost matrix through its left argument only (C_xy = cost(x, y.detach()),
    # C_yx = cost(y, x.detach()), C_xx = cost(x, x.detach())), so a table captured by the cost is differentiated
    # in both C_xy and C_yx (and twice in the self terms): exactly twice the envelope gradient sum pi dC. Halving
    # the table's gradient (its value unchanged) makes gradients in the label tables exact (jd-fl, jd-vl).
    table = labels.joint()
    table = 0.5 * table + 0.5 * table.detach()
    za = torch.cat([x, labels.src_index.to(x.dtype)[:, None]], 1)  # (n, d + 1)
    zb = torch.cat([x_ref, (ls + labels.ref_index).to(x.dtype)[:, None]], 1)  # (m, d + 1)
    s = settings
    diameter = (s.lambda_x * bounding_diameter(x, x_ref) ** 2 + s.lambda_y * float(table.detach().max())) ** 0.5
    if not math.isfinite(diameter):
        raise FloatingPointError(f"otdd: the cost scale is {diameter} (features or label distances are NaN/inf or overflow)")

    def cost(a: Tensor, b: Tensor) -> Tensor:
        return augmented_cost(a, b, table, s.lambda_x, s.lambda_y)

    loss = SamplesLoss(
        "sinkhorn", p=2, blur=s.eps**0.5, scaling=s.scaling, cost=cost, debias=s.debias,
        diameter=diameter + 1e-6, backend="tensorized",
    )
    if weights is None:
        weights = x.new_full((x.shape[0],), 1.0 / x.shape[0])
    if ref_weights is None:
        ref_weights = x_ref.new_full((x_ref.shape[0],), 1.0 / x_ref.shape[0])
    return loss(weights, za, ref_weights, zb)
