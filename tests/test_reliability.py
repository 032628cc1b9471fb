"""Issue 5: bad input gets a precise error; faults lose nothing; an interrupted flow resumes bit for bit."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from dsflow.callbacks import GracefulInterrupt
from dsflow.cli import configure_wandb, flow_main
from dsflow.data import FlowDataModule, GaussianMixture, LabeledData
from dsflow.flows import FlowModule
from dsflow.io import load_npz, load_trajectory, save_npz

CONFIG = str(Path(__file__).parent / "configs" / "tiny_flow.yaml")
QUIET = ["--trainer.logger", "false"]


# ------------------------------------------------------------------ bad data
def test_non_finite_features_name_dataset_and_count() -> None:
    x = torch.zeros(10, 2)
    x[3, 0], x[5, 1] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"mnist-subset: 2 non-finite"):
        LabeledData(x, torch.zeros(10, dtype=torch.long), 1, name="mnist-subset")


def test_empty_dataset_and_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        LabeledData(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2, name="empty")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), found range \[0, 5\]"):
        LabeledData(torch.zeros(3, 2), torch.tensor([0, 1, 5]), 2, name="bad")
    with pytest.raises(ValueError, match="3 samples but labels of shape"):
        LabeledData(torch.zeros(3, 2), torch.tensor([0, 1]), 2, name="bad")


def test_single_sample_class_is_rejected_before_the_flow() -> None:
    src = GaussianMixture([[0.0, 0.0], [2.0, 0.0]], n_per_class=[5, 1], name="tiny-source").load()
    ref = GaussianMixture([[0.0, 1.0]], n_per_class=5).load()
    with pytest.raises(ValueError, match=r"tiny-source: classes \[1\] have \[1\] sample"):
        FlowModule().init_data(src, ref)


# ------------------------------------------------------------------ CLI keys
@pytest.mark.parametrize(
    ("override", "key"),
    [
        (["--model.init_args.no_such_option", "1"], "no_such_option"),
        (["--model.init_args.dynamics", "dsflow.flows.NoSuchDynamics"], "NoSuchDynamics"),
        (["--model.init_args.terms", '[{"class_path": "dsflow.flows.OTDDTerm", "init_args": {"eps": 0}}]'], "eps"),
    ],
)
def test_cli_rejects_bad_keys(tmp_path: Path, capsys: pytest.CaptureFixture, override: list[str], key: str) -> None:
    with pytest.raises(SystemExit):
        flow_main(["fit", "--config", CONFIG, "--run_dir", str(tmp_path), *QUIET, *override])
    assert key in capsys.readouterr().err


def test_non_positive_step_size_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model.init_args.optimizer.*-0.1"):
        flow_main(["fit", "--config", CONFIG, "--run_dir", str(tmp_path), *QUIET, "--model.init_args.optimizer.init_args.lr", "-0.1"])


# ------------------------------------------------------------------ array files
def test_array_files_corrupted_pickled_or_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="array file not found"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "pickled.npz", images=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        load_npz(tmp_path / "pickled.npz")
    save_npz(tmp_path / "ok.npz", images=np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"missing arrays \['labels'\]"):
        load_npz(tmp_path / "ok.npz", keys=("images", "labels"))


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_npz(tmp_path / "a.npz", x=np.arange(3))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*a.npz.*No space left"):
        save_npz(path, x=np.arange(5))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_npz(path)["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_unwritable_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="file"):
        flow_main(["fit", "--config", CONFIG, "--run_dir", str(blocker / "run"), *QUIET])


# ------------------------------------------------------------------ divergence
# hits the sweep cap: harmless, the claim is the divergence report
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_divergence_names_the_step_and_keeps_earlier_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", CONFIG, "--run_dir", str(run), *QUIET, "--trainer.max_steps", "60",
            "--model.init_args.optimizer.init_args.lr", "1e6", "--checkpoint.every_n_train_steps", "1"]
    with pytest.raises(FloatingPointError, match=r"diverged at step \d+"):
        flow_main(args)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.isfinite(state["state_dict"]["particles.x"]).all()
    traj = load_trajectory(run)
    assert np.isfinite(traj["x"]).all()


# ------------------------------------------------------------------ interrupt and exact resume
class _SignalAt(L.Callback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _fit(tmp_path: Path, steps: int, ckpt_path: Path | None = None, extra: list | None = None) -> FlowModule:
    src = GaussianMixture([[0.0, 0.0], [0.0, 3.0]], std=0.4, n_per_class=30, seed=0)
    ref = GaussianMixture([[4.0, 0.0], [4.0, 3.0]], std=0.5, n_per_class=25, seed=1)
    dm = FlowDataModule(src, ref, steps_per_epoch=4)
    module = FlowModule(optimizer=lambda p: torch.optim.Adam(p, lr=0.05), source=dm.source, reference=dm.reference)
    trainer = L.Trainer(
        max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        default_root_dir=tmp_path, callbacks=[*(extra or []), GracefulInterrupt()],  # signal sent before the stop check
        enable_checkpointing=False,
    )
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module


# hits the sweep cap: harmless, the claim is a bit-for-bit resume
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_flow_resumes_bit_for_bit(tmp_path: Path, signum: int) -> None:
    straight = _fit(tmp_path / "a", 12)
    stopped = _fit(tmp_path / "b", 12, extra=[_SignalAt(5, signum)])
    ckpt = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5
    assert not torch.equal(stopped.particles.x, straight.particles.x)
    resumed = _fit(tmp_path / "c", 12, ckpt_path=ckpt)
    assert torch.equal(resumed.particles.x, straight.particles.x)


def test_cli_interrupt_writes_checkpoint_and_summary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cb = '{"class_path": "tests.test_reliability._SignalAt", "init_args": {"step": 3, "signum": 15}}'
    flow_main(["fit", "--config", CONFIG, "--run_dir", str(run), *QUIET, "--trainer.callbacks+", cb])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["steps"] == 3
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


# ------------------------------------------------------------------ W&B and safe loading
def test_wandb_without_key_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert configure_wandb() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    flow_main(["fit", "--config", CONFIG, "--run_dir", str(run), *QUIET])
    module = FlowModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert module.particles.x.shape == (40, 2)
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": os.system}, f)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)
