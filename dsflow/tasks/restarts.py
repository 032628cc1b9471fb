"""Random restarts: fit a fresh module ``restarts`` times and keep the one best on the held-out split.

Appendix C fits the flow map with ten random restarts and keeps the best on a held-out set. Each restart r is
seeded with ``seed + r`` (weights and batch order); all restarts see the same split (the DataModule's own seed),
and each is scored by ``trainer.validate`` on its final weights. :func:`select_restarts` is the selection, for
any way of fitting one restart (the benchmarks fit each with ``train.py``'s CLI); :func:`fit_restarts` fits
modules built in Python.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L

__all__ = ["RestartResult", "select_restarts", "fit_restarts"]


@dataclass
class RestartResult:
    """Outcome of :func:`fit_restarts`.

    Attributes:
        module: the best restart's module, with its weights loaded.
        best_index: index r of the best restart.
        scores: the held-out ``monitor`` value of every restart, in order.
        checkpoint: where the best restart was saved (None without ``out_dir``).
    """

    module: L.LightningModule
    best_index: int
    scores: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


def select_restarts(fit_one: Callable[[int], tuple[L.LightningModule, L.Trainer, L.LightningDataModule]],
                    restarts: int = 10, seed: int = 0, monitor: str = "val/mse", mode: str = "min",
                    on_best: Callable[[int, L.Trainer], None] | None = None) -> RestartResult:
    """Fit ``restarts`` times and keep the restart best by held-out ``monitor`` of its final weights.

    Args:
        fit_one: fits restart r seeded with ``seed + r`` (weights and batch order) and returns the fitted module,
            its trainer and the DataModule whose validation split scores it (``trainer.validate``).
        mode: ``min`` or ``max``: whether a lower or a higher ``monitor`` is better.
        on_best: called with (r, trainer) whenever restart r becomes the best so far (e.g. to save it).
    """
    if restarts < 1:
        raise ValueError(f"select_restarts: restarts must be >= 1, got {restarts}")
    if mode not in ("min", "max"):
        raise ValueError(f"select_restarts: mode must be 'min' or 'max', got {mode!r}")
    sign = 1.0 if mode == "min" else -1.0
    scores: list[float] = []
    best_state, best_index, best_module = None, -1, None
    for r in range(restarts):
        module, trainer, datamodule = fit_one(seed + r)
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        if monitor not in metrics:
            raise ValueError(f"restarts: the module logs no '{monitor}' in validation; it logged {sorted(metrics)}")
        value = float(metrics[monitor])
        if not math.isfinite(value):
            raise ValueError(f"restarts: restart {r} gave a non-finite {monitor} ({value}); lower the learning rate")
        scores.append(value)
        if best_module is None or sign * value < sign * scores[best_index]:
            best_index, best_module = r, module
            best_state = copy.deepcopy(module.state_dict())
            if on_best is not None:
                on_best(r, trainer)
    if best_module is None or best_state is None:
        raise RuntimeError(f"select_restarts: no restart was kept out of {restarts}")
    best_module.load_state_dict(best_state)
    return RestartResult(best_module, best_index, scores)


def fit_restarts(make_module: Callable[[], L.LightningModule], datamodule: L.LightningDataModule, restarts: int = 10,
                 max_epochs: int = 20, seed: int = 0, monitor: str = "val/mse", mode: str = "min",
                 out_dir: str | Path | None = None, **trainer_kwargs: Any) -> RestartResult:
    """Fit ``restarts`` modules built by ``make_module`` and keep the best by held-out ``monitor``.

    Args:
        make_module: builds a fresh, randomly initialised module (called after seeding).
        datamodule: provides the training and the held-out (validation) split.
        mode: ``min`` or ``max``: whether a lower or a higher ``monitor`` is better.
        out_dir: if given, the best restart is saved as ``<out_dir>/best.ckpt``.
        **trainer_kwargs: extra :class:`lightning.Trainer` arguments (accelerator, callbacks, ...).
    """
    if max_epochs < 1:
        raise ValueError(f"fit_restarts: max_epochs must be >= 1, got {max_epochs}")
    defaults: dict[str, Any] = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    accelerator="cpu", num_sanity_val_steps=0)
    kwargs = defaults | trainer_kwargs
    checkpoint = Path(out_dir) / "best.ckpt" if out_dir is not None else None

    def fit_one(seed_r: int) -> tuple[L.LightningModule, L.Trainer, L.LightningDataModule]:
        L.seed_everything(seed_r, verbose=False)
        module = make_module()
        trainer = L.Trainer(max_epochs=max_epochs, **kwargs)
        trainer.fit(module, datamodule=datamodule)
        return module, trainer, datamodule

    def save(r: int, trainer: L.Trainer) -> None:
        if checkpoint is None:
            raise RuntimeError("fit_restarts: saving a restart without a checkpoint path")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(checkpoint)

    result = select_restarts(fit_one, restarts, seed, monitor, mode, save if checkpoint is not None else None)
    result.checkpoint = checkpoint
    return result
