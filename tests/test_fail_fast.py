"""Bad inputs stop a run before any long work, naming the file and the problem; logs that are not a terminal get
progress lines, not a flood of bar updates (issue 26).

The three bad inputs: an ``.npz`` whose images are float32, an image folder with one truncated PNG, an ``.npz``
with fewer labels than images. Each is given to the Table 1 runner (which must stop before it trains its oracle:
``runs.run_train`` fails the test if called) and to ``flow.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsflow.callbacks import LineProgress
from dsflow.cli import flow_main, progress_callbacks, train_main
from dsflow.data import ImageFolder
from dsflow.experiments import runs, table1
from tests.real_data import require_data

ROOT = Path(__file__).resolve().parents[1]
FLOW = ["--config", str(ROOT / "configs/flow/base.yaml"), "--config", str(ROOT / "configs/flow/gaussians_2d.yaml")]
SOURCE = "--data.init_args.source"


def _digits(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def _float_npz(tmp_path: Path) -> Path:
    images, labels = _digits()
    np.savez(tmp_path / "float.npz", images=images.astype(np.float32) / 255, labels=labels)
    return tmp_path / "float.npz"


def _short_labels_npz(tmp_path: Path) -> Path:
    images, labels = _digits()
    np.savez(tmp_path / "short.npz", images=images, labels=labels[:50])
    return tmp_path / "short.npz"


def _truncated_folder(tmp_path: Path) -> tuple[Path, Path]:
    """60 PNGs in <tmp>/imgs/train/c<k>/, one of them cut in half; returns the folder and the bad file."""
    images, labels = _digits()
    for i, (img, y) in enumerate(zip(images, labels)):
        (tmp_path / "imgs/train" / f"c{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs/train" / f"c{y}" / f"{i:03d}.png")
    bad = tmp_path / "imgs/train/c3/013.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return tmp_path / "imgs", bad


FLOAT = "`images` must be uint8 \\[N,H,W\\] or \\[N,H,W,3\\], got float32 \\(60, 28, 28\\)"
SHORT = "`labels` must hold one label per image: 60 images but `labels` of shape \\(50,\\)"
TRUNCATED = "cannot read image \\(OSError: .*truncated.*\\); the other 59 images of .*imgs/train read fine"


# ----------------------------------------------------------------------------------------- the Table 1 runner
@pytest.fixture
def no_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle's training (``train.py`` through ``runs.run_train``) is what a bad input must never wait for."""

    def trained(*args: object, **kwargs: object) -> None:
        raise AssertionError("the runner started training its oracle before it had checked its inputs")

    monkeypatch.setattr(runs, "run_train", trained)


def _table1(tmp_path: Path, *args: str) -> None:
    table1.main(["--out", str(tmp_path / "out"), "--n", "50", *args])


def test_table1_float_npz_target_stops_before_the_oracle(tmp_path: Path, no_oracle: None) -> None:
    require_data("MNIST")
    path = _float_npz(tmp_path)
    with pytest.raises(ValueError, match=f"{path}: {FLOAT}; scale float images"):
        _table1(tmp_path, "--targets", f"mine={path}")


def test_table1_short_labels_stop_before_the_oracle(tmp_path: Path, no_oracle: None) -> None:
    require_data("MNIST")
    path = _short_labels_npz(tmp_path)
    with pytest.raises(ValueError, match=f"{path}: {SHORT}"):  # also through the unsupervised flow's pseudo-labeler
        _table1(tmp_path, "--targets", f"mine={path}", "--modes", "unsupervised")


def test_table1_truncated_png_is_named_before_the_oracle(tmp_path: Path, no_oracle: None) -> None:
    require_data("MNIST")
    folder, bad = _truncated_folder(tmp_path)
    with pytest.raises(ValueError, match=f"{bad}: {TRUNCATED}"):
        _table1(tmp_path, "--targets", "usps=usps_h5/train.npz", "--modes", "supervised", "--",
                f"{SOURCE}.class_path", "dsflow.data.ImageFolder", f"{SOURCE}.init_args.path", str(folder))


def test_table1_checks_unsupervised_targets_without_clustering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation reads the target under the pseudo-labeler but never clusters it (the flow does): with good inputs
    the runner gets to its oracle having loaded no pseudo-labels."""
    require_data("MNIST")
    from dsflow.data.pseudo import PseudoLabeled

    def clustered(self: PseudoLabeled) -> None:
        raise AssertionError("validation clustered the target")

    class OracleReached(Exception):
        pass

    def oracle(*args: object, **kwargs: object) -> None:
        raise OracleReached

    monkeypatch.setattr(PseudoLabeled, "load", clustered)
    monkeypatch.setattr(runs, "run_train", oracle)
    images, labels = _digits()
    np.savez(tmp_path / "good.npz", images=images, labels=labels)
    with pytest.raises(OracleReached):
        _table1(tmp_path, "--targets", f"good={tmp_path / 'good.npz'}", "--modes", "unsupervised")


def test_validate_inputs_reads_shared_datasets_once_and_checks_the_pair(tmp_path: Path) -> None:
    images, labels = _digits()
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    source = [f"{SOURCE}.class_path", "dsflow.data.ArrayFile", f"{SOURCE}.init_args.path", str(tmp_path / "a.npz"),
              f"{SOURCE}.init_args.name", "mine"]
    files = ["configs/flow/base.yaml", "configs/flow/gaussians_2d.yaml"]
    flows = [runs.FlowSpec(files, []), runs.FlowSpec(files, ["--trainer.max_steps", "5"])]
    assert runs.validate_inputs(flows) == 2  # source and reference, read once for both flows
    with pytest.raises(ValueError, match=r"source 'mine/train' has feature shape \(1, 28, 28\) but reference"):
        runs.validate_inputs([runs.FlowSpec(files, source)])


# ----------------------------------------------------------------------------------------- flow.py
def _npz_source(path: Path) -> list[str]:
    return [f"{SOURCE}.class_path", "dsflow.data.ArrayFile", f"{SOURCE}.init_args.path", str(path)]


def test_flow_py_names_the_bad_npz(tmp_path: Path) -> None:
    for path, problem in ((_float_npz(tmp_path), FLOAT), (_short_labels_npz(tmp_path), SHORT)):
        with pytest.raises(ValueError, match=f"{path}: {problem}"):
            flow_main(["fit", *FLOW, *_npz_source(path), "--run_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "wandb").exists()  # stopped before the trainer started W&B


def test_flow_py_names_the_truncated_png_and_can_skip_it(tmp_path: Path) -> None:
    folder, bad = _truncated_folder(tmp_path)
    spec = [f"{SOURCE}.class_path", "dsflow.data.ImageFolder", f"{SOURCE}.init_args.path", str(folder),
            f"{SOURCE}.init_args.split", "train"]
    with pytest.raises(ValueError, match=f"{bad}: {TRUNCATED}\\. Replace or delete the file, or set skip_unreadable"):
        flow_main(["fit", *FLOW, *spec, "--run_dir", str(tmp_path / "run")])
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) of 60"):
        data = ImageFolder(path=str(folder), split="train", skip_unreadable=True).load()
    assert data.x.shape[0] == 59


def test_flow_py_script_ends_with_one_error_line(tmp_path: Path) -> None:
    """As a script, the last line of the output (stdout and stderr together) names the file and the problem."""
    path = _float_npz(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "flow.py", "fit", *FLOW, *_npz_source(path), "--run_dir", str(tmp_path / "run")],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stdout  # the full story above the last line
    last = done.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"error: {path}: `images` must be uint8") and "float32" in last


# ----------------------------------------------------------------------------------------- progress in logs
def test_progress_lines_are_chosen_when_output_is_not_a_terminal() -> None:
    from lightning.pytorch.callbacks import TQDMProgressBar

    chosen = progress_callbacks(None, None, 10, interactive=False)
    assert len(chosen) == 1 and isinstance(chosen[0], LineProgress) and chosen[0].every_n_steps == 10
    assert progress_callbacks(None, None, 10, interactive=True) == []  # a terminal: Lightning's live bar
    assert progress_callbacks(None, False, 10, interactive=False) == []  # --trainer.enable_progress_bar false
    bar = TQDMProgressBar()
    assert progress_callbacks([bar], None, 10, interactive=False) == [bar]  # the user's bar wins


# the log's lines are the claim, not how closely the flow follows the plan (gaussians_2d caps Sinkhorn at 50 sweeps)
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_flow_log_is_a_line_every_ten_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A flow whose output is captured (not a terminal): a line every 10 steps and at the last, with the objective
    and the time left, and no carriage returns."""
    flow_main(["fit", *FLOW, "--trainer.max_steps", "65", "--trainer.logger", "false", "--run_dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    steps = [li for li in err.splitlines() if li.startswith("step ")]
    assert [li.split(":")[0] for li in steps] == [f"step {s}/65" for s in (10, 20, 30, 40, 50, 60, 65)]
    assert all("train/objective " in li for li in steps) and "left" in steps[0] and "left" not in steps[-1]
    assert len((out + err).splitlines()) < 30 and len(out + err) < 4000


def test_training_log_is_a_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A training run whose output is captured (not a terminal): one line per epoch with the bar's accuracies."""
    images, labels = _digits(200)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    train_main(["fit", "--config", str(ROOT / "configs/train/lenet_mnist.yaml"), "--data", "dsflow.data.ArrayFile",
                "--data.init_args.path", str(tmp_path / "d.npz"), "--data.init_args.batch_size", "16",
                "--trainer.max_epochs", "3", "--trainer.logger", "false", "--run_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "\r" not in err
    epochs = [li for li in err.splitlines() if li.startswith("epoch ")]
    assert [li.split(" (")[0] for li in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val/acc " in li and "train/acc " in li for li in epochs) and "left" in epochs[0]
