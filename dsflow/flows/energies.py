"""Energy terms of the objective (paper section 5): potentials V(rho) and interactions W(rho), chosen in YAML.

Each class wraps a plain-torch energy of :mod:`dsflow.ot.energies` as an :class:`ObjectiveTerm` with its own
``weight``; they combine freely with each other and with :class:`~dsflow.flows.objective.OTDDTerm` (or are used
without it). Parameters given in YAML (lists) become non-persistent buffers, so they follow the module's device
and dtype of the particles at evaluation time.

The entropy (internal energy int rho log rho) is not a term: its gradient flow is Brownian motion, realised as
noise in the step (:class:`~dsflow.flows.module.FlowModule` ``temperature``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dsflow.flows.objective import FlowState, ObjectiveTerm
from dsflow.ot.energies import energy_functions as E
from dsflow.ot.energies.interaction_kernels import ExponentialKernel, Kernel, NegativeSquaredDistance

__all__ = [
    "NormTerm",
    "AffineTerm",
    "ClassAffineTerm",
    "MarginTerm",
    "BallTerm",
    "CollapseTerm",
    "InteractionTerm",
    "ClassRepulsionTerm",
    "ClassSpreadTerm",
]


class _Potential(ObjectiveTerm):
    """V(rho) = mean over particles of V(z_i)."""

    def _buffer(self, name: str, value: list | float) -> None:
        self.register_buffer(name, torch.as_tensor(value, dtype=torch.float64), persistent=False)

    def _get(self, name: str, like: Tensor) -> Tensor:
        return getattr(self, name).to(device=like.device, dtype=like.dtype)

    def potential(self, state: FlowState) -> Tensor:
        """(n,) V(z_i)."""
        raise NotImplementedError

    def value(self, state: FlowState) -> Tensor:
        return E.potential_mean(self.potential(state))


class NormTerm(_Potential):
    """V(z) = |x| (section 5)."""

    def potential(self, state: FlowState) -> Tensor:
        return E.norm_potential(state.x)


class AffineTerm(_Potential):
    """V(z) = |A x - b| (section 5).

    Args:
        weight: multiplier of the term.
        a: (k, d) matrix A, as nested lists.
        b: (k,) offset b.
    """

    a: Tensor  # buffers
    b: Tensor

    def __init__(self, a: list[list[float]], b: list[float], weight: float = 1.0) -> None:
        super().__init__(weight)
        self._buffer("a", a)
        self._buffer("b", b)
        if self.a.ndim != 2 or self.b.shape != (self.a.shape[0],):
            raise ValueError(f"AffineTerm: need a (k, d) and b (k,), got {tuple(self.a.shape)} and {tuple(self.b.shape)}")

    def potential(self, state: FlowState) -> Tensor:
        return E.affine_potential(state.x, self._get("a", state.x), self._get("b", state.x))


class ClassAffineTerm(_Potential):
    """V(z) = |A_y x - b_y|, one affine map per class (section 5).

    Args:
        a: (C, k, d) one matrix per class.
        b: (C, k) one offset per class.
    """

    a: Tensor  # buffers
    b: Tensor

    def __init__(self, a: list[list[list[float]]], b: list[list[float]], weight: float = 1.0) -> None:
        super().__init__(weight)
        self._buffer("a", a)
        self._buffer("b", b)
        if self.a.ndim != 3 or self.b.shape != self.a.shape[:2]:
            raise ValueError(f"ClassAffineTerm: need a (C, k, d) and b (C, k), got {tuple(self.a.shape)} and {tuple(self.b.shape)}")

    @property
    def name(self) -> str:
        return "class_affine"

    def potential(self, state: FlowState) -> Tensor:
        return E.class_affine_potential(state.x, state.y, self._get("a", state.x), self._get("b", state.x))


class MarginTerm(_Potential):
    """Hinge margin V(z) = max(0, margin - s_y (w^T x - b)) separating two classes along w (section 5, Fig. 1).

    Args:
        w: (d,) direction normal to the separating hyperplane.
        b: hyperplane offset.
        positive: label sent to w^T x - b >= margin.
        negative: label sent to w^T x - b <= -margin.
        margin: half-width of the emptied band.
    """

    def __init__(
        self, w: list[float], b: float = 0.0, positive: int = 1, negative: int = 0, margin: float = 0.5, weight: float = 1.0
    ) -> None:
        super().__init__(weight)
        if positive == negative or margin < 0:
            raise ValueError(f"MarginTerm: need two different classes and margin >= 0, got {positive}, {negative}, {margin}")
        self._buffer("w", w)
        self.b, self.positive, self.negative, self.margin = float(b), positive, negative, float(margin)

    def potential(self, state: FlowState) -> Tensor:
        return E.hinge_potential(state.x, state.y, self._get("w", state.x), self.b, self.positive, self.negative, self.margin)


class BallTerm(_Potential):
    """Ball constraint V(z) = (|x - x0| - tau)_+ (Fig. 8a-b).

    Args:
        centre: (d,) x0.
        radius: tau >= 0.
    """

    def __init__(self, centre: list[float], radius: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(weight)
        if radius < 0:
            raise ValueError(f"BallTerm: radius must be >= 0, got {radius}")
        self._buffer("centre", centre)
        self.radius = float(radius)

    def potential(self, state: FlowState) -> Tensor:
        return E.ball_potential(state.x, self._get("centre", state.x), self.radius)


class CollapseTerm(_Potential):
    """Collapse V(z) = 1/2 sum_{k in dims} (x_k - t_k)^2 of chosen coordinates onto a plane (Fig. 12).

    Args:
        dims: feature indices to collapse.
        target: their target values (default 0).
    """

    def __init__(self, dims: list[int], target: list[float] | None = None, weight: float = 1.0) -> None:
        super().__init__(weight)
        if not dims:
            raise ValueError("CollapseTerm: dims must list at least one feature index")
        self.dims = list(dims)
        self._buffer("target", target if target is not None else [0.0] * len(dims))

    def potential(self, state: FlowState) -> Tensor:
        return E.collapse_potential(state.x, self.dims, self._get("target", state.x))


class InteractionTerm(ObjectiveTerm):
    """W(rho) = 1/2 iint W(x - x') d rho d rho' for a radial kernel, over all pairs or by label (eq. 11).

    Args:
        kernel: the kernel W (e.g. :class:`~dsflow.ot.energies.interaction_kernels.GaussianKernel`).
        pairs: "all" pairs, only pairs with "different" labels, or with the "same" label (W = 0 elsewhere).
        weight: multiplier of the term.
    """

    def __init__(self, kernel: Kernel, pairs: Literal["all", "different", "same"] = "all", weight: float = 1.0) -> None:
        super().__init__(weight)
        E.pair_mask(torch.zeros(1, dtype=torch.long), pairs)  # validates `pairs`
        self.kernel = kernel
        self.pairs = pairs

    def value(self, state: FlowState) -> Tensor:
        sq = E.pairwise_sq_distances(state.x)  # (n, n)
        return E.interaction_mean(self.kernel(sq), E.pair_mask(state.y, self.pairs))


class ClassRepulsionTerm(InteractionTerm):
    """Class repulsion W = exp(-|x - x'| / scale) for y != y', 0 otherwise (section 5).

    Args:
        scale: length scale of the repulsion (the paper's is 1).
    """

    def __init__(self, scale: float = 1.0, weight: float = 1.0) -> None:
        super().__init__(ExponentialKernel(scale), "different", weight)

    @property
    def name(self) -> str:
        return "class_repulsion"


class ClassSpreadTerm(InteractionTerm):
    """W = -|x - x'|^2 for y != y', 0 otherwise (Fig. 8c-d): pushes the classes apart, without bound."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(NegativeSquaredDistance(), "different", weight)

    @property
    def name(self) -> str:
        return "class_spread"
