"""FlowLike: what callbacks read of a flow, so that they depend on this interface and not on FlowModule.

Lightning hands callbacks the module as a ``LightningModule``; a callback hook that needs the flow calls
:func:`as_flow`, which checks the members and returns the module typed as :class:`FlowLike` (a flow callback
given to another module fails there, naming what is missing).
"""

from __future__ import annotations

from typing import Protocol, cast

from torch import Tensor

from dsflow.flows.objective import FlowLoss
from dsflow.flows.particles import Particles, Reference

__all__ = ["FlowLike", "as_flow", "particle_features"]


class FlowLike(Protocol):
    """A flow as callbacks see it (:class:`~dsflow.flows.FlowModule` is one).

    Attributes:
        particles: the flowing dataset: features x (n, d), labels y (n,), ``feature_shape``, ``num_classes``.
        reference: the fixed reference: features (m, d), labels (m,), ``num_classes``.
        last_loss: F after the latest step, the mean over processes (None before the first step).
    """

    particles: Particles
    reference: Reference
    last_loss: FlowLoss | None

    def compute_objective(self, keep_state: bool = False) -> FlowLoss:
        """F at the current particles: this process's share of the reference shards (``keep_state``: leaving the
        solvers' warm starts as they were)."""
        ...

    def global_loss(self, loss: FlowLoss) -> FlowLoss:
        """``loss`` detached and averaged over processes (a collective: every rank calls it)."""
        ...


_MEMBERS = ("particles", "reference", "last_loss", "compute_objective", "global_loss")


def as_flow(module: object, reader: str) -> FlowLike:
    """``module`` typed as a :class:`FlowLike`; a ``TypeError`` naming ``reader`` and the missing members if it
    is not one (e.g. a flow callback given to ``train.py``)."""
    missing = [name for name in _MEMBERS if not hasattr(module, name)]
    if missing:
        raise TypeError(
            f"{reader} reads a flow (e.g. dsflow.flows.FlowModule), but {type(module).__name__} has no "
            f"{', '.join(missing)}; use it with flow.py runs"
        )
    return cast(FlowLike, module)


def particle_features(flow: FlowLike) -> Tensor:
    """The particles' current features x (n, d), detached (not copied)."""
    x = flow.particles.x
    if x is None:
        raise ValueError("the flow has no particles yet: they are built from its data when fitting starts")
    return x.detach()
