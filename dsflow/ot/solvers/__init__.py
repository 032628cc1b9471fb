"""Outer solvers: the OT problem between particles and reference under the augmented cost.

Doors: :class:`OuterSolver` (the interface), :class:`WarmSinkhorn` (the fast path: warm-started log-domain
Sinkhorn with kernel, block and multiscale variants, state in :class:`WarmState`) and :class:`GeomlossSolver`
(geomloss's dense reference path). The rooms behind them: ``log_sinkhorn`` (the sweeps and schedules),
``kernel_sinkhorn`` (the same sweeps in the scaling domain), ``blocks`` (ground costs and one sweep),
``multiscale`` (a coarse start), ``warm_state`` (what is kept between steps).
"""

from dsflow.ot.solvers.geomloss_solver import GeomlossSolver
from dsflow.ot.solvers.outer_solver import OuterSolver
from dsflow.ot.solvers.warm_sinkhorn import SinkhornCapWarning, WarmSinkhorn
from dsflow.ot.solvers.warm_state import WarmState

__all__ = [
    "GeomlossSolver",
    "OuterSolver",
    "SinkhornCapWarning",
    "WarmSinkhorn",
    "WarmState",
]
