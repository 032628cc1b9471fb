"""Transfer-learning pieces and runner: class correspondence, augmentation, LeNet training, the tiny end-to-end run, plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dsflow.callbacks.transfer_figures import adaptation_figure, repurpose_figure, transfer_figure
from dsflow.data import data_root
from dsflow.ot.label_distance import DiagonalGaussianLabelDistance
from dsflow.tasks.transfer import accuracy, augmented, class_map, landing_labels, train_lenet

ROOT = Path(__file__).resolve().parents[1]


def test_class_map_recovers_a_relabelling() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10  # (C, d) well-separated classes
    y = torch.arange(40) % 4
    x = centres[y] + 0.1 * torch.randn(40, 4, generator=gen)
    perm = torch.tensor([2, 0, 3, 1])  # source class c is target class perm[c]
    x_ref = centres[y] + 0.1 * torch.randn(40, 4, generator=gen)
    got = class_map(x, y, 4, x_ref, perm[y], 4, DiagonalGaussianLabelDistance())
    assert got.tolist() == perm.tolist()


def test_landing_labels_read_the_nearest_target() -> None:
    x_ref = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).reshape(3, 1, 1, 2)
    y_ref = torch.tensor([4, 7, 1])
    x = torch.tensor([[9.5, 0.2], [0.1, 0.1], [0.3, 9.0], [10.2, -0.1]]).reshape(4, 1, 1, 2)
    assert landing_labels(x, x_ref, y_ref, batch_size=3).tolist() == [7, 4, 1, 7]


def test_augmented_and_lenet_training() -> None:
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    xa, ya = augmented(x, y, [(x[:5], y[:5]), (x[:3], y[:3])])
    assert xa.shape == (28, 1, 28, 28) and ya.shape == (28,)
    with pytest.raises(ValueError, match="do not match"):
        augmented(x, y, [(torch.rand(2, 1, 16, 16), y[:2])])
    net = train_lenet(x, y, 10, epochs=1, batch_size=10)
    tuned = train_lenet(x, y, 10, epochs=1, batch_size=10, init=net)
    assert 0.0 <= accuracy(tuned, x, y) <= 100.0 and not tuned.training
    with pytest.raises(ValueError, match="square images"):
        train_lenet(x.reshape(20, -1), y, 10)


def test_plots_write_files(tmp_path: Path) -> None:
    rows = [{"k": k, "setting": s, "mean": 80.0 + i, "std": 1.0} for k in (5, 100) for i, s in enumerate(("target only", "+ zT"))]
    assert transfer_figure(rows, tmp_path / "t.png").stat().st_size > 1000
    assert adaptation_figure([{"label": "U->M 100", "finetune": 90.0, "flow": 92.0}], tmp_path / "a.png").is_file()
    hist = [{"step": 0, "objective": float("nan"), "accuracy": 50.0}, {"step": 5, "objective": 3.0, "accuracy": 70.0}]
    assert repurpose_figure({"a": hist, "b": hist}, tmp_path / "r.png").is_file()
    with pytest.raises(ValueError, match="no result rows"):
        transfer_figure([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty history"):
        repurpose_figure({"a": []}, tmp_path / "x.png")


def test_transfer_runner_tiny_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = data_root()
    if not (root / "usps_h5/train.npz").exists() or not (root / "MNIST/raw").exists():
        pytest.skip("usps_h5 / MNIST not under the data root (set DSFLOW_DATA)")
    spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks/transfer.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    out = tmp_path / "tr"
    rows = runner.main(["--pairs", "usps:mnist", "--shots", "2", "--seeds", "0", "1", "--n-source", "40", "--n-extra", "20",
                        "--n-test", "200", "--steps", "2", "--snapshots", "2", "--epochs", "1", "--finetune-epochs", "1",
                        "--map-restarts", "2", "--map-epochs", "1", "--out", str(out)])
    assert [r["setting"] for r in rows] == list(runner.SETTINGS) and all(r["seeds"] == 2 for r in rows)
    printed = capsys.readouterr().out
    assert "| usps->mnist | 2 | + z1..T |" in printed and "held-out MSE of xT" in printed
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 2 and all("map_mse" in r for r in saved["runs"])
    for f in ("transfer_usps_mnist.png", "adaptation.png", "usps-mnist-k2-s0/flow_map/fig9.png", "usps-mnist-k2-s0/flow/final.npz"):
        assert (out / f).is_file(), f
    with pytest.raises(ValueError, match="unknown dataset"):
        runner.main(["--pairs", "svhn:mnist", "--out", str(out)])
