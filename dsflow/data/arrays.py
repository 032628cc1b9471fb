"""Generic image datasets: arrays in ``.npz`` files and folders of image files (one sub-folder per class)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder as _TVImageFolder
from torchvision.transforms.functional import pil_to_tensor

from dsflow.data.images import ImageDataModule, RawImages
from dsflow.data.root import MissingDataError
from dsflow.io import load_npz

__all__ = ["ArrayFile", "ImageFolder"]


class ArrayFile(ImageDataModule):
    """Images from ``.npz`` files: ``images`` uint8 (N, H, W) or (N, H, W, 3), ``labels`` int64 (N,).

    Relative paths are resolved against the data root. Only arrays are read (``allow_pickle=False``).

    Args:
        path: the file of the ``train`` split (the only split when ``test_path`` is None).
        test_path: the file of the ``test`` split (optional).
        num_classes: size of the label set (default: largest label + 1).
        name: what messages call it (default: ``path`` as given, so that errors name the file).
        label_key: the array holding the labels (e.g. ``coupled_labels`` of a flowed export, docs/export.md).
        **kwargs: see :class:`~dsflow.data.images.ImageDataModule`; ``split`` defaults to ``train`` here.
    """

    def __init__(self, path: str, test_path: str | None = None, num_classes: int | None = None, split: str = "train",
                 label_key: str = "labels", **kwargs) -> None:
        kwargs.setdefault("test_split", "test" if test_path is not None else None)
        super().__init__(split=split, **kwargs)
        self.paths = {"train": path, "test": test_path}
        self.declared_classes = num_classes
        self.label_key = label_key
        if kwargs.get("name") is None:  # error messages name the file
            self.name = str(path)

    def _file(self, split: str) -> Path:
        rel = self.paths[split]
        if rel is None:
            raise ValueError(f"{self.name}: no file for split '{split}' (set test_path)")
        path = Path(rel).expanduser()
        return path if path.is_absolute() or path.exists() else self.root / path

    def read(self, split: str) -> RawImages:
        path = self._file(split)
        if not path.is_file():
            raise MissingDataError(self.name, path.parent, [path.name], hint=f"an .npz with arrays `images` and `{self.label_key}`")
        arrays = load_npz(path, keys=("images", self.label_key))
        images, labels = arrays["images"], arrays[self.label_key]
        _check_arrays(path, images, labels, self.declared_classes, self.label_key)
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
        c = self.declared_classes if self.declared_classes is not None else int(labels.max()) + 1
        return RawImages(x.contiguous(), torch.from_numpy(labels.astype(np.int64)), c)


class ImageFolder(ImageDataModule):
    """Images in ``<path>/<split>/<class>/*.png|jpg`` (torchvision's ImageFolder); classes sorted by folder name.

    Every image of the split is read before any error: an unreadable one (truncated, not an image) stops the read
    with its path, the reason, and how the rest of the folder read.

    Args:
        path: folder holding one folder per split (``train``, ``test``), relative to the data root or absolute.
        skip_unreadable: leave unreadable images out (a warning says how many and which) instead of stopping.
        **kwargs: see :class:`~dsflow.data.images.ImageDataModule`. Images must share one size unless ``size`` is set.
    """

    def __init__(self, path: str, skip_unreadable: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_unreadable = skip_unreadable
        folder = Path(path).expanduser()
        self.folder = folder if folder.is_absolute() or folder.exists() else self.root / folder
        if kwargs.get("name") is None:
            self.name = self.folder.name

    def read(self, split: str) -> RawImages:
        where = self.folder / split
        if not where.is_dir():
            raise MissingDataError(self.name, self.folder, [split], hint="expected <path>/<split>/<class>/<image files>")
        try:
            ds = _TVImageFolder(str(where))
        except FileNotFoundError as err:  # no class folder, or class folders without image files
            raise ValueError(f"{where}: holds no images: expected <class>/<image files> under it ({err})") from err
        images, labels = _read_images(where, ds, self.skip_unreadable)
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) > 1:
            if self.size is None:
                raise ValueError(f"{where}: images of different shapes {sorted(shapes)[:3]}...; set `size`")
            images = [_resize_uint8(i, self.size) for i in images]
        chans = {i.shape[0] for i in images}
        if len(chans) > 1:
            images = [i.expand(3, -1, -1) if i.shape[0] == 1 else i for i in images]
        return RawImages(torch.stack(images), torch.tensor(labels), len(ds.classes))


def _check_arrays(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int | None,
                  key: str = "labels") -> None:
    """The arrays of an ``.npz`` image file, each problem named with the file (``key``: the labels' array)."""
    if images.ndim >= 1 and images.shape[0] == 0:
        raise ValueError(f"{path}: holds no samples (`images` has shape {images.shape}); nothing to flow or train on")
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        hint = "; scale float images in [0, 1] by 255 and save them as uint8" if images.dtype.kind == "f" else ""
        raise ValueError(f"{path}: `images` must be uint8 [N,H,W] or [N,H,W,3], got {images.dtype} {images.shape}{hint}")
    n = images.shape[0]
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{path}: `{key}` must hold one label per image: {n} images but `{key}` of shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: `{key}` must be integers, got {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        allowed = "non-negative" if num_classes is None else f"in [0, {num_classes}) (num_classes {num_classes})"
        raise ValueError(f"{path}: `{key}` must be {allowed}, got labels from {low} to {high}")


def _read_images(where: Path, ds: _TVImageFolder, skip_unreadable: bool) -> tuple[list[torch.Tensor], list[int]]:
    """Every image of ``ds`` (N, uint8 (C, H, W) each) and its label; the unreadable ones named together at the end."""
    images, labels, bad = [], [], []
    for file, label in ds.samples:
        try:
            img = ds.loader(file)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # PIL's ways to fail a file
            why = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            bad.append((Path(file).relative_to(where), why))
            continue
        images.append(pil_to_tensor(img if img.mode in ("L", "RGB") else img.convert("RGB")))
        labels.append(label)
    if not bad:
        return images, labels
    first, why = bad[0]
    more = ", ".join(str(f) for f, _ in bad[1:4]) + (", ..." if len(bad) > 4 else "")
    others = f"; {len(bad) - 1} more unreadable: {more}" if len(bad) > 1 else ""
    what = f"{where / first}: cannot read image ({why}){others}; the other {len(images)} images of {where} read fine"
    if not skip_unreadable or not images:
        raise ValueError(f"{what}. Replace or delete the file" + ("s" if len(bad) > 1 else "")
                         + ("" if skip_unreadable else ", or set skip_unreadable: true to leave it out"))
    warnings.warn(f"{where}: skipped {len(bad)} unreadable image(s) of {len(ds.samples)} (skip_unreadable): {what}",
                  stacklevel=2)
    return images, labels


def _resize_uint8(img: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.functional import resize

    return resize(img, [size, size], antialias=True)
