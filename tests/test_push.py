"""train.py predict with a flow map: new samples pushed through h and written as a dataset (PushWriter), and the
errors for images the flow map was not trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dsflow.cli import train_main
from dsflow.data import ArrayFile
from dsflow.io import load_npz, save_npz
from dsflow.models import FlowMapAutoencoder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CPU = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def flow_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flow map fitted for one epoch on a tiny flow run (8 x 8 gray images, xT = 1 - x0); its best checkpoint."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("push")
    rng = np.random.default_rng(0)
    x0 = rng.random((40, 1, 8, 8), dtype=np.float32)
    save_npz(root / "flow/final.npz", x0=x0, y0=np.arange(40) % 2, x=1.0 - x0, y=np.arange(40) % 2)
    train_main(["fit", "--config", str(CONFIGS / "train/flow_map.yaml"), "--data.init_args.run_dir", str(root / "flow"),
                "--trainer.max_epochs", "1", "--trainer.logger", "false", *CPU, "--run_dir", str(root / "fm")])
    return root / "fm/checkpoints/best.ckpt"


def _samples(path: Path, n: int = 21, shape: tuple[int, ...] = (8, 8), dtype: type = np.uint8) -> Path:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, *shape)).astype(dtype)
    save_npz(path, images=images, labels=(np.arange(n) * 7) % 10)
    return path


def _predict(ckpt: Path, data: Path, out: Path, *args: str):
    return train_main(["predict", "--config", str(CONFIGS / "train/flow_map.yaml"), "--config",
                       str(CONFIGS / "train/push.yaml"), "--ckpt_path", str(ckpt), "--data.path", str(data), *CPU,
                       "--run_dir", str(out), *args])


def test_predict_pushes_a_file_and_writes_an_export(flow_map: Path, tmp_path: Path) -> None:
    new = _samples(tmp_path / "new.npz")
    cli = _predict(flow_map, new, tmp_path / "out", "--data.batch_size", "8")
    written = load_npz(tmp_path / "out/pushed.npz", keys=("images", "labels"))
    given = load_npz(new, keys=("images", "labels"))
    assert written["images"].dtype == np.uint8 and written["images"].shape == (21, 8, 8)
    assert written["labels"].dtype == np.int64 and np.array_equal(written["labels"], given["labels"])
    # h applied to the inputs by hand, from the checkpoint's weights: equal within uint8 rounding
    state = torch.load(flow_map, weights_only=False)["state_dict"]
    net = FlowMapAutoencoder(1, 8, channels=(16, 32), hidden=(512, 256, 128, 128, 64))
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    with torch.no_grad():
        h = net.eval()(torch.from_numpy(given["images"]).float()[:, None] / 255.0)[:, 0]
    expected = (h.clamp(0, 1) * 255).numpy()
    assert np.abs(written["images"].astype(float) - expected).max() <= 0.5 + 1e-3
    writer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "PushWriter")
    assert writer.export.count == 21 and writer.export.clipped == pytest.approx(float(((h < 0) | (h > 1)).float().mean()))
    assert (tmp_path / "out/pushed.png").stat().st_size > 1000
    assert ArrayFile(str(tmp_path / "out/pushed.npz")).load().x.shape == (21, 1, 8, 8)  # dsflow reads it back
    # the flow map's own run directory is left alone: predict writes into its own
    assert not (flow_map.parent.parent / "pushed.npz").exists()


def test_predict_converts_on_request_and_writes_an_image_folder(flow_map: Path, tmp_path: Path) -> None:
    new = _samples(tmp_path / "rgb.npz", n=6, shape=(12, 12, 3))
    _predict(flow_map, new, tmp_path / "out", "--data.size", "8", "--data.channels", "1",
             "--trainer.callbacks.init_args.image_folder", "images")
    assert load_npz(tmp_path / "out/pushed.npz", keys=("images",))["images"].shape == (6, 8, 8)
    assert len(list((tmp_path / "out/images/train").glob("*/*.png"))) == 6


@pytest.mark.parametrize("shape, message", [
    ((10, 10), r"new.npz: images are 10x10 with 1 channel; this flow map was trained on 1x8x8 images "
               r"\(set data size: 8, channels: 1 to convert"),
    ((8, 8, 3), r"new.npz: images are 8x8 with 3 channels; this flow map was trained on 1x8x8 images"),
])
def test_predict_refuses_images_of_another_shape(flow_map: Path, tmp_path: Path, shape, message) -> None:
    new = _samples(tmp_path / "new.npz", shape=shape)
    with pytest.raises(ValueError, match=message):
        _predict(flow_map, Path("new.npz"), tmp_path / "out", "--data.root", str(tmp_path))
    assert not (tmp_path / "out/pushed.npz").exists() and new.is_file()


def test_predict_refuses_float_images_naming_the_file(flow_map: Path, tmp_path: Path) -> None:
    new = _samples(tmp_path / "floats.npz", dtype=np.float32)
    with pytest.raises(ValueError, match=r"floats.npz: `images` must be uint8 \[N,H,W\] or \[N,H,W,3\], got float32"):
        _predict(flow_map, new, tmp_path / "out")


def test_checkpoint_without_a_recorded_shape_is_refused_by_its_weights(flow_map: Path, tmp_path: Path) -> None:
    """Checkpoints written before the image shape was recorded: the weights' shapes name the mismatch."""
    ckpt = torch.load(flow_map, weights_only=False)
    del ckpt["flow_map_input_shape"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    new = _samples(tmp_path / "new.npz", shape=(12, 12))
    with pytest.raises(ValueError, match=r"new.npz: this flow map's checkpoint does not fit a network for images "
                                         r"\(1, 12, 12\): weight net.encoder"):
        _predict(tmp_path / "old.ckpt", new, tmp_path / "out")


def test_samples_a_distributed_sampler_repeats_are_written_once_in_dataset_order() -> None:
    from dsflow.callbacks.push_writer import _first_of_each

    index = torch.tensor([4, 0, 2, 1, 3, 0])  # rank 0 took 4, 0, 2; rank 1 took 1, 3 and 0 again (padding)
    order = _first_of_each(index)
    assert index[order].tolist() == [0, 1, 2, 3, 4] and order[0] == 1
