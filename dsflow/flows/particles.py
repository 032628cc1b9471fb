"""Particles: a labeled dataset as ordinary checkpointable module state (STYLE principle 10)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dsflow.data.base import LabeledData

__all__ = ["Particles", "Reference"]


class Particles(nn.Module):
    """The flowing dataset: features x (n, d) as an ``nn.Parameter``, labels y (n,) as a buffer.

    Features are stored flat; ``feature_shape`` restores images. An empty ``Particles()`` is filled by
    :meth:`init_from` or by loading a state dict (so ``load_from_checkpoint`` needs no data).
    """

    def __init__(self) -> None:
        super().__init__()
        self.x: nn.Parameter | None = None
        self.register_buffer("y", None)
        self.num_classes = 0
        self.feature_shape: tuple[int, ...] = ()

    @property
    def initialized(self) -> bool:
        return self.x is not None

    @property
    def n(self) -> int:
        return 0 if self.x is None else self.x.shape[0]

    def features(self) -> nn.Parameter:
        """The particles' features x (n, d); a RuntimeError before they are set."""
        if self.x is None:
            raise RuntimeError("FlowModule: no particles; pass source and reference or call init_data() first")
        return self.x

    def init_from(self, data: LabeledData) -> None:
        """Copy ``data`` into the particles (features flattened to (n, d))."""
        self.x = nn.Parameter(data.flat().clone())
        self.y = data.y.clone()
        self.num_classes = data.num_classes
        self.feature_shape = data.feature_shape

    def as_data(self, name: str = "particles") -> LabeledData:
        """The current particles as a detached :class:`LabeledData` of shape (n, *feature_shape)."""
        if self.x is None:
            raise RuntimeError("Particles.as_data: the particles are not initialized (init_data() first)")
        return LabeledData(self.x.detach().reshape(-1, *self.feature_shape).clone(), self.y.clone(), self.num_classes, name)

    def get_extra_state(self) -> Any:
        return {"num_classes": self.num_classes, "feature_shape": list(self.feature_shape)}

    def set_extra_state(self, state: Any) -> None:
        self.num_classes = int(state["num_classes"])
        self.feature_shape = tuple(int(s) for s in state["feature_shape"])

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Materialise the tensors from the checkpoint's shapes when loading into an empty module.
        x, y = state_dict.get(prefix + "x"), state_dict.get(prefix + "y")
        if self.x is None and x is not None:
            self.x = nn.Parameter(torch.empty_like(x))
        if self.y is None and y is not None:
            self.y = torch.empty_like(y)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Reference(nn.Module):
    """The fixed reference dataset: features (m, d) and labels (m,) as non-persistent buffers.

    Non-persistent: checkpoints stay small and the reference is rebuilt from its data source on resume.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("x", None, persistent=False)
        self.register_buffer("y", None, persistent=False)
        self.num_classes = 0

    @property
    def initialized(self) -> bool:
        return self.x is not None

    def init_from(self, data: LabeledData) -> None:
        self.x = data.flat().clone()
        self.y = data.y.clone()
        self.num_classes = data.num_classes
