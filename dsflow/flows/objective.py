"""Objective terms F(rho) = sum_k w_k F_k(rho) (paper eq. 12), each a class chosen in YAML.

Each term maps the current :class:`FlowState` to a scalar estimate of its functional for the empirical measure
rho = (1/n) sum_i delta_{z_i}. The flow multiplies the particles' gradient by n (eq. 17, see
:mod:`dsflow.flows.module`), so terms are written as plain means.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from jsonargparse.typing import NonNegativeFloat, PositiveFloat
from torch import Tensor, nn

from dsflow.ot.label_distance import GaussianLabelDistance, LabelDistance
from dsflow.ot.otdd import LabelCosts, OTDDSettings, otdd

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
    """

    x: Tensor
    y: Tensor
    num_classes: int
    x_ref: Tensor
    y_ref: Tensor
    num_ref_classes: int
    labels: LabelCosts | None = None


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
    ) -> None:
        super().__init__(weight)
        self.settings = OTDDSettings(eps=eps, lambda_x=lambda_x, lambda_y=lambda_y, scaling=scaling)
        self.label_distance = label_distance if label_distance is not None else GaussianLabelDistance()

    @property
    def name(self) -> str:
        return "otdd"

    def value(self, state: FlowState) -> Tensor:
        if state.labels is None:
            raise ValueError("OTDDTerm: the flow state carries no label tables")
        return otdd(state.x, state.x_ref, state.labels, self.settings)


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

    @property
    def label_distance(self) -> LabelDistance | None:
        """The label distance of the (first) term that needs label tables, if any."""
        for term in self.terms:
            if term.needs_labels:
                return term.label_distance  # type: ignore[attr-defined]
        return None

    def forward(self, state: FlowState) -> FlowLoss:
        parts = {name: term.weight * term.value(state) for name, term in zip(self.names, self.terms)}
        total = torch.stack(list(parts.values())).sum()
        return FlowLoss(total, parts)


def _unique_names(names: list[str]) -> list[str]:
    out, seen = [], {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
