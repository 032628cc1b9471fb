"""The flows' fast solver of the OTDD's outer problem, the debiased Sinkhorn divergence (paper section 3.3).

A plain-torch log-domain Sinkhorn that

- keeps its potentials between calls (:class:`~dsflow.ot.solvers.warm_state.WarmState`) and starts the next flow step
  from them (warm start; epsilon-scaling over as many levels as the potentials moved last time), iterating at the
  target epsilon until the potentials stop moving;
- solves the reference's own problem OT(beta, beta) once and caches its value (beta is fixed);
- gives the gradient from the converged potentials (envelope theorem, Feydy et al. 2019, Prop. 2):
  d S / d x_i = sum_j pi_ij d_x c(x_i, y_j) - sum_k pi^{xx}_ik d_x c(x_i, x_k), no backpropagation through
  the iterations;
- stores the cost matrices when they are small (then iterates in the kernel form,
  :mod:`dsflow.ot.solvers.kernel_sinkhorn`, and reuses the label tables' inner products,
  :mod:`dsflow.ot.labels.products`), and otherwise rebuilds them in row blocks (:mod:`dsflow.ot.solvers.blocks`),
  so that memory grows as (n + m) d, not n m.

It returns the dense :class:`~dsflow.ot.GeomlossSolver`'s value and gradient in x at convergence
(tests/test_speed_paths.py).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
from torch import Tensor

from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.labels.products import SharedProducts
from dsflow.ot.solvers.blocks import Extrapolation, GroundCost, Wanted, ground_cost
from dsflow.ot.solvers.kernel_sinkhorn import kernel_cross, kernel_self
from dsflow.ot.solvers.log_sinkhorn import (
    CrossProblem, Schedule, SelfProblem, SweepLimits, Sweeps, anneal, cold_schedule, iterate, solve, warm_schedule,
)
from dsflow.ot.solvers.multiscale import coarse_cross, coarse_self
from dsflow.ot.solvers.memory import dense_entries
from dsflow.ot.solvers.outer_solver import OuterSolver
from dsflow.ot.solvers.stopping import SweepHints
from dsflow.ot.solvers.warm_state import EnvelopeValue, WarmState, host_later

__all__ = ["WarmSinkhorn", "SinkhornCapWarning"]


class SinkhornCapWarning(RuntimeWarning):
    """A Sinkhorn solve stopped at ``max_iter`` sweeps short of its tolerance: the flow's velocity is approximate."""


class _Want(NamedTuple):
    """Which gradients a call forms: in x (n, d), in the self table ss, in the cross table sr."""

    x: bool
    ss: bool
    sr: bool

    def for_cross(self) -> Wanted:
        """What OT(a, b)'s extrapolation forms: gradients in x and in sr."""
        return Wanted(self.x, self.sr)

    def for_self(self) -> Wanted:
        """What OT(a, a)'s extrapolation forms: gradients in x and in ss."""
        return Wanted(self.x, self.ss)


class _Parts(NamedTuple):
    """The Sinkhorn divergence (a 0-d tensor) and its envelope gradients in x (n, d), ss and sr (None: not wanted),
    in the order :class:`~dsflow.ot.solvers.warm_state.EnvelopeValue` takes them."""

    value: Tensor
    grad_x: Tensor | None
    grad_ss: Tensor | None
    grad_sr: Tensor | None


def _given(t: Tensor | None, what: str) -> Tensor:
    """t, which the solve must have formed; a RuntimeError naming ``what`` if it did not."""
    if t is None:
        raise RuntimeError(f"WarmSinkhorn: {what} was not formed")
    return t


class WarmSinkhorn(OuterSolver):
    """Warm-started log-domain Sinkhorn divergence with envelope gradients and an optional block path.

    Args:
        tol: stop when a sweep moves no potential by more than ``tol * eps`` (a log-marginal error of ``tol``).
        max_iter: most sweeps at the target epsilon per call.
        check_every: sweeps between convergence checks (each check waits for the device: one host sync).
        dense_limit: store the cost matrices while n m + n^2 stays within this many entries (None: sized for the
            device, :func:`~dsflow.ot.solvers.memory.dense_entries`: 60 million on a CPU, half the free memory of a
            GPU); above it the
            cost is rebuilt in row blocks at every sweep (linear memory). The label tables share their inner
            products with the stored costs up to the same size (:meth:`shared_products`).
        block_entries: entries of one (B, m) block on the block path.
        warm_start: reuse the previous call's potentials (off: every call starts cold, with epsilon-scaling).
        warm_levels: most epsilon-scaling levels a warm start still anneals over. A warm start begins at the
            scale by which the potentials moved in the previous call (delta: from eps * delta / eps down to eps by
            factors scaling^2, plus ``warm_margin`` levels, at most ``warm_levels``): a flow that moves far relative to
            eps (small eps, large steps) is re-annealed from higher up than a slow one.
        coarse_size: on the block path, a cold start first solves a random subsample of this many points per
            side (dense, with epsilon-scaling) and extends its potentials to all points by one soft-min
            (multiscale start, :mod:`dsflow.ot.solvers.multiscale`), instead of epsilon-scaling on the full problem.
        warm_margin: epsilon-scaling levels a warm start anneals over beyond the previous call's potential change
            (Sinkhorn at a small eps converges slowly even from close potentials; a short anneal costs a few sweeps).
        overrelax: over-relaxation omega in [1, 2) of the cross problem's sweeps on a stored cost (1: plain
            Sinkhorn); guarded, it falls back to 1 for the rest of a call when the sweeps stop contracting
            (:mod:`dsflow.ot.solvers.kernel_sinkhorn`).
        marginal_tol: stop the cross problem OT(a, b) once its plan's marginals are within ``marginal_tol`` of a
            and b in L1 (total mass 1; :func:`~dsflow.ot.solvers.log_sinkhorn.marginal_error`) instead of by ``tol``;
            None: by ``tol``. What the flow's velocity needs: its relative error measured 2-3 times the marginal
            error on Table 1 flows, where ``tol`` (a potential change of 1e-4 eps in one sweep) asks far more
            than that of a slowly contracting problem (docs/speed.md). The self problems keep ``tol``.

    ``check_every > max_iter`` runs exactly ``max_iter`` sweeps per call with no host synchronisation.
    """

    def __init__(
        self, tol: float = 1e-4, max_iter: int = 50, check_every: int = 5, dense_limit: int | None = None,
        block_entries: int = 8_000_000, warm_start: bool = True, warm_levels: int = 16, coarse_size: int = 2048,
        overrelax: float = 1.5, warm_margin: int = 0, marginal_tol: float | None = None,
    ) -> None:
        if not 1.0 <= overrelax < 2.0:
            raise ValueError(f"WarmSinkhorn: overrelax must lie in [1, 2), got {overrelax}")
        if (tol <= 0 or max_iter < 1 or check_every < 1 or block_entries < 1
                or (dense_limit is not None and dense_limit < 0) or warm_levels < 0
                or warm_margin < 0 or (marginal_tol is not None and marginal_tol <= 0)):
            raise ValueError(
                f"WarmSinkhorn: need tol > 0, max_iter >= 1, check_every >= 1, block_entries >= 1, dense_limit >= 0, "
                f"warm_levels >= 0, warm_margin >= 0 and marginal_tol > 0 (or None), got {tol}, {max_iter}, "
                f"{check_every}, {block_entries}, {dense_limit}, {warm_levels}, {warm_margin}, {marginal_tol}"
            )
        self.tol, self.max_iter, self.check_every = tol, max_iter, check_every
        self.dense_limit, self.block_entries, self.warm_start = dense_limit, block_entries, warm_start
        self.coarse_size, self.warm_levels, self.overrelax = coarse_size, warm_levels, overrelax
        self.warm_margin, self.marginal_tol = warm_margin, marginal_tol
        self._dense_by_device: dict[str, int] = {}  # dense_entries() per device, read once (reset() keeps it)
        self.reset()
        self.last_iterations = 0  # sweeps at the target epsilon of the last problem solved
        self.last_cross_iterations = 0  # of the last cross problem OT(a, b) on a stored cost
        self.last_converged = True  # whether every problem of the last call met the tolerance
        self._warned = False

    @property
    def limits(self) -> SweepLimits:
        return SweepLimits(self.tol, self.max_iter, self.check_every, self.marginal_tol)

    def reset(self) -> None:
        """Forget the warm-start potentials and the cached reference term."""
        self._state: WarmState | None = None  # live, or restored from a checkpoint (device None) until used
        self._reference: tuple[tuple[object, ...], Tensor] | None = None  # (problem key, <b, g_bb>)
        self._hints = SweepHints()

    def dense_entries(self, device: torch.device | None) -> int:
        """The most entries n m + n^2 of stored costs on ``device``: ``dense_limit``, or
        :func:`~dsflow.ot.solvers.memory.dense_entries` (read once per device and kept, so that a flow's path does
        not change as it allocates)."""
        if self.dense_limit is not None:
            return self.dense_limit
        key = str(device)
        if key not in self._dense_by_device:
            self._dense_by_device[key] = dense_entries(device)
        return self._dense_by_device[key]

    def shared_products(self, device: torch.device | None = None) -> SharedProducts:
        """Products up to :meth:`dense_entries` on ``device``: the stored costs take them from the label tables."""
        return SharedProducts(self.dense_entries(device))

    def state_dict(self) -> dict[str, Any]:
        """The warm-start potentials (on CPU) and the problem they solve, so that a resumed flow is exact."""
        return {} if self._state is None else self._state.to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the potentials of :meth:`state_dict`; the next call uses them if it solves the same problem."""
        self.reset()
        self._state = WarmState.from_dict(state) if state else None

    # ------------------------------------------------------------------ helpers
    def _cost(self, x: Tensor, y: Tensor, ia: Tensor, ib: Tensor, table: Tensor, s: OTDDSettings, store: bool,
              products: SharedProducts | None = None) -> GroundCost:
        gram = products.take(x, y) if store and products is not None else None
        return ground_cost(x, y, ia, ib, table, s, self.block_entries, store, gram)

    def _record(self, sweeps: Sweeps) -> Sweeps:
        """Note a solve's sweeps (returned); warn once per solver when one stops at ``max_iter`` short of ``tol``."""
        self.last_iterations = sweeps.iterations
        self.last_converged = self.last_converged and sweeps.converged
        if not sweeps.converged and not self._warned and self.check_every <= self.max_iter:  # fixed sweeps: not checked
            self._warned = True
            warnings.warn(
                f"WarmSinkhorn: a Sinkhorn problem stopped at max_iter={self.max_iter} sweeps before its tolerance "
                f"({self.tol:g} of eps); its potentials, and the flow's velocity, are approximate. Raise max_iter "
                f"(or eps) if the flow must follow the transport plan closely (warned once per solver)",
                SinkhornCapWarning, stacklevel=4,
            )
        return sweeps

    def _reference_term(self, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, ref_weights: Tensor | None,
                        b_log: Tensor) -> Tensor:
        """<b, g_bb>: the reference's own OT_eps(beta, beta) / 2, solved once per reference and cached."""
        wkey = None if ref_weights is None else (ref_weights.data_ptr(), ref_weights._version)
        key = (x_ref.data_ptr(), tuple(x_ref.shape), x_ref._version, labels.rr.data_ptr(), labels.rr._version,
               labels.ref_index.data_ptr(), wkey, s)
        if self._reference is not None and self._reference[0] == key:
            return self._reference[1]
        m = x_ref.shape[0]
        store = m * m <= self.dense_entries(x_ref.device)
        cost = self._cost(x_ref, x_ref, labels.ref_index, labels.ref_index, labels.rr, s, store, labels.products)
        if store or m <= self.coarse_size:
            p, schedule = torch.zeros_like(b_log), cold_schedule((x_ref,), labels.rr, s)
        else:
            p = coarse_self(x_ref, labels.ref_index, labels.rr, s, self.coarse_size, self.block_entries, self.limits)
            schedule = Schedule([], s.eps)
        problem = SelfProblem(cost, b_log, p)
        self._record(solve(problem, schedule, self.limits))
        term = (b_log.exp() * problem.extrapolate(schedule.eps).row).sum()
        self._reference = (key, term)
        return term

    def _cross(self, cost: GroundCost, a_log: Tensor, b_log: Tensor, g: Tensor, schedule: Schedule,
               want: _Want) -> tuple[Tensor, Tensor, Extrapolation]:
        """Solve OT(a, b) from g: epsilon-scaling in the log domain, then the kernel form on a stored cost
        or log-domain block sweeps; returns f, g and the gradient-giving extrapolation."""
        problem = CrossProblem(cost, a_log, b_log, g)
        anneal(problem, schedule)
        if cost.full is None:
            sweeps = self._record(iterate(problem, schedule, self.limits, self._hints.cross))
            self._hints.cross = sweeps.iterations
            return problem.f, problem.g, problem.extrapolate(schedule.eps, want.for_cross())
        solved = kernel_cross(problem, schedule.eps, self.limits, want.for_cross(), self.overrelax, self._hints.cross)
        self._record(solved.sweeps)
        self.last_cross_iterations = self._hints.cross = solved.sweeps.iterations
        return solved.f, solved.g, solved.ext

    def _self(self, cost: GroundCost, a_log: Tensor, p: Tensor, schedule: Schedule,
              want: _Want) -> tuple[Tensor, Extrapolation]:
        """Solve OT(a, a) from p, as :meth:`_cross`."""
        problem = SelfProblem(cost, a_log, p)
        anneal(problem, schedule)
        if cost.full is None:
            sweeps = self._record(iterate(problem, schedule, self.limits, self._hints.own))
            self._hints.own = sweeps.iterations
            return problem.p, problem.extrapolate(schedule.eps, want.for_self())
        solved = kernel_self(problem, schedule.eps, self.limits, want.for_self(), self._hints.own)
        self._record(solved.sweeps)
        self._hints.own = solved.sweeps.iterations
        return solved.p, solved.ext

    # ------------------------------------------------------------------ the divergence
    def __call__(
        self, x: Tensor, x_ref: Tensor, labels: LabelCosts, settings: OTDDSettings,
        weights: Tensor | None = None, ref_weights: Tensor | None = None,
    ) -> Tensor:
        """The Sinkhorn divergence (a scalar) with envelope gradients in x, ss and sr; x_ref, rr and the weights
        are fixed. Args as :class:`~dsflow.ot.OuterSolver`."""
        for name, t in (("x_ref", x_ref), ("rr", labels.rr), ("weights", weights), ("ref_weights", ref_weights)):
            if t is not None and t.requires_grad:
                raise ValueError(f"WarmSinkhorn: {name} requires grad, but the fast path treats it as fixed; "
                                 f"use GeomlossSolver to differentiate it")
        if x.ndim != 2 or x_ref.ndim != 2 or x.shape[1] != x_ref.shape[1]:
            raise ValueError(
                f"WarmSinkhorn: expected x (n, d) and x_ref (m, d), got {tuple(x.shape)}, {tuple(x_ref.shape)}"
            )
        on = torch.is_grad_enabled()
        want = _Want(on and x.requires_grad, on and labels.ss.requires_grad, on and labels.sr.requires_grad)
        self.last_converged = True
        with torch.no_grad():
            parts = self._solve(x.detach(), x_ref, labels, settings, weights, ref_weights, want)
        if labels.products is not None:
            labels.products.clear()  # products this call did not take are stale from now on
        value: Tensor = EnvelopeValue.apply(x, labels.ss, labels.sr, *parts)
        return value

    def _start(self, x: Tensor, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, store: bool) -> WarmState | None:
        """The potentials this call starts from: the previous call's when they solve the same problem, a
        multiscale guess for a large cold start, or None (a cold start with epsilon-scaling)."""
        n, m = x.shape[0], x_ref.shape[0]
        state = self._state
        if state is not None and state.device is None:  # restored: used when it fits this problem
            fits = (state.n, state.m, state.settings) == (n, m, s)
            state = self._state = state.placed(x.device, x.dtype) if fits else None
        if self.warm_start and state is not None and state.solves(n, m, x.device, x.dtype, s):
            return state
        if store or max(n, m) <= self.coarse_size:
            return None
        ss, sr = labels.ss.detach(), labels.sr.detach()
        lab = LabelCosts(labels.src_index, labels.ref_index, ss, sr, labels.rr)
        g = coarse_cross(x, x_ref, lab, s, self.coarse_size, self.block_entries, self.limits)
        p = coarse_self(x, labels.src_index, ss, s, self.coarse_size, self.block_entries, self.limits) if s.debias \
            else None
        return WarmState(n, m, s, x.device, x.dtype, g, p=p)

    def _solve(self, x: Tensor, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, weights: Tensor | None,
               ref_weights: Tensor | None, want: _Want) -> _Parts:
        """(value, grad in x, grad in ss, grad in sr) of the Sinkhorn divergence; gradients None if not wanted."""
        n, m = x.shape[0], x_ref.shape[0]
        a = x.new_full((n,), 1.0 / n) if weights is None else weights
        b = x.new_full((m,), 1.0 / m) if ref_weights is None else ref_weights
        a_log, b_log = a.log(), b.log()
        ss, sr = labels.ss.detach(), labels.sr.detach()
        store = n * m + (n * n if s.debias else 0) <= self.dense_entries(x.device)
        warm = self._start(x, x_ref, labels, s, store)
        if warm is not None:  # each problem re-anneals over as many levels as its own potentials moved by last time
            schedule, self_schedule = (warm_schedule(v, s, self.warm_margin, self.warm_levels, warm.cold_levels)
                                       for v in warm.moved_pair())
        else:
            schedule = self_schedule = cold_schedule((x, x_ref), torch.cat([ss.flatten(), sr.flatten()]), s)
        c_xy = self._cost(x, x_ref, labels.src_index, labels.ref_index, sr, s, store, labels.products)
        g0 = warm.g if warm is not None else torch.zeros_like(b_log)
        f, g, ext = self._cross(c_xy, a_log, b_log, g0, schedule, want)
        del c_xy
        value = (a * ext.row).sum() + (b * _given(ext.col, "the cross column potential")).sum()  # <a, f> + <b, g>
        grad, grad_ss, grad_sr = ext.grad, None, ext.table_grad
        moved = [(g - g0).abs().max() if warm is not None else g.new_zeros(()), g.new_zeros(())]  # cross, self
        cold_levels = warm.cold_levels if warm is not None and warm.cold_levels is not None else len(schedule.levels)
        p = None
        if s.debias:  # S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2, and OT(a, a) / 2 = <a, f_aa>
            c_xx = self._cost(x, x, labels.src_index, labels.src_index, ss, s, store, labels.products)
            p0 = warm.p if warm is not None and warm.p is not None else torch.zeros_like(a_log)
            p, ext_xx = self._self(c_xx, a_log, p0, self_schedule, want)
            if warm is not None:  # a rigidly moving source leaves its self potentials, and this, unchanged
                moved[1] = (p - p0).abs().max()
            value = value - (a * ext_xx.row).sum() - self._reference_term(x_ref, labels, s, ref_weights, b_log)
            if grad is not None:
                grad = grad - _given(ext_xx.grad, "the self problem's gradient in x")
            if ext_xx.table_grad is not None:
                grad_ss = -0.5 * ext_xx.table_grad  # d(-OT(a, a) / 2) / d ss: half the self plan's label mass
        if self.warm_start:
            changes = torch.stack(moved)  # (2,)
            self._state = WarmState(n, m, s, x.device, x.dtype, g, f, p, changes, cold_levels, host_later(changes))
        return _Parts(value, grad, grad_ss, grad_sr)
