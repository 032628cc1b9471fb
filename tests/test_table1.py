"""benchmarks/table1.py end to end on tiny sizes: a quickly trained oracle, named and .npz targets, both modes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from dsflow.data import FashionMNIST, data_root

os.environ.setdefault("WANDB_MODE", "offline")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "table1.py"


def _table1():
    spec = importlib.util.spec_from_file_location("table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table1_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = data_root()
    if not (root / "MNIST/raw/train-images-idx3-ubyte").exists() or not (root / "FashionMNIST/raw").exists():
        pytest.fail("MNIST / Fashion-MNIST not under the data root: set DSFLOW_DATA (CI uses ../shared/data)")
    fm = FashionMNIST(split="test", n=200).read("test")  # any dataset as an .npz target: no code change
    npz = tmp_path / "clothes.npz"
    np.savez(npz, images=fm.images[:200, 0].numpy(), labels=fm.labels[:200].numpy())
    rows = _table1().main([
        "--targets", "usps", str(npz), "--n", "60", "--steps", "2", "--oracle", str(tmp_path / "oracle.ckpt"),
        "--oracle-n", "600", "--oracle-epochs", "1", "--out", str(tmp_path / "runs"), "--eps", "5", "--threads", "1",
    ])
    out = capsys.readouterr().out
    assert "| target | before | supervised | unsupervised | steps | seconds |" in out
    assert [r["target"] for r in rows] == ["usps", str(npz)]
    for r in rows:
        assert all(0 <= r[k] <= 100 for k in ("before", "supervised", "unsupervised")) and r["steps"] == 2
    assert (tmp_path / "runs/results.json").is_file() and (tmp_path / "oracle.ckpt").is_file()
