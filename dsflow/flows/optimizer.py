"""The flow's optimizer, built from the YAML factory (``model.init_args.optimizer``) and checked."""

from __future__ import annotations

import torch
from lightning.pytorch.cli import OptimizerCallable

__all__ = ["build_optimizer"]


def build_optimizer(factory: OptimizerCallable | None, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``factory(params)`` (None: SGD with step size 0.1, forward Euler with tau = 0.1), with positive step sizes."""
    if factory is None:
        return torch.optim.SGD(params, lr=0.1)
    try:
        optimizer = factory(params)
    except ValueError as err:  # e.g. torch's "Invalid learning rate: -0.1"
        raise ValueError(f"model.init_args.optimizer: {err}") from err
    for group in optimizer.param_groups:
        if not group.get("lr", 1.0) > 0:
            raise ValueError(
                f"model.init_args.optimizer.init_args.lr: the step size must be positive, got {group['lr']}")
    return optimizer

