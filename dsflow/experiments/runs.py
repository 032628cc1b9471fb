"""In-process runs of ``flow.py`` / ``train.py`` for the runners, the check of their inputs, and the flow map's
restarts.

Each run is :func:`dsflow.cli.flow_main` or :func:`dsflow.cli.train_main` of composed YAML files (relative paths
from the repository root) with command-line overrides, in a run directory the runner chooses. Before any long work
(an oracle's training, the first flow) a runner checks the data of every flow it will run with
:func:`validate_inputs`: each dataset read and checked as the flow will read it, so that a bad file stops the
sweep in seconds, named, instead of after minutes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer

from dsflow.cli import FlowCLI, TrainCLI, flow_main, train_main
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.flow_pairs import FlowPairs
from dsflow.data.pair import FlowDataModule
from dsflow.data.pseudo import PseudoLabeled
from dsflow.experiments.common import ROOT
from dsflow.flows.checks import check_flow_data
from dsflow.flows.module import FlowModule
from dsflow.tasks.restarts import RestartResult, select_restarts

#: the flow map of appendix C, restarts scored by their last weights
FLOW_MAP = ["configs/train/flow_map.yaml", "configs/train/flow_map_restarts.yaml"]

__all__ = ["FLOW_MAP", "configs", "run_flow", "flow_config", "run_train", "fit_flow_map", "FlowSpec", "flow_parts",
           "validate_inputs"]


class FlowSpec(NamedTuple):
    """One flow of a sweep, as :func:`run_flow` takes it: its config files (composed in order) and its overrides."""

    files: Sequence[str | Path]
    args: Sequence[str]


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


class _PartsCLI(FlowCLI):
    """A flow's config parsed, and only its datamodule and module built: no data read, no trainer, no run directory."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        # what `flow.py fit` adds (ckpt_path, ...): configs it saved name them
        parser.add_method_arguments(Trainer, "fit", skip=set(FlowCLI.subcommands()["fit"]))

    def instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self.datamodule = _build(FlowDataModule, cfg.data, "data")
        self.model = _build(FlowModule, cfg.model, "model")


def _build(base: type, spec: Any, key: str) -> Any:
    """The object a ``class_path``/``init_args`` spec of a config describes (``base`` or a subclass of it)."""
    if spec is None:
        raise ValueError(f"the flow's config has no `{key}`")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument(f"--{key}", type=base)
    parsed = parser.parse_object({key: spec.as_dict()})
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # jsonargparse >= 4.49 / older
    return instantiate(parsed)[key]


def flow_parts(files: Sequence[str | Path], args: Sequence[str]) -> tuple[FlowDataModule, FlowModule]:
    """The datamodule and module of the flow the composed ``files`` with ``args`` describe, built without reading
    data (the datasets are specs until loaded), seeding, or creating a trainer or a run directory."""
    with _own_argv():
        cli = _PartsCLI(FlowModule, FlowDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        auto_configure_optimizers=False, save_config_callback=None,
                        args=[*configs(files), *args, "--seed_everything", "false"], run=False)
    return cli.datamodule, cli.model


def validate_inputs(flows: Iterable[FlowSpec]) -> int:
    """Read and check the data of every flow in ``flows`` before any of them runs; returns how many datasets were read.

    Each source and reference is loaded as the flow will load it (files readable, array dtypes and shapes, labels,
    class counts of the subsets), and each pair is checked as the flow checks it before its first step (the same
    feature shape; classes large enough for the label distance). A pseudo-labeled source is checked through the
    dataset under it, without the clustering (which the flow runs). Datasets that several flows share are read
    once. The first problem is raised (``ValueError`` or ``FileNotFoundError``) naming the file and what is wrong.
    """
    loaded: dict[str, LabeledData] = {}

    def load(spec: DatasetSource) -> LabeledData:
        key = _spec_key(spec)
        if key not in loaded:
            loaded[key] = spec.load()
        return loaded[key]

    for files, args in flows:
        data, model = flow_parts(files, args)
        spec = data.source_spec
        clustered = isinstance(spec, PseudoLabeled)
        source = load(spec.source if isinstance(spec, PseudoLabeled) else spec)
        reference = load(data.reference_spec)
        check_flow_data(source, reference, model.objective.label_distance,
                        model.dynamics.source_stats_from_samples and not clustered)
    return len(loaded)


def _spec_key(value: Any) -> str:
    """What tells two dataset specs apart: their class and settings (nested specs by theirs)."""
    if not isinstance(value, DatasetSource):
        return repr(value)
    settings = ", ".join(f"{k}={_spec_key(v)}" for k, v in sorted(vars(value).items()))
    return f"{type(value).__module__}.{type(value).__qualname__}({settings})"


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
