"""What the runners share besides their runs: their common options, ``--protocol`` YAML sweeps, progress lines
and Markdown tables.

Every flow and every training run of a runner is a ``flow.py fit`` or ``train.py fit`` run from YAML, called
in-process (:mod:`dsflow.experiments.runs`): the runners choose configs, sweep over datasets, seeds and settings,
and pass overrides; no flow or training setting is an option of a runner.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch

#: the repository root: relative config paths are taken from here
ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "parser", "protocol_defaults", "Progress", "set_threads", "overrides", "markdown_table",
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
