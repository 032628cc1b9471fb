"""What the benchmark scripts share: their common options, the in-process runs of ``flow.py`` / ``train.py`` and
Markdown tables.

Every flow and every training run of a benchmark is a ``flow.py fit`` or ``train.py fit`` run from YAML, called
in-process (:func:`dsflow.cli.flow_main`, :func:`dsflow.cli.train_main`): the scripts choose configs, sweep over
datasets, seeds and settings, and pass overrides; no flow or training setting is an option of a script.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from anywhere finds dsflow in this checkout
    sys.path.insert(0, str(ROOT))

from dsflow.cli import FlowCLI, TrainCLI, flow_main, train_main  # noqa: E402
from dsflow.data.flow_pairs import FlowPairs  # noqa: E402
from dsflow.process import flush_denormals  # noqa: E402
from dsflow.tasks.restarts import RestartResult, select_restarts  # noqa: E402

flush_denormals()  # before any torch work starts its worker threads (dsflow.process): as flow.py does

#: the flow map of appendix C, restarts scored by their last weights
FLOW_MAP = ["configs/train/flow_map.yaml", "configs/train/flow_map_restarts.yaml"]

__all__ = ["ROOT", "parser", "protocol_defaults", "Progress", "set_threads", "configs", "run_flow", "flow_config", "run_train", "fit_flow_map", "overrides", "markdown_table",
           "write_results"]


def parser(doc: str | None, out: str | None, seeds: Sequence[int] | None = (0,),
           passthrough: str | None = "flow.py") -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--threads``, ``--out``, ``--seeds`` (unless
    ``seeds`` is None) and the arguments after ``--`` (``overrides``, unless ``passthrough`` is None).

    Args:
        doc: the script's docstring (its help text).
        out: default output folder.
        seeds: default ``--seeds``.
        passthrough: what the arguments after ``--`` are passed to.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if seeds is not None:
        p.add_argument("--seeds", nargs="+", type=int, default=list(seeds), help="seeds swept (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    if passthrough:
        p.add_argument("overrides", nargs="*", help=f"further {passthrough} arguments, after --")
    return p


def protocol_defaults(p: argparse.ArgumentParser, argv: Sequence[str] | None, option: str = "--protocol") -> None:
    """Let ``option FILE`` (a YAML mapping of the parser's own options, e.g. ``shots: [5, 10, 100]``) set the
    parser's defaults; options given on the command line still win. Unknown keys are refused by name."""
    import yaml

    p.add_argument(option, default=None, help="YAML file of these options' values (command-line options win)")
    known, _ = p.parse_known_args(argv)
    path = getattr(known, option.lstrip("-").replace("-", "_"))
    if path is None:
        return
    file = Path(path) if Path(path).exists() else ROOT / path
    if not file.is_file():
        raise FileNotFoundError(f"{option}: no file {path}")
    values = yaml.safe_load(file.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{option} {path}: expected a mapping of option: value, got {type(values).__name__}")
    dests = {a.dest for a in p._actions}
    unknown = sorted(k for k in values if k.replace("-", "_") not in dests)
    if unknown:
        raise ValueError(f"{option} {path}: unknown options {unknown}; choose from {sorted(dests - {'help'})}")
    p.set_defaults(**{k.replace("-", "_"): v for k, v in values.items()})


class Progress:
    """Counts finished units of a long run and says how far along it is: ``"3 of 9; about 12 min left"``
    (the time left from the mean time of the units done so far)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.spent = total, 0, 0.0

    def step(self, seconds: float) -> str:
        self.done, self.spent = self.done + 1, self.spent + seconds
        left = self.spent / self.done * (self.total - self.done)
        return f"{self.done} of {self.total}" + (f"; about {left / 60:.0f} min left" if self.done < self.total else "")


def set_threads(threads: int | None) -> None:
    """torch's intra-op thread count for this process (None: leave torch's choice)."""
    if threads:
        torch.set_num_threads(threads)


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


def overrides(pairs: Sequence[str], option: str) -> list[str]:
    """``KEY=VALUE`` words (the ``--lenet-args``-style options) as command-line overrides ``--KEY VALUE``."""
    args: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{option}: expected KEY=VALUE (e.g. trainer.max_epochs=8), got '{pair}'")
        args += [f"--{key.removeprefix('--')}", value]
    return args


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column (``l`` or ``r``; default all left)."""
    marks = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out: str | Path, payload: dict) -> Path:
    """``<out>/results.json``."""
    from dsflow.io import write_json

    path = Path(out) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, payload)
