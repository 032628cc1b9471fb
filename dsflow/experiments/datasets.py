"""The one registry of the datasets the runners know by name, with what each runner reads of them.

* Table 1 (:mod:`~dsflow.experiments.table1`) swaps the dataset class of its target configs (``target``; read
  from the configs' test split unless ``split`` says otherwise): :func:`table1_targets`.
* The transfer runners (:mod:`~dsflow.experiments.transfer`, :mod:`~dsflow.experiments.transfer_schedule`) take
  a whole dataset spec, ``configs/data/<file>.yaml`` (``spec``): :func:`transfer_datasets`.
* The pseudo-label study (:mod:`~dsflow.experiments.pseudo_labels`) draws ``n`` class-balanced samples with seed
  s (``sample``): :func:`development_datasets`; with ``scripts=True`` also the synthetic-script datasets
  (:data:`~dsflow.data.glyph_scripts.SCRIPTS`: printed glyphs of other scripts, distorted), whose files
  ``scripts/<name>.npz`` under the data root ``python benchmarks/make_scripts.py`` writes (it needs the Noto fonts,
  which CI lacks: they are never in the default list, and :func:`require_files` says how to make them).

``digits``: the labels are MNIST's ten digits (a flow onto MNIST needs no coupling layer to score them, and flowed
digits keep their labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dsflow.data import MNIST, ArrayFile, FashionMNIST, data_root
from dsflow.data.base import DatasetSource
from dsflow.data.distorted import Distorted
from dsflow.data.glyph_scripts import SCRIPTS

__all__ = ["Dataset", "DATASETS", "table1_targets", "transfer_datasets", "development_datasets", "script_datasets",
           "require_files"]


@dataclass(frozen=True)
class Dataset:
    """A dataset known by name, and how each runner reads it (None: that runner does not know it).

    Attributes:
        digits: its labels are MNIST's ten digits.
        target: Table 1: the ``dsflow.data`` class swapped into the target configs.
        split: Table 1: the split read instead of the configs' test split.
        spec: transfer: its dataset spec, ``configs/data/<file>.yaml``.
        sample: the pseudo-label study: ``sample(n, seed)``, n class-balanced 28 x 28 gray samples.
        about: the pseudo-label study: what it is.
    """

    digits: bool
    target: str | None = None
    split: str | None = None
    spec: str | None = None
    sample: Callable[[int, int], DatasetSource] | None = None
    about: str = ""


def _common(n: int, seed: int) -> dict:
    return dict(n=n, seed=seed, size=28, channels=1, balanced=True)


DATASETS: dict[str, Dataset] = {
    "usps": Dataset(True, target="dsflow.data.USPS", spec="configs/data/usps_h5.yaml",
                    sample=lambda n, s: ArrayFile("usps_h5/train.npz", name="usps", **_common(n, s)),
                    about="USPS h5 training split, 16x16 -> 28x28 (deslanted copy of a Table 1 target)"),
    "mnist": Dataset(True, target="dsflow.data.MNIST", spec="configs/data/mnist.yaml",
                     sample=lambda n, s: MNIST(split="test", **_common(n, s)), about="MNIST test digits"),
    "mnist-train": Dataset(True, target="dsflow.data.MNIST", split="train",  # a development row: MNIST's training
                           sample=lambda n, s: MNIST(split="train", **_common(n, s)),  # split onto its test digits
                           about="MNIST training digits (the oracle's data; another sample of MNIST)"),
    "mnist-warp": Dataset(True, sample=lambda n, s: Distorted(MNIST(split="test", **_common(n, s)), seed=s),
                          about="MNIST test digits, randomly rotated/sheared/elastically warped/thickened (Distorted)"),
    "fmnist": Dataset(False, target="dsflow.data.FashionMNIST", spec="configs/data/fmnist.yaml",
                      sample=lambda n, s: FashionMNIST(split="test", **_common(n, s)),
                      about="Fashion-MNIST test (a Table 1 target)"),
    "kmnist": Dataset(False, target="dsflow.data.KMNIST", spec="configs/data/kmnist.yaml"),
    "emnist": Dataset(False, target="dsflow.data.EMNIST"),
    "cifar-gray": Dataset(False, sample=lambda n, s: ArrayFile("cifar10_jpeg/test.npz", name="cifar", **_common(n, s)),
                          about="CIFAR-10 test, gray 28x28 (JPEG copy): natural images, far from strokes"),
}


def _script(name: str) -> Dataset:
    """A synthetic-script dataset: ``scripts/<name>.npz`` under the data root (digit sets: labels are the values)."""
    return Dataset(name.endswith("-digits"),
                   sample=lambda n, s: ArrayFile(f"scripts/{name}.npz", name=name, **_common(n, s)),
                   about=f"SYNTHETIC: {SCRIPTS[name].about}, printed Noto glyphs randomly distorted (not handwriting)")


DATASETS.update({name: _script(name) for name in SCRIPTS})


def table1_targets() -> dict[str, Dataset]:
    """The named targets of Table 1 (those with a ``target`` class), in the registry's order."""
    return {name: d for name, d in DATASETS.items() if d.target is not None}


def transfer_datasets() -> dict[str, Dataset]:
    """The datasets of the transfer runners (those with a ``spec``), in the registry's order."""
    return {name: d for name, d in DATASETS.items() if d.spec is not None}


#: the pseudo-label study's development datasets, in its tables' order
_DEVELOPMENT = ("mnist", "mnist-train", "mnist-warp", "fmnist", "usps", "cifar-gray")


def development_datasets(scripts: bool = False) -> dict[str, Dataset]:
    """The pseudo-label study's development datasets (those with a ``sample``), in its tables' order; with
    ``scripts``, the synthetic-script datasets after them."""
    return {name: DATASETS[name] for name in (*_DEVELOPMENT, *(script_datasets() if scripts else ()))}


def script_datasets() -> dict[str, Dataset]:
    """The synthetic-script datasets (:data:`~dsflow.data.glyph_scripts.SCRIPTS`), in the registry's order."""
    return {name: DATASETS[name] for name in SCRIPTS}


def require_files(names: list[str], root: str | None = None) -> None:
    """Raise FileNotFoundError naming the synthetic-script files among ``names`` that are missing under the data
    root, and the command that writes them (other datasets are checked when they are read)."""
    folder = data_root(root) / "scripts"
    missing = [f"{name}.npz" for name in names if name in SCRIPTS and not (folder / f"{name}.npz").is_file()]
    if missing:
        raise FileNotFoundError(
            f"synthetic-script datasets not found: {', '.join(str(folder / m) for m in missing)}\n"
            f"make them (about 15 s each; needs the Noto fonts, see dsflow/data/glyph_scripts.py): "
            f"python benchmarks/make_scripts.py --out {folder}")
