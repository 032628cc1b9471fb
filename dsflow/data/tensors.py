"""Float datasets in ``.npz`` files: what runners build from flows (flowed particles, their labels, the sets a
classifier trains on), as a flow source and as a DataModule; and tensors in memory as a flow source
(:class:`TensorSource`: a flow built in a notebook, docs/export.md).

File format (written with :func:`dsflow.io.save_npz`, read without pickle): ``x`` (n, *feature_shape) float,
``y`` (n,) int64 and, optionally, ``num_classes`` (a scalar). Unlike :class:`~dsflow.data.ArrayFile` (uint8
images as stored on disk), the features are used as they are: no resizing, no scaling.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dsflow.data.base import DatasetSource, LabeledData
from dsflow.io import load_npz, save_npz

__all__ = ["TensorFiles", "TensorSource", "save_tensors"]


class TensorSource(DatasetSource):
    """Tensors in memory as a dataset source (images: (n, c, h, w) float pixels in [0, 1]).

    Args:
        x: (n, *feature_shape) float features.
        y: (n,) integer labels in [0, num_classes); None for unlabeled data (all zeros: e.g. the source of
            :class:`~dsflow.data.PseudoLabeled`, which replaces them by clusters and never scores with them).
        num_classes: C (default: the largest label + 1; for unlabeled data: the number of clusters wanted).
        name: what messages call it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None,
                 name: str = "tensors") -> None:
        if y is None and num_classes is None:
            raise ValueError(f"{name}: unlabeled tensors need num_classes (the classes the flow should find)")
        labels = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y.long()
        c = num_classes if num_classes is not None else int(labels.max()) + 1 if labels.numel() else 1
        self.data = LabeledData(x, labels, c, name)  # validated here: shapes, labels, finite values

    def load(self) -> LabeledData:
        return self.data


def save_tensors(path: str | Path, data: LabeledData) -> Path:
    """Write ``data`` in the format :class:`TensorFiles` reads."""
    return save_npz(path, x=data.x.cpu().numpy(), y=data.y.cpu().numpy().astype(np.int64),
                    num_classes=np.int64(data.num_classes))


def _read(path: str) -> LabeledData:
    arrays = load_npz(path, keys=("x", "y"))
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"].astype(np.int64))
    if "num_classes" in arrays:
        c = int(arrays["num_classes"])
    else:
        c = int(y.max()) + 1 if y.numel() else 1
    return LabeledData(x.float() if not x.dtype.is_floating_point else x, y, c, Path(path).stem)


class TensorFiles(L.LightningDataModule, DatasetSource):
    """The training set: the files of ``paths`` concatenated in order; the test set: ``test_path``.

    Args:
        paths: files of the training set (a file may be named several times: its samples are then repeated).
        test_path: file of the test set (``trainer.test``; None: no test stage).
        batch_size: training batch size (shuffled).
        name: dataset name in messages.
    """

    name: str  # always set here (LightningDataModule declares it optional)

    def __init__(self, paths: list[str], test_path: str | None = None, batch_size: int = 64, name: str = "tensors") -> None:
        super().__init__()
        if not paths or batch_size < 1:
            raise ValueError(f"TensorFiles: need at least one file and batch_size >= 1, got {paths}, {batch_size}")
        self.paths, self.test_path, self.batch_size, self.name = list(paths), test_path, batch_size, name
        self._train: LabeledData | None = None
        self._test: LabeledData | None = None

    def load(self) -> LabeledData:
        if self._train is None:
            parts = [_read(p) for p in self.paths]
            shapes = {p.feature_shape for p in parts}
            if len(shapes) > 1:
                raise ValueError(f"{self.name}: files {self.paths} hold features of different shapes {sorted(shapes)}")
            c = max(p.num_classes for p in parts)
            self._train = LabeledData(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), c, self.name)
        return self._train

    @property
    def num_classes(self) -> int:
        """C, the size of the label set of the training files."""
        return self.load().num_classes

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The feature shape, (c, h, w) for images."""
        return self.load().feature_shape

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.load()
        if stage in ("test", None) and self.test_path is not None and self._test is None:
            self._test = _read(self.test_path)

    def train_dataloader(self) -> DataLoader:
        data = self.load()
        return DataLoader(TensorDataset(data.x, data.y), batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        if self._test is None:
            raise ValueError(f"{self.name}: no test file (test_path)")
        return DataLoader(TensorDataset(self._test.x, self._test.y), batch_size=512)
