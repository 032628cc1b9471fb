"""FlowModule: a LightningModule whose training step is one step of a Wasserstein gradient flow.

The particle step (paper eq. 17) is x_i <- x_i - tau * n * grad_{x_i} F(rho_n): F is a mean over particles, so
its gradient in one particle is O(1/n); multiplying by n turns it into that particle's velocity
-grad (dF/drho)(x_i), and the step size tau does not depend on n. The whole step exists once,
:meth:`FlowModule.flow_step`: objective, backward, this scaling, the optimizer's step (SGD = forward Euler,
momentum, Adam), entropy noise, the divergence check and the label update. Lightning's ``training_step`` calls it
(the module optimizes manually), and so does code that flows without a Trainer.

Entropy (paper section 5, internal energy T int rho log rho) is realised as Brownian noise added right after each
optimizer step (Euler-Maruyama): x <- x - tau grad F + sqrt(2 tau T) xi, xi ~ N(0, I), with tau the learning rate
of the particles' parameter group and T = ``temperature``. The noise comes from its own generator seeded with
``noise_seed`` (independent of the global seed), and the generator state is saved in checkpoints, so a resumed flow
draws the same noise as an uninterrupted one. With Adam the step is not tau grad F, but the noise still has
variance 2 tau T per coordinate and step.

Several processes (``--trainer.strategy ddp``): the particles are replicated, the reference is split into
``reference_shards`` shards (one per process by default) and F's OTDD part is the size-weighted mean of the OTDDs to
the shards; see :mod:`dsflow.flows.distributed` for what each rank computes and exchanges.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from dsflow.data.base import LabeledData
from dsflow.flows.distributed import (
    ReferenceShards,
    check_replicated,
    ddp_ignored_buffers,
    global_loss_values,
    shard_plan,
    sync_labels,
)
from dsflow.flows.dynamics import FeatureDriven, LabelDynamics
from dsflow.flows.objective import FlowLoss, FlowState, Objective, ObjectiveTerm, OTDDTerm
from dsflow.flows.particles import Particles, Reference

__all__ = ["FlowModule"]

_DIVERGED = (
    "Lower the step size or raise the entropic regularisation; checkpoints and trajectory snapshots written "
    "before this step are intact"
)


class FlowModule(L.LightningModule):
    """Flows a labeled dataset (the particles) along the gradient flow of an objective.

    Args:
        terms: objective terms (default: the OTDD to the reference alone).
        dynamics: label dynamics (default: fd-fl, :class:`~dsflow.flows.dynamics.FeatureDriven`).
        optimizer: optimizer factory over the module's parameters (default: SGD with step size 0.1, i.e. the
            forward Euler scheme with tau = 0.1).
        temperature: T >= 0 of the entropy term; 0 gives a deterministic flow.
        noise_seed: seed of the noise generator.
        reference_shards: S, the number of reference shards of the minibatch OTDD (None: one per process, i.e.
            the plain OTDD in one process). Fixing S makes the functional independent of the number of processes W
            (any W <= S; a multiple of W balances the work), so a one-process run with S shards reproduces a
            W-process run and a checkpoint resumes on any W <= S.
    """

    def __init__(
        self,
        terms: list[ObjectiveTerm] | None = None,
        dynamics: LabelDynamics | None = None,
        optimizer: OptimizerCallable | None = None,
        temperature: float = 0.0,
        noise_seed: int = 0,
        reference_shards: int | None = None,
    ) -> None:
        super().__init__()
        if temperature < 0:
            raise ValueError(f"FlowModule: temperature must be >= 0, got {temperature}")
        if reference_shards is not None and reference_shards < 1:
            raise ValueError(f"FlowModule: reference_shards must be >= 1, got {reference_shards}")
        self.temperature = float(temperature)
        self.reference_shards = reference_shards
        self._shards: ReferenceShards | None = None
        self.noise = torch.Generator().manual_seed(noise_seed)
        self.objective = Objective(terms if terms is not None else [OTDDTerm()])
        self.dynamics = dynamics if dynamics is not None else FeatureDriven()
        self.optimizer_factory = optimizer
        self.particles = Particles()
        self.reference = Reference()
        self.last_loss: FlowLoss | None = None
        self.automatic_optimization = False  # training_step takes the whole step itself: flow_step

    # ---------------------------------------------------------------- data
    def setup(self, stage: str) -> None:
        self._setup_data()
        p, r = self.particles, self.reference
        check_replicated({"source features": p.x, "source labels": p.y, "reference features": r.x,
                          "reference labels": r.y}, self.trainer.strategy if self._trainer is not None else None)
        self._ddp_params_and_buffers_to_ignore = ddp_ignored_buffers(self)  # read by DDP when it wraps the module
        self._local_shards()  # a reference_shards that does not fit the processes fails here, before any step

    def _setup_data(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            if not self.particles.initialized:
                raise ValueError("FlowModule: no data; pass a FlowDataModule to the trainer or call init_data()")
            return
        self.init_data(datamodule.source, datamodule.reference, keep_particles=self.particles.initialized)

    def init_data(self, source: LabeledData, reference: LabeledData, keep_particles: bool = False) -> None:
        """Set the reference and (unless ``keep_particles``) start the particles from ``source``."""
        if source.feature_shape != reference.feature_shape:
            raise ValueError(
                f"FlowModule: source '{source.name}' has feature shape {source.feature_shape} but reference "
                f"'{reference.name}' has {reference.feature_shape}; resize one of them (e.g. the dataset's "
                f"`size`/`channels` options) so that both match"
            )
        distance = self.objective.label_distance
        if distance is not None:
            _check_class_sizes(reference, distance.min_class_size)
            if self.dynamics.source_stats_from_samples:
                _check_class_sizes(source, distance.min_class_size)
        if not keep_particles:
            self.particles.init_from(source)
        self.reference.init_from(reference)
        self.dynamics.setup(self.particles, self.reference)

    # ---------------------------------------------------------------- objective
    def state(self) -> FlowState:
        """The current :class:`FlowState`, with label tables when a term needs them."""
        p, r = self.particles, self.reference
        inputs = self.objective.table_inputs()
        labels = None if inputs is None else self.dynamics.label_costs(p, r, inputs)
        assert p.x is not None
        return FlowState(p.x, p.y, p.num_classes, r.x, r.y, r.num_classes, labels, self._local_shards())

    def _local_shards(self) -> ReferenceShards | None:
        """This process's reference shards (None: one process, one shard; the plain OTDD)."""
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self._trainer is not None else (1, 0)
        num = self.reference_shards if self.reference_shards is not None else world
        if num == 1 and world == 1:
            return None
        if self._shards is None or not self._shards.matches(num, world, rank):
            self._shards = ReferenceShards(shard_plan(self.reference.y, num, world, rank))
        return self._shards

    def global_loss(self, loss: FlowLoss) -> FlowLoss:
        """``loss`` detached and averaged over processes: F itself (each process holds its shards' part)."""
        values = torch.stack([loss.total.detach(), *(v.detach() for v in loss.parts.values())])  # (1 + terms,)
        values = global_loss_values(values, self.trainer.strategy if self._trainer is not None else None)
        return FlowLoss(values[0], dict(zip(loss.parts, values[1:])))

    def compute_objective(self) -> FlowLoss:
        """F at the current particles (differentiable in the parameters)."""
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
        try:
            loss = self.compute_objective()
        except FloatingPointError as err:
            raise FloatingPointError(f"FlowModule: flow diverged at step {step}: {err}. {_DIVERGED}") from err
        self.last_loss = self.global_loss(loss)  # the same on every rank: logs, summary and divergence checks agree
        if self._trainer is not None:
            self.manual_backward(loss.total)
        else:
            loss.total.backward()
        self.scale_grads()
        optimizer.step()
        if self.temperature > 0:
            self.add_noise(_particle_lr(optimizer, self.particles.x))
        self._check_finite(step)
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
        loss = self.flow_step(self.optimizers())
        assert self.last_loss is not None
        self.log("train/objective", self.last_loss.total, prog_bar=True)
        if len(loss.parts) > 1:
            self.log_dict({f"train/{k}": v for k, v in self.last_loss.parts.items()})
        return loss.total

    @torch.no_grad()
    def add_noise(self, tau: float) -> None:
        """Euler-Maruyama entropy step x <- x + sqrt(2 tau T) xi, xi ~ N(0, I) (n, d), tau the step size."""
        x = self.particles.x
        assert x is not None
        xi = torch.randn(x.shape, generator=self.noise, dtype=x.dtype)  # drawn on CPU: same stream on any device
        x.add_(xi.to(x.device), alpha=(2 * tau * self.temperature) ** 0.5)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["noise_generator"] = self.noise.get_state()
        if self._trainer is not None and self.trainer.optimizers:
            checkpoint["optimizer_class"] = _class_name(self.trainer.optimizers[0])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "noise_generator" in checkpoint:
            self.noise.set_state(checkpoint["noise_generator"])
        _count_steps_as_manual(checkpoint)
        self._check_resumed_optimizer(checkpoint)

    def _check_resumed_optimizer(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, with both names, a checkpoint whose optimizer state belongs to another optimizer than the one
        this run configures (torch would fail later with a bare KeyError such as 'momentum')."""
        states = checkpoint.get("optimizer_states") or []
        if not states:
            return
        probe = self.configure_optimizers_for([torch.nn.Parameter(torch.zeros(1))])
        saved = checkpoint.get("optimizer_class")
        saved_keys = set(states[0].get("param_groups", [{}])[0]) - {"params"}
        keys = set(probe.param_groups[0]) - {"params"}
        if (saved is not None and saved != _class_name(probe)) or (saved is None and saved_keys != keys):
            raise ValueError(
                f"FlowModule: the checkpoint's optimizer state is {saved or 'of another optimizer'} (options "
                f"{sorted(saved_keys)}), but this run configures {_class_name(probe)}; resume with the same "
                f"model.init_args.optimizer as the run that wrote it (its config.yaml in the run directory)"
            )

    def _check_finite(self, step: int) -> None:
        """Stop with the step number when the objective or the particles stop being finite (one host sync)."""
        x = self.particles.x
        assert x is not None and self.last_loss is not None
        objective = self.last_loss.total
        if bool(torch.isfinite(objective) & torch.isfinite(x).all()):
            return
        what = f"the objective became {objective.item()}" if not torch.isfinite(objective) else (
            f"{int((~torch.isfinite(x)).sum())} particle coordinates became NaN/inf"
        )
        raise FloatingPointError(f"FlowModule: flow diverged at step {step}: {what}. {_DIVERGED}")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.configure_optimizers_for([p for p in self.parameters() if p.requires_grad])

    def configure_optimizers_for(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The configured optimizer (default: SGD with step size 0.1) over ``params``."""
        if self.optimizer_factory is None:
            return torch.optim.SGD(params, lr=0.1)
        try:
            optimizer = self.optimizer_factory(params)
        except ValueError as err:  # e.g. torch's "Invalid learning rate: -0.1"
            raise ValueError(f"model.init_args.optimizer: {err}") from err
        for group in optimizer.param_groups:
            if not group.get("lr", 1.0) > 0:
                raise ValueError(f"model.init_args.optimizer.init_args.lr: the step size must be positive, got {group['lr']}")
        return optimizer


def _class_name(optimizer: torch.optim.Optimizer) -> str:
    """``module.Class`` of a torch optimizer."""
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"


def _count_steps_as_manual(checkpoint: dict[str, Any]) -> None:
    """Checkpoints written while the module optimized automatically count its steps as automatic optimizer steps;
    Lightning reads a manually optimizing module's global step from the manual counter: carry the count over."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic and manual and manual["total"]["completed"] == 0 and automatic["total"]["completed"] > 0:
        loop["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(automatic)


def _check_class_sizes(data: LabeledData, min_size: int) -> None:
    """Every class present in ``data`` needs ``min_size`` samples (2 for a covariance)."""
    counts = torch.bincount(data.y, minlength=data.num_classes)
    small = torch.nonzero((counts > 0) & (counts < min_size)).flatten().tolist()
    if small:
        raise ValueError(
            f"{data.name}: classes {small} have {counts[small].tolist()} sample(s) but the label distance needs at "
            f"least {min_size} per class (a covariance is undefined for one sample): drop those classes, add "
            f"samples, or use dsflow.ot.ExactLabelDistance"
        )


def _particle_lr(optimizer: torch.optim.Optimizer, x: Tensor | None) -> float:
    """The step size tau of the parameter group that holds the particles x."""
    for group in optimizer.param_groups:
        if any(p is x for p in group["params"]):
            return float(group["lr"])
    raise ValueError("FlowModule: the particles are in no optimizer parameter group; cannot size the noise step")
