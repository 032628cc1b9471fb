"""Potential and interaction energies of a labeled point cloud (paper section 5, eqs. 9-11, Fig. 1, 8, 12).

Notation: x (n, d) features, y (n,) labels in [0, C). For the empirical measure rho = (1/n) sum_i delta_{z_i}:

* potential energy   V(rho) = int V(z) d rho(z)            ~ (1/n) sum_i V(x_i, y_i)          (:func:`potential_mean`)
* interaction energy W(rho) = 1/2 iint W(z - z') d rho d rho' ~ 1/(2 n^2) sum_{i,j} W(z_i, z_j) (:func:`interaction_mean`)

The first variation of V is V itself and that of W is W * rho (paper section 6.2), so after the flow's n-scaling
(eq. 17) particle i moves with velocity -grad V(z_i), respectively -(1/n) sum_j grad_1 W(z_i, z_j).

Every potential below returns the (n,) values V(x_i, y_i); every pairwise function returns the (n, n) matrix
W(z_i, z_j). Plain torch, differentiable in x, any float dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "norm_potential",
    "affine_potential",
    "class_affine_potential",
    "hinge_potential",
    "ball_potential",
    "collapse_potential",
    "pairwise_sq_distances",
    "pair_mask",
    "potential_mean",
    "interaction_mean",
]


def _check_x(x: Tensor, who: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{who}: expected features x of shape (n, d), got {tuple(x.shape)}")


def _safe_norm(v: Tensor) -> Tensor:
    """(...,) Euclidean norm over the last axis with a zero (not NaN) gradient at the origin."""
    sq = v.pow(2).sum(-1)
    return sq.clamp_min(torch.finfo(v.dtype).tiny).sqrt() * (sq > 0)


def norm_potential(x: Tensor) -> Tensor:
    """(n,) V(x) = |x| (paper section 5, "constraining the norm of the features")."""
    _check_x(x, "norm_potential")
    return _safe_norm(x)


def affine_potential(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(n,) V(x) = |A x - b|.

    Args:
        x: (n, d) features.
        a: (k, d) matrix A.
        b: (k,) offset b.
    """
    _check_x(x, "affine_potential")
    if a.ndim != 2 or a.shape[1] != x.shape[1] or b.shape != (a.shape[0],):
        raise ValueError(f"affine_potential: need A (k, {x.shape[1]}) and b (k,), got {tuple(a.shape)} and {tuple(b.shape)}")
    return _safe_norm(x @ a.T - b)  # (n, k) -> (n,)


def class_affine_potential(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(n,) V(x, y) = |A_y x - b_y|: a different affine map per class.

    Args:
        x: (n, d) features.
        y: (n,) labels in [0, C).
        a: (C, k, d) one matrix per class.
        b: (C, k) one offset per class.
    """
    _check_x(x, "class_affine_potential")
    if a.ndim != 3 or a.shape[2] != x.shape[1] or b.shape != a.shape[:2]:
        raise ValueError(
            f"class_affine_potential: need A (C, k, {x.shape[1]}) and b (C, k), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if y.shape != (x.shape[0],) or int(y.max()) >= a.shape[0] or int(y.min()) < 0:
        raise ValueError(f"class_affine_potential: labels must be (n,) in [0, {a.shape[0]}), got range [{int(y.min())}, {int(y.max())}]")
    r = torch.einsum("nkd,nd->nk", a[y], x) - b[y]  # (n, k)
    return _safe_norm(r)


def hinge_potential(x: Tensor, y: Tensor, w: Tensor, b: float, positive: int, negative: int, margin: float) -> Tensor:
    """(n,) margin hinge V(x, y) = max(0, margin - s_y (w^T x - b)), s_y = +1 / -1 for the two classes, 0 otherwise.

    The paper's margin-inducing potential (section 5, Fig. 1) written with an explicit margin: at zero energy every
    particle of ``positive`` lies on the side w^T x - b >= margin and every one of ``negative`` on
    w^T x - b <= -margin, so the two classes are linearly separable along w. Other classes feel nothing.

    Args:
        x: (n, d) features.
        y: (n,) labels.
        w: (d,) direction.
        b: offset of the separating hyperplane.
        positive: label sent to the positive side.
        negative: label sent to the negative side.
        margin: half-width of the band that is emptied (>= 0).
    """
    _check_x(x, "hinge_potential")
    if w.shape != (x.shape[1],):
        raise ValueError(f"hinge_potential: direction w must have shape ({x.shape[1]},), got {tuple(w.shape)}")
    sign = (y == positive).to(x.dtype) - (y == negative).to(x.dtype)  # (n,) +1, -1 or 0
    return torch.relu(margin - sign * (x @ w - b)) * sign.abs()


def ball_potential(x: Tensor, centre: Tensor, radius: float) -> Tensor:
    """(n,) ball constraint V(x) = (|x - x0| - tau)_+ (paper Fig. 8a-b): zero inside the ball of radius tau."""
    _check_x(x, "ball_potential")
    if centre.shape != (x.shape[1],):
        raise ValueError(f"ball_potential: centre must have shape ({x.shape[1]},), got {tuple(centre.shape)}")
    return torch.relu(_safe_norm(x - centre) - radius)


def collapse_potential(x: Tensor, dims: list[int], target: Tensor) -> Tensor:
    """(n,) V(x) = 1/2 sum_{k in dims} (x_k - t_k)^2: collapses the chosen coordinates onto t (paper Fig. 12).

    Squared rather than absolute: the pull is proportional to the distance, so the flow settles smoothly instead
    of oscillating around the plane with a constant-size step.
    """
    _check_x(x, "collapse_potential")
    if not dims or any(not 0 <= k < x.shape[1] for k in dims):
        raise ValueError(f"collapse_potential: dims must be a non-empty list of indices in [0, {x.shape[1]}), got {dims}")
    if target.shape != (len(dims),):
        raise ValueError(f"collapse_potential: target must have shape ({len(dims)},), got {tuple(target.shape)}")
    return 0.5 * (x[:, dims] - target).pow(2).sum(-1)


def pairwise_sq_distances(x: Tensor, max_diff_dim: int = 64) -> Tensor:
    """(n, n) |x_i - x_j|^2.

    By differences when d <= ``max_diff_dim`` (exact, no cancellation); in higher dimension by the expansion
    |a|^2 + |b|^2 - 2 a.b, which needs no (n, n, d) tensor. Either way the diagonal is exactly 0 with a zero gradient.
    """
    _check_x(x, "pairwise_sq_distances")
    if x.shape[1] <= max_diff_dim:
        return (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)  # (n, n)
    sq = x.pow(2).sum(-1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)  # (n, n)
    return d2 * (1 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))


def pair_mask(y: Tensor, pairs: str) -> Tensor | None:
    """(n, n) boolean mask of the pairs an interaction acts on: "all" (None), "different" or "same" labels."""
    if pairs == "all":
        return None
    if pairs == "different":
        return y[:, None] != y[None, :]
    if pairs == "same":
        return y[:, None] == y[None, :]
    raise ValueError(f"pair_mask: pairs must be 'all', 'different' or 'same', got {pairs!r}")


def potential_mean(values: Tensor) -> Tensor:
    """V(rho) ~ (1/n) sum_i V(z_i) from the (n,) values."""
    return values.mean()


def interaction_mean(w: Tensor, mask: Tensor | None = None) -> Tensor:
    """W(rho) ~ 1/(2 n^2) sum_{i,j} W(z_i, z_j) from the (n, n) matrix, pairs outside ``mask`` counting 0."""
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"interaction_mean: expected a square (n, n) matrix, got {tuple(w.shape)}")
    if mask is not None:
        w = torch.where(mask, w, torch.zeros_like(w))
    return 0.5 * w.mean()
