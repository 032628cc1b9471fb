"""Exported datasets (dsflow.export): what dsflow's own loaders and torchvision read back is what was exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder as TorchvisionImageFolder

from dsflow.data import ArrayFile, ImageFolder
from dsflow.export import class_folder_names, export_images, to_uint8


def _particles(n: int = 12, c: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 256, (n, c, 6, 5), generator=g)
    return levels.float() / 255.0, torch.arange(n) % 3


@pytest.mark.parametrize("channels", [1, 3])
def test_npz_round_trip_gives_the_same_images_and_labels(tmp_path, channels):
    x, y = _particles(c=channels)
    out = export_images(tmp_path / "flowed.npz", x, y)
    assert out.count == 12 and out.clipped == 0.0
    data = ArrayFile(str(out.path), root=str(tmp_path)).load()
    torch.testing.assert_close(data.x, x, rtol=0, atol=0)  # exact: x was on the uint8 grid
    assert torch.equal(data.y, y) and data.num_classes == 3


def test_image_folder_round_trip_through_dsflow_and_torchvision(tmp_path):
    x, y = _particles(c=3)
    names = ["zero", "one/two", "three"]
    out = export_images(tmp_path / "flowed.npz", x, y, class_names=names, image_folder=tmp_path / "folder")
    back = ImageFolder(str(out.folder), split="train", root=str(tmp_path)).load()
    tv = TorchvisionImageFolder(str(tmp_path / "folder" / "train"))
    assert tv.classes == ["0_zero", "1_one-two", "2_three"]
    assert sorted(tv.targets) == sorted(y.tolist())
    # the folder's order is class by class; match each read image to its exported row by file index
    rows = [int(p.rsplit("/", 1)[1].removesuffix(".png")) for p, _ in tv.samples]
    torch.testing.assert_close(back.x, x[rows], rtol=0, atol=0)
    assert torch.equal(back.y, y[rows])
    with np.load(out.path) as f:
        assert f["class_names"].tolist() == names


def test_values_outside_unit_range_are_clipped_and_counted(tmp_path):
    x = torch.full((2, 1, 2, 2), 0.5)
    x[0, 0, 0, 0], x[1, 0, 1, 1] = -0.3, 1.7  # 2 of 8 values
    images, clipped = to_uint8(x)
    assert clipped == pytest.approx(0.25)
    assert images.dtype == np.uint8 and images.shape == (2, 2, 2)
    assert images[0, 0, 0] == 0 and images[1, 1, 1] == 255 and images[0, 1, 1] == 128


def test_clipping_beyond_half_a_gray_level_is_told_apart(tmp_path):
    """A hair below 0 (background a flow leaves at -1e-4) is clipped but rounds to 0 anyway; -0.3 and 1.7 change."""
    x = torch.full((2, 1, 2, 2), 0.5)
    x[0, 0, 0, 0], x[0, 0, 0, 1], x[1, 0, 1, 1] = -0.3, -1e-4, 1.7  # 3 of 8 outside, 2 of them visibly
    out = export_images(tmp_path / "f.npz", x, torch.tensor([0, 1]))
    assert out.clipped == pytest.approx(3 / 8) and out.clipped_visibly == pytest.approx(2 / 8)
    assert out.max_outside == pytest.approx(0.7)
    assert "37.50 % of pixel values clipped to [0, 1], 25.00 % by more than half a gray level, by at most 0.7" in out.describe()


def test_extra_label_arrays_are_stored_beside_the_labels(tmp_path):
    x, y = _particles()
    out = export_images(tmp_path / "f.npz", x, y, label_key="pseudo_labels", extra={"oracle_labels": 2 - y})
    with np.load(out.path) as f:
        assert f["oracle_labels"].tolist() == (2 - y).tolist() and f["labels"].dtype == np.int64
    assert "pseudo_labels" in out.describe()


@pytest.mark.parametrize("bad, message", [
    (lambda x, y: (x[:, :, 0], y), "expected float images"),
    (lambda x, y: (x.expand(-1, 2, -1, -1), y), "C = 1 or 3"),
    (lambda x, y: (x.clone().fill_(float("nan")), y), "non-finite"),
    (lambda x, y: (x, y[:-1]), "must be 12 non-negative integers"),
    (lambda x, y: (x, y - 1), "must be 12 non-negative integers"),
])
def test_bad_exports_are_refused_with_the_problem_named(tmp_path, bad, message):
    x, y = bad(*_particles())
    with pytest.raises(ValueError, match=message):
        export_images(tmp_path / "f.npz", x, y)
    assert not (tmp_path / "f.npz").exists()


def test_class_folders_sort_in_label_order():
    names = class_folder_names(12)
    assert names == sorted(names) and names[:2] == ["00", "01"]
    with pytest.raises(ValueError, match="2 class names for 12 classes"):
        class_folder_names(12, ["a", "b"])
