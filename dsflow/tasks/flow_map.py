"""FlowMap: the LightningModule that fits h: x0 -> xT on a flow's particle pairs (paper section 6.3, appendix C).

Loss: mean squared error per pixel between h(x0) and xT. Logged as ``{stage}/mse``; ``val/mse`` is the held-out
reconstruction error of xT by which restarts are compared (:mod:`dsflow.tasks.restarts`).

``predict`` pushes new samples: each (x, y) batch of an image datamodule becomes :class:`Pushed` (h(x), y), which
:class:`~dsflow.callbacks.PushWriter` writes as a dataset (``train.py predict``, ``configs/train/push.yaml``). The
labels pass through: h is fitted on a flow's particles, not on their labels, so a pushed sample keeps its own label,
which is the label a flow with fd-fl dynamics (labels kept) gives its particles. Checkpoints record the image shape h
was fitted on (``flow_map_input_shape``), and a checkpoint loaded into a network built for other images is refused
with both shapes named.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from dsflow.data.flow_pairs import FlowPairs
from dsflow.models.autoencoder import FlowMapAutoencoder
from dsflow.tasks.restarts import fit_restarts

__all__ = ["FlowMap", "FlowMapFit", "Pushed", "fit_flow_map"]

_SHAPE_KEY = "flow_map_input_shape"  # the (c, h, w) the checkpoint's network was fitted on


@dataclass
class Pushed:
    """A pushed batch: ``images`` h(x) (B, c, h, w) float, unclipped; ``labels`` (B,) int64, the inputs' own."""

    images: Tensor
    labels: Tensor


def _describe(shape: tuple[int, ...]) -> str:
    c, h, w = shape
    return f"{h}x{w} with {c} channel{'s' if c != 1 else ''}"


class FlowMap(L.LightningModule):
    """Fits ``net`` (default: :class:`~dsflow.models.FlowMapAutoencoder`) so that net(x0) ~ xT.

    Args:
        net: a network mapping (B, c, h, w) to the same shape, exposing ``input_shape``.
        optimizer: optimizer factory (default: Adam, lr 1e-3, as appendix C).
    """

    def __init__(self, net: nn.Module | None = None, optimizer: OptimizerCallable | None = None) -> None:
        super().__init__()
        self.net = net if net is not None else FlowMapAutoencoder()
        self.optimizer_factory = optimizer

    def forward(self, x: Tensor) -> Tensor:
        """x0 (B, c, h, w) -> estimated xT (B, c, h, w)."""
        return self.net(x)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x0, xt = batch
        loss = F.mse_loss(self(x0), xt)
        self.log(f"{stage}/mse", loss, prog_bar=stage != "train", on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Pushed:
        """Push new samples: (x (B, c, h, w), y (B,)) -> :class:`Pushed` (h(x), y)."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(f"FlowMap.predict_step: expected (images, labels) batches, got {type(batch).__name__}")
        x, y = batch
        self._check_shape(tuple(x.shape[1:]))
        return Pushed(self(x), y.long())

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """(c, h, w) the network takes (None for a network that does not say)."""
        shape = getattr(self.net, "input_shape", None)
        return tuple(int(v) for v in shape) if shape is not None else None

    def _data_name(self) -> str:
        trainer = self._trainer  # None outside a Trainer
        data = getattr(trainer, "datamodule", None) if trainer is not None else None
        return str(getattr(data, "name", None) or "the data")

    def _check_shape(self, shape: tuple[int, ...], trained: tuple[int, ...] | None = None) -> None:
        """Raise, naming the data and both shapes, when images of ``shape`` (c, h, w) do not fit this flow map."""
        expected = trained if trained is not None else self.input_shape
        if expected is None or tuple(shape) == tuple(expected):
            return
        c, h, w = expected
        got = _describe(shape) if len(shape) == 3 else f"of shape {tuple(shape)}"
        raise ValueError(
            f"{self._data_name()}: images are {got}; this flow map was trained on {c}x{h}x{w} images "
            f"(set data size: {h}, channels: {c} to convert: --data.size {h} --data.channels {c})")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.input_shape is not None:
            checkpoint[_SHAPE_KEY] = list(self.input_shape)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint fitted on other images than those the network was built for (built from the data by
        ``train.py``), naming both shapes, before torch's size-mismatch error on the weights."""
        trained = checkpoint.get(_SHAPE_KEY)
        if trained is not None and self.input_shape is not None:
            self._check_shape(self.input_shape, tuple(trained))
            return
        own = self.state_dict()  # a checkpoint from before the shape was recorded: compare the weights' shapes
        for key, value in checkpoint.get("state_dict", {}).items():
            if key in own and tuple(own[key].shape) != tuple(value.shape):
                raise ValueError(
                    f"{self._data_name()}: this flow map's checkpoint does not fit a network for images "
                    f"{self.input_shape}: weight {key} is {tuple(value.shape)} there, {tuple(own[key].shape)} here; "
                    f"set the data's size and channels to those the flow map was trained on")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return self.optimizer_factory(self.parameters())

    @torch.no_grad()
    def push(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """h(x) for new samples x (n, c, h, w), in eval mode, batched; returns (n, c, h, w) on the CPU."""
        self.eval()
        device = next(self.net.parameters()).device
        return torch.cat([self.net(b.to(device)).cpu() for b in x.split(batch_size)])


@dataclass
class FlowMapFit:
    """A fitted flow map and its held-out errors (mean squared error per pixel).

    Attributes:
        module: the best restart.
        restart_mse: held-out MSE of h(x0) against xT, one per restart.
        best_mse: the best restart's held-out MSE.
        identity_mse: held-out MSE of x0 itself against xT (the error of not mapping at all).
        checkpoint: the best restart's checkpoint (None when not saved).
    """

    module: FlowMap
    restart_mse: list[float]
    best_mse: float
    identity_mse: float
    checkpoint: Path | None


def fit_flow_map(pairs: FlowPairs, restarts: int = 10, max_epochs: int = 20, seed: int = 0, lr: float = 1e-3,
                 net_kwargs: dict | None = None, out_dir: str | Path | None = None, **trainer_kwargs) -> FlowMapFit:
    """Fit h on a flow's pairs with random restarts (appendix C: Adam 1e-3, 20 epochs, 10 restarts, best held out).

    Args:
        pairs: the flow's (x0, xT) pairs and their held-out split.
        net_kwargs: :class:`FlowMapAutoencoder` arguments beyond the image shape (read from the pairs).
        out_dir: where the best restart is saved (``best.ckpt``).
    """
    c, h, w = pairs.image_shape
    if h != w:
        raise ValueError(f"fit_flow_map: square images only, got {h} x {w}")
    kwargs: dict[str, Any] = {"in_channels": c, "input_size": h} | dict(net_kwargs or {})

    def make() -> FlowMap:
        return FlowMap(FlowMapAutoencoder(**kwargs), partial(torch.optim.Adam, lr=lr))

    result = fit_restarts(make, pairs, restarts, max_epochs, seed, "val/mse", "min", out_dir, **trainer_kwargs)
    x0, xt = pairs.held_out  # (n_val, c, h, w) each
    identity = float(F.mse_loss(x0, xt))
    if not isinstance(result.module, FlowMap):
        raise RuntimeError(f"fit_flow_map: the restarts returned a {type(result.module).__name__}, not the FlowMap built")
    return FlowMapFit(result.module, result.scores, result.scores[result.best_index], identity, result.checkpoint)
