"""Command-line entry points (LightningCLI): ``flow.py`` runs flows, ``train.py`` trains oracles.

Each run writes into one run directory (``--run_dir``, by default ``runs/<name>-<timestamp>``): checkpoints,
the flow's outputs (see :class:`~dsflow.callbacks.FlowRecorder`), the resolved ``config.yaml`` and the W&B run.
W&B runs offline unless the user has set it up (an API key in the environment or ~/.netrc); it never prompts.
Resuming with ``--ckpt_path <run>/checkpoints/last.ckpt`` continues in that checkpoint's run directory.

Progress: Lightning's live bar where standard error is a terminal; elsewhere (a log file, a pipe, CI) lines, one
per epoch of a training run and one every 10 steps of a flow (:class:`~dsflow.callbacks.LineProgress`). A progress
bar in ``trainer.callbacks`` or ``--trainer.enable_progress_bar false`` overrides the choice. Run as scripts
(:func:`run_script`), ``flow.py`` and ``train.py`` end a failed run with one line ``error: <what went wrong>``.

Several processes (``--trainer.strategy ddp``) share one run directory: the processes Lightning starts on this
machine inherit it from the first one (``DSFLOW_RUN_DIR``); processes started by other launchers (torchrun, SLURM,
other nodes) must all be given the same ``--run_dir``. Only rank 0 writes into it.
"""

from __future__ import annotations

import netrc
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger, WandbLogger

from dsflow.callbacks.dataset_export import DatasetExport
from dsflow.callbacks.interrupt import GracefulInterrupt
from dsflow.callbacks.progress import LineProgress
from dsflow.callbacks.recorder import FlowRecorder
from dsflow.console import quiet_third_party, run_summary
from dsflow.data.pair import FlowDataModule
from dsflow.flows.checks import check_flow_data
from dsflow.flows.module import FlowModule
from dsflow.process import flush_denormals

__all__ = ["RunCLI", "FlowCLI", "flow_main", "TrainCLI", "train_main", "configure_wandb", "wandb_logger", "finish_wandb",
           "progress_callbacks", "run_script"]


def configure_wandb() -> str:
    """Make W&B non-interactive: offline unless a key is configured. Returns the mode in effect."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    if "WANDB_MODE" not in os.environ and not _wandb_key_available():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def wandb_logger(**kwargs: Any) -> WandbLogger:
    """Lightning's WandbLogger, without the ``anonymous=None`` it always hands to ``wandb.init``: wandb warns
    "The anonymous setting has no effect" for any value, on every run (the setting is deprecated; None is its
    default anyway)."""
    logger = WandbLogger(**kwargs)
    init = getattr(logger, "_wandb_init", None)  # Lightning's kwargs for wandb.init
    if isinstance(init, dict) and init.get("anonymous", "set") is None:
        del init["anonymous"]
    return logger


def finish_wandb(loggers: Sequence[Logger]) -> None:
    """Finish the W&B runs of ``loggers`` and return only once their run files (``run-<id>.wandb``) are written.

    ``run.finish()`` alone returns too early: it waits until wandb-core has taken the run's exit record, but
    wandb-core holds the run file's current 32 KiB block in memory and writes it out when it closes the run's
    stream, on a finish message that ``finish()`` sends without waiting for an answer. For a moment after
    ``finish()`` a small run's file holds only its 7-byte header, and a reader that comes first finds no
    history. wandb-core handles one connection's messages in order, so ``wandb.teardown()``, which asks it to
    exit and waits until its process has, returns only after the stream is closed and the file written (the next
    ``wandb.init`` in this process starts a new wandb-core). On ranks other than 0 the loggers' experiments are
    Lightning's dummies and there is no wandb-core to wait for: both calls do nothing.
    """
    wandb_loggers = [logger for logger in loggers if isinstance(logger, WandbLogger)]
    for logger in wandb_loggers:
        logger.experiment.finish()
    if wandb_loggers:
        import wandb  # only runs that log to W&B pay for importing it

        wandb.teardown()


def _wandb_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


class RunCLI(LightningCLI):
    """LightningCLI whose runs each write into one run directory, with checkpoints and offline-safe W&B.

    Subclasses name their default experiment (``default_name``), the interval of their progress lines
    (``progress_every_n_steps``, 0: one per epoch) and add their own arguments and defaults.
    """

    default_name = "run"
    progress_every_n_steps = 0

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--run_dir", type=str | None, default=None, help="Run directory (default: runs/<name>-<time>).")
        parser.add_argument("--name", type=str, default=self.default_name, help="Experiment name (W&B run, run directory).")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.auto_insert_metric_name": False})

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        name = cfg.get("name", self.default_name)
        resumed = cfg.get("ckpt_path") if self.subcommand != "predict" else None  # predict only reads weights
        self.run_dir = _run_dir(cfg.get("run_dir"), name, resumed)
        checkpoint = self._get(self.config_init, "checkpoint")
        if checkpoint is not None and checkpoint.dirpath is None:
            checkpoint.dirpath = str(self.run_dir / "checkpoints")
        kwargs["default_root_dir"] = str(self.run_dir)
        if cfg.trainer.get("logger") in (None, True):
            configure_wandb()
            kwargs["logger"] = wandb_logger(project="dsflow", name=f"{name}-{self.run_dir.name}", save_dir=str(self.run_dir))
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        kwargs["callbacks"] = progress_callbacks(trainer_cfg.get("callbacks"), trainer_cfg.get("enable_progress_bar"),
                                                 self.progress_every_n_steps)
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        finish_wandb(self.trainer.loggers)
        if self.trainer.is_global_zero:
            print(run_summary(self.run_dir, self.trainer), flush=True)
        end_process_group()


class FlowCLI(RunCLI):
    """The flow CLI: checkpoints every ``checkpoint.every_n_train_steps`` steps and the flow's outputs.

    What is known only from the data is linked, not configured: the datamodule's loaded ``source`` and
    ``reference`` become the module's ``source`` and ``reference`` when both are instantiated, and the module
    builds its particles from them in ``configure_model`` (the module never sees the datamodule). The data are
    read when the classes are built and checked before ``fit`` starts (:meth:`before_fit`).
    """

    default_name = "flow"
    progress_every_n_steps = 10

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(FlowRecorder, "recorder")
        # the flowed dataset (docs/export.md): none unless a config names one (configs/flow/images.yaml does)
        parser.add_lightning_class_args(DatasetExport, "export", subclass_mode=True, required=False)
        for name in ("source", "reference"):  # LabeledData, loaded by the datamodule
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.set_defaults(
            {
                "checkpoint.every_n_train_steps": 100,
                "checkpoint.filename": "step={step:06d}",
                "trainer.log_every_n_steps": 1,
                "trainer.max_steps": 100,
            }
        )

    def before_fit(self) -> None:
        """Check the flow's data as the module does before its first step, but before the trainer starts anything
        (W&B, the oracle, a checkpoint): a bad source or reference stops the run at once (the datasets were read
        when the classes were built)."""
        model, data = self.model, self.datamodule
        if isinstance(model, FlowModule) and isinstance(data, FlowDataModule):
            check_flow_data(data.source, data.reference, model.objective.label_distance,
                            model.dynamics.source_stats_from_samples)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> Trainer:
        # an optional callback left out (``export``, no class_path) is None, not a callback
        return super()._instantiate_trainer(config, [cb for cb in callbacks if cb is not None])


def progress_callbacks(callbacks: Callback | list[Callback] | None, enabled: bool | None, every_n_steps: int,
                       interactive: bool | None = None) -> list[Callback]:
    """The trainer's ``callbacks`` with :class:`LineProgress` added when output is not ``interactive`` (default:
    whether standard error, where Lightning's bar goes, is a terminal), unless the progress bar is disabled
    (``enabled`` False) or ``callbacks`` already hold one (the user's choice wins)."""
    given = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive or enabled is False or any(isinstance(c, ProgressBar) for c in given):
        return given
    return [*given, LineProgress(every_n_steps)]


def run_script(main: Callable[[], object]) -> None:
    """Run an entry point (``flow_main``, ``train_main``, a runner's ``main``) as a script: an error ends the
    output with the full traceback and then one line, ``error: <message>`` (a message of several lines joined), so
    that the last line of a log says what went wrong and, for data, which file; the exit status is 1."""
    try:
        main()
    except Exception as err:
        traceback.print_exc()
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(1) from err


_RUN_DIR_ENV = "DSFLOW_RUN_DIR"
_RANK_ENVS = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def _secondary_process() -> bool:
    """Whether a launcher (Lightning's DDP, torchrun, SLURM) started this process as other than global rank 0."""
    return any(os.environ.get(k, "0").strip() not in ("", "0") for k in _RANK_ENVS)


def _run_dir(given: str | None, name: str, ckpt_path: str | None) -> Path:
    """The run directory: as given, the one a resumed checkpoint lives in, rank 0's (for the other processes of
    a multi-process run) or a new ``runs/<name>-<time>``."""
    if given:
        path = Path(given)
    elif ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        path = Path(ckpt_path).parent.parent
    elif _secondary_process():
        if not os.environ.get(_RUN_DIR_ENV):
            ranks = {k: os.environ[k] for k in _RANK_ENVS if k in os.environ}
            raise ValueError(
                f"--run_dir: this process ({ranks}) was started by an external launcher without a run directory; "
                f"pass the same --run_dir to every process (on a shared filesystem across nodes)"
            )
        path = Path(os.environ[_RUN_DIR_ENV])
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{name}-{stamp}"
        k = 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{name}-{stamp}-{k}"
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_RUN_DIR_ENV] = str(path)  # inherited by the processes Lightning's DDP launcher starts
    return path


def flow_main(args: list[str] | None = None, run: bool = True) -> FlowCLI:
    """``flow.py``: ``fit`` a :class:`FlowModule` on a :class:`FlowDataModule` (or subclasses) from YAML.

    With ``run=False`` (and no subcommand in ``args``) the classes are built and nothing is run: the flow's
    data and module as a config describes them.
    """
    flush_denormals()  # before torch's worker threads start, which inherit it: dsflow.process
    quiet_third_party()
    return FlowCLI(
        FlowModule,
        FlowDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,  # what Lightning falls back to anyway, said instead of warned ("No seed found")
        trainer_defaults={"callbacks": [GracefulInterrupt()]},
        args=args,
        run=run,
    )


def end_process_group() -> None:
    """Destroy the torch.distributed process group a finished DDP fit left behind (Lightning leaves it open;
    :meth:`RunCLI.after_fit` calls this for flows and training alike). Without it a gloo worker process may abort
    at exit ("terminate called without an active exception") after a finished run, which fails the launch."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class TrainCLI(RunCLI):
    """The training CLI (oracles, flow maps): best (by ``val/acc``) and last checkpoints.

    Sizes known from the data are linked, not configured: the network under ``model.init_args.net`` gets the
    data's image channels and side (``in_channels``, ``input_size``) and class count (``num_classes``) from
    ``data.image_shape`` and ``data.num_classes``, when it takes such an argument.
    """

    default_name = "train"

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.set_defaults({"checkpoint.monitor": "val/acc", "checkpoint.mode": "max", "checkpoint.filename": "best"})
        net = "model.init_args.net.init_args"  # a link whose source attribute or target is missing is skipped
        parser.link_arguments("data.image_shape", f"{net}.in_channels", compute_fn=_channels, apply_on="instantiate")
        parser.link_arguments("data.image_shape", f"{net}.input_size", compute_fn=_side, apply_on="instantiate")
        parser.link_arguments("data.num_classes", f"{net}.num_classes", apply_on="instantiate")


def _channels(image_shape: tuple[int, ...]) -> int:
    return int(image_shape[0])


def _side(image_shape: tuple[int, ...]) -> int:
    c, h, w = image_shape
    if h != w:
        raise ValueError(f"data: the networks take square images, but the images are {h} x {w}; set the dataset's `size`")
    return int(h)


def train_main(args: list[str] | None = None) -> TrainCLI:
    """``train.py``: ``fit``/``test`` a task module (a :class:`~dsflow.tasks.Classifier` oracle, a
    :class:`~dsflow.tasks.FlowMap`, or any LightningModule named by ``model.class_path``) on a DataModule."""
    flush_denormals()
    quiet_third_party()
    return TrainCLI(
        L.LightningModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        # Lightning's hyperparameter capture cannot record links into a nested network's arguments, and no
        # dsflow task saves hyperparameters: checkpoints are read by load_oracle (oracles) or ckpt_path (resume)
        load_from_checkpoint_support=False,
        args=args,
    )
