"""Log-domain Sinkhorn on the OTDD ground cost, one sweep at a time, with epsilon-scaling written once.

A Sinkhorn divergence needs two kinds of problem (:mod:`dsflow.ot.solvers.blocks` gives their sweeps):

* :class:`CrossProblem` OT(a, b): f <- softmin(C, g), g <- softmin(C^T, f);
* :class:`SelfProblem` OT(a, a): the symmetric update p <- (p + softmin(C, p)) / 2.

Both are driven the same way: :func:`anneal` sweeps once at each epsilon of a schedule above the target
(epsilon-scaling, Schmitzer 2019; geomloss's schedule, :func:`cold_schedule`), then :func:`iterate` sweeps at the
target epsilon until the potentials stop moving. A warm start anneals over fewer levels (:func:`warm_schedule`).
Epsilon travels one way: from the settings into a :class:`Schedule`, from it into each sweep and into the
problem's final soft-min (:meth:`CrossProblem.extrapolate`). Everything runs without autograd.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from dsflow.ot.costs import OTDDSettings
from dsflow.ot.distances import bounding_diameter
from dsflow.ot.solvers.blocks import Extrapolation, GroundCost, Wanted, extrapolate, sweep_cross, sweep_self
from dsflow.ot.solvers.stopping import State, sweep_until

__all__ = [
    "Schedule", "SweepLimits", "Sweeps", "Problem", "CrossProblem", "SelfProblem", "marginal_error", "anneal",
    "iterate", "solve", "cold_schedule", "warm_schedule",
]


class Schedule(NamedTuple):
    """The epsilons of one solve: epsilon-scaling levels, then the target.

    Attributes:
        levels: epsilons swept once each, largest first, all above ``eps`` (empty: no annealing).
        eps: the target epsilon, swept at until the tolerance (:class:`SweepLimits`) and extrapolated at.
    """

    levels: list[float]
    eps: float


class SweepLimits(NamedTuple):
    """When sweeping at the target epsilon stops.

    Attributes:
        tol: stop once a sweep moves no potential by more than ``tol * eps``.
        max_iter: most sweeps.
        check_every: sweeps between convergence checks (made on the device; the host reads them a few times a
            solve, :mod:`dsflow.ot.solvers.stopping`).
        marginal_tol: for a cross problem, stop instead once the plan's column marginal is within
            ``marginal_tol`` of b in L1 (:meth:`CrossProblem.sweep`); None: the potential criterion.
    """

    tol: float
    max_iter: int
    check_every: int
    marginal_tol: float | None = None


class Sweeps(NamedTuple):
    """How sweeping at the target epsilon ended.

    Attributes:
        iterations: sweeps made at the target epsilon.
        converged: whether the tolerance was met (False when stopped at ``max_iter``).
    """

    iterations: int
    converged: bool


class Problem(Protocol):
    """A Sinkhorn problem stepped one sweep at a time (:class:`CrossProblem`, :class:`SelfProblem`)."""

    potentials: tuple[Tensor, ...]  # the problem's potentials, read and replaced by iterate()

    def sweep(self, eps: float, measure: bool = True) -> Tensor | None:
        """One sweep at ``eps``; the largest potential change when ``measure`` (else None)."""


class CrossProblem:
    """OT(a, b) on ``cost`` (n, m): potentials f (n,), starting at 0, and g (m,), starting at ``g``.

    Args: cost, a_log (n,) and b_log (m,) log-masses, g (m,) the starting column potential.
    """

    def __init__(self, cost: GroundCost, a_log: Tensor, b_log: Tensor, g: Tensor) -> None:
        self.cost, self.a_log, self.b_log = cost, a_log, b_log
        self.f, self.g = torch.zeros_like(a_log), g

    @property
    def potentials(self) -> tuple[Tensor, ...]:
        """(f (n,), g (m,))."""
        return self.f, self.g

    @potentials.setter
    def potentials(self, fg: tuple[Tensor, ...]) -> None:
        self.f, self.g = fg

    def sweep(self, eps: float, measure: bool = True, marginal: bool = False) -> Tensor | None:
        """One Sinkhorn iteration at ``eps``; returns max |f_new - f| when ``measure``, or with ``marginal`` the
        L1 error sum_j |pi_j - b_j| of the column marginal of the plan between the two half-steps (rows exact,
        columns still scaled by the old g: pi_j = b_j exp((g_old_j - g_new_j) / eps))."""
        g_old = self.g
        f_new, self.g = sweep_cross(self.cost, self.a_log, self.b_log, self.g, eps)
        change = None
        if measure:
            # the columns of the plan (f_new, g_old) are b exp((g_old - g_new) / eps): g_new makes them exact
            change = (marginal_error(self.b_log.exp(), (g_old - self.g) / eps) if marginal
                      else (f_new - self.f).abs().max())
        self.f = f_new
        return change

    def extrapolate(self, eps: float, want: Wanted = Wanted()) -> Extrapolation:
        """The last soft-mins at ``eps``: f_ba (n,) = softmin(C, g), g_ab (m,) = softmin(C^T, f), with the envelope
        gradients ``want`` asks for (:func:`~dsflow.ot.solvers.blocks.extrapolate`)."""
        return extrapolate(self.cost, self.a_log, self.b_log + self.g / eps, eps, h_rows=self.a_log + self.f / eps,
                           want=want)


class SelfProblem:
    """OT(a, a) on ``cost`` (n, n): the symmetric potential p (n,), starting at ``p``."""

    def __init__(self, cost: GroundCost, a_log: Tensor, p: Tensor) -> None:
        self.cost, self.a_log, self.p = cost, a_log, p

    @property
    def potentials(self) -> tuple[Tensor, ...]:
        """(p (n,),)."""
        return (self.p,)

    @potentials.setter
    def potentials(self, p: tuple[Tensor, ...]) -> None:
        (self.p,) = p

    def sweep(self, eps: float, measure: bool = True) -> Tensor | None:
        """One averaged iteration at ``eps``; returns max |p_new - p| when ``measure``."""
        new = 0.5 * (self.p + sweep_self(self.cost, self.a_log, self.p, eps))
        change = (new - self.p).abs().max() if measure else None
        self.p = new
        return change

    def extrapolate(self, eps: float, want: Wanted = Wanted()) -> Extrapolation:
        """The last soft-min at ``eps``: f_aa (n,) = softmin(C, p), with the envelope gradients ``want`` asks for."""
        return extrapolate(self.cost, self.a_log, self.a_log + self.p / eps, eps, want=want)


def marginal_error(mass: Tensor, log_ratio: Tensor) -> Tensor:
    """() L1 error sum_j |pi_j - mass_j| of a plan's marginal pi_j = mass_j exp(log_ratio_j) (k,): a plan whose
    scaling is off by exp(log_ratio) from the one that makes that marginal exact."""
    return (mass * torch.expm1(log_ratio).abs()).sum()


def anneal(problem: Problem, schedule: Schedule) -> None:
    """Epsilon-scaling: one sweep at each level of ``schedule`` above the target."""
    for eps in schedule.levels:
        problem.sweep(eps, measure=False)


def iterate(problem: Problem, schedule: Schedule, limits: SweepLimits, hint: int = 0) -> Sweeps:
    """Sweep at the target ``schedule.eps`` until the potentials move by at most ``tol * eps`` (or, for a cross
    problem with ``marginal_tol``, until its column marginal is within that in L1), checked every ``check_every``
    sweeps on the device and read by the host a few times (:func:`~dsflow.ot.solvers.stopping.sweep_until`;
    ``hint``: the sweeps of the previous solve of this problem), or ``max_iter`` sweeps."""
    eps = schedule.eps
    marginal_tol = limits.marginal_tol if isinstance(problem, CrossProblem) else None
    threshold = marginal_tol if marginal_tol is not None else limits.tol * eps

    def step(state: State, omega: Tensor | None) -> tuple[State, Tensor]:
        problem.potentials = state
        if marginal_tol is not None and isinstance(problem, CrossProblem):
            change = problem.sweep(eps, marginal=True)
        else:
            change = problem.sweep(eps)
        if change is None:
            raise RuntimeError(f"iterate: {type(problem).__name__}.sweep measured no change")
        return problem.potentials, change

    run = sweep_until(step, problem.potentials, threshold, limits.max_iter, limits.check_every, hint)
    problem.potentials = run.state
    return Sweeps(run.iterations, run.converged)


def solve(problem: Problem, schedule: Schedule, limits: SweepLimits) -> Sweeps:
    """:func:`anneal` over ``schedule``, then :func:`iterate` at its target epsilon."""
    anneal(problem, schedule)
    return iterate(problem, schedule, limits)


def cold_schedule(clouds: tuple[Tensor, ...], table: Tensor, s: OTDDSettings) -> Schedule:
    """Epsilon-scaling from the largest cost down to eps, by factors scaling^2 (geomloss's schedule).

    Args: clouds (k, d) the point clouds of the problem, table the label distances they may meet.
    """
    top = s.lambda_x * bounding_diameter(*clouds) ** 2 + s.lambda_y * float(table.max()) + s.eps
    steps = max(0, math.ceil(math.log(top / s.eps) / (-2 * math.log(s.scaling))))
    return Schedule([top * s.scaling ** (2 * k) for k in range(steps)], s.eps)


def warm_schedule(moved: float, s: OTDDSettings, margin: int, most: int, cold_levels: int | None) -> Schedule:
    """Epsilon levels of a warm start whose potentials moved by ``moved`` in the previous call: from
    eps * moved / eps down to eps by factors scaling^2, plus ``margin`` levels, at most ``most`` and never more
    than the cold start had (``cold_levels``, None: no such bound)."""
    levels = math.ceil(math.log(max(moved, s.eps) / s.eps) / (-2 * math.log(s.scaling))) + margin
    levels = min(most, levels, levels if cold_levels is None else cold_levels)
    return Schedule([s.eps * s.scaling ** (-2 * k) for k in range(levels, 0, -1)], s.eps)
