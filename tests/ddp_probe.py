"""A callback for multi-process tests: each rank saves what it computed to ``<run dir>/probe_rank<r>.pt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


class RankProbe(L.Callback):
    """Saves, on every rank, the label tables and label statistics of the first step, the rank's reference shards,
    the objective it logged, and its final particles."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        state = pl_module.state()
        labels = state.labels
        plan = state.shards.plan if state.shards is not None else None
        self.record.update(
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            ss=labels.ss.detach().clone(),
            sr=labels.sr.detach().clone(),
            rr=labels.rr.detach().clone(),
            num_reference=int(pl_module.reference.x.shape[0]),
            shard_ids=list(plan.shard_ids) if plan else [0],
            shard_sizes=[int(i.shape[0]) for i in plan.indices] if plan else [int(pl_module.reference.x.shape[0])],
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.record.setdefault("objective", []).append(float(pl_module.last_loss.total))
        self.record.setdefault("local_loss", []).append(float(outputs["loss"]))

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.record.update(x=pl_module.particles.x.detach().clone(), y=pl_module.particles.y.clone())
        torch.save(self.record, Path(trainer.default_root_dir) / f"probe_rank{trainer.global_rank}.pt")
