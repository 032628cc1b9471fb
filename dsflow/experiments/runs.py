"""In-process runs of ``flow.py`` / ``train.py`` for the runners, and the flow map's restarts.

Each run is :func:`dsflow.cli.flow_main` or :func:`dsflow.cli.train_main` of composed YAML files (relative paths
from the repository root) with command-line overrides, in a run directory the runner chooses.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from dsflow.cli import FlowCLI, TrainCLI, flow_main, train_main
from dsflow.data.flow_pairs import FlowPairs
from dsflow.experiments.common import ROOT
from dsflow.tasks.restarts import RestartResult, select_restarts

#: the flow map of appendix C, restarts scored by their last weights
FLOW_MAP = ["configs/train/flow_map.yaml", "configs/train/flow_map_restarts.yaml"]

__all__ = ["FLOW_MAP", "configs", "run_flow", "flow_config", "run_train", "fit_flow_map"]


def configs(files: Sequence[str | Path]) -> list[str]:
    """``--config f`` for each file, relative paths taken from the repository root (composed in order)."""
    args: list[str] = []
    for f in files:
        path = Path(f)
        args += ["--config", str(path if path.is_absolute() or path.exists() else ROOT / path)]
    return args


@contextlib.contextmanager
def _own_argv() -> Iterator[None]:
    """The script's own options out of ``sys.argv`` while a CLI parses the arguments it is given (LightningCLI
    warns when both are present)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def run_flow(files: Sequence[str | Path], args: Sequence[str], run_dir: str | Path) -> FlowCLI:
    """``flow.py fit`` of the composed ``files`` with ``args`` (overrides) in ``run_dir``; returns the CLI (its
    ``model`` and ``datamodule`` hold the finished flow)."""
    with _own_argv():
        return flow_main(["fit", *configs(files), *args, "--run_dir", str(run_dir)])


def flow_config(files: Sequence[str | Path], args: Sequence[str], run_dir: str | Path) -> FlowCLI:
    """The flow the composed ``files`` with ``args`` describe, built and not run (its ``datamodule``)."""
    with _own_argv():
        return flow_main([*configs(files), *args, "--run_dir", str(run_dir)], run=False)


def run_train(files: Sequence[str | Path], args: Sequence[str], run_dir: str | Path, subcommand: str = "fit") -> TrainCLI:
    """``train.py <subcommand>`` of the composed ``files`` with ``args`` in ``run_dir``; returns the CLI."""
    with _own_argv():
        return train_main([subcommand, *configs(files), *args, "--run_dir", str(run_dir)])


def fit_flow_map(flow_run: str | Path, out: str | Path, restarts: int, seed: int, args: Sequence[str] = (),
                 files: Sequence[str | Path] = FLOW_MAP) -> tuple[RestartResult, FlowPairs]:
    """The flow map h: x0 -> xT of a finished flow, fitted ``restarts`` times with ``train.py fit`` (restart r
    seeded with seed + r, in ``<out>/restart_<r>``; the pairs split with ``seed``); the best on the held-out
    pairs is kept. Returns it (``checkpoint``: its last weights) and the pairs."""
    pairs: list[FlowPairs] = []

    def fit_one(seed_r: int) -> tuple[Any, Any, Any]:
        cli = run_train(files, ["--data.init_args.run_dir", str(flow_run), "--data.init_args.seed", str(seed),
                                "--seed_everything", str(seed_r), *args], Path(out) / f"restart_{seed_r - seed}")
        pairs[:] = [cli.datamodule]
        return cli.model, cli.trainer, cli.datamodule

    result = select_restarts(fit_one, restarts, seed, monitor="val/mse", mode="min")
    result.checkpoint = Path(out) / f"restart_{result.best_index}" / "checkpoints" / "last.ckpt"
    return result, pairs[0]
