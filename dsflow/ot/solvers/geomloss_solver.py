"""The dense reference solver of the OTDD's outer problem: geomloss's tensorized Sinkhorn divergence.

geomloss solves the three problems OT(a, b), OT(a, a), OT(b, b) (log domain, epsilon-scaling, a fixed number of
iterations) on features packed with their label row, and differentiates the value through the converged
potentials (the envelope theorem), not through the iterations. Every faster solver is tested against it.
"""

from __future__ import annotations

import math

import torch
from geomloss import SamplesLoss
from torch import Tensor

from dsflow.ot.costs import LabelCosts, OTDDSettings, augmented_cost
from dsflow.ot.distances import bounding_diameter
from dsflow.ot.solvers.outer_solver import OuterSolver

__all__ = ["GeomlossSolver"]


class GeomlossSolver(OuterSolver):
    """Dense reference path: geomloss ``SamplesLoss('sinkhorn', backend='tensorized')`` with the OTDD cost.

    geomloss differentiates the label tables through both cross potentials (its detach trick assumes the cost
    depends on the points only); the tables' gradient is halved so that it is the envelope gradient.
    Stateless: every call starts cold, and it builds its own costs (it shares no products with the tables).
    """

    def __call__(
        self, x: Tensor, x_ref: Tensor, labels: LabelCosts, settings: OTDDSettings,
        weights: Tensor | None = None, ref_weights: Tensor | None = None,
    ) -> Tensor:
        """Debiased entropic OTDD, a scalar differentiable in x, x_ref, the weights and the label tables.

        Args: x (n, d), x_ref (m, d), labels, settings, weights (n,) and ref_weights (m,) summing to 1 (None:
        uniform).
        """
        if x.ndim != 2 or x_ref.ndim != 2 or x.shape[1] != x_ref.shape[1]:
            raise ValueError(
                f"GeomlossSolver: expected x (n, d) and x_ref (m, d), got {tuple(x.shape)} and {tuple(x_ref.shape)}"
            )
        ls = labels.ss.shape[0]
        # geomloss differentiates each cost matrix through its left argument only (C_xy = cost(x, y.detach()),
        # C_yx = cost(y, x.detach()), C_xx = cost(x, x.detach())), so a table captured by the cost is
        # differentiated in both C_xy and C_yx (and twice in the self terms): exactly twice the envelope gradient
        # sum pi dC. Halving the table's gradient (its value unchanged) makes gradients in the label tables exact
        # (jd-fl, jd-vl).
        table = labels.joint()
        table = 0.5 * table + 0.5 * table.detach()
        za = torch.cat([x, labels.src_index.to(x.dtype)[:, None]], 1)  # (n, d + 1)
        zb = torch.cat([x_ref, (ls + labels.ref_index).to(x.dtype)[:, None]], 1)  # (m, d + 1)
        s = settings
        diameter = (s.lambda_x * bounding_diameter(x, x_ref) ** 2 + s.lambda_y * float(table.detach().max())) ** 0.5
        if not math.isfinite(diameter):
            raise FloatingPointError(
                f"otdd: the cost scale is {diameter} (features or label distances are NaN/inf or overflow)"
            )

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
        value: Tensor = loss(weights, za, ref_weights, zb)
        return value
