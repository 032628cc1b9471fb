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
iterations since the last check are undone and the solve continues with omega = 1 (plain Sinkhorn). The checks
are made on the device (:mod:`dsflow.ot.solvers.stopping`).
The last (extrapolation) step and its envelope gradient are one more product, E @ (v b y) (a GEMM).
Everything runs without autograd.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from dsflow.ot.solvers.blocks import Extrapolation, GroundCost, Wanted
from dsflow.ot.solvers.log_sinkhorn import CrossProblem, SelfProblem, SweepLimits, Sweeps, marginal_error
from dsflow.ot.solvers.stopping import Absorption, State, sweep_until

__all__ = ["CrossSolution", "KernelState", "SelfSolution", "kernel_cross", "kernel_self"]


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


class KernelState(NamedTuple):
    """The iterates of a kernel-form solve: potentials base + eps * log-scalings, E built from the base.

    Attributes:
        base: the potentials E was built from: (f0 (n,), g0 (m,)) of a cross problem, (p0 (n,),) of a self one.
        kernel: E (n, m) = exp((f0_i + g0_j - C_ij) / eps), exponents clamped at -60 (:func:`_kernel`).
        scalings: the log-scalings (lu (n,), lv (m,)), or (lw (n,),): f = f0 + eps lu, g = g0 + eps lv,
            p = p0 + eps lw.
    """

    base: tuple[Tensor, ...]
    kernel: Tensor
    scalings: tuple[Tensor, ...]

    def potentials(self, eps: float) -> tuple[Tensor, ...]:
        """The current potentials base + eps * scalings: (f (n,), g (m,)) or (p (n,),)."""
        return tuple(b + eps * ls for b, ls in zip(self.base, self.scalings))


class _Step(NamedTuple):
    """One update of a kernel-form solve: the new state and its change (a 0-d tensor, still on the device)."""

    state: KernelState
    change: Tensor


class _Run(NamedTuple):
    """The end of :func:`_iterate`: the last state and how the sweeps ended."""

    state: KernelState
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


def _absorbed(state: KernelState, c: Tensor, eps: float) -> KernelState:
    """The scalings absorbed into the base potentials, and E (n, m) rebuilt from them."""
    base = state.potentials(eps)
    zeros = tuple(torch.zeros_like(ls) for ls in state.scalings)
    return KernelState(base, _kernel(c, base[0], base[-1], eps), zeros)


class _Absorber:
    """The kernel a solve sweeps with, replaced when its scalings are absorbed (on the host's word, between reads
    of the stopping rule: :mod:`dsflow.ot.solvers.stopping`)."""

    def __init__(self, state: KernelState, c: Tensor, eps: float) -> None:
        self.state, self.c, self.eps = state, c, eps

    def absorb(self, scalings: State) -> State:
        self.state = _absorbed(self.state._replace(scalings=scalings), self.c, self.eps)
        return self.state.scalings


def _largest(scalings: State) -> Tensor:
    """() the largest |log scaling|."""
    return torch.stack([ls.abs().max() for ls in scalings]).max()


def _iterate(update: Callable[[KernelState, Tensor | None], _Step], start: KernelState, c: Tensor, eps: float,
             limits: SweepLimits, threshold: float, hint: int, omega: float = 1.0) -> _Run:
    """Run ``update`` from ``start`` until its change is at most ``threshold`` at a check (every
    ``limits.check_every`` updates), at most ``limits.max_iter`` times, with the stopping rule on the device
    (:func:`~dsflow.ot.solvers.stopping.sweep_until`; ``hint``: the previous solve's updates).

    At a check the scalings are absorbed (:func:`_absorbed`, on the cost c (n, m)) if large; if they overflowed,
    the iterations since the last check are undone and the kernel is rebuilt from the last good potentials before
    going on. With ``omega > 1`` (over-relaxation), when the change did not shrink since the previous check the
    iterations since then are undone and omega drops to 1. With ``check_every > max_iter`` it runs exactly
    ``max_iter`` updates and reads nothing back to the host (the scalings must then stay within float range on
    their own: a warm start a few sweeps from convergence).
    """
    kernel = _Absorber(start, c, eps)

    def step(scalings: State, w: Tensor | None) -> tuple[State, Tensor]:
        new, change = update(kernel.state._replace(scalings=scalings), w)
        return new.scalings, change

    run = sweep_until(step, start.scalings, threshold, limits.max_iter, limits.check_every, hint, omega,
                      Absorption(_largest, kernel.absorb, _ABSORB))
    return _Run(kernel.state._replace(scalings=run.state), Sweeps(run.iterations, run.converged))


def _cross_update(state: KernelState, a: Tensor, b: Tensor, eps: float, marginal: bool, w: Tensor | None) -> _Step:
    """One (over-relaxed) iteration u = 1 / (E (b v)), v = 1 / (E^T (a u)) in log-scalings; the change is the
    largest row-potential move, or with ``marginal`` the plan's L1 marginal errors."""
    e = state.kernel
    lu_old, lv_old = state.scalings
    exact = -torch.log(e @ (b * lv_old.exp()))  # (n,) the rows' Sinkhorn scaling
    lu = exact if w is None else torch.lerp(lu_old, exact, w)  # lu + w (lu_new - lu); w = 1 after a fallback
    lv = -torch.log(e.T @ (a * lu.exp()))  # (m,)
    if not marginal:
        change = (lu - lu_old).abs().max() * eps
    else:  # L1 marginal errors of the plan (u, v_old): rows a_i u_i / u_exact_i, columns b_j v_old_j / v_j
        change = marginal_error(b, lv_old - lv)
        if w is not None:
            change = change + marginal_error(a, lu - exact)  # 0 when w = 1
    if w is not None:
        lv = torch.lerp(lv_old, lv, w)
    return _Step(state._replace(scalings=(lu, lv)), change)


def _self_update(state: KernelState, a: Tensor, eps: float, w: Tensor | None = None) -> _Step:
    """One averaged iteration w <- (w / (E (a w)))^(1/2) in log-scalings; the change is the largest potential move."""
    (lw,) = state.scalings
    new = 0.5 * (lw - torch.log(state.kernel @ (a * lw.exp())))  # log of (w / (E (a w)))^(1/2)
    return _Step(state._replace(scalings=(new,)), (new - lw).abs().max() * eps)


def kernel_cross(
    problem: CrossProblem, eps: float, limits: SweepLimits, want: Wanted = Wanted(), omega: float = 1.0,
    hint: int = 0,
) -> CrossSolution:
    """Sinkhorn on ``problem`` OT(a, b) from its column potential g (m,) on its stored cost, at ``eps``,
    over-relaxed by ``omega`` in [1, 2) (guarded, see the module docstring), until no potential moves by more than
    ``limits.tol * eps`` in an iteration or, with ``limits.marginal_tol``, until the plan's column marginal is
    within it in L1 (:func:`~dsflow.ot.solvers.log_sinkhorn.marginal_error`), checked every
    ``limits.check_every`` iterations on the device (``hint``: the previous solve's iterations), at most
    ``limits.max_iter``. ``problem`` itself is left as it was."""
    if not 1.0 <= omega < 2.0:
        raise ValueError(f"kernel_cross: over-relaxation omega must lie in [1, 2), got {omega}")
    cost, c = problem.cost, _stored(problem.cost, "kernel_cross")
    a, b, g = problem.a_log.exp(), problem.b_log.exp(), problem.g
    f = _row_start(c, b.log() + g / eps, eps)  # rows of E diag(b) peak at 1: none underflows
    start = KernelState((f, g), _kernel(c, f, g, eps), (torch.zeros_like(f), torch.zeros_like(g)))
    marginal = limits.marginal_tol is not None
    threshold = limits.marginal_tol if limits.marginal_tol is not None else limits.tol * eps

    def update(state: KernelState, w: Tensor | None) -> _Step:
        return _cross_update(state, a, b, eps, marginal, w)

    state, sweeps = _iterate(update, start, c, eps, limits, threshold, hint, omega)
    e, (f0, g0), (lu, lv) = state.kernel, state.base, state.scalings
    bv = b * lv.exp()  # (m,)
    f, g = state.potentials(eps)
    su = e @ bv  # (n,): f_ba = softmin(C, g) = f0 - eps log su
    row = f0 - eps * su.log()
    col = g0 - eps * (e.T @ (a * lu.exp())).log()  # g_ab = softmin(C^T, f)
    grad = table_grad = None
    if want.grad or want.table_grad:
        w = a / su  # (n,) pi_ij = w_i E_ij (b v)_j, rows summing to a
        if want.grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (bv[:, None] * cost.y)))
        if want.table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * bv[None, :])
    return CrossSolution(f, g, Extrapolation(row, col, grad, table_grad), sweeps)


def kernel_self(problem: SelfProblem, eps: float, limits: SweepLimits, want: Wanted = Wanted(),
                hint: int = 0) -> SelfSolution:
    """Symmetric Sinkhorn p <- (p + softmin(C, p)) / 2 on ``problem`` OT(a, a) from its p (n,), stored (n, n)
    cost, at ``eps``, until no potential moves by more than ``limits.tol * eps`` (``marginal_tol`` is for cross
    problems only)."""
    cost, c = problem.cost, _stored(problem.cost, "kernel_self")
    a, p = problem.a_log.exp(), problem.p
    p = 0.5 * (p + _row_start(c, a.log() + p / eps, eps))
    start = KernelState((p,), _kernel(c, p, p, eps), (torch.zeros_like(p),))

    def update(state: KernelState, w: Tensor | None) -> _Step:
        return _self_update(state, a, eps)

    state, sweeps = _iterate(update, start, c, eps, limits, limits.tol * eps, hint)
    e, (p0,), (lw,) = state.kernel, state.base, state.scalings
    aw = a * lw.exp()  # (n,)
    (p,) = state.potentials(eps)
    su = e @ aw  # (n,)
    row = p0 - eps * su.log()  # f_aa = softmin(C, p)
    grad = table_grad = None
    if want.grad or want.table_grad:
        w = a / su  # pi_ik = w_i E_ik (a w)_k
        if want.grad:
            grad = 2 * cost.lambda_x * (a[:, None] * cost.x - w[:, None] * (e @ (aw[:, None] * cost.x)))
        if want.table_grad:
            table_grad = _table_grad(cost, w[:, None] * e * aw[None, :])
    return SelfSolution(p, Extrapolation(row, None, grad, table_grad), sweeps)
