"""FlowMap: the LightningModule that fits h: x0 -> xT on a flow's particle pairs (paper section 6.3, appendix C).

Loss: mean squared error per pixel between h(x0) and xT. Logged as ``{stage}/mse``; ``val/mse`` is the held-out
reconstruction error of xT by which restarts are compared (:mod:`dsflow.tasks.restarts`).
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

__all__ = ["FlowMap", "FlowMapFit", "fit_flow_map"]


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
