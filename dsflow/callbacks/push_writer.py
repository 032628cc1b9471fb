"""PushWriter: the samples a flow map pushes in ``predict``, written as a dataset (``pushed.npz``).

``train.py predict --config configs/train/flow_map.yaml --config configs/train/push.yaml --ckpt_path <flow map>``
runs :meth:`~dsflow.tasks.FlowMap.predict_step` over the datamodule's predict split; this callback gathers the
:class:`~dsflow.tasks.Pushed` batches and writes them with :func:`dsflow.export.export_images`: ``pushed.npz`` in
:class:`~dsflow.data.ArrayFile`'s format (``images`` uint8, ``labels`` int64: the inputs' own labels), optionally an
image folder and a grid figure (inputs beside their pushed images, a few per class). Pixels outside [0, 1] are
clipped and the clipped fraction is printed.

Samples are written in the order of the dataset, by the indices Lightning records for each predict batch. Several
processes (DDP): each gathers its own share, rank 0 collects all of them (``all_gather_object``, so the whole export
passes through rank 0's memory), drops the samples a distributed sampler repeats to even out the shares, and writes
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from dsflow.callbacks.flow_figures import image_flow_figure
from dsflow.export import Export, export_images

__all__ = ["PushWriter", "push_figure"]


class PushWriter(BasePredictionWriter):
    """Writes the pushed images of ``predict`` as an export (module docstring).

    Args:
        path: the ``.npz`` file (default: ``pushed.npz`` in the run directory, the trainer's ``default_root_dir``).
        image_folder: also write ``<image_folder>/train/<class>/<index>.png`` (relative: in the ``.npz``'s folder).
        figure: grid figure ``<path stem>.png`` beside the ``.npz`` (inputs and pushed images, ``per_class`` of each
            class), or none when False.
        per_class: samples of each class drawn in the figure.

    Attributes:
        export: what the last ``predict`` wrote (None before, and on ranks other than 0).
    """

    def __init__(self, path: str | None = None, image_folder: str | None = None, figure: bool = True,
                 per_class: int = 8) -> None:
        super().__init__("batch_and_epoch")
        if per_class < 1:
            raise ValueError(f"PushWriter: per_class must be >= 1, got {per_class}")
        self.path, self.image_folder, self.figure, self.per_class = path, image_folder, figure, per_class
        self.export: Export | None = None
        self._parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # (indices, inputs, pushed, labels), CPU

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts, self.export = [], None

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        images, labels = getattr(prediction, "images", None), getattr(prediction, "labels", None)
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
            raise TypeError(f"PushWriter: predict_step must return images and labels (dsflow.tasks.Pushed), got "
                            f"{type(prediction).__name__}")
        start = sum(p[0].numel() for p in self._parts)
        index = torch.as_tensor(list(batch_indices)) if batch_indices else torch.arange(start, start + len(labels))
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._parts.append((index.long(), x.detach().float().cpu(), images.detach().float().cpu(), labels.cpu()))

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        parts = self._parts
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            shares: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(shares, parts)
            parts = [p for share in shares for p in share]
        self._parts = []
        if not trainer.is_global_zero:
            return
        if not parts:
            raise ValueError("PushWriter: predict served no samples; nothing to write")
        index = torch.cat([p[0] for p in parts])
        order = _first_of_each(index)
        x, pushed, labels = (torch.cat([p[k] for p in parts])[order] for k in (1, 2, 3))
        data = trainer.datamodule if hasattr(trainer, "datamodule") else None
        path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "pushed.npz"
        folder = None if self.image_folder is None else path.parent / self.image_folder
        self.export = export_images(path, pushed, labels, "the inputs' own", image_folder=folder,
                                    num_classes=_num_classes(data, labels))
        if self.figure:
            push_figure(x, pushed, labels, path.with_suffix(".png"), self.per_class)
        print(self.export.describe(), flush=True)


def _first_of_each(index: Tensor) -> Tensor:
    """Positions that sort ``index`` (n,) ascending, keeping one position per distinct value (a distributed sampler
    repeats samples to even out the processes' shares)."""
    order = torch.argsort(index, stable=True)
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[1:] = index[order][1:] != index[order][:-1]
    return order[keep]


def _num_classes(data: Any, labels: Tensor) -> int:
    """The datamodule's class count where it has one, else the largest label + 1."""
    seen = int(labels.max()) + 1 if labels.numel() else 0
    try:
        declared = int(data.num_classes) if data is not None and hasattr(data, "num_classes") else 0
    except (AttributeError, RuntimeError, ValueError):
        declared = 0
    return max(declared, seen)


def push_figure(x: Tensor, pushed: Tensor, labels: Tensor, path: str | Path, per_class: int = 8) -> Path:
    """Two grids side by side, new samples x and their pushed images h(x) (each (n, c, h, w)), one row per class
    with up to ``per_class`` samples (the first of each class in order):
    :func:`~dsflow.callbacks.flow_figures.image_flow_figure` with two panels."""
    if x.shape != pushed.shape or x.ndim != 4 or labels.shape != (x.shape[0],):
        raise ValueError(f"push_figure: need x and h(x) of one (n, c, h, w) shape and (n,) labels, got "
                         f"{tuple(x.shape)}, {tuple(pushed.shape)}, {tuple(labels.shape)}")
    y = labels.cpu()
    idx = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in torch.unique(y)])  # class by class
    return image_flow_figure([(0, x[idx]), (0, pushed[idx])], y[idx], path,
                             panel_titles=["new samples x", "pushed h(x)"])
