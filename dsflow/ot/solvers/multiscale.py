"""Multiscale cold start of a large outer problem: solve uniform subsamples, extend their potentials to all points.

On the block path (cost matrices too large to store) epsilon-scaling on the full problem costs a whole pass over
the cost per level. Instead a random subsample of ``size`` points per side is solved densely (with
epsilon-scaling), and its potential h (k,) is extended to all N points by one soft-min
softmin_j(h_j - C_ij / eps), the starting guess of the full problem's Sinkhorn iterations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.solvers.blocks import extrapolate, ground_cost
from dsflow.ot.solvers.log_sinkhorn import CrossProblem, SelfProblem, SweepLimits, cold_schedule, solve

__all__ = ["coarse_cross", "coarse_self"]


def _subsample(n: int, size: int, device: torch.device, seed: int) -> Tensor:
    """(min(n, size),) indices of a seeded uniform subsample of range(n)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].to(device)


def _extend(rows: Tensor, rows_i: Tensor, cols: Tensor, cols_i: Tensor, table: Tensor, s: OTDDSettings,
            block_entries: int, h: Tensor) -> Tensor:
    """(N,) soft-min of every row point (N, d) against a subsample's potential h (k,): its extension to all points."""
    cost = ground_cost(rows, cols, rows_i, cols_i, table, s, block_entries, store=False)
    return extrapolate(cost, rows.new_zeros(rows.shape[0]), h, s.eps).row


def coarse_self(x: Tensor, x_i: Tensor, table: Tensor, s: OTDDSettings, size: int, block_entries: int,
                limits: SweepLimits) -> Tensor:
    """(n,) starting potential of OT(a, a) for x (n, d) with label rows x_i (n,) into ``table``."""
    ix = _subsample(x.shape[0], size, x.device, 0)
    k_log = x.new_full((ix.shape[0],), -math.log(ix.shape[0]))
    sub = SelfProblem(ground_cost(x[ix], x[ix], x_i[ix], x_i[ix], table, s, block_entries, store=True), k_log,
                      torch.zeros_like(k_log))
    solve(sub, cold_schedule((x[ix],), table, s), limits)
    return _extend(x, x_i, x[ix], x_i[ix], table, s, block_entries, k_log + sub.p / s.eps)


def coarse_cross(x: Tensor, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, size: int, block_entries: int,
                 limits: SweepLimits) -> Tensor:
    """(m,) starting potential g of OT(a, b) for x (n, d) and x_ref (m, d)."""
    ix, iy = _subsample(x.shape[0], size, x.device, 1), _subsample(x_ref.shape[0], size, x.device, 2)
    ka = x.new_full((ix.shape[0],), -math.log(ix.shape[0]))
    kb = x.new_full((iy.shape[0],), -math.log(iy.shape[0]))
    cost = ground_cost(x[ix], x_ref[iy], labels.src_index[ix], labels.ref_index[iy], labels.sr, s, block_entries,
                       store=True)
    sub = CrossProblem(cost, ka, kb, torch.zeros_like(kb))
    table = torch.cat([labels.ss.flatten(), labels.sr.flatten()])
    solve(sub, cold_schedule((x[ix], x_ref[iy]), table, s), limits)
    return _extend(x_ref, labels.ref_index, x[ix], labels.src_index[ix], labels.sr.T, s, block_entries,
                   ka + sub.f / s.eps)
