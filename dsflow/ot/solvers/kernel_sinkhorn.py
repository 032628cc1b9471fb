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

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from dsflow.ot.solvers.blocks import Extrapolation, GroundCost, Wanted
from dsflow.ot.solvers.log_sinkhorn import CrossProblem, SelfProblem, SweepLimits, Sweeps, marginal_error

__all__ = ["CrossSolution", "SelfSolution", "kernel_cross", "kernel_self"]


class CrossSolution(NamedTuple):
    """A cross problem OT(a, b) solved in the kernel form.

    Attributes:
        f: (n,) row potential; g: (m,) column potential.
        ext: the last soft-mins f_ba (n,), g_ab (m,) and the envelope gradients asked for.
        sweeps: iterations at the target epsilon and whether the tolerance was met.
    """

    f: Tensor
    g: Tensor
    ext: Extrapolation
    sweeps: Sweeps


class SelfSolution(NamedTuple):
    """A symmetric problem OT(a, a) solved in the kernel form.

    Attributes:
        p: (n,) symmetric potential.
        ext: the last soft-min f_aa (n,) and the envelope gradients asked for (no column soft-min).
        sweeps: iterations at the target epsilon and whether the tolerance was met.
    """

    p: Tensor
    ext: Extrapolation
    sweeps: Sweeps


def _stored(cost: GroundCost, caller: str) -> Tensor:
    """The stored (n, m) matrix of ``cost``; the kernel form needs it whole."""
    if cost.full is None:
        raise ValueError(f"{caller}: the kernel form needs a stored cost (GroundCost(store=True)), got a block cost")
    return cost.full

_ABSORB = 30.0
_FLOOR = -60.0  # least exponent of E's entries: see _kernel


def _kernel(c: Tensor, f0: Tensor, g0: Tensor, eps: float) -> Tensor:
    # Exponents below -60 become -60: E's entries stay >= 1e-26, so that their products with the scalings (within
    # e^+-30 of 1 between absorptions) and masses stay normal floats where the CPU computes denormals (slowly:
    # dsflow.process). The mass this adds is below m e^-30 ~ 1e-9 of a row's.
    return ((f0[:, None] + g0[None, :] - c) / eps).clamp_min_(_FLOOR).exp_()  # (n, m)


def _row_start(c: Tensor, h: Tensor, eps: float) -> Tensor:
    """(n,) -eps max_j (h_j - C_ij / eps): a potential for which each row of E has largest entry 1 (no row of
    the kernel underflows), one pass over C without exponentials."""
    return -eps * torch.amax(torch.sub(h[None, :], c, alpha=1.0 / eps), dim=1)


def _table_grad(cost: GroundCost, plan: Tensor) -> Tensor:
    """(La, Lb) lambda_y * label mass of the (n, m) plan: sum of pi_ij over i, j with labels (l, l')."""
    by_col = plan.new_zeros(plan.shape[0], cost.table.shape[1]).index_add_(1, cost.ib, plan)  # (n, Lb)
    return torch.zeros_like(cost.table).index_add_(0, cost.ia, by_col, alpha=cost.lambda_y)


def _iterate(update: Callable[[], Tensor], state: dict, scalings: tuple[str, ...], absorb: Callable[[], None],
             max_iter: int, check_every: int, tol: float) -> Sweeps:
    """Run ``update`` until its change is below ``tol``, checking (one host sync) every ``check_every`` times;
    returns the number of updates and whether the tolerance was met.

    At each check the scalings are absorbed if large; if they overflowed, the iterations since the last check
    are undone and the kernel is rebuilt from the last good potentials before going on. If ``state["omega"]``
    (over-relaxation) exceeds 1 and the change did not shrink since the previous check, the iterations since
    then are undone and omega drops to 1. With ``check_every > max_iter`` it runs exactly ``max_iter`` updates
    and reads nothing back to the host (the scalings must then stay within float range on their own: a warm
    start a few sweeps from convergence).
    """
    saved, last = dict(state), math.inf
    if check_every > max_iter:  # fixed sweeps: no check, hence no host synchronisation (and no absorption)
        for _ in range(max_iter):
            update()
        return Sweeps(max_iter, False)
    for it in range(1, max_iter + 1):
        change = update()
        if it % check_every and it < max_iter:
            continue
        big = torch.stack([state[k].abs().max() for k in scalings]).max()
        change, big = torch.stack([change, big]).tolist()
        if state.get("omega", 1.0) > 1.0 and not (change < last):  # over-relaxation diverging: undo, go plain
            state.update(saved)
            state["omega"] = 1.0
            continue
        if not math.isfinite(big):
            state.update(saved)
        if not math.isfinite(big) or big > _ABSORB:
            absorb()
            last = math.inf
        elif change <= tol:
            return Sweeps(it, True)
        else:
            last = change
        saved = dict(state)
    return Sweeps(max_iter, False)


def kernel_cross(
    problem: CrossProblem, eps: float, limits: SweepLimits, want: Wanted = Wanted(), omega: float = 1.0,
) -> CrossSolution:
    """Sinkhorn on ``problem`` OT(a, b) from its column potential g (m,) on its stored cost, at ``eps``,
    over-relaxed by ``omega`` in [1, 2) (guarded, see the module docstring), until no potential moves by more than
    ``limits.tol * eps`` in an iteration or, with ``limits.marginal_tol``, until the plan's column marginal is
    within it in L1 (:func:`~dsflow.ot.solvers.log_sinkhorn.marginal_error`), checked every
    ``limits.check_every`` iterations, at most ``limits.max_iter``. ``problem`` itself is left as it was."""
    if not 1.0 <= omega < 2.0:
        raise ValueError(f"kernel_cross: over-relaxation omega must lie in [1, 2), got {omega}")
    cost, c = problem.cost, _stored(problem.cost, "kernel_cross")
    a, b, g = problem.a_log.exp(), problem.b_log.exp(), problem.g
    marginal_tol, tol = limits.marginal_tol, limits.tol
    f = _row_start(c, b.log() + g / eps, eps)  # rows of E diag(b) peak at 1: none underflows
    state = {"f0": f, "g0": g, "e": _kernel(c, f, g, eps), "lu": torch.zeros_like(f), "lv": torch.zeros_like(g),
             "omega": omega}

    def absorb() -> None:
        state["f0"], state["g0"] = state["f0"] + eps * state["lu"], state["g0"] + eps * state["lv"]
        state["e"] = _kernel(c, state["f0"], state["g0"], eps)
        state["lu"], state["lv"] = torch.zeros_like(f), torch.zeros_like(g)

    def update() -> Tensor:
        e, w = state["e"], state["omega"]
        exact = -torch.log(e @ (b * state["lv"].exp()))  # (n,) the rows' Sinkhorn scaling
        lu = exact if w == 1.0 else torch.lerp(state["lu"], exact, w)  # lu + w (lu_new - lu)
        lv = -torch.log(e.T @ (a * lu.exp()))  # (m,)
        if marginal_tol is None:
            change = (lu - state["lu"]).abs().max() * eps
        else:  # L1 marginal errors of the plan (u, v_old): rows a_i u_i / u_exact_i, columns b_j v_old_j / v_j
            change = marginal_error(b, state["lv"] - lv)
            if w != 1.0:
                change = change + marginal_error(a, lu - exact)
        if w != 1.0:
            lv = torch.lerp(state["lv"], lv, w)
        state["lu"], state["lv"] = lu, lv
        return change

    threshold = tol * eps if marginal_tol is None else marginal_tol
    sweeps = _iterate(update, state, ("lu", "lv"), absorb, limits.max_iter, limits.check_every, threshold)
    e, bv = state["e"], b * state["lv"].exp()  # (m,)
    f, g = state["f0"] + eps * state["lu"], state["g0"] + eps * state["lv"]
    su = e @ bv  # (n,): f_ba = softmin(C, g) = f0 - eps log su
    row = state["f0"] - eps * su.log()
    col = state["g0"] - eps * (e.T @ (a * state["lu"].exp())).log()  # g_ab = softmin(C^T, f)
    grad = table_grad = None
    if want.grad or want.table_grad:
        w = a / su  # (n,) pi_ij = w_i E_ij (b v)_j, rows summing to a
        if want.grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (bv[:, None] * cost.y)))
        if want.table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * bv[None, :])
    return CrossSolution(f, g, Extrapolation(row, col, grad, table_grad), sweeps)


def kernel_self(problem: SelfProblem, eps: float, limits: SweepLimits, want: Wanted = Wanted()) -> SelfSolution:
    """Symmetric Sinkhorn p <- (p + softmin(C, p)) / 2 on ``problem`` OT(a, a) from its p (n,), stored (n, n)
    cost, at ``eps``, until no potential moves by more than ``limits.tol * eps`` (``marginal_tol`` is for cross
    problems only)."""
    cost, c = problem.cost, _stored(problem.cost, "kernel_self")
    a, p = problem.a_log.exp(), problem.p
    p = 0.5 * (p + _row_start(c, a.log() + p / eps, eps))
    state = {"p0": p, "e": _kernel(c, p, p, eps), "lw": torch.zeros_like(p)}

    def absorb() -> None:
        state["p0"] = state["p0"] + eps * state["lw"]
        state["e"] = _kernel(c, state["p0"], state["p0"], eps)
        state["lw"] = torch.zeros_like(p)

    def update() -> Tensor:
        lw = state["lw"]
        new = 0.5 * (lw - torch.log(state["e"] @ (a * lw.exp())))  # log of (w / (E (a w)))^(1/2)
        change = (new - lw).abs().max() * eps
        state["lw"] = new
        return change

    sweeps = _iterate(update, state, ("lw",), absorb, limits.max_iter, limits.check_every, limits.tol * eps)
    e, aw = state["e"], a * state["lw"].exp()  # (n,)
    p = state["p0"] + eps * state["lw"]
    su = e @ aw  # (n,)
    row = state["p0"] - eps * su.log()  # f_aa = softmin(C, p)
    grad = table_grad = None
    if want.grad or want.table_grad:
        w = a / su  # pi_ik = w_i E_ik (a w)_k
        if want.grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (aw[:, None] * cost.x)))
        if want.table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * aw[None, :])
    return SelfSolution(p, Extrapolation(row, None, grad, table_grad), sweeps)
