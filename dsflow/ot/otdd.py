"""The optimal transport dataset distance (OTDD) with a Sinkhorn divergence as outer problem (paper section 3.3).

A labeled sample z = (x, y) is compared to z' = (x', y') with the label-augmented ground cost
(:mod:`dsflow.ot.costs`)

.. math::
    d_Z(z, z')^2 = \\lambda_x |x - x'|^2 + \\lambda_y W_2^2(\\alpha_y, \\alpha_{y'}),

where alpha_y is the feature distribution of class y. The OTDD is the debiased entropic OT cost
(Sinkhorn divergence, Feydy et al. 2019)

.. math::
    S_\\varepsilon(\\rho, \\beta) = OT_\\varepsilon(\\rho, \\beta) - OT_\\varepsilon(\\rho, \\rho)/2 - OT_\\varepsilon(\\beta, \\beta)/2,

with OT_eps(a, b) = min_pi <pi, C> + eps KL(pi | a x b). The three problems need the label tables between the
source classes (ss), source and reference classes (sr) and reference classes (rr).

:func:`otdd` is a convenience: it hands the problem to a solver (:class:`~dsflow.ot.OuterSolver`),
by default a fresh :class:`~dsflow.ot.WarmSinkhorn` (the flows' fast solver, as in
:class:`~dsflow.flows.OTDDTerm`); :class:`~dsflow.ot.GeomlossSolver` is the dense reference every faster solver
is tested against, and the one to pass for gradients in x_ref, rr or the weights.
"""

from __future__ import annotations

from torch import Tensor

from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.solvers.outer_solver import OuterSolver
from dsflow.ot.solvers.warm_sinkhorn import WarmSinkhorn

__all__ = ["otdd"]


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
        labels: label rows and tables, see :class:`~dsflow.ot.costs.LabelCosts`.
        settings: outer OT settings.
        weights: (n,) source masses summing to 1 (uniform by default).
        ref_weights: (m,) reference masses summing to 1 (uniform by default).
        solver: how the outer problem is solved; None: a new :class:`~dsflow.ot.WarmSinkhorn` with its defaults
            (cold, since it is new; a caller that solves a sequence of close problems passes one and keeps it).
    """
    if x.ndim != 2 or x_ref.ndim != 2 or x.shape[1] != x_ref.shape[1]:
        raise ValueError(f"otdd: expected x (n, d) and x_ref (m, d), got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    solver = solver if solver is not None else WarmSinkhorn()
    return solver(x, x_ref, labels, settings, weights, ref_weights)
