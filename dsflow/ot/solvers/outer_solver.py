"""The interface of the OTDD's outer solvers (chosen in YAML by class_path): a value from settings and costs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.labels.products import SharedProducts

__all__ = ["OuterSolver"]


class OuterSolver(ABC):
    """Computes the OTDD value (a scalar, differentiable in x and the label tables) from settings and costs."""

    @abstractmethod
    def __call__(
        self, x: Tensor, x_ref: Tensor, labels: LabelCosts, settings: OTDDSettings,
        weights: Tensor | None = None, ref_weights: Tensor | None = None,
    ) -> Tensor:
        """Args: x (n, d), x_ref (m, d), labels, settings, weights (n,) and ref_weights (m,) summing to 1
        (None: uniform)."""

    def shared_products(self, device: torch.device | None = None) -> SharedProducts | None:
        """A fresh bundle for the inner products this solver reuses from the label tables of one step on ``device``
        (:mod:`dsflow.ot.labels.products`), or None when it builds every cost itself (the default)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State that a checkpoint must keep for a resumed flow to continue exactly (none for stateless solvers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; stateless solvers accept only an empty state."""
        if state:
            raise ValueError(f"{type(self).__name__}: holds no state, got keys {sorted(state)}")
