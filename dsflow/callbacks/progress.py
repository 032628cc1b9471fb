"""LineProgress: progress as plain lines, for output that is not a terminal (a log file, a pipe, CI, a scheduler).

Lightning's live bar rewrites one line with a carriage return for every batch: on a terminal that is one line,
in a log file thousands (an oracle's 20 epochs: 8,000+ updates, 1.6 MB). This callback writes one line per epoch
(training) or per ``every_n_steps`` steps (flows, and the last step) with the fields the bar shows (the metrics
logged with ``prog_bar=True``: a flow's objective and oracle accuracy, a classifier's accuracies) and the time
left::

    step 10/30: train/objective 12.34, oracle_acc 45.6; 4 s, about 8 s left
    epoch 3/20 (step 1266): train/acc 0.9812, val/acc 0.9855, val/loss 0.0521; 25 s, about 2.8 min left

:mod:`dsflow.cli` chooses it when standard error (where the bar goes) is not a terminal; a progress bar named in
``trainer.callbacks`` (this one, or Lightning's ``TQDMProgressBar``) or ``--trainer.enable_progress_bar false``
overrides that choice.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

__all__ = ["LineProgress"]


class LineProgress(ProgressBar):
    """Progress lines: one per training epoch, or one every ``every_n_steps`` optimizer steps and at the last step.

    Args:
        every_n_steps: line interval in steps (0: one line per epoch, what training runs use).
        stream: where the lines go (default: standard error, where Lightning's bar goes).
    """

    def __init__(self, every_n_steps: int = 0, stream: TextIO | None = None) -> None:
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"LineProgress: every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.stream = stream
        self._enabled = True
        self._start = 0.0
        self._first_step = 0
        self._last_line_step = -1

    # ------------------------------------------------------------ what Lightning asks of a progress bar
    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def is_disabled(self) -> bool:
        return not self._enabled

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, file=self.stream or sys.stderr, flush=True, **kwargs)

    # ------------------------------------------------------------ the lines
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._first_step, self._last_line_step = time.perf_counter(), trainer.global_step, -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > self._last_line_step and step % self.every_n_steps == 0:
            self._line(trainer, pl_module, f"step {step}/{_total(trainer.max_steps)}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.every_n_steps:
            epoch = trainer.current_epoch + 1
            self._line(trainer, pl_module, f"epoch {epoch}/{_total(trainer.max_epochs)} (step {trainer.global_step})")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps and trainer.global_step > self._last_line_step:  # the last step, off the interval
            self._line(trainer, pl_module, f"step {trainer.global_step}/{_total(trainer.max_steps)}")

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, where: str) -> None:
        self._last_line_step = trainer.global_step
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        fields = ", ".join(f"{k} {_number(v)}" for k, v in sorted(metrics.items()))
        self.print(f"{where}" + (f": {fields}" if fields else "") + f"; {self._timing(trainer)}")

    def _timing(self, trainer: L.Trainer) -> str:
        """Seconds since the start and the time left, from the share of the run done (steps or epochs, whichever
        ends the run first)."""
        spent = time.perf_counter() - self._start
        done = 0.0
        if trainer.max_steps and trainer.max_steps > 0:
            done = (trainer.global_step - self._first_step) / max(trainer.max_steps - self._first_step, 1)
        if trainer.max_epochs and trainer.max_epochs > 0 and not self.every_n_steps:
            done = max(done, (trainer.current_epoch + 1) / trainer.max_epochs)
        if not 0 < done < 1:
            return _duration(spent)
        return f"{_duration(spent)}, about {_duration(spent / done * (1 - done))} left"


def _total(limit: int | None) -> str:
    return "?" if limit is None or limit < 0 else str(limit)


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"
