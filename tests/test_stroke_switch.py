"""ByStrokeWidth: the deep-ink measure on shapes with known answers, and the choice it makes."""

import pytest
import torch
from torch import Tensor

from dsflow.data import ByStrokeWidth, MNIST, FashionMNIST
from dsflow.data.pseudo import ClusterFeatures, deep_ink_fraction


class Tag(ClusterFeatures):
    """Features that say which map made them (a column of ``value``), and remember a checkpoint offered."""

    def __init__(self, value: float) -> None:
        self.value, self.checkpoint = value, None

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        return torch.full((x.shape[0], 1), self.value, dtype=torch.float64)

    def default_checkpoint(self, path: str) -> None:
        self.checkpoint = path


def image(size: int = 28) -> Tensor:
    return torch.zeros(1, 1, size, size)


def test_a_thin_stroke_has_no_deep_ink():
    x = image()
    x[0, 0, 4:24, 10:14] = 1.0  # a bar 4 px wide: every ink pixel is within 2 px of the background
    assert deep_ink_fraction(x).item() == 0.0


def test_a_filled_square_has_its_interior_deep():
    x = image()
    x[0, 0, 9:19, 9:19] = 1.0  # 10 x 10: after an erosion of radius 2, 6 x 6 remain
    assert deep_ink_fraction(x).item() == pytest.approx(36 / 100)


def test_ink_at_the_frame_is_not_deep_and_scale_and_channels_do_not_matter():
    x = torch.ones(1, 3, 28, 28) * 200.0  # the whole frame inked, RGB, 0-255 scale
    assert deep_ink_fraction(x).item() == pytest.approx(24 * 24 / 28**2)
    big = torch.zeros(1, 56, 56)
    big[0, 18:38, 18:38] = 1.0  # the 10 x 10 square at twice the size: radius 4, 12 x 12 remain of 20 x 20
    assert deep_ink_fraction(big).item() == pytest.approx(144 / 400)


def test_faint_gray_around_a_stroke_is_not_ink_and_blank_images_give_zero():
    x = image()
    x[0, 0, 2:26, 2:26] = 0.3  # a faint wash under the level (half the peak)
    x[0, 0, 4:24, 12:15] = 1.0
    assert deep_ink_fraction(torch.cat([x, image()])).tolist() == [0.0, 0.0]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="shape"):
        deep_ink_fraction(torch.zeros(5, 784))
    with pytest.raises(ValueError, match="depth"):
        deep_ink_fraction(image(), depth=0)
    with pytest.raises(ValueError, match="max_deep_ink"):
        ByStrokeWidth(Tag(0), Tag(1), max_deep_ink=1.5)
    with pytest.raises(ValueError, match="no images"):
        ByStrokeWidth(Tag(0), Tag(1))(torch.zeros(0, 1, 28, 28))


def test_the_switch_hands_strokes_and_shapes_to_their_maps_and_records_it():
    strokes, shapes = image().repeat(4, 1, 1, 1), image().repeat(4, 1, 1, 1)
    strokes[:, :, 4:24, 10:13] = 1.0
    shapes[:, :, 6:22, 6:22] = 1.0
    switch = ByStrokeWidth(thin=Tag(0.0), thick=Tag(1.0))
    assert switch.describe() is None
    assert switch(strokes).unique().tolist() == [0.0] and switch.last is not None and switch.last.thin
    assert switch.describe() == "thin-stroke features (median deep ink 0.000 <= 0.1)"
    assert switch(shapes).unique().tolist() == [1.0] and switch.last is not None and not switch.last.thin
    assert switch.last.deep_ink == pytest.approx(12 * 12 / 256)
    assert switch.describe() == "thick-stroke features (median deep ink 0.562 > 0.1)"
    switch.default_checkpoint("oracle.ckpt")
    assert switch.thin.checkpoint == switch.thick.checkpoint == "oracle.ckpt"  # type: ignore[attr-defined]


def test_real_digits_are_strokes_and_real_clothing_is_not():
    digits = MNIST(split="test", n=200, seed=0, size=28, channels=1).load().x
    clothes = FashionMNIST(split="test", n=200, seed=0, size=28, channels=1).load().x
    switch = ByStrokeWidth(thin=Tag(0.0), thick=Tag(1.0))
    assert switch.reading(digits).thin and switch.reading(digits).deep_ink < 0.02
    assert not switch.reading(clothes).thin and switch.reading(clothes).deep_ink > 0.12


def test_deep_ink_is_the_same_on_every_device(device: torch.device) -> None:
    x = image().repeat(3, 1, 1, 1)
    x[0, 0, 4:24, 10:14] = 1.0
    x[1, 0, 9:19, 9:19] = 1.0
    out = deep_ink_fraction(x.to(device))
    assert out.device == device
    assert out.cpu().tolist() == pytest.approx([0.0, 0.36, 0.0])
