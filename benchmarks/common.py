"""What the benchmark scripts share: their common options, the in-process runs of ``flow.py`` / ``train.py`` and
Markdown tables.

Every flow and every training run of a benchmark is a ``flow.py fit`` or ``train.py fit`` run from YAML, called
in-process (:func:`dsflow.cli.flow_main`, :func:`dsflow.cli.train_main`): the scripts choose configs, sweep over
datasets, seeds and settings, and pass overrides; no flow or training setting is an option of a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from anywhere finds dsflow in this checkout
    sys.path.insert(0, str(ROOT))

from dsflow.cli import FlowCLI, TrainCLI, flow_main, train_main  # noqa: E402

__all__ = ["ROOT", "parser", "set_threads", "configs", "run_flow", "run_train", "overrides", "markdown_table",
           "write_results"]


def parser(doc: str | None, out: str, seeds: Sequence[int] = (0,), passthrough: str | None = "flow.py") -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has.

    Args:
        doc: the script's docstring (its help text).
        out: default output folder.
        seeds: default ``--seeds``.
        passthrough: what the arguments after ``--`` are passed to (None: no pass-through).
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=list(seeds), help="seeds swept (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    if passthrough:
        p.add_argument("overrides", nargs="*", help=f"further {passthrough} arguments, after --")
    return p


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


def run_flow(files: Sequence[str | Path], args: Sequence[str], run_dir: str | Path) -> FlowCLI:
    """``flow.py fit`` of the composed ``files`` with ``args`` (overrides) in ``run_dir``; returns the CLI (its
    ``model`` and ``datamodule`` hold the finished flow)."""
    return flow_main(["fit", *configs(files), *args, "--run_dir", str(run_dir)])


def run_train(files: Sequence[str | Path], args: Sequence[str], run_dir: str | Path, subcommand: str = "fit") -> TrainCLI:
    """``train.py <subcommand>`` of the composed ``files`` with ``args`` in ``run_dir``; returns the CLI."""
    return train_main([subcommand, *configs(files), *args, "--run_dir", str(run_dir)])


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
