"""FlowRecorder: writes a flow's outputs into the run directory and to the logger.

Run directory (``trainer.default_root_dir``) after ``fit``:

* ``trajectory/step_{t:06d}.npz``: snapshots every ``every_n_steps`` steps, the first and the last included
  (format in :mod:`dsflow.io`);
* ``final.npz``: final particles ``x``, ``y`` and initial ones ``x0``, ``y0``;
* ``flow.png``: ``panels`` snapshots evenly spread along the flow (start and end included) and the reference,
  coloured by label, 3-D scatters for 3-D data (also logged to W&B as ``flow/figure``);
* ``summary.json``: initial and final objective, steps, wall time, seconds per step, number of particles.

With several processes (DDP) only rank 0 writes; the objectives are the global ones (mean over ranks, see
:mod:`dsflow.flows.distributed`).

Every file is written atomically, so a run that dies keeps valid files of the steps it finished.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from dsflow.callbacks.figures import plt, scatter_panels
from dsflow.callbacks.interrupt import GracefulInterrupt
from dsflow.flows.interface import FlowLike, as_flow
from dsflow.io import atomic_write, load_npz, save_npz, snapshot_path, write_json

__all__ = ["FlowRecorder"]


class FlowRecorder(L.Callback):
    """Saves the trajectory, final particles, figure and summary of a flow.

    Args:
        every_n_steps: snapshot interval k (0: only the first and last step).
        figure: draw ``flow.png`` at the end.
        panels: snapshots drawn along the flow (>= 2: the start and the end at least).
        title: figure title (default: a generic one).
    """

    def __init__(self, every_n_steps: int = 10, figure: bool = True, panels: int = 2, title: str = "") -> None:
        if every_n_steps < 0:
            raise ValueError(f"FlowRecorder: every_n_steps must be >= 0, got {every_n_steps}")
        if panels < 2:
            raise ValueError(f"FlowRecorder: panels must be >= 2 (start and end), got {panels}")
        self.every_n_steps = every_n_steps
        self.figure = figure
        self.panels = panels
        self.title = title
        self.initial_objective: float | None = None
        self.elapsed = 0.0  # seconds of flow in earlier (interrupted) runs
        self._t0 = 0.0
        self._start_step = 0

    # ------------------------------------------------------------ state (resumes keep the summary's start)
    def state_dict(self) -> dict[str, Any]:
        return {"initial_objective": self.initial_objective, "elapsed": self.elapsed + self._running()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_objective = state_dict.get("initial_objective")
        self.elapsed = float(state_dict.get("elapsed", 0.0))

    def _running(self) -> float:
        return time.perf_counter() - self._t0 if self._t0 else 0.0

    # ------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flow = as_flow(pl_module, "FlowRecorder")
        self._t0 = time.perf_counter()
        self._start_step = trainer.global_step
        if trainer.global_step == 0:
            self._snapshot(trainer, flow)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        flow = as_flow(pl_module, "FlowRecorder")
        if self.initial_objective is None and flow.last_loss is not None:
            self.initial_objective = float(flow.last_loss.total)
        k = self.every_n_steps
        if k and trainer.global_step % k == 0:
            self._snapshot(trainer, flow)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flow = as_flow(pl_module, "FlowRecorder")
        # every rank evaluates its reference shards, then the mean over ranks (a collective: before the rank check)
        with torch.no_grad():  # a value only: no graph to build
            final = float(flow.global_loss(flow.compute_objective(keep_state=True)).total)  # last.ckpt stays exact
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        step = trainer.global_step
        if not snapshot_path(run_dir, step).exists():
            self._snapshot(trainer, flow)
        wall = self.elapsed + self._running()
        x, y = _numpy(flow)
        first = load_npz(snapshot_path(run_dir, 0), keys=("x", "y"))
        save_npz(run_dir / "final.npz", x=x, y=y, x0=first["x"], y0=first["y"])
        summary = {
            "initial_objective": self.initial_objective,
            "final_objective": final,
            "steps": step,
            "wall_time_s": round(wall, 3),
            "seconds_per_step": round(wall / max(step, 1), 5),
            "num_particles": int(x.shape[0]),
            "num_reference": int(flow.reference.x.shape[0]),
            "feature_shape": list(x.shape[1:]),
            # Trainer.callbacks: set by Lightning, undeclared
            "interrupted": any(isinstance(cb, GracefulInterrupt) and cb.stopped_at is not None for cb in trainer.callbacks),  # type: ignore[attr-defined]
        }
        write_json(run_dir / "summary.json", summary)
        for logger in trainer.loggers:
            logger.log_metrics({"summary/final_objective": final}, step=step)
        if self.figure:
            self._figure(trainer, flow, first, x, y)

    # ------------------------------------------------------------ outputs
    def _snapshot(self, trainer: L.Trainer, flow: FlowLike) -> None:
        if not trainer.is_global_zero:
            return
        x, y = _numpy(flow)
        save_npz(snapshot_path(trainer.default_root_dir, trainer.global_step), x=x, y=y, step=np.int64(trainer.global_step))

    def _figure(self, trainer: L.Trainer, flow: FlowLike, first: dict, x: np.ndarray, y: np.ndarray) -> None:
        ref = flow.reference
        ref_xy = (ref.x.cpu().numpy(), ref.y.cpu().numpy())
        n = x.shape[0]
        run_dir = Path(trainer.default_root_dir)
        files = (run_dir / "trajectory").glob("step_*.npz")
        saved = sorted(s for s in (int(p.stem.split("_")[1]) for p in files) if s <= trainer.global_step)
        picks = sorted({saved[round(i * (len(saved) - 1) / (self.panels - 1))] for i in range(self.panels)})
        panels = []
        for step in picks:
            snap = first if step == 0 else load_npz(snapshot_path(run_dir, step), keys=("x", "y"))
            panels.append((f"step {step}", snap["x"].reshape(n, -1), snap["y"]))
        panels.append(("reference", *ref_xy))
        title = self.title or "flow: particles (dots) onto reference (crosses)"
        fig = scatter_panels(panels, reference=ref_xy, title=title)
        path = run_dir / "flow.png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="flow/figure", images=[str(path)], step=trainer.global_step)


def _numpy(flow: FlowLike) -> tuple[np.ndarray, np.ndarray]:
    data = flow.particles.as_data()
    return data.x.cpu().numpy().astype(np.float32), data.y.cpu().numpy().astype(np.int64)
