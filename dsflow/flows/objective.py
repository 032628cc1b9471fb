"""Objective terms F(rho) = sum_k w_k F_k(rho) (paper eq. 12), each a class chosen in YAML.

Each term maps the current :class:`FlowState` to a scalar estimate of its functional for the empirical measure
rho = (1/n) sum_i delta_{z_i}. The flow multiplies the particles' gradient by n (eq. 17, see
:mod:`dsflow.flows.module`), so terms are written as plain means.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from jsonargparse.typing import NonNegativeFloat, PositiveFloat
from torch import Tensor, nn

from dsflow.flows.distributed import ReferenceShards, ShardSolvers
from dsflow.flows.dynamics import TableInputs
from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.labels.class_layout import LayoutCache
from dsflow.ot.labels.label_distance import GaussianLabelDistance, LabelDistance
from dsflow.ot.otdd import otdd
from dsflow.ot.solvers.outer_solver import OuterSolver
from dsflow.ot.solvers.warm_sinkhorn import WarmSinkhorn

__all__ = ["FlowState", "FlowLoss", "ObjectiveTerm", "OTDDTerm", "Objective"]


@dataclass
class FlowState:
    """Everything a term may look at.

    Attributes:
        x: (n, d) particle features (requires grad during a step).
        y: (n,) particle labels in [0, num_classes).
        num_classes: C.
        x_ref: (m, d) reference features.
        y_ref: (m,) reference labels in [0, num_ref_classes).
        num_ref_classes: C'.
        labels: label rows and tables for the OTDD (None when no term needs them).
        shards: the reference shards this process evaluates (None: the whole reference as one shard); see
            :mod:`dsflow.flows.distributed`.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    x_ref: Tensor
    y_ref: Tensor
    num_ref_classes: int
    labels: LabelCosts | None = None
    shards: ReferenceShards | None = None


@dataclass
class FlowLoss:
    """The objective's value: ``total`` (scalar) and each weighted term by name in ``parts``."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


class ObjectiveTerm(nn.Module, ABC):
    """One weighted functional of the particles.

    Args:
        weight: multiplier of this term in F.
    """

    #: whether the term needs label tables (FlowState.labels)
    needs_labels: bool = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("Term").lower()

    @abstractmethod
    def value(self, state: FlowState) -> Tensor:
        """Unweighted scalar value of the functional."""


class OTDDTerm(ObjectiveTerm):
    """T_beta(rho) = OTDD(rho, beta): the debiased entropic dataset distance to the reference (section 3.3).

    Args:
        weight: multiplier of the term.
        eps: entropic regularisation (cost units).
        lambda_x: weight of the feature cost.
        lambda_y: weight of the label cost; 0 gives plain feature-only OT.
        scaling: epsilon-scaling ratio of the Sinkhorn solver.
        label_distance: how label-to-label distances are computed (Gaussian by default).
        solver: how the outer Sinkhorn problem is solved; by default the fast
            :class:`~dsflow.ot.WarmSinkhorn`, warm-started from the previous step's potentials (it
            holds them); :class:`~dsflow.ot.GeomlossSolver` is the dense reference path.

    The term owns what its label tables keep between steps: the class layouts of the labels (``layouts``,
    computed once per label vector), and it lends each step's tables a fresh bundle of the inner products its
    solver reuses (:meth:`table_inputs`), so two flows in one process share nothing.
    """

    needs_labels = True

    def __init__(
        self,
        weight: float = 1.0,
        eps: PositiveFloat = 0.01,
        lambda_x: NonNegativeFloat = 1.0,
        lambda_y: NonNegativeFloat = 1.0,
        scaling: PositiveFloat = 0.7,
        label_distance: LabelDistance | None = None,
        solver: OuterSolver | None = None,
    ) -> None:
        super().__init__(weight)
        self.settings = OTDDSettings(  # plain floats: checkpoints stay weights-only loadable
            eps=float(eps), lambda_x=float(lambda_x), lambda_y=float(lambda_y), scaling=float(scaling)
        )
        self.label_distance = label_distance if label_distance is not None else GaussianLabelDistance()
        self.solver = solver if solver is not None else WarmSinkhorn()
        self.shard_solvers = ShardSolvers()  # one copy of ``solver`` per reference shard (multi-process flows)
        self.layouts = LayoutCache()  # class layouts of the labels this term's tables have seen

    @property
    def name(self) -> str:
        return "otdd"

    def table_inputs(self, device: torch.device | None = None) -> TableInputs:
        """What this step's label tables are built with: the distance, the layouts, the solver's products bundle."""
        return TableInputs(self.label_distance, self.layouts, self.solver.shared_products(device))

    def get_extra_state(self) -> dict[str, Any]:
        """The solvers' warm-start state, kept in checkpoints so that a resumed flow continues exactly."""
        return {"solver": self.solver.state_dict(), "shards": self.shard_solvers.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.solver.load_state_dict(state.get("solver", {}))
        self.shard_solvers.load_state_dict(state.get("shards", {}))

    def value(self, state: FlowState) -> Tensor:
        if state.labels is None:
            raise ValueError("OTDDTerm: the flow state carries no label tables")
        if state.shards is not None:  # minibatch OTDD over this process's reference shards
            return state.shards.otdd(state.x, state.x_ref, state.labels, self.settings,
                                     lambda s: self.shard_solvers(self.solver, s))
        return otdd(state.x, state.x_ref, state.labels, self.settings, solver=self.solver)


class Objective(nn.Module):
    """F = sum of weighted terms.

    Args:
        terms: the terms; names must be distinct (a repeated class gets a numeric suffix).
    """

    def __init__(self, terms: list[ObjectiveTerm]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("Objective: at least one term is needed")
        self.terms = nn.ModuleList(terms)
        self.names = _unique_names([t.name for t in terms])

    @contextmanager
    def state_kept(self, keep: bool = True) -> Iterator[None]:
        """A block whose solves leave no trace (with ``keep``): every term's warm-start state (its extra state) is
        put back after it. An evaluation between steps (the final objective of a run) must not change the next
        step's start, nor what a checkpoint written next holds: else resuming a finished run would not continue it
        exactly."""
        saved = [(t, t.get_extra_state()) for t in self.terms
                 if keep and type(t).get_extra_state is not nn.Module.get_extra_state]
        try:
            yield
        finally:
            for term, state in saved:
                term.set_extra_state(state)

    @property
    def label_distance(self) -> LabelDistance | None:
        """The label distance of the (first) term that needs label tables, if any."""
        for term in self.terms:
            if term.needs_labels:
                return term.label_distance  # type: ignore[return-value]  # terms that need labels carry one
        return None

    def table_inputs(self, device: torch.device | None = None) -> TableInputs | None:
        """This step's :class:`~dsflow.flows.dynamics.TableInputs` (for data on ``device``) from the (first) term
        that needs label tables."""
        for term in self.terms:
            if term.needs_labels:
                return term.table_inputs(device)  # type: ignore[operator]  # terms that need labels provide them
        return None

    def forward(self, state: FlowState) -> FlowLoss:
        terms: list[ObjectiveTerm] = list(self.terms)  # type: ignore[arg-type]  # built from ObjectiveTerms
        parts = {name: term.weight * term.value(state) for name, term in zip(self.names, terms)}
        total = torch.stack(list(parts.values())).sum()
        return FlowLoss(total, parts)


def _unique_names(names: list[str]) -> list[str]:
    out, seen = [], dict[str, int]()
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
