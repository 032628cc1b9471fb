"""Sinkhorn's stopping rule on the device (dsflow.ot.stopping): the same answer as a host check at every check,
whenever the host looks, with few host reads."""

from __future__ import annotations

import math

import pytest
import torch

from dsflow.host_reads import HostReads
from dsflow.ot.solvers import stopping
from dsflow.ot.solvers.stopping import Absorption, State, sweep_until


def host_loop(step, state: State, threshold: float, max_iter: int, every: int, omega: float,
              absorption: Absorption | None) -> tuple[State, int, bool]:
    """The rule as the host used to run it: read the convergence number at every check and decide there."""
    saved, last = state, math.inf
    w = torch.tensor(omega, dtype=torch.float64) if omega != 1.0 else None
    for it in range(1, max_iter + 1):
        state, change = step(state, w)
        if it % every and it < max_iter:
            continue
        if w is not None and float(w) > 1.0 and not float(change) < last:
            state, w = saved, torch.ones_like(w)
            continue
        big = float(absorption.big(state)) if absorption is not None else 0.0
        if not math.isfinite(big):
            state = saved
        if absorption is not None and (not math.isfinite(big) or big > absorption.limit):
            state, last = absorption.absorb(state), math.inf
        elif float(change) <= threshold:
            return state, it, True
        else:
            last = float(change)
        saved = state
    return state, max_iter, False


class Oscillator:
    """A pure sweep on v (3,) about an offset that absorption moves: the potential offset + v contracts by 0.9 a
    plain sweep (alternating sign) and diverges over-relaxed (|1 - 1.9 w| > 1 at w = 1.5)."""

    def __init__(self) -> None:
        self.offset = torch.zeros(3, dtype=torch.float64)

    def step(self, state: State, w: torch.Tensor | None) -> tuple[State, torch.Tensor]:
        (v,) = state
        full = self.offset + v
        new = full + (1.0 if w is None else w) * (-1.9 * full + 0.3)  # fixed point 0.3 / 1.9
        return (new - self.offset,), (new - full).abs().max()

    def absorption(self, limit: float) -> Absorption:
        def absorb(state: State) -> State:
            self.offset = self.offset + state[0]
            return (torch.zeros_like(state[0]),)

        return Absorption(lambda s: s[0].abs().max(), absorb, limit)


@pytest.mark.parametrize("omega", [1.0, 1.5])
@pytest.mark.parametrize("limit", [None, 5.0])
@pytest.mark.parametrize("hint", [0, 7, 60])
@pytest.mark.parametrize("max_iter,every", [(400, 5), (97, 3)])
def test_device_rule_equals_the_host_loop(omega: float, limit: float | None, hint: int, max_iter: int,
                                           every: int) -> None:
    start = (torch.tensor([40.0, -3.0, 7.0], dtype=torch.float64),)
    mine, theirs = Oscillator(), Oscillator()
    run = sweep_until(mine.step, start, 1e-9, max_iter, every, hint, omega,
                      None if limit is None else mine.absorption(limit))
    state, iters, converged = host_loop(theirs.step, start, 1e-9, max_iter, every, omega,
                                        None if limit is None else theirs.absorption(limit))
    assert (run.iterations, run.converged) == (iters, converged)
    assert torch.equal(mine.offset + run.state[0], theirs.offset + state[0])


@pytest.mark.parametrize("omega,limit", [(1.0, 5.0), (1.5, 1e3)])  # absorbing 5 times; over-relaxation undone
def test_the_answer_does_not_depend_on_when_the_host_reads(monkeypatch: pytest.MonkeyPatch, omega: float,
                                                           limit: float) -> None:
    start = (torch.tensor([40.0, -3.0, 7.0], dtype=torch.float64),)
    planned = Oscillator()
    run = sweep_until(planned.step, start, 1e-9, 400, 5, 0, omega, planned.absorption(limit))
    monkeypatch.setattr(stopping, "_plan", lambda it, hint, every, max_iter, seen, threshold: it + every)
    eager = Oscillator()
    every_check = sweep_until(eager.step, start, 1e-9, 400, 5, 0, omega, eager.absorption(limit))
    assert run.converged and every_check.reads > 3 * run.reads
    assert (run.iterations, run.converged) == (every_check.iterations, every_check.converged)
    assert torch.equal(planned.offset + run.state[0], eager.offset + every_check.state[0])


def test_a_long_solve_reads_the_host_a_few_times() -> None:
    rate = 0.97  # ~500 sweeps from 1 to 1e-8: a hundred checks of 5 sweeps

    def step(state: State, w: torch.Tensor | None) -> tuple[State, torch.Tensor]:
        new = state[0] * rate
        return (new,), (state[0] - new).abs().max()

    start = (torch.ones(4, dtype=torch.float64),)
    with HostReads() as reads:
        run = sweep_until(step, start, 1e-8, 2000, 5)
    assert run.converged and run.iterations > 400
    assert run.reads == reads.count <= 5, reads.summary()
    again = sweep_until(step, start, 1e-8, 2000, 5, hint=run.iterations)  # the next step of a flow
    assert again.reads == 2 and again.iterations == run.iterations  # at half the hint, then where the rate says


def test_fixed_sweeps_read_nothing() -> None:
    with HostReads() as reads:
        run = sweep_until(lambda s, w: ((s[0] * 0.5,), s[0].abs().max()), (torch.ones(3),), 1e-3, 10, 11)
    assert (run.iterations, run.converged, reads.count) == (10, False, 0)
