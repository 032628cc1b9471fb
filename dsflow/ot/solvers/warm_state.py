"""What :class:`~dsflow.ot.WarmSinkhorn` keeps between calls: the potentials of the last problem
it solved (:class:`WarmState`), the cached reference term, and the autograd node that returns the envelope
gradients (:class:`EnvelopeValue`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from dsflow.ot.costs import OTDDSettings

__all__ = ["WarmState", "EnvelopeValue", "host_later"]

_REQUIRED = ("n", "m", "settings", "g")


@dataclass
class WarmState:
    """Potentials of one outer problem (n sources, m references, ``settings``), the start of the next call.

    Attributes:
        n, m: sizes of the source and the reference.
        settings: the outer settings they were solved with.
        device, dtype: of the potentials; None for a state restored from a checkpoint and not yet placed.
        g: (m,) cross potential of the reference.
        f: (n,) cross potential of the source (None: not known; a multiscale guess or an older checkpoint).
        p: (n,) potential of the self problem OT(a, a) (None without debias).
        moved: (2,) largest change of the cross and of the self potentials in the call that made them (a float
            for both in older checkpoints; None: a multiscale guess, which anneals as if nothing moved).
        cold_levels: epsilon levels of the cold start this chain of warm starts began with (None: not known).
        read_moved: reads ``moved`` to the host without stalling the device (:func:`host_later`); live states
            only, never saved.
    """

    n: int
    m: int
    settings: OTDDSettings
    device: torch.device | None
    dtype: torch.dtype | None
    g: Tensor
    f: Tensor | None = None
    p: Tensor | None = None
    moved: Tensor | float | None = None
    cold_levels: int | None = None
    read_moved: Callable[[], list[float]] | None = dataclasses.field(default=None, repr=False, compare=False)

    def solves(self, n: int, m: int, device: torch.device, dtype: torch.dtype, settings: OTDDSettings) -> bool:
        """Whether these potentials belong to that problem."""
        return (self.n, self.m, self.device, self.dtype, self.settings) == (n, m, device, dtype, settings)

    def moved_pair(self) -> list[float]:
        """[cross, self] potential changes of the previous call, on the host."""
        if self.read_moved is not None:
            return self.read_moved()
        if self.moved is None:
            return [0.0, 0.0]
        values = torch.as_tensor(self.moved).flatten().tolist()
        return values * 2 if len(values) == 1 else values

    def placed(self, device: torch.device, dtype: torch.dtype) -> "WarmState":
        """This (restored) state with its floating tensors on ``device`` in ``dtype``."""
        def put(t: Any) -> Any:
            return t.to(device, dtype) if isinstance(t, Tensor) and t.is_floating_point() else t

        return dataclasses.replace(self, device=device, dtype=dtype, g=put(self.g), f=put(self.f), p=put(self.p),
                                   moved=put(self.moved), read_moved=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors (on the CPU) and Python values: loadable with ``torch.load(weights_only=True)``."""
        out: dict[str, Any] = {"f": self.f, "g": self.g, "cold_levels": self.cold_levels, "p": self.p,
                               "moved": self.moved}
        out = {k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in out.items() if v is not None}
        return {**out, "n": self.n, "m": self.m, "settings": dataclasses.asdict(self.settings)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "WarmState":
        """The state of :meth:`to_dict` (device and dtype unset until placed)."""
        missing = [k for k in _REQUIRED if k not in state]
        unknown = sorted(set(state) - {*_REQUIRED, "f", "p", "moved", "cold_levels"})
        if missing or unknown:
            raise ValueError(f"WarmSinkhorn state: missing keys {missing}, unknown keys {unknown}")
        return cls(int(state["n"]), int(state["m"]), OTDDSettings(**state["settings"]), None, None, state["g"],
                   state.get("f"), state.get("p"), state.get("moved"), state.get("cold_levels"))


def host_later(t: Tensor) -> Callable[[], list[float]]:
    """A reader of the small device tensor t that does not stall the device: on CUDA, t is copied to pinned host
    memory behind the work already queued on t's own device and stream, and the reader waits for that copy alone
    (by the next flow step, long done) instead of for everything queued since; elsewhere it reads t.

    The copy and its event are placed on t's device, not on the current one: a flow on ``cuda:1`` while
    ``cuda:0`` is current (a module moved by hand, outside Lightning) must not read the pinned buffer before
    ``cuda:1`` has written it."""
    if t.device.type != "cuda":
        return lambda: t.tolist()
    with torch.cuda.device(t.device):
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch leaves its __init__ unannotated
        done.record(torch.cuda.current_stream(t.device))

    def read() -> list[float]:
        done.synchronize()
        return host.tolist()

    return read


class EnvelopeValue(torch.autograd.Function):
    """A precomputed value whose gradients in x, ss and sr are given (envelope theorem)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ss: Tensor, sr: Tensor, value: Tensor, grad_x: Tensor | None,
                grad_ss: Tensor | None, grad_sr: Tensor | None) -> Tensor:
        ctx.save_for_backward(grad_x, grad_ss, grad_sr)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_ss, grad_sr = ctx.saved_tensors
        scale = [None if g is None else grad_out * g for g in (grad_x, grad_ss, grad_sr)]
        return (*scale, None, None, None, None)
