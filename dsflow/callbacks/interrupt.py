"""GracefulInterrupt: Ctrl-C or SIGTERM stops a flow between two steps and writes a checkpoint.

The first SIGINT/SIGTERM only sets a flag; at the end of the current step the callback saves
``<checkpoint dir>/last.ckpt`` (atomically, through Lightning) and asks the trainer to stop, so the run ends
normally (summary, final particles, figure). Resuming from that checkpoint gives, on CPU, bit for bit the
particles of an uninterrupted run. A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["GracefulInterrupt"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt(L.Callback):
    """Turns SIGINT/SIGTERM into a clean stop with a checkpoint at a step boundary."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now
        self.requested = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after Lightning's own SIGTERM handler is installed (it would raise instead of stopping cleanly)
        self.requested = self.stopped_at = None
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.stopped_at is not None:
            return
        # a signal seen by any process stops all of them after the same step (one all-reduce under DDP)
        if not trainer.strategy.reduce_boolean_decision(self.requested is not None, all=False):
            return
        path = checkpoint_dir(trainer) / "last.ckpt"
        trainer.save_checkpoint(path)
        trainer.should_stop = True
        self.stopped_at = trainer.global_step
        what = signal.Signals(self.requested).name if self.requested is not None else "a signal (on another rank)"
        rank_zero_info(
            f"{what} received: stopped after step {trainer.global_step}; "
            f"checkpoint {path}; resume with --ckpt_path {path}"
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """The directory of the trainer's ModelCheckpoint, or ``<default_root_dir>/checkpoints``."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # set by Lightning, undeclared
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"
