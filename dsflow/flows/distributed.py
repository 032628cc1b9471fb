"""Flows over several processes (DDP): the reference split into shards, the particles replicated.

Scheme (W processes, ranks r = 0 .. W - 1, S reference shards; S = W unless ``reference_shards`` is set):

* **Particles are replicated.** Every rank holds all n particles x (n, d), their labels and any label parameters
  (jd-fl, jd-vl); Lightning's DDP engine keeps them identical: it broadcasts them from rank 0 once, then
  all-reduces (averages) their gradients at every backward, so every rank takes the same optimizer step. The
  entropy noise is drawn from the same seeded generator on every rank. Module buffers (reference, labels) are not
  broadcast by DDP at each step (they are equal by construction, see :func:`ddp_ignored_buffers`).
* **The reference is split into S class-stratified shards** (:func:`stratified_shards`): the reference sorted by
  class (stably) is dealt round-robin, so every shard holds about m_c / S samples of every class c and the shard
  sizes m_s differ by at most one. Rank r evaluates shards r, r + W, r + 2W, ... (S >= W).
* **Minimised functional: the minibatch OTDD**

  .. math::
      F(\\rho) = \\sum_{s=1}^{S} \\frac{m_s}{m} \\, OTDD(\\rho, \\beta_s) + \\text{other terms}(\\rho),

  beta_s the empirical measure of shard s. With S = 1 this is the single-process OTDD. With S > 1 each shard term
  is itself a debiased Sinkhorn divergence (zero when rho = beta_s), and because S_eps is convex in each argument
  (Feydy et al. 2019, Thm. 1) and beta = sum_s (m_s / m) beta_s, F's OTDD part is an upper bound of
  OTDD(rho, beta) that vanishes only when every shard matches rho (a fixed-partition minibatch OT, Fatras et al.
  2020). Rank r's loss is W sum_{s local} (m_s / m) OTDD(rho, beta_s) + other terms, so DDP's gradient average
  is exactly the gradient of F; one process with ``reference_shards: S`` minimises the same F, which is how a
  DDP run is reproduced (and tested) in one process.
* **Label statistics are global.** The reference's class means/covariances and its label table are computed from
  the whole reference (every rank loads it; identical on every rank); the source statistics from the replicated
  particles. The label tables (ss, sr, rr) are therefore the same on every rank and the same as in one process.
  jd-vl's clustering is broadcast from rank 0 after each step (:func:`sync_labels`) so that all ranks agree.
* **Exchanged per step:** the particles' (and label parameters') gradients (one all-reduce, n d floats), the
  objective and its parts (one all-reduce of a few floats, :func:`global_loss`), jd-vl's labels (n ints).
* **Warm starts are per shard:** each shard has its own copy of the OTDD term's solver (its potentials belong to
  that shard's problem), so a rank's warm start is the same as in the one-process run with S shards.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from dsflow.flows.particles import Particles
from dsflow.ot.costs import LabelCosts, OTDDSettings
from dsflow.ot.otdd import otdd

__all__ = [
    "ShardPlan",
    "ReferenceShards",
    "LocalShards",
    "ShardSolvers",
    "stratified_shards",
    "shard_plan",
    "global_loss_values",
    "sync_labels",
    "ddp_ignored_buffers",
    "check_replicated",
]


def stratified_shards(y: Tensor, num_shards: int) -> list[Tensor]:
    """Class-stratified partition of range(m) into ``num_shards`` sorted index tensors.

    Args:
        y: (m,) reference labels.
        num_shards: S >= 1, at most m.

    Returns:
        S index tensors (m_s,), disjoint, covering range(m); |m_s - m_t| <= 1 and each class c contributes
        floor or ceil of m_c / S samples to every shard.
    """
    m = y.shape[0]
    if num_shards < 1 or num_shards > m:
        raise ValueError(f"stratified_shards: need 1 <= reference_shards <= m = {m} reference samples, got {num_shards}")
    order = torch.sort(y.cpu(), stable=True).indices  # (m,) class by class, index order within a class
    return [order[s::num_shards].sort().values.to(y.device) for s in range(num_shards)]


@dataclass(frozen=True)
class ShardPlan:
    """The reference shards one process evaluates.

    Attributes:
        num_shards: S, over all processes.
        world_size: W, the number of processes.
        rank: this process's global rank r.
        shard_ids: the local shards r, r + W, ...
        indices: (m_s,) reference indices of each local shard.
        weights: W m_s / m for each local shard (the mean over ranks of the local losses is then F).
    """

    num_shards: int
    world_size: int
    rank: int
    shard_ids: tuple[int, ...]
    indices: tuple[Tensor, ...]
    weights: tuple[float, ...]


def shard_plan(y_ref: Tensor, num_shards: int, world_size: int, rank: int) -> ShardPlan:
    """The :class:`ShardPlan` of rank ``rank`` among ``world_size`` for S = ``num_shards`` shards of y_ref (m,)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"shard_plan: rank {rank} is outside a world of {world_size} processes")
    if num_shards < world_size:
        raise ValueError(
            f"model.init_args.reference_shards: {num_shards} shards for {world_size} processes; every process needs "
            f"at least one shard (set reference_shards >= {world_size}, or leave it unset for one per process)"
        )
    shards = stratified_shards(y_ref, num_shards)
    ids = tuple(range(rank, num_shards, world_size))
    m = y_ref.shape[0]
    weights = tuple(world_size * shards[s].shape[0] / m for s in ids)
    return ShardPlan(num_shards, world_size, rank, ids, tuple(shards[s] for s in ids), weights)


def _key(t: Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), t._version, t.device)


class ReferenceShards:
    """A :class:`ShardPlan` with the local shards' reference tensors gathered once (stable tensors, so solvers
    that cache reference-only work, like :class:`~dsflow.ot.WarmSinkhorn`, keep their cache)."""

    def __init__(self, plan: ShardPlan) -> None:
        self.plan = plan
        self._key: tuple | None = None
        self._parts: list[tuple[Tensor, Tensor]] = []

    def matches(self, num_shards: int, world_size: int, rank: int) -> bool:
        p = self.plan
        return (p.num_shards, p.world_size, p.rank) == (num_shards, world_size, rank)

    def parts(self, x_ref: Tensor, ref_index: Tensor) -> list[tuple[Tensor, Tensor]]:
        """[(x_ref[idx] (m_s, d), ref_index[idx] (m_s,))] for each local shard, cached while the inputs are."""
        key = (_key(x_ref), _key(ref_index))
        if key != self._key:
            self._parts = [(x_ref[idx], ref_index[idx]) for idx in self.plan.indices]
            self._key = key
        return self._parts

    def otdd(self, x: Tensor, x_ref: Tensor, labels: LabelCosts, settings: OTDDSettings,
             solver_of: Callable[[int], Any]) -> Tensor:
        """sum over local shards s of W m_s / m OTDD(rho, beta_s); ``solver_of(s)`` gives shard s's solver.

        Args:
            x: (n, d) particles; x_ref: (m, d) the whole reference; labels: global label rows and tables.
        """
        total = x.new_zeros(())
        for s, w, (xs, index) in zip(self.plan.shard_ids, self.plan.weights, self.parts(x_ref, labels.ref_index)):
            total = total + w * otdd(x, xs, labels._replace(ref_index=index), settings, solver=solver_of(s))
        return total


class LocalShards:
    """This process's :class:`ReferenceShards` for S = ``num_shards`` (None: one per process), planned again when
    the number of processes or the rank changes (a checkpoint resumed on another W)."""

    def __init__(self, num_shards: int | None) -> None:
        if num_shards is not None and num_shards < 1:
            raise ValueError(f"FlowModule: reference_shards must be >= 1, got {num_shards}")
        self.num_shards = num_shards
        self._shards: ReferenceShards | None = None

    def __call__(self, y_ref: Tensor, world_size: int, rank: int) -> ReferenceShards | None:
        """The shards of rank ``rank`` among ``world_size`` for y_ref (m,); None for one process and one shard (the
        plain OTDD)."""
        num = self.num_shards if self.num_shards is not None else world_size
        if num == 1 and world_size == 1:
            return None
        if self._shards is None or not self._shards.matches(num, world_size, rank):
            self._shards = ReferenceShards(shard_plan(y_ref, num, world_size, rank))
        return self._shards


class ShardSolvers:
    """One copy of a template solver per shard: warm-start state belongs to one shard's problem."""

    def __init__(self) -> None:
        self._copies: dict[int, Any] = {}
        self._restored: dict[int, Any] = {}

    def __call__(self, template: Any, shard: int) -> Any:
        if shard not in self._copies:
            self._copies[shard] = copy.deepcopy(template)
            self._copies[shard].load_state_dict(self._restored.pop(shard, {}))
        return self._copies[shard]

    def state_dict(self) -> dict[int, Any]:
        """Each shard solver's state (shards not yet used keep what was restored for them)."""
        return {**self._restored, **{k: c.state_dict() for k, c in self._copies.items()}}

    def load_state_dict(self, state: dict[int, Any]) -> None:
        self._copies, self._restored = {}, {int(k): v for k, v in state.items()}


def global_loss_values(values: Tensor, strategy: Any | None) -> Tensor:
    """(k,) mean over processes of a vector of detached loss values (identity in one process)."""
    if strategy is None or getattr(strategy, "world_size", 1) <= 1:
        return values
    return strategy.reduce(values, reduce_op="mean")


@torch.no_grad()
def sync_labels(particles: Particles, strategy: Any) -> None:
    """Give every rank rank 0's discrete labels y (n,) and class count (jd-vl clustering)."""
    y, num_classes = strategy.broadcast((particles.y.cpu(), particles.num_classes), src=0)
    particles.y = y.to(particles.y.device)
    particles.num_classes = int(num_classes)


def _fingerprint(tensors: dict[str, Tensor]) -> Tensor:
    """(3 k,) shape size, sum and sum of squares of each tensor, in float64 (equal data: equal fingerprints)."""
    rows = []
    for t in tensors.values():
        t64 = t.detach().to(torch.float64)
        rows.append(torch.stack([t64.new_tensor(float(t.numel())), t64.sum(), t64.pow(2).sum()]))
    return torch.cat(rows)


def check_replicated(tensors: dict[str, Tensor | None], strategy: Any) -> None:
    """Raise the same ValueError on every rank unless ``tensors`` are equal on all ranks (one all-gather).

    Every process loads the source and the reference itself; a data source that is not deterministic (an unseeded
    generator, a shuffled file listing) would give each rank another dataset and silently another functional.
    """
    loaded = {name: t for name, t in tensors.items() if t is not None}
    if len(loaded) < len(tensors):
        raise ValueError(f"check_replicated: {', '.join(n for n in tensors if n not in loaded)} not loaded")
    if getattr(strategy, "world_size", 1) <= 1:
        return
    local = _fingerprint(loaded).to(strategy.root_device)  # NCCL gathers device tensors only
    gathered = strategy.all_gather(local).reshape(-1, local.shape[0]).cpu()  # (W, 3 k)
    differs = (gathered != gathered[0]).any(0).reshape(-1, 3).any(1)  # (k,)
    if bool(differs.any()):
        names = [name for name, bad in zip(tensors, differs.tolist()) if bad]
        raise ValueError(
            f"{', '.join(names)} differ between processes: every rank must load the same data; seed the data "
            f"sources (e.g. `seed:` of synthetic datasets) so that they are deterministic"
        )


def ddp_ignored_buffers(module: torch.nn.Module) -> list[str]:
    """Names of all buffers of ``module``: DDP must not broadcast them at every forward.

    They are equal on every rank by construction (the reference loaded from the same source, labels synced by
    :func:`sync_labels`); a per-step broadcast would cost m d floats and bump the reference's version counter,
    which invalidates the solvers' cached reference terms.
    """
    return [name for name, _ in module.named_buffers()]
