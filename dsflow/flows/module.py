"""FlowModule: a LightningModule whose training step is one step of a Wasserstein gradient flow.

The particle step (paper eq. 17) is x_i <- x_i - tau * n * grad_{x_i} F(rho_n): F is a mean over particles, so its
gradient in one particle is O(1/n); times n it is that particle's velocity -grad (dF/drho)(x_i), and the step size
tau does not depend on n. The whole step exists once, :meth:`FlowModule.flow_step`: Lightning's ``training_step``
calls it (the module optimizes manually), and so does code that flows without a Trainer.

The data arrive as arguments (``flow.py`` links them from the datamodule); :meth:`FlowModule.configure_model` builds
the particles. Entropy noise: :mod:`dsflow.flows.entropy`; checkpoint entries: :mod:`dsflow.flows.checkpoint`; what
callbacks read: :class:`~dsflow.flows.interface.FlowLike`; several processes: :mod:`dsflow.flows.distributed`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from dsflow.data.base import LabeledData
from dsflow.flows.checkpoint import load_flow_entries, save_flow_entries
from dsflow.flows.checks import check_finite, check_flow_data, divergence_at
from dsflow.flows.distributed import (
    LocalShards, ReferenceShards, check_replicated, ddp_ignored_buffers, global_loss_values, sync_labels,
)
from dsflow.flows.dynamics import FeatureDriven, LabelDynamics
from dsflow.flows.entropy import EntropyNoise, add_entropy_noise, particle_step_size
from dsflow.flows.objective import FlowLoss, FlowState, Objective, ObjectiveTerm, OTDDTerm
from dsflow.flows.optimizer import build_optimizer
from dsflow.flows.particles import Particles, Reference
from dsflow.process import MatmulPrecision, float32_matmul_precision

__all__ = ["FlowModule"]


class FlowModule(L.LightningModule):
    """Flows a labeled dataset (the particles) along the gradient flow of an objective.

    Args:
        terms: objective terms (default: the OTDD to the reference alone).
        dynamics: label dynamics (default: fd-fl, :class:`~dsflow.flows.dynamics.FeatureDriven`).
        optimizer: optimizer factory over the module's parameters (default: SGD with step size 0.1, i.e. the
            forward Euler scheme with tau = 0.1).
        temperature: T >= 0 of the entropy term (:mod:`dsflow.flows.entropy`); 0 gives a deterministic flow.
        noise_seed: seed of the noise generator (:class:`~dsflow.flows.entropy.EntropyNoise`, on the particles' device).
        matmul_precision: float32 matmul precision of the steps' products, whatever the process's
            (:func:`dsflow.process.float32_matmul_precision`; "high" allows TF32 on GPUs, docs/speed.md; None: the
            process's).
        reference_shards: S, the reference shards of the minibatch OTDD (None: one per process; in one process
            the plain OTDD). A fixed S makes F independent of the number of processes W <= S: a one-process run
            with S shards reproduces a W-process run (:mod:`dsflow.flows.distributed`).
        source: the dataset that flows (the particles' start); linked from ``data.source`` by ``flow.py``.
        reference: the fixed target dataset; linked from ``data.reference`` by ``flow.py``.
    """

    def __init__(
        self,
        terms: list[ObjectiveTerm] | None = None,
        dynamics: LabelDynamics | None = None,
        optimizer: OptimizerCallable | None = None,
        temperature: float = 0.0,
        noise_seed: int = 0,
        reference_shards: int | None = None,
        source: LabeledData | None = None,
        reference: LabeledData | None = None,
        matmul_precision: MatmulPrecision | None = "highest",
    ) -> None:
        super().__init__()
        if temperature < 0:
            raise ValueError(f"FlowModule: temperature must be >= 0, got {temperature}")
        if (source is None) != (reference is None):
            raise ValueError("FlowModule: give both source and reference, or neither (then call init_data)")
        self.temperature, self.matmul_precision = float(temperature), matmul_precision
        self._shards = LocalShards(reference_shards)
        self.noise = EntropyNoise(noise_seed)
        self.objective = Objective(terms if terms is not None else [OTDDTerm()])
        self.dynamics = dynamics if dynamics is not None else FeatureDriven()
        self.optimizer_factory = optimizer
        self.particles = Particles()
        self.reference = Reference()
        self._data = (source, reference) if source is not None and reference is not None else None
        self.last_loss: FlowLoss | None = None
        self.automatic_optimization = False  # training_step takes the whole step itself: flow_step

    # ---------------------------------------------------------------- data
    def configure_model(self) -> None:
        """Build the particles and the reference from ``source`` and ``reference`` (once: restored particles are kept;
        ``load_from_checkpoint`` has no data); in a fit, check that every rank holds the same data, plan its shards."""
        if self._data is not None and not self.reference.initialized:
            self.init_data(*self._data, keep_particles=self.particles.initialized)
        if self._trainer is None:
            return
        if not self.particles.initialized or not self.reference.initialized:
            raise ValueError("FlowModule: no data; pass source and reference (flow.py links them from the "
                             "datamodule) or call init_data() before fitting")
        p, r = self.particles, self.reference
        tensors = {"source features": p.x, "source labels": p.y, "reference features": r.x, "reference labels": r.y}
        check_replicated(tensors, self.trainer.strategy)  # every rank loaded the same data
        self._ddp_params_and_buffers_to_ignore = ddp_ignored_buffers(self)  # read by DDP when it wraps the module
        self._local_shards()  # a reference_shards that does not fit the processes fails here, before any step

    def init_data(self, source: LabeledData, reference: LabeledData, keep_particles: bool = False) -> None:
        """Set the reference and (unless ``keep_particles``) start the particles from ``source``."""
        check_flow_data(source, reference, self.objective.label_distance, self.dynamics.source_stats_from_samples)
        if not keep_particles:
            self.particles.init_from(source)
        self.reference.init_from(reference)
        self.dynamics.setup(self.particles, self.reference)

    # ---------------------------------------------------------------- objective
    def state(self) -> FlowState:
        """The current :class:`FlowState`, with label tables when a term needs them."""
        p, r, x = self.particles, self.reference, self.particles.features()
        inputs = self.objective.table_inputs(x.device)
        labels = None if inputs is None else self.dynamics.label_costs(p, r, inputs)
        return FlowState(x, p.y, p.num_classes, r.x, r.y, r.num_classes, labels, self._local_shards())

    def _local_shards(self) -> ReferenceShards | None:
        """This process's reference shards (None: one process, one shard; the plain OTDD)."""
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self._trainer is not None else (1, 0)
        return self._shards(self.reference.y, world, rank)

    def global_loss(self, loss: FlowLoss) -> FlowLoss:
        """``loss`` detached and averaged over processes: F itself (each process holds its shards' part)."""
        values = torch.stack([loss.total.detach(), *(v.detach() for v in loss.parts.values())])  # (1 + terms,)
        values = global_loss_values(values, self.trainer.strategy if self._trainer is not None else None)
        return FlowLoss(values[0], dict(zip(loss.parts, values[1:])))

    def compute_objective(self, keep_state: bool = False) -> FlowLoss:
        """F at the current particles (differentiable in the parameters), at the flow's matmul precision;
        ``keep_state``: the solvers' warm starts are left as they were (:meth:`Objective.state_kept`)."""
        with float32_matmul_precision(self.matmul_precision), self.objective.state_kept(keep_state):
            return self.objective(self.state())

    # ---------------------------------------------------------------- training
    def flow_step(self, optimizer: torch.optim.Optimizer) -> FlowLoss:
        """One flow step (paper eq. 17); the only place the step is written.

        1. F at the current particles (``last_loss`` becomes its global value, the mean over processes);
        2. backward (through Lightning when a Trainer drives the module: DDP all-reduces the gradients);
        3. gradients times n (eq. 17), and the label parameters' own rule (jd-fl, jd-vl);
        4. the optimizer's step, then the entropy noise sqrt(2 tau T) xi;
        5. the divergence check (before any callback can checkpoint a diverged state);
        6. the label update (jd-vl clustering), rank 0's labels broadcast to every process.

        Args:
            optimizer: over the module's parameters (Lightning's wrapper or a plain ``torch.optim`` optimizer).

        Returns:
            this process's F (its share of the reference shards), the value backpropagated.
        """
        step = self.global_step  # the step being taken (Lightning counts it once the optimizer has stepped)
        optimizer.zero_grad()
        with float32_matmul_precision(self.matmul_precision), divergence_at(step):  # errors say the step
            loss = self.compute_objective()
            self.last_loss = self.global_loss(loss)  # the same on every rank: logs, summary and checks agree
            self.manual_backward(loss.total) if self._trainer is not None else loss.total.backward()
        self.scale_grads()
        optimizer.step()
        x = self.particles.features()
        if self.temperature > 0:
            add_entropy_noise(x, self.noise, particle_step_size(optimizer, x), self.temperature)
        check_finite(self.last_loss.total, x, step)
        self.dynamics.after_step(self.particles)
        if self.dynamics.variable_labels and self._trainer is not None and self.trainer.world_size > 1:
            sync_labels(self.particles, self.trainer.strategy)  # rank 0's clustering for every rank
        return loss

    def scale_grads(self) -> None:
        """Eq. 17: the particles' gradients times n (velocity = n * grad of the mean-weighted functional)."""
        x = self.particles.x
        if x is not None and x.grad is not None:
            x.grad.mul_(self.particles.n)
        self.dynamics.scale_grads(self.particles)  # the same rule for label parameters (jd-fl, jd-vl)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        del batch, batch_idx
        optimizer = self.optimizers()
        if not isinstance(optimizer, torch.optim.Optimizer):  # Lightning's wrapper subclasses the one it wraps
            raise RuntimeError(f"FlowModule: configure_optimizers must give one optimizer, got {optimizer!r}")
        loss = self.flow_step(optimizer)
        logged = self.last_loss if self.last_loss is not None else self.global_loss(loss)  # set by flow_step
        self.log("train/objective", logged.total, prog_bar=True)
        if len(loss.parts) > 1:
            self.log_dict({f"train/{k}": v for k, v in logged.parts.items()})
        return loss.total

    # ---------------------------------------------------------------- checkpoints and optimizer
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_flow_entries(checkpoint, self.noise, self.trainer.optimizers if self._trainer is not None else [])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        load_flow_entries(checkpoint, self.noise, self.optimizer_factory)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The configured optimizer (default: SGD with step size 0.1) over the trainable parameters."""
        return build_optimizer(self.optimizer_factory, [p for p in self.parameters() if p.requires_grad])
