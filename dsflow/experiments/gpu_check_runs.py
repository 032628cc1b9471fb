"""The flows each check of :mod:`dsflow.experiments.gpu_check` runs, one check per subprocess:
``python -m dsflow.experiments.gpu_check_runs <run> --accelerator cpu|gpu --work DIR [--size N --steps K]``.

Every run is ``flow.py fit`` / ``train.py fit`` in-process (:func:`dsflow.cli.flow_main`), prints its numbers as
one last line ``NUMBERS {json}`` for the parent's parser, and exits non-zero (an exception naming what differs)
when its claim does not hold.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: resumed or sharded flows must equal the uninterrupted, one-process flow to this, relative to max |x|
FLOW_RTOL = 1e-5
#: the three label dynamics on small 2-D flows, composed as the configs' first lines say (300 and 180 particles)
DYNAMICS = {
    "fd-fl": ["configs/flow/base.yaml", "configs/flow/gaussians_2d.yaml"],
    "jd-fl": ["configs/flow/base.yaml", "configs/flow/data/bimodal_2d.yaml", "configs/flow/parts/otdd_2d.yaml",
              "configs/flow/fig2_jdfl.yaml"],
    "jd-vl": ["configs/flow/base.yaml", "configs/flow/data/bimodal_2d.yaml", "configs/flow/parts/otdd_2d.yaml",
              "configs/flow/parts/jdvl_dbscan.yaml", "configs/flow/fig2_jdvl.yaml"],
}
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]

__all__ = ["FLOW_RTOL", "DYNAMICS", "relative_gap", "main"]


def _fit(files: list[str], run_dir: Path, args: list[str]) -> None:
    from dsflow.cli import flow_main

    config = [a for f in files for a in ("--config", str(ROOT / f))]
    flow_main(["fit", *config, *QUIET, *args, "--run_dir", str(run_dir)])


def relative_gap(a: Path, b: Path) -> float:
    """max |x_a - x_b| / max |x_b| of two runs' final particles (``final.npz``); labels must be equal."""
    fa, fb = np.load(a / "final.npz"), np.load(b / "final.npz")
    if not np.array_equal(fa["y"], fb["y"]):
        raise AssertionError(f"{a.name} and {b.name}: final labels differ at {int((fa['y'] != fb['y']).sum())} particles")
    return float(np.abs(fa["x"] - fb["x"]).max() / np.abs(fb["x"]).max())


def _check(gaps: dict[str, float], what: str) -> None:
    bad = {k: v for k, v in gaps.items() if not v <= FLOW_RTOL}
    if bad:
        raise AssertionError(f"{what} differs by more than {FLOW_RTOL:g} (relative): {bad}")


def resume(a: argparse.Namespace) -> dict[str, float]:
    """fd-fl, jd-fl, jd-vl: ``steps`` steps, resumed from ``last.ckpt`` to ``2 steps``, equal an uninterrupted run
    of ``2 steps``: the first run finishes, and its last.ckpt (written after the run's final objective, which
    leaves the warm starts as they were) continues the flow exactly."""
    device = ["--trainer.accelerator", a.accelerator, "--trainer.devices", "1"]
    gaps = {}
    for name, files in DYNAMICS.items():
        cut, straight = a.work / f"{name}-resumed", a.work / f"{name}-straight"
        _fit(files, cut, [*device, "--trainer.max_steps", str(a.steps)])
        _fit(files, cut, [*device, "--trainer.max_steps", str(2 * a.steps),
                          "--ckpt_path", str(cut / "checkpoints" / "last.ckpt")])
        _fit(files, straight, [*device, "--trainer.max_steps", str(2 * a.steps)])
        gaps[name] = relative_gap(cut, straight)
    _check(gaps, "a resumed flow")
    return gaps


def ddp(a: argparse.Namespace) -> dict[str, float]:
    """One DDP rank (NCCL on GPUs, gloo on CPUs) with two reference shards equals one process with two shards."""
    files = DYNAMICS["fd-fl"]
    common = ["--trainer.accelerator", a.accelerator, "--trainer.devices", "1", "--trainer.max_steps", str(a.steps),
              "--model.init_args.reference_shards", "2"]
    _fit(files, a.work / "ddp", [*common, "--trainer.strategy", "ddp"])
    _fit(files, a.work / "one", common)
    summaries = [json.loads((a.work / r / "summary.json").read_text())["final_objective"] for r in ("ddp", "one")]
    gaps = {"particles": relative_gap(a.work / "ddp", a.work / "one"),
            "objective": abs(summaries[0] - summaries[1]) / abs(summaries[1])}
    _check(gaps, "the one-rank DDP flow")
    return gaps


def _synthetic_images(path: Path, n: int, seed: int, kind: str) -> str:
    """``n`` 28 x 28 uint8 images of 10 classes: ``digits`` a bright bar at a class's own place, ``shapes`` a
    class's own checkerboard; both with noise (an oracle tells the digits apart in one epoch)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.random((n, 28, 28)) * 40
    for c in range(10):
        pick = labels == c
        if kind == "digits":
            images[pick, 2 + 2 * c: 6 + 2 * c, 4:24] += 180
        else:
            yy, xx = np.mgrid[:28, :28]
            images[pick] += 120 * (((yy // (c + 2)) + (xx // (c + 2))) % 2)
    np.savez(path, images=images.clip(0, 255).astype(np.uint8), labels=labels.astype(np.int64))
    return str(path)


def table1(a: argparse.Namespace) -> dict[str, float]:
    """An oracle-scored Table 1 flow: Fashion-MNIST onto MNIST with the Table 1 runner when the data root has
    them, else synthetic 'shapes' onto synthetic 'digits'; oracle LeNet-5 trained for one epoch (on 6,000 MNIST
    digits on GPUs, 3,000 on CPUs). The flow's images and figures are written as in any Table 1 flow."""
    from dsflow.data import data_root

    from dsflow.experiments import runs
    from dsflow.experiments import table1 as t1
    device = ["--trainer.accelerator", a.accelerator, "--trainer.devices", "1"]
    real = all((data_root() / d / "raw").is_dir() for d in ("MNIST", "FashionMNIST"))
    flow = [*device, "--trainer.max_steps", str(a.steps), "--trainer.callbacks.init_args.every_n_steps", str(a.steps)]
    if real:
        digits = "6000" if a.accelerator == "gpu" else "3000"  # 77 % on MNIST test with 6,000 (tests/test_table1.py)
        runs.run_train(t1.ORACLE, [*device, "--data.init_args.n", digits, "--trainer.max_epochs", "1"], a.work / "oracle")
        t0 = time.perf_counter()
        rows = t1.main(["--targets", "fmnist", "--modes", "supervised", "--n", str(a.size), "--out", str(a.work / "table1"),
                        "--oracle", str(a.work / "oracle/checkpoints/last.ckpt"), "--", *flow])
        run = rows[0].runs[t1.Mode.SUPERVISED]
        seconds, before, after = run.seconds, run.before, run.accuracy
    else:
        ref = _synthetic_images(a.work / "digits.npz", 2 * a.size, 1, "digits")
        src = _synthetic_images(a.work / "shapes.npz", a.size, 2, "shapes")
        (a.work / "oracle.yaml").write_text(
            f"data:\n  class_path: dsflow.data.ArrayFile\n  init_args: {{path: {ref}, val_fraction: 0.0}}\n")
        runs.run_train([*t1.ORACLE, a.work / "oracle.yaml"], [*device, "--trainer.max_epochs", "1"], a.work / "oracle")
        data = ["--data.init_args.reference.class_path", "dsflow.data.ArrayFile", "--data.init_args.reference.init_args.path",
                ref, "--data.init_args.source.class_path", "dsflow.data.ArrayFile", "--data.init_args.source.init_args.path",
                src, "--data.init_args.source.init_args.split", "train", "--data.init_args.reference.init_args.split", "train",
                "--data.init_args.source.init_args.n", str(a.size), "--data.init_args.reference.init_args.n", str(a.size)]
        t0 = time.perf_counter()
        runs.run_flow([*t1.FLOW, t1.Mode.SUPERVISED.config], [*data, *flow, "--trainer.callbacks.init_args.checkpoint",
                           str(a.work / "oracle/checkpoints/last.ckpt")], a.work / "flow")
        seconds = time.perf_counter() - t0
        history = json.loads((a.work / "flow/oracle/history.json").read_text())
        before, after = history[0]["accuracy"], history[-1]["accuracy"]
    if not after > before:
        raise AssertionError(f"the flow did not raise the oracle's accuracy: {before:.1f} % -> {after:.1f} %")
    return {"data": 1.0 if real else 0.0, "n": float(a.size), "steps": float(a.steps), "before": before,
            "after": after, "seconds": float(seconds)}


def devices(a: argparse.Namespace) -> dict[str, float]:
    """The 784-d step-benchmark flow at n = ``size`` for ``steps`` steps on the CPU and on CUDA: objectives equal."""
    import torch

    from dsflow.experiments import step_speed as speed
    objectives = {}
    for device in ("cpu", "cuda"):
        module = speed.build("784d", a.size, [], torch.device(device))
        opt = module.configure_optimizers()
        objectives[device] = [float(module.flow_step(opt).total.detach()) for _ in range(a.steps)]
    gap = max(abs(c - g) / abs(c) for c, g in zip(objectives["cpu"], objectives["cuda"]))
    if not gap <= 1e-4:
        raise AssertionError(f"CPU and CUDA objectives differ by {gap:.2e} (relative) > 1e-4: {objectives}")
    return {"rel_diff": gap, "objective_cpu": objectives["cpu"][-1], "objective_cuda": objectives["cuda"][-1]}


RUNS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "resume": resume, "ddp": ddp, "table1": table1, "devices": devices}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", choices=list(RUNS))
    p.add_argument("--accelerator", choices=["cpu", "gpu"], required=True)
    p.add_argument("--work", type=Path, required=True, help="folder for the runs' directories")
    p.add_argument("--size", type=int, default=200, help="samples (table1, devices)")
    p.add_argument("--steps", type=int, default=3, help="flow steps")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    numbers = RUNS[a.run](a)
    print("NUMBERS " + json.dumps(numbers), flush=True)


if __name__ == "__main__":
    main()
