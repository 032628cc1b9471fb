"""Sinkhorn's stopping rule evaluated on the device, read by the host a few times per solve.

A Sinkhorn solve sweeps until a convergence number (the largest potential change, or a marginal error) falls
below a threshold, checked every ``check_every`` sweeps. Reading that number on the host at every check makes
the host wait for the device each time: on a GPU, where one sweep is a few short kernels, those waits are the
solve's cost (up to 100 per solve at 500 sweeps).

:func:`sweep_until` keeps the rule and its results, and moves the decision onto the device:

* at every check the device computes what the host used to decide (converged, over-relaxation diverging: undo
  and continue plain, scalings too large: absorb) into small flag tensors;
* once a check stops the solve, later sweeps leave the potentials untouched (``torch.where`` on the frozen
  flag), so the solve returns *exactly* the potentials and sweep count of a host check at every check, whenever
  the host happens to look;
* the host reads the flags (one copy of a few numbers) only at planned sweeps: first at half the sweep count the
  previous solve of the same problem needed (a warm-started flow changes little from step to step, and its solves
  shorten as it converges), then where
  the observed linear contraction of the convergence number says the threshold will be met (at most four times
  the sweeps made so far). Sweeps run past a stop are wasted work, never a different answer.

Absorbing large scalings (:mod:`dsflow.ot.solvers.kernel_sinkhorn`) rebuilds the kernel, which only the host can decide
to launch: a check that needs it freezes the solve like a stop, and the host absorbs at its next read and resumes
counting from the frozen sweep. Everything runs without autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["Absorption", "SweepHints", "SweepRun", "sweep_until"]

State = tuple[Tensor, ...]
#: one sweep: (state, over-relaxation omega () or None) -> (next state, () convergence number)
Step = Callable[[State, "Tensor | None"], tuple[State, Tensor]]


class Absorption(NamedTuple):
    """How a kernel-form solve keeps its scalings in float range.

    Attributes:
        big: state -> () largest |log scaling|.
        absorb: state -> the state after absorbing it into the kernel (host-side; rebuilds the kernel).
        limit: absorb once ``big`` exceeds this (or is not finite: then the state of the last good check is
            restored first).
    """

    big: Callable[[State], Tensor]
    absorb: Callable[[State], State]
    limit: float


class SweepRun(NamedTuple):
    """A finished solve: its state, the sweeps it took (as a check at every ``check_every`` would count them),
    whether it met the threshold, and the host reads it made."""

    state: State
    iterations: int
    converged: bool
    reads: int


@dataclass
class SweepHints:
    """Sweeps the last cross and self solves of a solver took at the target epsilon: where the next solve's host
    first reads its stopping rule (:func:`sweep_until`'s ``hint``)."""

    cross: int = 0
    own: int = 0


def _where(mask: Tensor, kept: State, new: State) -> State:
    return tuple(torch.where(mask, k, n) for k, n in zip(kept, new))


class _Flags:
    """The device-side record of the checks since the host last looked."""

    def __init__(self, like: Tensor) -> None:
        self.false = torch.zeros((), dtype=torch.bool, device=like.device)
        self.frozen = self.converged = self.absorb = self.false
        self.stop_at = torch.zeros((), dtype=torch.float64, device=like.device)
        self.last = torch.full((), math.inf, dtype=like.dtype, device=like.device)

    def reset(self) -> None:
        self.frozen = self.converged = self.absorb = self.false
        self.last = torch.full_like(self.last, math.inf)


def _plan(it: int, hint: int, every: int, max_iter: int, seen: list[tuple[int, float]], threshold: float) -> int:
    """The sweep at which the host reads next: at the start, half the previous solve's count (a flow's solves
    shorten as it converges: the whole count would run the later ones too long), and never before two checks, the
    fewest that show a rate; then where linear contraction of the convergence number, as seen at the last
    two checks read, reaches ``threshold``, at most four times the sweeps made so far (as many when it is not
    contracting)."""
    if it == 0:
        return min(max_iter, every * max(2, math.ceil(hint / every / 2)))
    done = max(1, it // every)  # checks made so far
    checks = done
    if len(seen) >= 2:
        (i0, c0), (i1, c1) = seen[-2], seen[-1]
        if 0.0 < c1 < c0 and i1 > i0:
            rate = math.log(c1 / c0) / ((i1 - i0) / every)  # log-contraction per check (< 0)
            checks = min(4 * done, max(1, math.ceil(math.log(min(1.0, threshold / c1)) / rate)))
    return min(max_iter, it + every * checks)


def sweep_until(step: Step, state: State, threshold: float, max_iter: int, check_every: int, hint: int = 0,
                omega: float = 1.0, absorption: Absorption | None = None) -> SweepRun:
    """Sweep ``state`` until the convergence number is at most ``threshold`` at a check (every ``check_every``
    sweeps, and at ``max_iter``), with the host reading the device's verdict only at planned sweeps (module
    docstring). ``hint``: the sweeps the previous solve of this problem took (0: unknown).

    With ``omega > 1`` the solve is over-relaxed and guarded: a check whose convergence number did not shrink
    since the previous check restores the state of that check and goes on with omega = 1. ``check_every >
    max_iter`` runs exactly ``max_iter`` sweeps and reads nothing.
    """
    w = torch.full((), omega, dtype=state[0].dtype, device=state[0].device) if omega != 1.0 else None
    if check_every > max_iter:
        for _ in range(max_iter):
            state, _ = step(state, w)
        return SweepRun(state, max_iter, False, 0)
    flags = _Flags(state[0])
    saved, it, reads = state, 0, 0
    seen: list[tuple[int, float]] = []  # (sweep, convergence number) at the checks the host has read
    changes: list[tuple[int, Tensor]] = []  # the device's convergence numbers since the last read
    read_at = _plan(0, hint, check_every, max_iter, seen, threshold)
    while it < max_iter:
        it += 1
        new, change = step(state, w)
        state = _where(flags.frozen, state, new)
        if it % check_every and it < max_iter:
            continue
        state, saved, w = _check(flags, state, saved, change, w, threshold, absorption, it)
        changes.append((it, change))
        if it < read_at and it < max_iter:
            continue
        tail = changes[-2:]
        host = torch.stack([flags.converged.double(), flags.absorb.double(), flags.stop_at,
                            *(c.double() for _, c in tail)]).tolist()
        reads += 1
        converged, absorb, stop_at = bool(host[0]), bool(host[1]), int(host[2])
        seen.extend((i, v) for (i, _), v in zip(tail, host[3:]))
        changes.clear()
        if converged:
            return SweepRun(state, stop_at, True, reads)
        if absorb and absorption is not None:
            state = saved = absorption.absorb(state)
            flags.reset()
            it, seen = stop_at, []
        read_at = _plan(it, 0, check_every, max_iter, seen, threshold)
    return SweepRun(state, max_iter, False, reads)


def _check(flags: _Flags, state: State, saved: State, change: Tensor, w: Tensor | None, threshold: float,
           absorption: Absorption | None, it: int) -> tuple[State, State, Tensor | None]:
    """One check on the device: what a host check would decide, as flags (no host read)."""
    live = ~flags.frozen
    ok = live
    if w is not None:  # over-relaxation diverging: back to the last check's state, plain Sinkhorn from there
        bad = live & (w > 1) & ~(change < flags.last)
        state = _where(bad, saved, state)
        w = torch.where(bad, torch.ones_like(w), w)
        ok = live & ~bad
    absorb = flags.false
    if absorption is not None:
        big = absorption.big(state)
        broken = ok & ~torch.isfinite(big)
        state = _where(broken, saved, state)
        absorb = ok & (broken | (big > absorption.limit))
    converged = ok & ~absorb & (change <= threshold)
    flags.last = torch.where(ok & ~absorb & ~converged, change, flags.last)
    saved = _where(ok, state, saved)
    stop = absorb | converged
    flags.stop_at = torch.where(stop, torch.full_like(flags.stop_at, it), flags.stop_at)
    flags.frozen = flags.frozen | stop
    flags.converged = flags.converged | converged
    flags.absorb = flags.absorb | absorb
    return state, saved, w
