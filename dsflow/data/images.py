"""Image datasets as both a LightningDataModule (oracle training) and a DatasetSource (flows).

Pixel convention, shared by oracle training and flows: float32 in [0, 1] (uint8 / 255), layout (n, c, h, w),
no mean/std normalisation. Images are resized (bilinear, antialiased) to ``size`` x ``size`` and converted to
``channels`` (gray -> RGB repeats the channel, RGB -> gray uses ITU-R 601 luma weights), so datasets of
different native shapes (USPS 16x16, STL-10 96x96x3, PCam 96x96x3) meet on a common shape.

Subsets are seeded and class-stratified: ``n`` samples split over the classes in proportion to their frequency
(largest remainders), or equally with ``balanced`` (flows between datasets of different class frequencies move
mass across classes otherwise: USPS has 18 % zeros, MNIST 10 %), drawn at random within each class with ``seed``.
"""

from __future__ import annotations

from abc import abstractmethod

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.root import data_root

__all__ = ["ImageDataModule", "RawImages", "to_float_images", "stratified_indices"]

LUMA = (0.299, 0.587, 0.114)


class RawImages:
    """Images as read from disk: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) in [0, num_classes)."""

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int) -> None:
        if images.ndim == 3:
            images = images[:, None]  # (N, 1, H, W)
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"RawImages: expected uint8 (N, C, H, W) or (N, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"RawImages: {images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.images, self.labels, self.num_classes = images, labels.long(), num_classes


def to_float_images(images: Tensor, size: int | None = None, channels: int | None = None) -> Tensor:
    """(N, C, H, W) uint8 -> (N, channels, size, size) float32 in [0, 1]."""
    x = images.float() / 255.0
    c = x.shape[1]
    if channels is not None and channels != c:
        if c == 1:
            x = x.expand(-1, channels, -1, -1).contiguous()  # (N, channels, H, W)
        elif c == 3 and channels == 1:
            w = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)  # (N, 1, H, W)
        else:
            raise ValueError(f"cannot convert {c} channels to {channels}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0)


def stratified_indices(y: Tensor, n: int, num_classes: int, seed: int = 0, balanced: bool = False,
                       name: str = "subset") -> Tensor:
    """(n,) indices of a seeded, class-stratified subset of labels ``y`` (N,), sorted.

    Classes get shares of ``n`` proportional to their frequency, or equal shares (``balanced``; present classes only).
    A class of ``y`` whose share rounds to zero is an error naming ``name``, never silently dropped.
    """
    total = y.shape[0]
    if not 0 < n <= total:
        raise ValueError(f"subset size n must lie in [1, {total}], got {n}")
    counts = torch.bincount(y, minlength=num_classes).double()
    if balanced:
        present = (counts > 0).double()
        quota = present * n / present.sum()
        short = torch.nonzero(counts < quota.ceil()).flatten().tolist()
        if short:
            raise ValueError(
                f"balanced subset of {n}: classes {short} have only {counts[short].long().tolist()} samples "
                f"(need {int(quota.max().ceil())} each); lower n or set balanced: false"
            )
    else:
        quota = counts * n / total
    take = quota.floor().long()
    rest = n - int(take.sum())
    if rest:
        order = torch.argsort(quota - take.double(), descending=True, stable=True)
        take[order[:rest]] += 1
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[torch.randperm(members.numel(), generator=gen)[: int(take[c])]])
    dropped = torch.nonzero((counts > 0) & (take == 0)).flatten().tolist()
    if dropped:
        raise ValueError(
            f"{name}: a subset of n={n} holds no sample of classes {dropped} (their share of n rounds to zero); "
            f"raise n or set balanced: true"
        )
    return torch.sort(torch.cat(picks)).values


class ImageDataModule(L.LightningDataModule, DatasetSource):
    """Base of every image dataset: reading (subclasses), processing, subsets, loaders.

    As a :class:`DatasetSource` (flows), :meth:`load` returns ``n`` samples of ``split``. As a DataModule
    (oracle training), ``fit`` trains on ``train_split`` less a seeded ``val_fraction`` held out for validation,
    and ``test`` evaluates on ``test_split`` (None: no test stage). ``predict`` serves what :meth:`load` returns
    (``n`` samples of ``split``, all by default), in order, as (x, y) batches (e.g. new samples pushed through a
    trained flow map: ``train.py predict``).

    Args:
        root: data root (default: ``$DSFLOW_DATA``, else ``~/.cache/dsflow/data``; see :mod:`dsflow.data.root`).
        split: split returned by :meth:`load` and served by ``predict``.
        n: subset size of :meth:`load` and of the training split (None: all samples).
        seed: seed of the subsets and of the validation hold-out.
        size: output height = width (None: native).
        channels: output channels, 1 or 3 (None: native).
        balanced: equal class counts in subsets (default: proportional to class frequency).
        download: let torchvision download missing files (it only tries when files are missing).
        batch_size: loader batch size.
        val_fraction: share of the training split held out for validation (0: no validation).
        train_split: split used for training.
        test_split: split used by ``trainer.test`` (None: none).
        name: dataset name in messages (default: the class name).
    """

    splits: tuple[str, ...] = ("train", "test")

    name: str  # always set here (LightningDataModule declares it optional)

    def __init__(
        self,
        root: str | None = None,
        split: str = "test",
        n: int | None = None,
        seed: int = 0,
        size: int | None = None,
        channels: int | None = None,
        balanced: bool = False,
        download: bool = True,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        train_split: str = "train",
        test_split: str | None = "test",
        name: str | None = None,
    ) -> None:
        super().__init__()
        for s in (split, train_split, test_split):
            if s is not None and s not in self.splits:
                raise ValueError(f"{type(self).__name__}: unknown split '{s}'; choose from {list(self.splits)}")
        if channels not in (None, 1, 3):
            raise ValueError(f"{type(self).__name__}: channels must be 1 or 3, got {channels}")
        if size is not None and size < 1 or not 0 <= val_fraction < 1 or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: need size >= 1, 0 <= val_fraction < 1, batch_size >= 1")
        self.root = data_root(root)
        self.split, self.n, self.seed = split, n, seed
        self.size, self.channels, self.download, self.balanced = size, channels, download, balanced
        self.batch_size, self.val_fraction = batch_size, val_fraction
        self.train_split, self.test_split = train_split, test_split
        self.name = name or type(self).__name__
        self._sets: dict[str, TensorDataset] = {}
        self._layout: tuple[int, tuple[int, ...]] | None = None  # (C, (c, h, w)) once a split is read

    @abstractmethod
    def read(self, split: str) -> RawImages:
        """Read the whole ``split`` from ``self.root`` (raising :class:`MissingDataError` when absent)."""

    def load_split(self, split: str, n: int | None = None) -> LabeledData:
        """``n`` processed samples of ``split`` (all when None) as :class:`LabeledData`."""
        raw = self.read(split)
        images, labels = raw.images, raw.labels
        if n is not None:
            idx = stratified_indices(labels, n, raw.num_classes, self.seed, self.balanced, f"{self.name}/{split}")
            images, labels = images[idx], labels[idx]
        x = to_float_images(images, self.size, self.channels)
        return LabeledData(x, labels, raw.num_classes, f"{self.name}/{split}")

    def load(self) -> LabeledData:
        return self.load_split(self.split, self.n)

    # ------------------------------------------------------------ sizes known from the data (linked by the CLI)
    @property
    def num_classes(self) -> int:
        """C, the size of the label set (the training split is read on first use)."""
        return self._read_layout()[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(c, h, w) of the processed images (the training split is read on first use)."""
        return self._read_layout()[1]

    def _read_layout(self) -> tuple[int, tuple[int, ...]]:
        if self._layout is None:
            self.setup("fit")  # what fit reads anyway (cached)
        if self._layout is None:
            raise RuntimeError(f"{self.name}: setup('fit') read no image layout")
        return self._layout

    # ------------------------------------------------------------ DataModule
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and "train" not in self._sets:
            data = self.load_split(self.train_split, self.n)
            self._layout = (data.num_classes, data.feature_shape)
            perm = torch.randperm(data.x.shape[0], generator=torch.Generator().manual_seed(self.seed))
            n_val = int(round(self.val_fraction * data.x.shape[0]))
            val, train = perm[:n_val], perm[n_val:]
            self._sets["train"] = TensorDataset(data.x[train], data.y[train])
            if n_val:
                self._sets["val"] = TensorDataset(data.x[val], data.y[val])
        if stage in ("test", None) and self.test_split is not None and "test" not in self._sets:
            data = self.load_split(self.test_split)
            self._layout = self._layout or (data.num_classes, data.feature_shape)
            self._sets["test"] = TensorDataset(data.x, data.y)
        if stage == "predict" and "predict" not in self._sets:
            data = self.load()
            self._layout = self._layout or (data.num_classes, data.feature_shape)
            self._sets["predict"] = TensorDataset(data.x, data.y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return DataLoader(self._sets["val"], batch_size=512) if "val" in self._sets else []

    def test_dataloader(self) -> DataLoader:
        if "test" not in self._sets:
            raise ValueError(f"{self.name}: no test split configured (test_split=None)")
        return DataLoader(self._sets["test"], batch_size=512)

    def predict_dataloader(self) -> DataLoader:
        """``n`` samples of ``split`` (all when None), in the order :meth:`load` returns them, as (x, y) batches."""
        if "predict" not in self._sets:
            raise RuntimeError(f"{self.name}: predict_dataloader() before setup('predict')")
        return DataLoader(self._sets["predict"], batch_size=512)

