"""The (initial, final) particle pairs of a finished flow, as a DataModule for the flow map h: x0 -> xT.

A flow's run directory holds ``final.npz`` with ``x0`` (initial) and ``x`` (final) particles of shape
(n, c, h, w) (see :mod:`dsflow.io`). The pairs are split once, with ``seed``, into a training part and a held-out
part (``val_fraction``) on which restarts are compared (paper appendix C: the best restart on a held-out set).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from dsflow.io import load_npz

__all__ = ["FlowPairs", "load_pairs"]


def load_pairs(run_dir: str | Path) -> tuple[Tensor, Tensor]:
    """(x0, xT), each (n, c, h, w) float32, from ``<run_dir>/final.npz``."""
    path = Path(run_dir) / "final.npz"
    arrays = load_npz(path, keys=("x0", "x"))
    x0, xt = torch.from_numpy(arrays["x0"]).float(), torch.from_numpy(arrays["x"]).float()
    if x0.shape != xt.shape or x0.ndim != 4:
        raise ValueError(f"{path}: need initial and final images of one shape (n, c, h, w), got {tuple(x0.shape)} and {tuple(xt.shape)}")
    return x0, xt


class FlowPairs(L.LightningDataModule):
    """Training and held-out pairs (x0, xT) of a flow's run directory.

    Args:
        run_dir: the flow's run directory (holding ``final.npz``).
        val_fraction: share of the pairs held out (the restarts' selection split); 0 < val_fraction < 1.
        seed: seed of the split (fixed across restarts so they are compared on the same pairs).
        batch_size: training batch size.
    """

    def __init__(self, run_dir: str, val_fraction: float = 0.2, seed: int = 0, batch_size: int = 64) -> None:
        super().__init__()
        if not 0 < val_fraction < 1 or batch_size < 1:
            raise ValueError(f"FlowPairs: need 0 < val_fraction < 1 and batch_size >= 1, got {val_fraction}, {batch_size}")
        self.run_dir, self.val_fraction, self.seed, self.batch_size = run_dir, val_fraction, seed, batch_size
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        self.setup()
        if self.train_set is None:
            raise RuntimeError("FlowPairs: setup() left no training split")
        return tuple(self.train_set.tensors[0].shape[1:])

    @property
    def held_out(self) -> tuple[Tensor, Tensor]:
        """The held-out pairs (x0, xT), (n_val, c, h, w) each (read on first use)."""
        self.setup()
        if self.val_set is None:
            raise RuntimeError("FlowPairs: setup() left no held-out split")
        x0, xt = self.val_set.tensors
        return x0, xt

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x0, xt = load_pairs(self.run_dir)
        n = x0.shape[0]
        n_val = int(round(self.val_fraction * n))
        if not 0 < n_val < n:
            raise ValueError(f"FlowPairs: {n} pairs in {self.run_dir} leave no training or held-out pairs at val_fraction={self.val_fraction}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        val, train = perm[:n_val], perm[n_val:]
        self.train_set = TensorDataset(x0[train], xt[train])
        self.val_set = TensorDataset(x0[val], xt[val])

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("FlowPairs: train_dataloader() before setup()")
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            raise RuntimeError("FlowPairs: val_dataloader() before setup()")
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
