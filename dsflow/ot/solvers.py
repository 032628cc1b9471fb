"""Solvers of the OTDD's outer problem, the debiased Sinkhorn divergence (paper section 3.3), chosen in YAML.

* :class:`GeomlossSolver`: the dense reference path. geomloss's tensorized Sinkhorn (epsilon-scaling, a fixed
  number of iterations) on features packed with their label row; every call starts cold.
* :class:`WarmSinkhorn`: the fast path. A plain-torch log-domain Sinkhorn that

  - keeps its potentials between calls and starts the next flow step from them (warm start; epsilon-scaling
    only on a cold start), iterating at the target epsilon until the potentials stop moving;
  - solves the reference's own problem OT(beta, beta) once and caches its value (beta is fixed);
  - gives the gradient from the converged potentials (envelope theorem, Feydy et al. 2019, Prop. 2):
    d S / d x_i = sum_j pi_ij d_x c(x_i, y_j) - sum_k pi^{xx}_ik d_x c(x_i, x_k), no backpropagation through
    the iterations;
  - stores the cost matrices when they are small, and otherwise rebuilds them in row blocks
    (:mod:`dsflow.ot.blocks`), so that memory grows as (n + m) d, not n m.

Both return the same value and gradient in x at convergence (tests/test_speed_paths.py).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import Tensor

from dsflow.ot.blocks import Extrapolation, GroundCost, extrapolate, sweep_cross, sweep_self
from dsflow.ot.kernel_sinkhorn import kernel_cross, kernel_self
from dsflow.ot.otdd import LabelCosts, OTDDSettings, otdd
from dsflow.ot.products import clear_grams
from dsflow.ot.distances import bounding_diameter

__all__ = ["OuterSolver", "GeomlossSolver", "WarmSinkhorn"]



class OuterSolver(ABC):
    """Computes the OTDD value (a scalar, differentiable in x and the label tables) from settings and costs."""

    @abstractmethod
    def __call__(
        self, x: Tensor, x_ref: Tensor, labels: LabelCosts, settings: OTDDSettings,
        weights: Tensor | None = None, ref_weights: Tensor | None = None,
    ) -> Tensor:
        """Args: x (n, d), x_ref (m, d), labels, settings, weights (n,) and ref_weights (m,) summing to 1
        (None: uniform)."""

    def state_dict(self) -> dict[str, Any]:
        """State that a checkpoint must keep for a resumed flow to continue exactly (none for stateless solvers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; stateless solvers accept only an empty state."""
        if state:
            raise ValueError(f"{type(self).__name__}: holds no state, got keys {sorted(state)}")


class GeomlossSolver(OuterSolver):
    """Dense reference path: geomloss ``SamplesLoss('sinkhorn', backend='tensorized')`` with the OTDD cost.

    geomloss differentiates the label tables through both cross potentials (its detach trick assumes the cost
    depends on the points only); :func:`~dsflow.ot.otdd.otdd` halves the tables' gradient so that it is the
    envelope gradient. Stateless: every call starts cold.
    """

    def __call__(self, x, x_ref, labels, settings, weights=None, ref_weights=None):  # noqa: D102
        clear_grams()  # the label tables' shared products (dsflow.ot.products): this path builds its own costs
        return otdd(x, x_ref, labels, settings, weights, ref_weights)


class WarmSinkhorn(OuterSolver):
    """Warm-started log-domain Sinkhorn divergence with envelope gradients and an optional block path.

    Args:
        tol: stop when a sweep moves no potential by more than ``tol * eps`` (a log-marginal error of ``tol``).
        max_iter: most sweeps at the target epsilon per call.
        check_every: sweeps between convergence checks (each check waits for the device: one host sync).
        dense_limit: store the cost matrices while n m + n^2 stays within this many entries; above it the
            cost is rebuilt in row blocks at every sweep (linear memory).
        block_entries: entries of one (B, m) block on the block path.
        warm_start: reuse the previous call's potentials (off: every call starts cold, with epsilon-scaling).
        warm_levels: most epsilon-scaling levels a warm start still anneals over. A warm start begins at the
            scale by which the potentials moved in the previous call (delta: from eps * delta / eps down to eps by
            factors scaling^2, plus ``warm_margin`` levels, at most ``warm_levels``): a flow that moves far relative to
            eps (small eps, large steps) is re-annealed from higher up than a slow one.
        coarse_size: on the block path, a cold start first solves a random subsample of this many points per
            side (dense, with epsilon-scaling) and extends its potentials to all points by one soft-min
            (multiscale start), instead of epsilon-scaling on the full problem.
        warm_margin: epsilon-scaling levels a warm start anneals over beyond the previous call's potential change
            (Sinkhorn at a small eps converges slowly even from close potentials; a short anneal costs a few sweeps).
        overrelax: over-relaxation omega in [1, 2) of the cross problem's sweeps on a stored cost (1: plain
            Sinkhorn); guarded, it falls back to 1 for the rest of a call when the sweeps stop contracting
            (:mod:`dsflow.ot.kernel_sinkhorn`).

    ``check_every > max_iter`` runs exactly ``max_iter`` sweeps per call with no host synchronisation.
    """

    def __init__(
        self, tol: float = 1e-4, max_iter: int = 50, check_every: int = 5, dense_limit: int = 60_000_000,
        block_entries: int = 8_000_000, warm_start: bool = True, warm_levels: int = 16, coarse_size: int = 2048,
        overrelax: float = 1.5, warm_margin: int = 0,
    ) -> None:
        if not 1.0 <= overrelax < 2.0:
            raise ValueError(f"WarmSinkhorn: overrelax must lie in [1, 2), got {overrelax}")
        if (tol <= 0 or max_iter < 1 or check_every < 1 or block_entries < 1 or dense_limit < 0 or warm_levels < 0
                or warm_margin < 0):
            raise ValueError(
                f"WarmSinkhorn: need tol > 0, max_iter >= 1, check_every >= 1, block_entries >= 1 and "
                f"dense_limit >= 0, got {tol}, {max_iter}, {check_every}, {block_entries}, {dense_limit}"
            )
        self.tol, self.max_iter, self.check_every = tol, max_iter, check_every
        self.dense_limit, self.block_entries, self.warm_start = dense_limit, block_entries, warm_start
        self.coarse_size, self.warm_levels, self.overrelax = coarse_size, warm_levels, overrelax
        self.warm_margin = warm_margin
        self.reset()
        self.last_iterations = 0  # sweeps at the target epsilon of the last problem solved
        self.last_cross_iterations = 0  # of the last cross problem OT(a, b) on a stored cost
        self.last_converged = True  # whether every problem of the last call met the tolerance
        self._warned = False

    def reset(self) -> None:
        """Forget the warm-start potentials and the cached reference term."""
        self._potentials: dict[str, Tensor] = {}
        self._restored: dict[str, Any] = {}
        self._ref_key: tuple | None = None
        self._ref_term: Tensor | None = None
        self._moved: Callable[[], list[float]] | None = None  # last call's potential changes, read without a stall

    def state_dict(self) -> dict[str, Any]:
        """The warm-start potentials (on CPU) and the problem they solve, so that a resumed flow is exact."""
        pot = self._potentials or self._restored
        if not pot:
            return {}
        if "key" in pot:  # live state: record the problem as plain values
            n, m, _, _, settings = pot["key"]
            pot = {**{k: v for k, v in pot.items() if k != "key"}, "n": n, "m": m, "settings": dataclasses.asdict(settings)}
        return {k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in pot.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the potentials of :meth:`state_dict`; the next call uses them if it solves the same problem."""
        self.reset()
        self._restored = dict(state)

    def _take_restored(self, n: int, m: int, key: tuple, like: Tensor) -> None:
        """Turn restored potentials into live warm-start state when they fit this problem."""
        r, self._restored = self._restored, {}
        if r and r["n"] == n and r["m"] == m and OTDDSettings(**r["settings"]) == key[-1]:
            live = {k: v.to(like.device, like.dtype) if isinstance(v, Tensor) and v.is_floating_point() else v
                    for k, v in r.items() if k not in ("n", "m", "settings")}
            self._potentials = {**live, "key": key}

    # ------------------------------------------------------------------ helpers
    def _cost(self, x: Tensor, y: Tensor, ia: Tensor, ib: Tensor, table: Tensor, s: OTDDSettings, store: bool):
        rows = max(1, self.block_entries // max(1, y.shape[0]))
        return GroundCost(x, y, ia, ib, table, s.lambda_x, s.lambda_y, rows, store)

    def _schedule(self, clouds: tuple[Tensor, ...], table: Tensor, s: OTDDSettings) -> list[float]:
        """Epsilon-scaling from the largest cost down to eps, by factors scaling^2 (geomloss's schedule)."""
        top = s.lambda_x * bounding_diameter(*clouds) ** 2 + s.lambda_y * float(table.max()) + s.eps
        steps = max(0, math.ceil(math.log(top / s.eps) / (-2 * math.log(s.scaling))))
        return [top * s.scaling ** (2 * k) for k in range(steps)] + [s.eps]

    def _warm_schedule(self, moved: float, warm: dict, s: OTDDSettings) -> list[float]:
        """Epsilon levels of a warm start whose potentials moved by ``moved`` in the previous call."""
        levels = math.ceil(math.log(max(moved, s.eps) / s.eps) / (-2 * math.log(s.scaling))) + self.warm_margin
        levels = min(self.warm_levels, levels, warm.get("cold_levels", levels))  # never more than cold
        return [s.eps * s.scaling ** (-2 * k) for k in range(levels, 0, -1)] + [s.eps]

    def _record(self, iters: int, converged: bool) -> None:
        """Note a solve's sweeps; warn once per solver when one stops at ``max_iter`` short of ``tol``."""
        self.last_iterations = iters
        self.last_converged = self.last_converged and converged
        if not converged and not self._warned and self.check_every <= self.max_iter:  # fixed sweeps: not checked
            self._warned = True
            warnings.warn(
                f"WarmSinkhorn: a Sinkhorn problem stopped at max_iter={self.max_iter} sweeps before its tolerance "
                f"({self.tol:g} of eps); its potentials, and the flow's velocity, are approximate. Raise max_iter "
                f"(or eps) if the flow must follow the transport plan closely (warned once per solver)",
                RuntimeWarning, stacklevel=4,
            )

    def _iterate(self, step, eps: float, record: bool = True) -> None:
        """Run ``step()`` (returns the largest potential change) until below tol * eps, or max_iter sweeps."""
        converged = False
        for it in range(1, self.max_iter + 1):
            change = step()
            if it % self.check_every == 0 and float(change) <= self.tol * eps:
                converged = True
                break
        if record:  # a multiscale start's subsample solve is a starting guess: its convergence is not reported
            self._record(it, converged)

    def _reference_term(self, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, ref_weights: Tensor | None,
                        b_log: Tensor) -> Tensor:
        """<b, g_bb>: the reference's own OT_eps(beta, beta) / 2, solved once per reference and cached."""
        wkey = None if ref_weights is None else (ref_weights.data_ptr(), ref_weights._version)
        key = (x_ref.data_ptr(), tuple(x_ref.shape), x_ref._version, labels.rr.data_ptr(), labels.rr._version,
               labels.ref_index.data_ptr(), wkey, s)
        if self._ref_key == key and self._ref_term is not None:
            return self._ref_term
        m = x_ref.shape[0]
        store = m * m <= self.dense_limit
        cost = self._cost(x_ref, x_ref, labels.ref_index, labels.ref_index, labels.rr, s, store)
        if store or m <= self.coarse_size:
            p, schedule = torch.zeros_like(b_log), self._schedule((x_ref,), labels.rr, s)
        else:
            p, schedule = self._coarse_self(x_ref, labels.ref_index, labels.rr, s), [s.eps]
        p = self._solve_self(cost, b_log, p, schedule, s.eps)
        term = (b_log.exp() * extrapolate(cost, b_log, b_log + p / s.eps, s.eps).row).sum()
        self._ref_key, self._ref_term = key, term
        return term

    def _solve_self(self, cost: GroundCost, a_log: Tensor, p: Tensor, schedule: list[float], eps: float,
                    record: bool = True) -> Tensor:
        for e in schedule[:-1]:
            p = 0.5 * (p + sweep_self(cost, a_log, p, e))

        def step() -> Tensor:
            nonlocal p
            new = 0.5 * (p + sweep_self(cost, a_log, p, eps))
            change, p = (new - p).abs().max(), new
            return change

        self._iterate(step, eps, record)
        return p

    def _solve_cross(self, cost: GroundCost, a_log: Tensor, b_log: Tensor, g: Tensor, schedule: list[float],
                     eps: float, record: bool = True) -> tuple[Tensor, Tensor]:
        f = torch.zeros_like(a_log)
        for e in schedule[:-1]:
            f, g = sweep_cross(cost, a_log, b_log, g, e)

        def step() -> Tensor:
            nonlocal f, g
            f_new, g = sweep_cross(cost, a_log, b_log, g, eps)
            change, f = (f_new - f).abs().max(), f_new
            return change

        self._iterate(step, eps, record)
        return f, g

    def _cross(self, cost: GroundCost, a_log: Tensor, b_log: Tensor, f: Tensor, g: Tensor, schedule: list[float],
               eps: float, want: tuple[bool, bool, bool]) -> tuple[Tensor, Tensor, Extrapolation]:
        """Solve OT(a, b) from (f, g): epsilon-scaling in the log domain, then the kernel form on a stored cost
        or log-domain block sweeps; returns f, g and the gradient-giving extrapolation."""
        if cost.full is None:
            f, g = self._solve_cross(cost, a_log, b_log, g, schedule, eps)
            ext = extrapolate(cost, a_log, b_log + g / eps, eps, h_rows=a_log + f / eps, want_grad=want[0],
                              want_table_grad=want[2])
            return f, g, ext
        for e in schedule[:-1]:
            f, g = sweep_cross(cost, a_log, b_log, g, e)
        f, g, ext, iters, converged = kernel_cross(
            cost, a_log.exp(), b_log.exp(), f, g, eps, self.max_iter, self.check_every, self.tol, want[0], want[2],
            self.overrelax)
        self._record(iters, converged)
        self.last_cross_iterations = iters
        return f, g, ext

    def _self(self, cost: GroundCost, a_log: Tensor, p: Tensor, schedule: list[float], eps: float,
              want: tuple[bool, bool, bool]) -> tuple[Tensor, Extrapolation]:
        """Solve OT(a, a) from p, as :meth:`_cross`."""
        if cost.full is None:
            p = self._solve_self(cost, a_log, p, schedule, eps)
            return p, extrapolate(cost, a_log, a_log + p / eps, eps, want_grad=want[0], want_table_grad=want[1])
        for e in schedule[:-1]:
            p = 0.5 * (p + sweep_self(cost, a_log, p, e))
        p, ext, iters, converged = kernel_self(
            cost, a_log.exp(), p, eps, self.max_iter, self.check_every, self.tol, want[0], want[1])
        self._record(iters, converged)
        return p, ext

    # ------------------------------------------------------------------ multiscale cold start
    def _subsample(self, n: int, device: torch.device, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randperm(n, generator=gen)[: self.coarse_size].to(device)

    def _extend(self, rows: Tensor, rows_i: Tensor, cols: Tensor, cols_i: Tensor, table: Tensor, s: OTDDSettings,
                h: Tensor) -> Tensor:
        """(N,) soft-min of every row point against a subsample's potential h (k,): its extension to all points."""
        cost = self._cost(rows, cols, rows_i, cols_i, table, s, store=False)
        return extrapolate(cost, rows.new_zeros(rows.shape[0]), h, s.eps).row

    def _coarse_self(self, x: Tensor, x_i: Tensor, table: Tensor, s: OTDDSettings) -> Tensor:
        """(n,) starting potential of OT(a, a) from a uniform subsample's solution."""
        ix = self._subsample(x.shape[0], x.device, 0)
        k_log = x.new_full((ix.shape[0],), -math.log(ix.shape[0]))
        sub = self._cost(x[ix], x[ix], x_i[ix], x_i[ix], table, s, store=True)
        p = self._solve_self(sub, k_log, torch.zeros_like(k_log), self._schedule((x[ix],), table, s), s.eps, record=False)
        return self._extend(x, x_i, x[ix], x_i[ix], table, s, k_log + p / s.eps)

    def _coarse_cross(self, x: Tensor, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings) -> Tensor:
        """(m,) starting potential g of OT(a, b) from uniform subsamples' solution."""
        ix, iy = self._subsample(x.shape[0], x.device, 1), self._subsample(x_ref.shape[0], x.device, 2)
        ka = x.new_full((ix.shape[0],), -math.log(ix.shape[0]))
        kb = x.new_full((iy.shape[0],), -math.log(iy.shape[0]))
        sub = self._cost(x[ix], x_ref[iy], labels.src_index[ix], labels.ref_index[iy], labels.sr, s, store=True)
        table = torch.cat([labels.ss.flatten(), labels.sr.flatten()])
        f, _ = self._solve_cross(sub, ka, kb, torch.zeros_like(kb), self._schedule((x[ix], x_ref[iy]), table, s), s.eps,
                                 record=False)
        return self._extend(x_ref, labels.ref_index, x[ix], labels.src_index[ix], labels.sr.T, s, ka + f / s.eps)

    # ------------------------------------------------------------------ the divergence
    def __call__(self, x, x_ref, labels, settings, weights=None, ref_weights=None):  # noqa: D102
        for name, t in (("x_ref", x_ref), ("rr", labels.rr), ("weights", weights), ("ref_weights", ref_weights)):
            if t is not None and t.requires_grad:
                raise ValueError(f"WarmSinkhorn: {name} requires grad, but the fast path treats it as fixed; "
                                 f"use GeomlossSolver to differentiate it")
        if x.ndim != 2 or x_ref.ndim != 2 or x.shape[1] != x_ref.shape[1]:
            raise ValueError(
                f"WarmSinkhorn: expected x (n, d) and x_ref (m, d), got {tuple(x.shape)}, {tuple(x_ref.shape)}"
            )
        on = torch.is_grad_enabled()
        want = (on and x.requires_grad, on and labels.ss.requires_grad, on and labels.sr.requires_grad)
        self.last_converged = True
        with torch.no_grad():
            parts = self._solve(x.detach(), x_ref, labels, settings, weights, ref_weights, want)
        clear_grams()  # products the label tables shared and this call did not take are stale from now on
        return _EnvelopeValue.apply(x, labels.ss, labels.sr, *parts)

    def _solve(self, x: Tensor, x_ref: Tensor, labels: LabelCosts, s: OTDDSettings, weights: Tensor | None,
               ref_weights: Tensor | None, want: tuple[bool, bool, bool]):
        """(value, grad in x, grad in ss, grad in sr) of the Sinkhorn divergence; gradients None if not wanted."""
        n, m = x.shape[0], x_ref.shape[0]
        a = x.new_full((n,), 1.0 / n) if weights is None else weights
        b = x.new_full((m,), 1.0 / m) if ref_weights is None else ref_weights
        a_log, b_log = a.log(), b.log()
        ss, sr = labels.ss.detach(), labels.sr.detach()
        store = n * m + (n * n if s.debias else 0) <= self.dense_limit
        key = (n, m, x.device, x.dtype, s)
        if self._restored:
            self._take_restored(n, m, key, x)
        warm = self._potentials if self.warm_start and self._potentials.get("key") == key else None
        if warm is None and not store and max(n, m) > self.coarse_size:
            lab = LabelCosts(labels.src_index, labels.ref_index, ss, sr, labels.rr)
            warm = {"g": self._coarse_cross(x, x_ref, lab, s), "p": self._coarse_self(x, labels.src_index, ss, s)}
        if warm:  # each problem re-anneals over as many levels as its own potentials moved by last time
            live = self._moved is not None and warm is self._potentials  # not a multiscale start's guess
            moved = self._moved() if live else _pair(warm.get("moved", 0.0))
            schedule, self_schedule = (self._warm_schedule(v, warm, s) for v in moved)
        else:
            schedule = self._schedule((x, x_ref), torch.cat([ss.flatten(), sr.flatten()]), s)
            self_schedule = schedule
        c_xy = self._cost(x, x_ref, labels.src_index, labels.ref_index, sr, s, store)
        f0 = warm["f"] if warm and "f" in warm else torch.zeros_like(a_log)
        g0 = warm["g"] if warm else torch.zeros_like(b_log)
        f, g, ext = self._cross(c_xy, a_log, b_log, f0, g0, schedule, s.eps, want)
        del c_xy
        value = (a * ext.row).sum() + (b * ext.col).sum()  # OT(a, b) = <a, f> + <b, g>
        grad, grad_ss, grad_sr = ext.grad, None, ext.table_grad
        moved = [(g - g0).abs().max() if warm else g.new_zeros(()), g.new_zeros(())]  # cross, self
        state = {"key": key, "f": f, "g": g,
                 "cold_levels": warm.get("cold_levels", len(schedule) - 1) if warm else len(schedule) - 1}
        if s.debias:  # S = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2, and OT(a, a) / 2 = <a, f_aa>
            c_xx = self._cost(x, x, labels.src_index, labels.src_index, ss, s, store)
            p0 = warm["p"] if warm else torch.zeros_like(a_log)
            p, ext_xx = self._self(c_xx, a_log, p0, self_schedule, s.eps, want)
            if warm:  # a rigidly moving source leaves its self potentials, and this, unchanged
                moved[1] = (p - p0).abs().max()
            value = value - (a * ext_xx.row).sum() - self._reference_term(x_ref, labels, s, ref_weights, b_log)
            if grad is not None:
                grad = grad - ext_xx.grad
            if ext_xx.table_grad is not None:
                grad_ss = -0.5 * ext_xx.table_grad  # d(-OT(a, a) / 2) / d ss: half the self plan's label mass
            state["p"] = p
        state["moved"] = torch.stack(moved)  # (2,)
        if self.warm_start:
            self._potentials = state
            self._moved = _host_later(state["moved"])
        return value, grad, grad_ss, grad_sr


def _pair(moved: Tensor | float) -> list[float]:
    """[cross, self] potential changes from a state's "moved" (a (2,) tensor, or one value in older states)."""
    values = torch.as_tensor(moved).flatten().tolist()
    return values * 2 if len(values) == 1 else values


def _host_later(t: Tensor) -> Callable[[], list[float]]:
    """A reader of the small device tensor t that does not stall the device: on CUDA, t is copied to pinned host
    memory behind the work already queued, and the reader waits for that copy alone (by the next flow step, long
    done) instead of for everything queued since; elsewhere it reads t."""
    if t.device.type != "cuda":
        return lambda: t.tolist()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def read() -> list[float]:
        done.synchronize()
        return host.tolist()

    return read


class _EnvelopeValue(torch.autograd.Function):
    """A precomputed value whose gradients in x, ss and sr are given (envelope theorem)."""

    @staticmethod
    def forward(ctx, x, ss, sr, value, grad_x, grad_ss, grad_sr):  # type: ignore[override]
        ctx.save_for_backward(grad_x, grad_ss, grad_sr)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_x, grad_ss, grad_sr = ctx.saved_tensors
        scale = [None if g is None else grad_out * g for g in (grad_x, grad_ss, grad_sr)]
        return (*scale, None, None, None, None)
