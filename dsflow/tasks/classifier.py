"""Classifier: the LightningModule that trains an oracle network (cross-entropy, torchmetrics accuracy).

Checkpoints carry, besides Lightning's state, an ``oracle`` entry: the network's import path, its constructor
arguments, input shape and class count. :func:`dsflow.tasks.oracle.load_oracle` rebuilds the frozen network from
it with ``torch.load(weights_only=True)`` (no unpickling of code).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from dsflow.tasks.oracle import read_oracle

__all__ = ["Classifier"]


class Classifier(L.LightningModule):
    """Trains ``net`` (inputs in [0, 1], see :mod:`dsflow.data.images`) with cross-entropy.

    Args:
        net: the network; must expose ``num_classes``, ``input_shape`` and ``init_args`` (as dsflow.models do).
        optimizer: optimizer factory (default: Adam, lr 1e-3, weight decay 1e-6, as appendix C).
        weights: a checkpoint of this task whose network weights ``net`` starts from (fine-tuning; the optimizer
            starts afresh); None: the network's own initialisation.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerCallable | None = None, weights: str | None = None) -> None:
        super().__init__()
        for attr in ("num_classes", "input_shape", "init_args"):
            if not hasattr(net, attr):
                raise ValueError(f"Classifier: net {type(net).__name__} lacks attribute '{attr}' (see dsflow.models)")
        self.net = net
        model: Any = net  # its dsflow.models attributes, which nn.Module's typing reads as Tensor | Module
        if weights is not None:
            try:
                net.load_state_dict(read_oracle(weights)[1])  # no second network built: the seeded RNG stays as it was
            except RuntimeError as err:
                raise ValueError(f"Classifier: the weights in {weights} do not fit {type(net).__name__}: {err}") from err
        self.optimizer_factory = optimizer
        c = int(model.num_classes)
        self.metrics = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes=c, average="micro") for s in ("train", "val", "test")})

    def forward(self, x: Tensor) -> Tensor:
        """x (B, *input_shape) -> logits (B, num_classes)."""
        return self.net(x)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric: MulticlassAccuracy = self.metrics[f"{stage}_acc"]  # type: ignore[assignment]  # ModuleDict yields Module
        metric(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/acc", metric, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3, weight_decay=1e-6)
        return self.optimizer_factory(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        net = self.net
        model: Any = net  # its dsflow.models attributes, which nn.Module's typing reads as Tensor | Module
        checkpoint["oracle"] = {
            "class_path": f"{type(net).__module__}.{type(net).__qualname__}",
            "init_args": dict(model.init_args),
            "input_shape": list(model.input_shape),
            "num_classes": int(model.num_classes),
        }
