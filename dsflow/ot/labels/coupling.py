"""Mismatched label sets (paper section 6.4, appendix C): a class coupling from label distances.

A classifier over C reference classes scores data labeled in C' other classes through an OT plan between the
two class histograms, with the label distances W_2^2(alpha_c', alpha_c) as cost:

.. math::
    P^* = \\arg\\min_{P \\in \\Pi(a, b)} \\langle P, D \\rangle, \\qquad a_{c'} = n_{c'}/n, \\; b_c = m_c/m.

Row-normalised, P^*[c', c] / a_{c'} is the share of class c' sent to class c; appended as a final linear layer,
the C reference-class probabilities p become C' scores q_{c'} = sum_c P[c', c] / a_{c'} p_c. With equal, uniform
histograms P^* is a permutation and the layer relabels the predictions.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
from torch import Tensor, nn

__all__ = ["label_coupling", "CouplingHead"]


def label_coupling(cost: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> Tensor:
    """(C', C) exact OT plan between class histograms a (C',) and b (C,) for the label-distance cost (C', C).

    Histograms default to uniform; they are normalised to sum to 1. Solved by POT's network simplex (ot.emd).
    """
    if cost.ndim != 2:
        raise ValueError(f"label_coupling: cost must be (C', C), got {tuple(cost.shape)}")
    cs, cr = cost.shape
    a = torch.full((cs,), 1.0 / cs) if a is None else a.detach().cpu().double()
    b = torch.full((cr,), 1.0 / cr) if b is None else b.detach().cpu().double()
    if a.shape != (cs,) or b.shape != (cr,) or (a < 0).any() or (b < 0).any() or a.sum() <= 0 or b.sum() <= 0:
        raise ValueError(f"label_coupling: need non-negative histograms of sizes ({cs},) and ({cr},), got {tuple(a.shape)}, {tuple(b.shape)}")
    a_np = (a / a.sum()).double().numpy()
    b_np = (b / b.sum()).double().numpy()
    plan = ot.emd(a_np, b_np, np.ascontiguousarray(cost.detach().cpu().double().numpy()))
    return torch.from_numpy(plan)


class CouplingHead(nn.Module):
    """Final linear layer (C reference-class probabilities) -> (C' scores) from a coupling (C', C), row-normalised.

    Args:
        coupling: (C', C) transport plan (any non-negative matrix with no zero row).
    """

    def __init__(self, coupling: Tensor) -> None:
        super().__init__()
        rows = coupling.sum(1, keepdim=True)  # (C', 1)
        if coupling.ndim != 2 or (coupling < 0).any() or (rows <= 0).any():
            raise ValueError("CouplingHead: coupling must be a non-negative (C', C) matrix without empty rows")
        self.register_buffer("weight", (coupling / rows).float())  # (C', C), rows sum to 1

    weight: Tensor  # (C', C) buffer, rows sum to 1

    def forward(self, probs: Tensor) -> Tensor:
        """probs (n, C) -> scores (n, C')."""
        return probs @ self.weight.T
