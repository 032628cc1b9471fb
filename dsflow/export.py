"""Flowed datasets in the format the data came in: images a user's own training script reads.

An export of image particles is ``flowed.npz`` in :class:`~dsflow.data.ArrayFile`'s format:

* ``images`` uint8 (N, H, W) for one channel, (N, H, W, 3) for three: the particles' pixels in [0, 1] clipped and
  scaled to 0..255 (rounded to the nearest level);
* ``labels`` int64 (N,): the labels the export carries;
* optional further int64 (N,) label arrays (e.g. ``pseudo_labels``, ``coupled_labels``, ``oracle_labels``) that
  ArrayFile ignores and a user can pick from;
* optional ``class_names`` (C,) unicode strings (numpy ``<U``, read without pickling).

With ``image_folder`` it also writes ``<folder>/train/<class>/<index>.png``: ``torchvision.datasets.ImageFolder``
reads ``<folder>/train`` and :class:`~dsflow.data.ImageFolder` reads ``<folder>`` (split ``train``). Class folders
are named by the zero-padded label (``03``) or, with class names, ``03_<name>``, so that the sorted folder names give
back the labels; classes without samples get no folder (torchvision refuses empty ones).

Particles are float32 in [0, 1] by dsflow's pixel convention (:mod:`dsflow.data.images`), but a flow may move
them outside: values are clipped, and :class:`Export` reports the clipped fraction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dsflow.io import atomic_write, save_npz

__all__ = ["Export", "to_uint8", "export_images", "outside_unit_range", "write_image_folder", "class_folder_names"]


@dataclass(frozen=True)
class Export:
    """What an export wrote.

    Attributes:
        path: the ``.npz`` file.
        count: N, the samples written.
        clipped: fraction of pixel values that lay outside [0, 1] before clipping.
        label_key: the array the ``labels`` of the file were taken from (e.g. ``"pseudo_labels"``).
        folder: the image folder (``<folder>/train/<class>/<index>.png``), when one was written.
        clipped_visibly: fraction of pixel values more than half a gray level (0.5 / 255) outside [0, 1]: those
            the clipping changes beyond the rounding to 256 levels (a flow leaves many background pixels a hair
            below 0, which count in ``clipped`` and not here).
        max_outside: the largest distance of a pixel value from [0, 1].
    """

    path: Path
    count: int
    clipped: float
    label_key: str = "labels"
    folder: Path | None = None
    clipped_visibly: float = 0.0
    max_outside: float = 0.0

    def describe(self) -> str:
        """One line for the console: where, how many, which labels, what was clipped."""
        where = f" and {self.folder}" if self.folder is not None else ""
        return (f"exported {self.count} images to {self.path}{where} (labels: {self.label_key}; "
                f"{100 * self.clipped:.2f} % of pixel values clipped to [0, 1], {100 * self.clipped_visibly:.2f} % by "
                f"more than half a gray level, by at most {self.max_outside:.3g})")


def to_uint8(x: Tensor) -> tuple[np.ndarray, float]:
    """(N, C, H, W) float pixels (C = 1 or 3) -> uint8 (N, H, W) or (N, H, W, 3), and the clipped fraction.

    Raises:
        ValueError: not images of 1 or 3 channels, or non-finite values.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3) or not x.dtype.is_floating_point:
        raise ValueError(f"export: expected float images (N, C, H, W) with C = 1 or 3, got {x.dtype} {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float32)
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"export: {bad} non-finite (NaN or inf) pixel values; a diverged flow is not exported")
    clipped = float(((x < 0) | (x > 1)).double().mean()) if x.numel() else 0.0
    pixels = (x.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)  # (N, C, H, W)
    out = pixels[:, 0] if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)
    return np.ascontiguousarray(out.numpy()), clipped


def class_folder_names(num_classes: int, class_names: list[str] | None = None) -> list[str]:
    """Folder name of each class: the zero-padded label, with ``_<name>`` when names are given (sorted order is
    label order)."""
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"export: {len(class_names)} class names for {num_classes} classes")
    width = len(str(max(num_classes - 1, 0)))
    names = []
    for c in range(num_classes):
        stem = f"{c:0{width}d}"
        if class_names is not None:
            safe = re.sub(r"[^\w.-]+", "-", class_names[c]).strip("-")
            stem += f"_{safe}" if safe else ""
        names.append(stem)
    return names


def export_images(path: str | Path, x: Tensor, labels: Tensor, label_key: str = "labels",
                  extra: dict[str, Tensor] | None = None, class_names: list[str] | None = None,
                  num_classes: int | None = None, image_folder: str | Path | None = None) -> Export:
    """Write image particles as a dataset (module docstring) and return what was written.

    Args:
        path: the ``.npz`` file.
        x: (N, C, H, W) float pixels, C = 1 or 3.
        labels: (N,) integer labels in [0, num_classes): the file's ``labels``.
        label_key: what ``labels`` are (reported; e.g. ``"pseudo_labels"``).
        extra: further (N,) integer label arrays stored under their keys.
        class_names: (C,) names of the classes (stored, and used for the image folder's class folders).
        num_classes: C (default: ``len(class_names)``, else the largest label + 1).
        image_folder: also write ``<image_folder>/train/<class>/<index>.png``.
    """
    host = x.detach().to("cpu", torch.float32) if x.dtype.is_floating_point else x  # one copy off the device
    images, clipped = to_uint8(host)
    n = images.shape[0]
    arrays = {"labels": labels, **(extra or {})}
    checked: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        v = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
        if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer) or (n and v.min() < 0):
            raise ValueError(f"export: `{key}` must be {n} non-negative integers, got {v.dtype} {v.shape}")
        checked[key] = v.astype(np.int64)
    if key_clash := {"images", "class_names"} & set(extra or {}):
        raise ValueError(f"export: extra label arrays may not be called {sorted(key_clash)}")
    c = num_classes or (len(class_names) if class_names is not None else int(checked["labels"].max(initial=-1)) + 1)
    if n and int(checked["labels"].max()) >= c:
        raise ValueError(f"export: labels reach {int(checked['labels'].max())} but there are {c} classes")
    names = {} if class_names is None else {"class_names": np.array(class_names, dtype=str)}
    if class_names is not None and len(class_names) != c:
        raise ValueError(f"export: {len(class_names)} class names for {c} classes")
    out = save_npz(path, images=images, **checked, **names)
    folder = None
    if image_folder is not None:
        folder = write_image_folder(image_folder, images, checked["labels"], c, class_names)
    visibly, worst = outside_unit_range(host)
    return Export(out, n, clipped, label_key, folder, visibly, worst)


def outside_unit_range(x: Tensor) -> tuple[float, float]:
    """Of pixel values x (any shape): the fraction more than half a gray level (0.5 / 255) outside [0, 1], and the
    largest distance from [0, 1] (0 when all are inside)."""
    x = x.detach().to("cpu", torch.float32)
    if not x.numel():
        return 0.0, 0.0
    distance = torch.clamp(-x, min=0) + torch.clamp(x - 1, min=0)  # 0 inside [0, 1]
    return float((distance > 0.5 / 255).double().mean()), float(distance.max())


def write_image_folder(folder: str | Path, images: np.ndarray, labels: np.ndarray, num_classes: int,
                       class_names: list[str] | None = None) -> Path:
    """``<folder>/train/<class>/<index>.png`` for uint8 images (N, H, W) or (N, H, W, 3); returns ``folder``.

    Each file is written atomically; index i is the sample's row in the ``.npz``.
    """
    from PIL import Image

    folder = Path(folder)
    dirs = class_folder_names(num_classes, class_names)
    width = len(str(max(len(images) - 1, 0)))
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        target = folder / "train" / dirs[int(label)] / f"{i:0{width}d}.png"
        picture = Image.fromarray(img)
        atomic_write(target, lambda tmp, p=picture: p.save(tmp, format="PNG"), suffix=".png")
    return folder
