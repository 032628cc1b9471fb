"""Sinkhorn at the target epsilon on a stored cost, in the stabilised kernel form (Schmitzer 2019, "absorption").

Given potentials f0 (n,), g0 (m,) close to the solution (a warm start), the scaled kernel

.. math::
    E_{ij} = \\exp((f0_i + g0_j - C_{ij}) / \\varepsilon)

is of order one wherever the plan is not negligible (pi_ij = a_i b_j E_ij u_i v_j). Writing f = f0 + eps log u,
g = g0 + eps log v, the log-domain updates f <- softmin(C, g), g <- softmin(C^T, f) become

.. math::
    u = 1 / (E (b v)), \\qquad v = 1 / (E^T (a u)),

two matrix-vector products per iteration instead of two exponentials of the whole (n, m) matrix. When u or v
leave [e^-L, e^L] (the potentials moved far from f0, g0) they are absorbed into f0, g0 and E is rebuilt.

At a small epsilon relative to the cost's structure (well separated classes, eps far below the cost's spread)
plain Sinkhorn contracts slowly. The cross problem is therefore over-relaxed (Thibault et al. 2021,
"Overrelaxed Sinkhorn-Knopp"): log u <- log u + omega (log u_Sinkhorn - log u), omega in [1, 2). Over-relaxation
is only locally convergent, so it is guarded: when the change between two checks grows instead of shrinking, the
iterations since the last check are undone and the solve continues with omega = 1 (plain Sinkhorn).
The last (extrapolation) step and its envelope gradient are one more product, E @ (v b y) (a GEMM).
Everything runs without autograd.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from dsflow.ot.blocks import Extrapolation, GroundCost
from dsflow.ot.log_sinkhorn import marginal_error
from dsflow.ot.stopping import Absorption, State, sweep_until

__all__ = ["kernel_cross", "kernel_self"]

_ABSORB = 30.0
_FLOOR = -60.0  # least exponent of E's entries: see _kernel


def _kernel(c: Tensor, f0: Tensor, g0: Tensor, eps: float) -> Tensor:
    # Exponents below -60 become -60: E's entries stay >= 1e-26, so that their products with the scalings (within
    # e^+-30 of 1 between absorptions) and masses stay normal floats where the CPU computes denormals (slowly:
    # dsflow.ot.denormals). The mass this adds is below m e^-30 ~ 1e-9 of a row's.
    return ((f0[:, None] + g0[None, :] - c) / eps).clamp_min_(_FLOOR).exp_()  # (n, m)


def _row_start(c: Tensor, h: Tensor, eps: float) -> Tensor:
    """(n,) -eps max_j (h_j - C_ij / eps): a potential for which each row of E has largest entry 1 (no row of
    the kernel underflows), one pass over C without exponentials."""
    return -eps * torch.amax(torch.sub(h[None, :], c, alpha=1.0 / eps), dim=1)


def _table_grad(cost: GroundCost, plan: Tensor) -> Tensor:
    """(La, Lb) lambda_y * label mass of the (n, m) plan: sum of pi_ij over i, j with labels (l, l')."""
    by_col = plan.new_zeros(plan.shape[0], cost.table.shape[1]).index_add_(1, cost.ib, plan)  # (n, Lb)
    return torch.zeros_like(cost.table).index_add_(0, cost.ia, by_col, alpha=cost.lambda_y)


@dataclass
class _Kernel:
    """The stabilised kernel E = exp((f0 + g0 - C) / eps) of a stored cost and the potentials it absorbed
    (f0 (n,), g0 (m,); g0 is f0 for a self problem): the potentials are f0 + eps log u, g0 + eps log v."""

    c: Tensor
    eps: float
    f0: Tensor
    g0: Tensor
    e: Tensor = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.e = _kernel(self.c, self.f0, self.g0, self.eps)

    def absorb(self, lu: Tensor, lv: Tensor) -> None:
        """Move the scalings exp(lu), exp(lv) into f0, g0 and rebuild E (an (n, m) exponential)."""
        self.f0, self.g0 = self.f0 + self.eps * lu, self.g0 + self.eps * lv
        self.e = _kernel(self.c, self.f0, self.g0, self.eps)


def _largest(state: State) -> Tensor:
    return torch.stack([t.abs().max() for t in state]).max()


def kernel_cross(
    cost: GroundCost, a: Tensor, b: Tensor, f: Tensor, g: Tensor, eps: float, max_iter: int, check_every: int,
    tol: float, want_grad: bool, want_table_grad: bool, omega: float = 1.0, marginal_tol: float | None = None,
    hint: int = 0,
) -> tuple[Tensor, Tensor, Extrapolation, int, bool]:
    """Sinkhorn on OT(a, b) from potentials f (n,), g (m,) on a stored cost, over-relaxed by ``omega`` in
    [1, 2) (guarded, see the module docstring), until no potential moves by more than ``tol * eps`` in an
    iteration or, with ``marginal_tol``, until the plan's column marginal is within it in L1
    (:func:`~dsflow.ot.log_sinkhorn.marginal_error`), checked on the device (:func:`~dsflow.ot.stopping.sweep_until`,
    ``hint``: the sweeps of the previous solve); returns f, g, the extrapolation (row f_ba, column g_ab,
    gradient in x, table gradient), the number of iterations and whether the tolerance was met."""
    if not 1.0 <= omega < 2.0:
        raise ValueError(f"kernel_cross: over-relaxation omega must lie in [1, 2), got {omega}")
    if cost.full is None:
        raise ValueError("kernel_cross: needs a stored cost (GroundCost.full)")
    c = cost.full
    k = _Kernel(c, eps, _row_start(c, b.log() + g / eps, eps), g)  # rows of E diag(b) peak at 1: none underflows

    def step(state: State, w: Tensor | None) -> tuple[State, Tensor]:
        lu_old, lv_old = state
        exact = -torch.log(k.e @ (b * lv_old.exp()))  # (n,) the rows' Sinkhorn scaling
        lu = exact if w is None else torch.lerp(lu_old, exact, w)  # lu + w (lu_new - lu)
        lv = -torch.log(k.e.T @ (a * lu.exp()))  # (m,)
        if marginal_tol is None:
            change = (lu - lu_old).abs().max() * eps
        else:  # L1 marginal errors of the plan (u, v_old): rows a_i u_i / u_exact_i, columns b_j v_old_j / v_j
            change = marginal_error(b, lv_old - lv)
            if w is not None:
                change = change + marginal_error(a, lu - exact)
        if w is not None:
            lv = torch.lerp(lv_old, lv, w)
        return (lu, lv), change

    def absorb(state: State) -> State:
        k.absorb(*state)
        return torch.zeros_like(state[0]), torch.zeros_like(state[1])

    threshold = tol * eps if marginal_tol is None else marginal_tol
    run = sweep_until(step, (torch.zeros_like(k.f0), torch.zeros_like(g)), threshold, max_iter, check_every, hint,
                      omega, Absorption(_largest, absorb, _ABSORB))
    (lu, lv), e = run.state, k.e
    bv = b * lv.exp()  # (m,)
    f, g = k.f0 + eps * lu, k.g0 + eps * lv
    su = e @ bv  # (n,): f_ba = softmin(C, g) = f0 - eps log su
    row = k.f0 - eps * su.log()
    col = k.g0 - eps * (e.T @ (a * lu.exp())).log()  # g_ab = softmin(C^T, f)
    grad = table_grad = None
    if want_grad or want_table_grad:
        w = a / su  # (n,) pi_ij = w_i E_ij (b v)_j, rows summing to a
        if want_grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (bv[:, None] * cost.y)))
        if want_table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * bv[None, :])
    return f, g, Extrapolation(row, col, grad, table_grad), run.iterations, run.converged


def kernel_self(
    cost: GroundCost, a: Tensor, p: Tensor, eps: float, max_iter: int, check_every: int, tol: float,
    want_grad: bool, want_table_grad: bool, hint: int = 0,
) -> tuple[Tensor, Extrapolation, int, bool]:
    """Symmetric Sinkhorn p <- (p + softmin(C, p)) / 2 on OT(a, a) from p (n,), stored (n, n) cost."""
    if cost.full is None:
        raise ValueError("kernel_self: needs a stored cost (GroundCost.full)")
    c = cost.full
    p = 0.5 * (p + _row_start(c, a.log() + p / eps, eps))
    k = _Kernel(c, eps, p, p)

    def step(state: State, w: Tensor | None) -> tuple[State, Tensor]:
        (lw,) = state
        new = 0.5 * (lw - torch.log(k.e @ (a * lw.exp())))  # log of (w / (E (a w)))^(1/2)
        return (new,), (new - lw).abs().max() * eps

    def absorb(state: State) -> State:
        k.absorb(state[0], state[0])
        return (torch.zeros_like(state[0]),)

    run = sweep_until(step, (torch.zeros_like(p),), tol * eps, max_iter, check_every, hint, 1.0,
                      Absorption(_largest, absorb, _ABSORB))
    ((lw,), e) = run.state, k.e
    aw = a * lw.exp()  # (n,)
    p = k.f0 + eps * lw
    su = e @ aw  # (n,)
    row = k.f0 - eps * su.log()  # f_aa = softmin(C, p)
    grad = table_grad = None
    if want_grad or want_table_grad:
        w = a / su  # pi_ik = w_i E_ik (a w)_k
        if want_grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (aw[:, None] * cost.x)))
        if want_table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * aw[None, :])
    return p, Extrapolation(row, None, grad, table_grad), run.iterations, run.converged
