"""The OTDD's cost bundles: label tables, outer settings and the label-augmented ground cost (paper section 3.3).

A labeled sample z = (x, y) is compared to z' = (x', y') with

.. math::
    d_Z(z, z')^2 = \\lambda_x |x - x'|^2 + \\lambda_y W_2^2(\\alpha_y, \\alpha_{y'}),

alpha_y the feature distribution of class y. Labels are carried as row indices into the tables between the
source labels (ss), source and reference labels (sr) and reference labels (rr), so a "label" may be a class
(fd-fl, jd-fl) or a particle's own Gaussian (jd-vl). A leaf module: every solver imports it, it imports none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from dsflow.ot.distances import squared_distances
from dsflow.ot.labels.products import SharedProducts

__all__ = ["LabelCosts", "OTDDSettings", "augmented_cost"]


class LabelCosts(NamedTuple):
    """Squared label distances and which row each sample uses.

    Attributes:
        src_index: (n,) row of each source sample in ``ss`` and ``sr``.
        ref_index: (m,) row of each reference sample in ``rr`` (column in ``sr``).
        ss: (Ls, Ls) distances among source labels.
        sr: (Ls, Lr) distances from source to reference labels.
        rr: (Lr, Lr) distances among reference labels.
        products: the inner products the tables computed for the solver to reuse this step (None: none).
    """

    src_index: Tensor
    ref_index: Tensor
    ss: Tensor
    sr: Tensor
    rr: Tensor
    products: SharedProducts | None = None

    def joint(self) -> Tensor:
        """((Ls + Lr), (Ls + Lr)) table over source labels followed by reference labels."""
        top = torch.cat([self.ss, self.sr], 1)
        bottom = torch.cat([self.sr.transpose(0, 1), self.rr], 1)
        return torch.cat([top, bottom], 0)


@dataclass(frozen=True)
class OTDDSettings:
    """Settings of the outer OT problem.

    Attributes:
        eps: entropic regularisation epsilon, in units of the ground cost d_Z^2 (geomloss blur = eps ** 0.5).
        lambda_x: weight of the feature cost |x - x'|^2.
        lambda_y: weight of the label cost W_2^2(alpha_y, alpha_y').
        scaling: epsilon-scaling ratio in (0, 1): closer to 1 is more accurate and slower.
        debias: subtract the self terms (Sinkhorn divergence; zero for identical datasets).
    """

    eps: float = 0.01
    lambda_x: float = 1.0
    lambda_y: float = 1.0
    scaling: float = 0.7
    debias: bool = True

    def __post_init__(self) -> None:
        if self.eps <= 0:
            raise ValueError(f"OTDDSettings: eps must be positive, got {self.eps}")
        if self.lambda_x < 0 or self.lambda_y < 0:
            raise ValueError(f"OTDDSettings: lambda_x and lambda_y must be >= 0, got {self.lambda_x}, {self.lambda_y}")
        if not 0 < self.scaling < 1:
            raise ValueError(f"OTDDSettings: scaling must lie in (0, 1), got {self.scaling}")


def augmented_cost(x_a: Tensor, x_b: Tensor, table: Tensor, lambda_x: float, lambda_y: float) -> Tensor:
    """(..., N, M) OTDD ground cost between samples that carry their label row as a last coordinate.

    Args:
        x_a: (..., N, d + 1) features followed by a row index into ``table``.
        x_b: (..., M, d + 1) same.
        table: (L, L) squared label distances.
    """
    ia = x_a[..., -1].round().long()
    ib = x_b[..., -1].round().long()
    feat = squared_distances(x_a[..., :-1], x_b[..., :-1])  # (..., N, M)
    label = table[ia[..., :, None], ib[..., None, :]]  # (..., N, M)
    return lambda_x * feat + lambda_y * label
