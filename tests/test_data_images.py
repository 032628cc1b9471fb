"""Image datasets: real local data (via DSFLOW_DATA) where it exists, small files in the real formats otherwise."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflow.data import (
    CIFAR10, EMNIST, KMNIST, MNIST, PCAM, STL10, USPS, ArrayFile, FashionMNIST, FlowDataModule, ImageFolder,
    MissingDataError, data_root, stratified_indices, to_float_images,
)
from tests.real_data import require_data


# ----------------------------------------------------------------------------------------- processing helpers
def test_stratified_subset_is_seeded_proportional_and_sorted() -> None:
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_indices(y, 20, 3, seed=1)
    assert torch.bincount(y[idx], minlength=3).tolist() == [12, 6, 2]
    assert torch.equal(idx, stratified_indices(y, 20, 3, seed=1)) and torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, stratified_indices(y, 20, 3, seed=2))
    with pytest.raises(ValueError, match="subset size"):
        stratified_indices(y, 101, 3)
    balanced = stratified_indices(y, 30, 3, seed=0, balanced=True)
    assert torch.bincount(y[balanced], minlength=3).tolist() == [10, 10, 10]
    with pytest.raises(ValueError, match=r"classes \[2\] have only \[10\]"):
        stratified_indices(y, 60, 3, balanced=True)


def test_resize_and_channel_conversion_keep_unit_range() -> None:
    gray = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    x = to_float_images(gray, size=28, channels=3)
    assert x.shape == (2, 3, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    rgb = torch.full((1, 3, 96, 96), 255, dtype=torch.uint8)
    assert torch.allclose(to_float_images(rgb, size=32, channels=1), torch.ones(1, 1, 32, 32))


# ----------------------------------------------------------------------------------------- real local data
@pytest.mark.parametrize("cls, folder", [(MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")])
def test_mnist_format_real(cls: type, folder: str) -> None:
    require_data(f"{folder}/raw/t10k-images-idx3-ubyte")
    data = cls(split="test", n=500, seed=0).load()
    assert data.x.shape == (500, 1, 28, 28) and data.num_classes == 10
    assert data.x.max() <= 1 and torch.bincount(data.y, minlength=10).min() >= 40


def test_usps_real_resized_to_mnist_shape() -> None:
    require_data("usps.t.bz2")
    data = USPS(split="test", n=300, size=28).load()
    assert data.x.shape == (300, 1, 28, 28) and set(data.y.tolist()) == set(range(10))


def test_array_files_real_usps_and_cifar() -> None:
    require_data("usps_h5/train.npz", "cifar10_jpeg/test.npz")
    usps = ArrayFile(path="usps_h5/train.npz", test_path="usps_h5/test.npz", split="test", size=28).load()
    assert usps.x.shape == (2007, 1, 28, 28) and usps.num_classes == 10
    cifar = ArrayFile(path="cifar10_jpeg/test.npz", n=100, size=28, channels=1).load()
    assert cifar.x.shape == (100, 1, 28, 28)


def test_datamodule_fit_split_and_flow_source() -> None:
    require_data("MNIST/raw/train-images-idx3-ubyte")
    dm = MNIST(n=600, val_fraction=0.5, batch_size=100, test_split=None)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 28, 28) and len(dm.val_dataloader().dataset) == 300
    pair = FlowDataModule(USPS(split="test", n=50, size=28), MNIST(split="test", n=50))
    assert pair.source.feature_shape == pair.reference.feature_shape == (1, 28, 28)


# ----------------------------------------------------------------------------------------- missing data
def test_missing_files_error_names_files_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as err:
        MNIST(root=str(tmp_path), download=False).load()
    msg = str(err.value)
    assert str(tmp_path / "MNIST/raw/t10k-images-idx3-ubyte") in msg and "DSFLOW_DATA" in msg
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        ArrayFile(path=str(tmp_path / "nothing.npz")).load()


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSFLOW_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("/x") == Path("/x")
    monkeypatch.delenv("DSFLOW_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert data_root() == tmp_path / "c" / "dsflow" / "data"


# ----------------------------------------------------------------------------------------- real formats, tiny files
def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    code = 0x08 << 8 | arr.ndim
    path.write_bytes(struct.pack(">I", code) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes())


def _images(n: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_kmnist_idx_files(tmp_path: Path) -> None:
    for prefix, n in (("train", 20), ("t10k", 10)):
        _idx(tmp_path / f"KMNIST/raw/{prefix}-images-idx3-ubyte", _images(n, 28, 28))
        _idx(tmp_path / f"KMNIST/raw/{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data = KMNIST(root=str(tmp_path), split="test", download=False).load()
    assert data.x.shape == (10, 1, 28, 28) and data.y.tolist() == list(range(10))


def test_emnist_letters_idx_files_upright_and_zero_based(tmp_path: Path) -> None:
    img = _images(26, 28, 28)
    for part in ("train", "test"):
        _idx(tmp_path / f"EMNIST/raw/emnist-letters-{part}-images-idx3-ubyte", img)
        _idx(tmp_path / f"EMNIST/raw/emnist-letters-{part}-labels-idx1-ubyte", np.arange(1, 27))
    data = EMNIST(root=str(tmp_path), split="test", download=False).load()
    assert data.num_classes == 26 and data.y.tolist() == list(range(26))
    assert torch.allclose(data.x[3, 0], torch.from_numpy(img[3].T).float() / 255)  # stored transposed


def test_stl10_binary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "test_X.bin").write_bytes(_images(4, 3, 96, 96).tobytes())
    (folder / "test_y.bin").write_bytes(np.array([1, 2, 3, 10], dtype=np.uint8).tobytes())
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)  # the tiny files cannot match the md5s
    data = STL10(root=str(tmp_path), split="test", size=32, download=False).load()
    assert data.x.shape == (4, 3, 32, 32) and data.y.tolist() == [0, 1, 2, 9]


def test_cifar10_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": _images(5, 3 * 32 * 32), "labels": [0, 1, 2, 3, 4]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    import torchvision.datasets as tvd

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)  # tiny files cannot match the md5s
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    data = CIFAR10(root=str(tmp_path), split="test", download=False).load()
    assert data.x.shape == (5, 3, 32, 32) and data.y.tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(data.x[1].flatten(), torch.from_numpy(batch["data"][1]).float() / 255)


def test_pcam_h5_files(tmp_path: Path) -> None:
    import h5py  # a dependency (torchvision PCAM)
    folder = tmp_path / "pcam"
    folder.mkdir()
    with h5py.File(folder / "camelyonpatch_level_2_split_test_x.h5", "w") as f:
        f["x"] = _images(6, 96, 96, 3)
    with h5py.File(folder / "camelyonpatch_level_2_split_test_y.h5", "w") as f:
        f["y"] = np.array([0, 1, 0, 1, 1, 0], dtype=np.uint8).reshape(6, 1, 1, 1)
    data = PCAM(root=str(tmp_path), split="test", size=32, download=False).load()
    assert data.x.shape == (6, 3, 32, 32) and data.num_classes == 2 and data.y.tolist() == [0, 1, 0, 1, 1, 0]


def test_npz_and_image_folder(tmp_path: Path) -> None:
    np.savez(tmp_path / "rgb.npz", images=_images(8, 20, 20, 3), labels=np.arange(8, dtype=np.int64) % 2)
    data = ArrayFile(path=str(tmp_path / "rgb.npz"), size=28, channels=1, n=4).load()
    assert data.x.shape == (4, 1, 28, 28) and torch.bincount(data.y).tolist() == [2, 2]
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="uint8"):
        ArrayFile(path=str(tmp_path / "bad.npz")).load()
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "imgs/test" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(_images(1, 10, 10, 3)[0]).save(tmp_path / "imgs/test" / label / f"{i}.png")
    folder = ImageFolder(path=str(tmp_path / "imgs"), split="test", size=16).load()
    assert folder.x.shape == (6, 3, 16, 16) and folder.y.tolist() == [0, 0, 0, 1, 1, 1]


# ----------------------------------------------------------------------------------------- empty and degenerate data
def test_empty_array_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    np.savez(path, images=np.zeros((0, 28, 28), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"empty\.npz: holds no samples \(`images` has shape \(0, 28, 28\)\)"):
        ArrayFile(path=str(path)).load()


def test_empty_image_folder_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "imgs/train/cat").mkdir(parents=True)  # a class folder without images
    with pytest.raises(ValueError, match=r"imgs/train: holds no images"):
        ImageFolder(path=str(tmp_path / "imgs"), split="train").load()
    (tmp_path / "bare/train").mkdir(parents=True)  # no class folder at all
    with pytest.raises(ValueError, match=r"bare/train: holds no images"):
        ImageFolder(path=str(tmp_path / "bare"), split="train").load()


def test_subset_that_would_drop_a_class_is_an_error(tmp_path: Path) -> None:
    """A rare class whose proportional share of n rounds to zero is never silently dropped."""
    path = tmp_path / "rare.npz"
    labels = np.array([0] * 50 + [1] * 49 + [2], np.int64)
    np.savez(path, images=np.zeros((100, 8, 8), np.uint8), labels=labels)
    with pytest.raises(ValueError, match=r"rare\.npz/train: a subset of n=10 holds no sample of classes \[2\]"):
        ArrayFile(path=str(path), n=10).load()
    assert ArrayFile(path=str(path), n=100).load().x.shape[0] == 100


def test_single_sample_class_in_an_npz_target_names_dataset_and_class(tmp_path: Path) -> None:
    """The Gaussian label distance needs a covariance per class: a one-sample class stops the flow before a step."""
    from dsflow.flows import FlowModule

    rng = np.random.default_rng(0)
    path = tmp_path / "single.npz"
    np.savez(path, images=rng.integers(0, 255, (21, 8, 8), dtype=np.uint8), labels=np.array([0] * 10 + [1] * 10 + [2]))
    source, reference = ArrayFile(path=str(path)).load(), ArrayFile(path=str(path), n=20).load()
    with pytest.raises(ValueError, match=r"single\.npz/train: classes \[2\] have \[1\] sample\(s\) but the label distance"):
        FlowModule().init_data(source, reference)
