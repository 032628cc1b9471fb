"""Oracle networks, checkpoints, train.py, and the OracleScorer callback (validation, history, image grids)."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from dsflow.callbacks import OracleScorer
from dsflow.data import ArrayFile, FlowDataModule, GaussianMixture, data_root
from dsflow.flows import FeatureDriven, FlowModule, OTDDTerm
from dsflow.models import LeNet5, ResNet18
from dsflow.tasks import load_oracle, save_oracle

os.environ.setdefault("WANDB_MODE", "offline")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_networks_shapes() -> None:
    assert LeNet5()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert ResNet18(num_classes=7)(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_oracle_round_trip_and_errors(tmp_path: Path) -> None:
    net = LeNet5(num_classes=3)
    path = save_oracle(net, tmp_path / "o.ckpt")
    oracle = load_oracle(path)
    x = torch.rand(4, 1, 28, 28)
    assert oracle.num_classes == 3 and oracle.input_shape == (1, 28, 28)
    assert torch.allclose(oracle.probs(x), torch.softmax(net.eval()(x), -1), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_oracle(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="no 'oracle' entry"):
        load_oracle(tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(1, 28, 28\)"):
        oracle.check_input((3, 32, 32))


def _digits_npz(path: Path, classes: int, n: int = 30, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = (rng.random((n, 28, 28)) * 60 + labels[:, None, None] * 60).clip(0, 255).astype(np.uint8)
    np.savez(path, images=images, labels=labels.astype(np.int64))
    return str(path)


def _fit(tmp_path: Path, scorer: OracleScorer, source, reference, steps: int = 2) -> FlowModule:
    model = FlowModule([OTDDTerm(eps=1.0)], FeatureDriven(), partial(torch.optim.SGD, lr=0.1))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[scorer], default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=FlowDataModule(source, reference, steps_per_epoch=steps))
    return model


def test_scorer_logs_history_and_grids(tmp_path: Path) -> None:
    ckpt = save_oracle(LeNet5(num_classes=3), tmp_path / "o.ckpt")
    src = ArrayFile(path=_digits_npz(tmp_path / "s.npz", 3))
    ref = ArrayFile(path=_digits_npz(tmp_path / "r.npz", 3, seed=1))
    scorer = OracleScorer(str(ckpt), every_n_steps=1, coupling=True, images_per_class=2)
    _fit(tmp_path, scorer, src, ref)
    history = json.loads((tmp_path / "oracle/history.json").read_text())
    assert [h["step"] for h in history] == [0, 1, 2] and all(0 <= h["accuracy"] <= 100 for h in history)
    assert (tmp_path / "oracle/grid_step_000002.png").is_file()


def test_scorer_rejects_mismatched_oracle_before_the_flow(tmp_path: Path) -> None:
    ckpt = save_oracle(LeNet5(num_classes=10), tmp_path / "o.ckpt")
    src = ArrayFile(path=_digits_npz(tmp_path / "s.npz", 3))
    with pytest.raises(ValueError, match="oracle has 10 classes but the particles 3"):
        _fit(tmp_path, OracleScorer(str(ckpt)), src, src)
    gauss = GaussianMixture([[0.0, 0.0], [3.0, 0.0]], n_per_class=5)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        _fit(tmp_path, OracleScorer(str(ckpt)), gauss, gauss)
    with pytest.raises(FileNotFoundError):
        _fit(tmp_path, OracleScorer(str(tmp_path / "nope.ckpt")), src, src)


def test_train_cli_writes_a_loadable_oracle(tmp_path: Path) -> None:
    if not (data_root() / "MNIST/raw/train-images-idx3-ubyte").exists():
        pytest.fail("MNIST not under the data root: set DSFLOW_DATA (CI uses ../shared/data)")
    from dsflow.cli import train_main

    train_main(["fit", "--config", str(CONFIGS / "train/lenet_mnist.yaml"), "--data.init_args.n", "400",
                "--trainer.max_epochs", "1", "--trainer.logger", "false", "--run_dir", str(tmp_path)])
    oracle = load_oracle(tmp_path / "checkpoints/best.ckpt")
    assert oracle.num_classes == 10 and oracle.input_shape == (1, 28, 28)


def test_flow_cli_usps_config_with_scorer(tmp_path: Path) -> None:
    if not (data_root() / "usps.t.bz2").exists() or not (data_root() / "MNIST/raw").exists():
        pytest.fail("USPS / MNIST not under the data root: set DSFLOW_DATA (CI uses ../shared/data)")
    import yaml

    from dsflow.cli import flow_main

    cfg = yaml.safe_load((CONFIGS / "flow/usps_mnist.yaml").read_text())
    cfg["trainer"]["callbacks"][0]["init_args"]["checkpoint"] = str(save_oracle(LeNet5(), tmp_path / "o.ckpt"))
    cfg["data"]["init_args"]["source"]["init_args"]["n"] = 40
    cfg["data"]["init_args"]["reference"]["init_args"]["n"] = 40
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    flow_main(["fit", "--config", str(tmp_path / "c.yaml"), "--trainer.max_steps", "2", "--trainer.logger", "false",
               "--run_dir", str(tmp_path / "run")])
    history = json.loads((tmp_path / "run/oracle/history.json").read_text())
    assert history[0]["step"] == 0 and history[-1]["step"] == 2
    assert (tmp_path / "run/oracle/grid_step_000000.png").is_file() and (tmp_path / "run/final.npz").is_file()


@pytest.mark.parametrize("mode", ["supervised", "unsupervised"])
def test_flow_cli_table1_fmnist_configs_score_through_the_coupling(mode: str, tmp_path: Path) -> None:
    """The Table 1 Fashion-MNIST rows (solver, coupling and, unsupervised, t-SNE pseudo-labels) parse and run."""
    if not (data_root() / "FashionMNIST/raw").exists() or not (data_root() / "MNIST/raw").exists():
        pytest.fail("Fashion-MNIST / MNIST not under the data root: set DSFLOW_DATA (CI uses ../shared/data)")
    from dsflow.cli import flow_main

    source = "--data.init_args.source" + (".init_args.source" if mode == "unsupervised" else "")
    extra = ["--data.init_args.source.init_args.features.init_args.perplexity", "10"] if mode == "unsupervised" else []
    flow_main(["fit", "--config", str(CONFIGS / "flow/data/mnist_reference.yaml"), "--config", str(CONFIGS / "flow/table1/flow.yaml"),
               "--config", str(CONFIGS / f"flow/table1/{mode}.yaml"), f"{source}.init_args.n", "100",
               "--data.init_args.reference.init_args.n", "100", *extra,
               "--trainer.callbacks.init_args.checkpoint", str(save_oracle(LeNet5(), tmp_path / "o.ckpt")),
               "--trainer.callbacks.init_args.every_n_steps", "1", "--trainer.max_steps", "2", "--run_dir", str(tmp_path / "run")])
    history = json.loads((tmp_path / "run/oracle/history.json").read_text())
    assert [h["step"] for h in history] == [0, 1, 2]
    assert all(0 <= h["accuracy"] <= 100 for h in history)
