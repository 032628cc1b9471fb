"""Entropy (paper section 5, internal energy T int rho log rho) as Brownian noise after each optimizer step.

Euler-Maruyama: x <- x - tau grad F + sqrt(2 tau T) xi, xi ~ N(0, I), with tau the learning rate of the particles'
parameter group and T the temperature. The noise comes from its own generator (independent of the global seed),
drawn on the CPU so that the stream is the same on any device; :mod:`dsflow.flows.checkpoint` saves its state, so
a resumed flow draws the same noise as an uninterrupted one. With Adam the step is not tau grad F, but the noise
still has variance 2 tau T per coordinate and step.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["add_entropy_noise", "particle_step_size"]


@torch.no_grad()
def add_entropy_noise(x: Tensor, generator: torch.Generator, tau: float, temperature: float) -> None:
    """x <- x + sqrt(2 tau T) xi in place, xi ~ N(0, I) of x's shape (n, d), drawn from ``generator`` on the CPU."""
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # drawn on CPU: same stream on any device
    x.add_(xi.to(x.device), alpha=(2 * tau * temperature) ** 0.5)


def particle_step_size(optimizer: torch.optim.Optimizer, x: Tensor | None) -> float:
    """The step size tau of the parameter group that holds the particles x (what sizes the entropy noise)."""
    for group in optimizer.param_groups:
        if any(p is x for p in group["params"]):
            return float(group["lr"])
    raise ValueError("FlowModule: the particles are in no optimizer parameter group; cannot size the noise step")
