"""Small helpers shared by the Sinkhorn solvers: ground costs and the epsilon-scaling diameter."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["squared_distances", "bounding_diameter"]


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """(..., N, M) squared Euclidean distances between a (..., N, d) and b (..., M, d)."""
    sq = a.pow(2).sum(-1)[..., :, None] + b.pow(2).sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return sq.clamp_min(0)


def bounding_diameter(*clouds: Tensor) -> float:
    """Diagonal of the bounding box of all points (..., d): an upper bound on any distance between them.

    Used as the starting scale of epsilon-scaling, as geomloss does for its own costs.
    """
    pts = torch.cat([c.detach().reshape(-1, c.shape[-1]) for c in clouds])
    return float((pts.amax(0) - pts.amin(0)).norm()) + 1e-6
