"""Entropy (paper section 5, internal energy T int rho log rho) as Brownian noise after each optimizer step.

Euler-Maruyama: x <- x - tau grad F + sqrt(2 tau T) xi, xi ~ N(0, I), with tau the learning rate of the particles'
parameter group and T the temperature. The noise comes from its own generator (:class:`EntropyNoise`, independent
of the global seed), drawn on the particles' own device (no host-to-device copy a step); :mod:`dsflow.flows.checkpoint`
saves its state, so a resumed flow draws the same noise as an uninterrupted one on the same kind of device. A CPU
and a GPU draw different streams from the same seed (different generators): a flow resumed on the other kind
restarts the stream from the seed and the step (and says so). With Adam the step is not tau grad F, but the noise
still has variance 2 tau T per coordinate and step.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["EntropyNoise", "GeneratorState", "add_entropy_noise", "particle_step_size", "restore_noise_state"]


class GeneratorState(Protocol):
    """What :func:`restore_noise_state` needs of a generator (``torch.Generator`` has it)."""

    def set_state(self, new_state: Tensor) -> Any: ...


def restore_noise_state(generator: GeneratorState, state: Tensor) -> None:
    """Give ``generator`` a state saved by :func:`save_noise_state` (the bytes of a torch generator's state).

    ``Generator.set_state`` takes only a CPU ByteTensor, but a checkpoint loaded with ``map_location="cuda"``
    (``FlowModule.load_from_checkpoint(path, map_location="cuda")``) holds the state on the GPU: it is moved to
    the CPU as uint8 first (the bytes are unchanged).
    """
    if not isinstance(state, Tensor):
        raise TypeError(f"checkpoint['noise_generator']: expected the noise generator's state (a tensor), "
                        f"got {type(state).__name__}")
    generator.set_state(state.to("cpu", torch.uint8))


class EntropyNoise:
    """The entropy term's noise xi ~ N(0, I), drawn on the particles' device from a generator of its own.

    The generator is made at the first draw, on that draw's device, seeded with ``seed``; :meth:`state` and
    :meth:`load` carry it through checkpoints (a state restored before the first draw is applied then, on the
    device the flow runs on).

    Args:
        seed: the generator's seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.draws = 0  # draws so far: where a stream restarted on another kind of device begins
        self._restored: tuple[str, Tensor] | None = None  # (device type, state) from a checkpoint, not yet applied

    def draw(self, like: Tensor) -> Tensor:
        """xi ~ N(0, I) of ``like``'s shape, dtype and device."""
        xi = torch.randn(like.shape, generator=self._generator(like.device), dtype=like.dtype, device=like.device)
        self.draws += 1
        return xi

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None and self.generator.device == device:
            return self.generator
        gen = torch.Generator(device=device).manual_seed(self.seed)
        state: Tensor | None
        if self.generator is not None:  # the flow moved to another device: its stream goes with it if it can
            kind, state = self.generator.device.type, self.generator.get_state()
        else:  # the first draw: a checkpoint's stream, or a fresh one
            kind, state = self._restored if self._restored is not None else (device.type, None)
        if kind != device.type:
            gen.manual_seed(self.seed + self.draws)
            warnings.warn(f"EntropyNoise: the noise stream of a flow on {kind} cannot continue on {device.type} "
                          f"(different generators); it restarts from seed {self.seed} + {self.draws} steps",
                          RuntimeWarning, stacklevel=3)
        elif state is not None:
            restore_noise_state(gen, state)
        self._restored, self.generator = None, gen
        return gen

    def state(self) -> dict[str, Any]:
        """The generator's device type and state (a CPU uint8 tensor; None before the first draw), and the draws."""
        if self._restored is not None:
            kind, state = self._restored
        elif self.generator is not None:
            kind, state = self.generator.device.type, self.generator.get_state()
        else:
            kind, state = None, None
        return {"device": kind, "state": state, "draws": self.draws}

    def load(self, saved: Any) -> None:
        """Continue from :meth:`state` (or from a bare CPU generator state, as older checkpoints hold it)."""
        if isinstance(saved, Tensor):
            saved = {"device": "cpu", "state": saved, "draws": 0}
        if not isinstance(saved, dict) or not {"device", "state"} <= set(saved):
            raise TypeError(f"EntropyNoise: expected a saved noise state (a dict with device and state, or a tensor), "
                            f"got {type(saved).__name__}")
        self.generator, self.draws = None, int(saved.get("draws", 0))
        self._restored = None if saved["state"] is None else (str(saved["device"]), saved["state"])


@torch.no_grad()
def add_entropy_noise(x: Tensor, noise: EntropyNoise, tau: float, temperature: float) -> None:
    """x <- x + sqrt(2 tau T) xi in place, xi ~ N(0, I) of x's shape (n, d), drawn on x's device by ``noise``."""
    x.add_(noise.draw(x), alpha=(2 * tau * temperature) ** 0.5)


def particle_step_size(optimizer: torch.optim.Optimizer, x: Tensor | None) -> float:
    """The step size tau of the parameter group that holds the particles x (what sizes the entropy noise)."""
    for group in optimizer.param_groups:
        if any(p is x for p in group["params"]):
            return float(group["lr"])
    raise ValueError("FlowModule: the particles are in no optimizer parameter group; cannot size the noise step")
