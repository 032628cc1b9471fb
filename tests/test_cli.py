"""flow.py's main function run in-process: run directory contents, W&B offline records, overrides, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsflow.cli import flow_main
from dsflow.io import load_npz, load_trajectory
from tests.wandb_records import history

CONFIG = str(Path(__file__).parent / "configs" / "tiny_flow.yaml")


def test_flow_main_writes_the_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    flow_main(["fit", "--config", CONFIG, "--run_dir", str(run)])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run dir: {run}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["num_particles"] == 40
    assert summary["final_objective"] < summary["initial_objective"]
    traj = load_trajectory(run)
    assert list(traj["steps"]) == [0, 2, 4, 6]
    assert traj["x"].shape == (4, 40, 2) and (traj["y"] == traj["y"][0]).all()
    final = load_npz(run / "final.npz", keys=("x", "y", "x0", "y0"))
    np.testing.assert_array_equal(final["x"], traj["x"][-1])
    np.testing.assert_array_equal(final["x0"], traj["x"][0])
    assert (run / "flow.png").stat().st_size > 10_000
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()


def test_wandb_offline_run_has_objective_and_figure(tmp_path: Path) -> None:
    run = tmp_path / "run"
    flow_main(["fit", "--config", CONFIG, "--run_dir", str(run)])
    files = list(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rows = history(files[0])
    objective = [float(r["train/objective"]) for r in rows if "train/objective" in r]
    assert len(objective) == 6 and objective[-1] < objective[0]
    figures = [r for r in rows if "flow/figure/filenames" in r]
    assert len(figures) == 1
    image = json.loads(figures[0]["flow/figure/filenames"])[0]
    assert (files[0].parent / "files" / image).is_file()


def test_command_line_overrides_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["fit", "--config", CONFIG, "--run_dir", str(run), "--trainer.logger", "false"]
    flow_main(args + ["--trainer.max_steps", "3", "--model.init_args.optimizer.init_args.lr", "0.05"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    flow_main(args + ["--trainer.max_steps", "6", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6
    assert list(load_trajectory(run)["steps"]) == [0, 2, 3, 4, 6]


def test_resume_with_another_optimizer_names_both(tmp_path: Path) -> None:
    """A flow written with Adam, resumed without the Adam options (so with the default SGD): a clear error naming
    both optimizers, before any step, instead of torch's KeyError: 'momentum'; the checkpoint is untouched."""
    run = tmp_path / "run"
    args = ["fit", "--config", CONFIG, "--run_dir", str(run), "--trainer.logger", "false"]
    flow_main(args + ["--trainer.max_steps", "3", "--model.init_args.optimizer", "torch.optim.Adam"])
    ckpt = run / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"torch\.optim\.adam\.Adam.*configures torch\.optim\.sgd\.SGD.*same model\.init_args\.optimizer"):
        flow_main(args + ["--trainer.max_steps", "6", "--ckpt_path", str(ckpt)])
    assert ckpt.read_bytes() == before
    flow_main(args + ["--trainer.max_steps", "6", "--model.init_args.optimizer", "torch.optim.Adam", "--ckpt_path", str(ckpt)])
    assert json.loads((run / "summary.json").read_text())["steps"] == 6


def test_unknown_option_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        flow_main(["fit", "--config", CONFIG, "--run_dir", str(tmp_path), "--model.init_args.no_such_option", "1"])
    assert "no_such_option" in capsys.readouterr().err


def test_wandb_logger_does_not_pass_the_deprecated_anonymous_setting(tmp_path: Path) -> None:
    """Lightning hands wandb.init anonymous=None, and wandb then warns on every run that the setting has no effect;
    dsflow's logger leaves it out (the other settings stay)."""
    from dsflow.cli import wandb_logger

    logger = wandb_logger(project="dsflow", name="t", save_dir=str(tmp_path))
    assert "anonymous" not in logger._wandb_init
    assert logger._wandb_init["project"] == "dsflow" and logger._wandb_init["name"] == "t"


def test_finish_wandb_leaves_a_complete_run_file_spanning_blocks(tmp_path: Path) -> None:
    """Right after finish_wandb the run file holds every record (wandb-core writes a run file's last 32 KiB block
    only when it closes the run's stream, which run.finish() does not wait for), and the reader follows records
    across 32 KiB blocks: rows of ~1 KiB fill several blocks, and one 80 KiB value spans first, middle and last
    chunks."""
    from dsflow.cli import configure_wandb, finish_wandb, wandb_logger

    configure_wandb()
    logger = wandb_logger(project="dsflow", name="blocks", save_dir=str(tmp_path))
    pads = [f"{i:04d}" * 256 for i in range(40)]  # 1 KiB each
    for i, pad in enumerate(pads):
        logger.log_metrics({"train/objective": float(i), "pad": pad}, step=i)
    logger.log_metrics({"big": "b" * 80 * 1024}, step=40)
    finish_wandb([logger])
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 3 * 32 * 1024
    rows = history(files[0])
    assert [float(r["train/objective"]) for r in rows if "train/objective" in r] == list(range(40))
    assert [json.loads(r["pad"]) for r in rows if "pad" in r] == pads
    assert [json.loads(r["big"]) for r in rows if "big" in r] == ["b" * 80 * 1024]
