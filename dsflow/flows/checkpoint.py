"""A flow's checkpoint beyond its state dict: the noise generator, the optimizer's name, and old-checkpoint upgrades.

:class:`~dsflow.flows.FlowModule`'s ``on_save_checkpoint`` and ``on_load_checkpoint`` call these; each takes the
checkpoint dict Lightning hands to those hooks. Entries this module adds to a checkpoint:

* ``noise_generator``: the entropy noise generator's state (a CPU uint8 tensor), so that a resumed flow draws the
  same noise as an uninterrupted one;
* ``optimizer_class``: ``module.Class`` of the optimizer that wrote ``optimizer_states``, so that resuming with
  another optimizer fails with both names instead of torch's bare ``KeyError`` (e.g. 'momentum').

Every entry is a tensor or a plain value: ``torch.load(..., weights_only=True)`` reads the checkpoint.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable

from dsflow.flows.entropy import EntropyNoise, GeneratorState, restore_noise_state
from dsflow.flows.optimizer import build_optimizer

__all__ = [
    "NOISE_KEY",
    "OPTIMIZER_KEY",
    "GeneratorState",
    "save_noise_state",
    "restore_noise_state",
    "save_optimizer_class",
    "check_resumed_optimizer",
    "optimizer_class_name",
    "count_steps_as_manual",
    "save_flow_entries",
    "load_flow_entries",
]

NOISE_KEY = "noise_generator"
OPTIMIZER_KEY = "optimizer_class"


def save_noise_state(checkpoint: dict[str, Any], noise: EntropyNoise) -> None:
    """Store the entropy noise's state (:meth:`EntropyNoise.state`) under ``noise_generator``."""
    checkpoint[NOISE_KEY] = noise.state()


def optimizer_class_name(optimizer: torch.optim.Optimizer) -> str:
    """``module.Class`` of a torch optimizer."""
    return f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"


def save_optimizer_class(checkpoint: dict[str, Any], optimizers: list[torch.optim.Optimizer]) -> None:
    """Store the first optimizer's ``module.Class`` under ``optimizer_class`` (nothing without optimizers)."""
    if optimizers:
        checkpoint[OPTIMIZER_KEY] = optimizer_class_name(optimizers[0])


def check_resumed_optimizer(checkpoint: dict[str, Any], probe: torch.optim.Optimizer) -> None:
    """Refuse, with both names, a checkpoint whose optimizer state belongs to another optimizer than ``probe``
    (the optimizer this run configures, over any parameter): torch would fail later with a bare KeyError.

    Checkpoints without ``optimizer_class`` (written before it was saved) are compared by their option names.
    """
    states = checkpoint.get("optimizer_states") or []
    if not states:
        return
    saved = checkpoint.get(OPTIMIZER_KEY)
    saved_keys = set(states[0].get("param_groups", [{}])[0]) - {"params"}
    keys = set(probe.param_groups[0]) - {"params"}
    if (saved is not None and saved != optimizer_class_name(probe)) or (saved is None and saved_keys != keys):
        raise ValueError(
            f"FlowModule: the checkpoint's optimizer state is {saved or 'of another optimizer'} (options "
            f"{sorted(saved_keys)}), but this run configures {optimizer_class_name(probe)}; resume with the same "
            f"model.init_args.optimizer as the run that wrote it (its config.yaml in the run directory)"
        )


def count_steps_as_manual(checkpoint: dict[str, Any]) -> None:
    """Upgrade a checkpoint written while the module optimized automatically: such checkpoints count its steps as
    automatic optimizer steps, and Lightning reads a manually optimizing module's global step from the manual
    counter; the count is carried over (in place)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic and manual and manual["total"]["completed"] == 0 and automatic["total"]["completed"] > 0:
        loop["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(automatic)


def save_flow_entries(checkpoint: dict[str, Any], noise: EntropyNoise,
                      optimizers: list[torch.optim.Optimizer]) -> None:
    """``FlowModule.on_save_checkpoint``: the noise generator's state and the optimizer's class."""
    save_noise_state(checkpoint, noise)
    save_optimizer_class(checkpoint, optimizers)


def load_flow_entries(checkpoint: dict[str, Any], noise: EntropyNoise,
                      optimizer: OptimizerCallable | None) -> None:
    """``FlowModule.on_load_checkpoint``: restore the noise generator, upgrade old step counts (in place) and,
    when the checkpoint holds optimizer state, check it against the optimizer this run configures (``optimizer``,
    the module's factory, built over a probe parameter)."""
    if NOISE_KEY in checkpoint:
        noise.load(checkpoint[NOISE_KEY])
    count_steps_as_manual(checkpoint)
    if checkpoint.get("optimizer_states"):
        check_resumed_optimizer(checkpoint, build_optimizer(optimizer, [torch.nn.Parameter(torch.zeros(1))]))
