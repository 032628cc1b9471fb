"""torchvision's datasets as dsflow image datasets (see :class:`~dsflow.data.images.ImageDataModule`).

Every class reads through torchvision's own dataset class under the data root, in torchvision's layout
(``MNIST/raw/...``, ``usps.bz2``, ``cifar-10-batches-py/``, ``stl10_binary/``, ``pcam/``), so a user with internet
gets the files downloaded there, and offline copies are found where torchvision would put them.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torchvision.datasets as tvd

from dsflow.data.images import ImageDataModule, RawImages
from dsflow.data.root import MissingDataError

__all__ = ["MNIST", "FashionMNIST", "KMNIST", "EMNIST", "USPS", "CIFAR10", "STL10", "PCAM"]


class _Torchvision(ImageDataModule):
    """Shared reading: construct the torchvision dataset, turn a download failure into a precise error."""

    def _files(self, split: str) -> list[str]:
        """Files (relative to the root) that ``split`` needs; named in the error when missing."""
        raise NotImplementedError

    def _open(self, split: str, build: Callable[..., Any]) -> Any:
        try:
            return build(root=str(self.root), download=self.download)
        except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found" or a failed download
            raise MissingDataError(self.name, self.root, self._files(split), cause=err) from err


class _MNISTLike(_Torchvision):
    """MNIST-format datasets: 28 x 28 gray, idx files in ``<root>/<Class>/raw/``."""

    tv_class: type = tvd.MNIST
    folder = "MNIST"

    def _files(self, split: str) -> list[str]:
        prefix = "train" if split == "train" else "t10k"
        return [f"{self.folder}/raw/{prefix}-images-idx3-ubyte", f"{self.folder}/raw/{prefix}-labels-idx1-ubyte"]

    def read(self, split: str) -> RawImages:
        ds = self._open(split, lambda **kw: self.tv_class(train=split == "train", **kw))
        return RawImages(ds.data, ds.targets, len(ds.classes))


class MNIST(_MNISTLike):
    """MNIST: 60,000 train + 10,000 test handwritten digits, 28 x 28, 10 classes."""


class FashionMNIST(_MNISTLike):
    """Fashion-MNIST: 60,000 + 10,000 clothing images, 28 x 28, 10 classes."""

    tv_class = tvd.FashionMNIST
    folder = "FashionMNIST"


class KMNIST(_MNISTLike):
    """Kuzushiji-MNIST: 60,000 + 10,000 cursive Japanese characters, 28 x 28, 10 classes."""

    tv_class = tvd.KMNIST
    folder = "KMNIST"


class EMNIST(_Torchvision):
    """EMNIST letters: 124,800 + 20,800 letters, 28 x 28, 26 classes (a..z as 0..25).

    The raw EMNIST files store images transposed; they are turned upright here (as MNIST digits are).
    """

    def _files(self, split: str) -> list[str]:
        part = "train" if split == "train" else "test"
        return [f"EMNIST/raw/emnist-letters-{part}-images-idx3-ubyte", f"EMNIST/raw/emnist-letters-{part}-labels-idx1-ubyte"]

    def read(self, split: str) -> RawImages:
        ds = self._open(split, lambda **kw: tvd.EMNIST(split="letters", train=split == "train", **kw))
        labels = ds.targets - 1  # letters are 1..26 in the files; class 0 ('N/A') is unused
        return RawImages(ds.data.transpose(1, 2).contiguous(), labels, 26)


class USPS(_Torchvision):
    """USPS: 7,291 train + 2,007 test digits, 16 x 16, 10 classes (torchvision's files ``usps.bz2``, ``usps.t.bz2``).

    Set ``size: 28`` to meet MNIST.
    """

    def _files(self, split: str) -> list[str]:
        return ["usps.bz2" if split == "train" else "usps.t.bz2"]

    def read(self, split: str) -> RawImages:
        ds = self._open(split, lambda **kw: tvd.USPS(train=split == "train", **kw))
        return RawImages(torch.as_tensor(ds.data, dtype=torch.uint8), torch.as_tensor(ds.targets), 10)


class CIFAR10(_Torchvision):
    """CIFAR-10: 50,000 train + 10,000 test, 32 x 32 x 3, 10 classes (``cifar-10-batches-py/``)."""

    def _files(self, split: str) -> list[str]:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return [f"cifar-10-batches-py/{f}" for f in names]

    def read(self, split: str) -> RawImages:
        ds = self._open(split, lambda **kw: tvd.CIFAR10(train=split == "train", **kw))
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # (N, 3, 32, 32)
        return RawImages(images.contiguous(), torch.as_tensor(ds.targets), 10)


class STL10(_Torchvision):
    """STL-10 labeled splits: 5,000 train + 8,000 test, 96 x 96 x 3, 10 classes (``stl10_binary/``).

    Set ``size: 32`` to meet CIFAR-10.
    """

    def _files(self, split: str) -> list[str]:
        return [f"stl10_binary/{split}_X.bin", f"stl10_binary/{split}_y.bin"]

    def read(self, split: str) -> RawImages:
        ds = self._open(split, lambda **kw: tvd.STL10(split=split, **kw))
        return RawImages(torch.from_numpy(ds.data), torch.as_tensor(ds.labels).long(), 10)


class PCAM(_Torchvision):
    """PatchCamelyon (CAMELYON patches): 262,144 train / 32,768 val / 32,768 test, 96 x 96 x 3, 2 classes.

    Needs ``h5py``. Set ``size: 32`` to meet CIFAR-10.
    """

    splits = ("train", "val", "test")
    _names = {"train": "training", "val": "valid", "test": "test"}

    def _files(self, split: str) -> list[str]:
        s = self._names[split]
        return [f"pcam/camelyonpatch_level_2_split_{s}_x.h5", f"pcam/camelyonpatch_level_2_split_{s}_y.h5"]

    def read(self, split: str) -> RawImages:
        import h5py

        self._open(split, lambda **kw: tvd.PCAM(split=split, **kw))  # verifies (or downloads) the files
        x_file, y_file = (self.root / f for f in self._files(split))
        with h5py.File(x_file, "r") as fx, h5py.File(y_file, "r") as fy:
            images = torch.from_numpy(np.asarray(fx["x"], dtype=np.uint8)).permute(0, 3, 1, 2)  # (N, 3, 96, 96)
            labels = torch.from_numpy(np.asarray(fy["y"]).reshape(-1).astype(np.int64))
        return RawImages(images.contiguous(), labels, 2)
