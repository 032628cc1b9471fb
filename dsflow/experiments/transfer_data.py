"""The transfer runner's data: the flow of a task (its overrides), and the flowed data each setting trains on
(z0, zT, z1..T, h(z0) of the pool's other samples) with labels in the target's classes, their figures and where
the particles land.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from dsflow.callbacks.recorder import FlowRecorder
from dsflow.cli import FlowCLI
from dsflow.data import LabeledData, save_tensors
from dsflow.experiments import common, runs
from dsflow.experiments.datasets import transfer_datasets
from dsflow.experiments.transfer_settings import Setting, Task, TaskRecord, TransferOptions
from dsflow.io import load_trajectory
from dsflow.tasks.flow_map import FlowMap
from dsflow.tasks.transfer import landing_labels, landing_report

__all__ = ["CLASSES", "flow_overrides", "same_labels", "trajectory_states", "fresh", "flowed_sets", "flow_figures"]

CLASSES = 10  # every transfer dataset has ten classes: a k-shot target has 10 k samples


def flow_overrides(src: str, tgt: str, k: int, seed: int) -> list[str]:
    """The pair's datasets, the shot count and the seeds of one flow (before the --flow-args)."""
    datasets = transfer_datasets()
    for name in (src, tgt):
        if name not in datasets:
            raise ValueError(f"unknown dataset '{name}': choose from {sorted(datasets)}")
    pool, target = "--data.init_args.source.init_args.source", "--data.init_args.reference"
    src_spec, tgt_spec = datasets[src].spec, datasets[tgt].spec
    if src_spec is None or tgt_spec is None:
        raise RuntimeError(f"transfer_datasets() gave {src} or {tgt} without a spec")
    return [pool, str(common.ROOT / src_spec), f"{pool}.init_args.seed", str(seed),
            "--data.init_args.source.init_args.seed", str(seed),
            target, str(common.ROOT / tgt_spec), f"{target}.init_args.seed", str(seed),
            f"{target}.init_args.n", str(k * CLASSES), f"{target}.init_args.split", "train",
            f"{target}.init_args.balanced", "true"]


def same_labels(src: str, tgt: str) -> bool:
    """Whether source and target share their classes (digits onto digits): flowed samples keep their labels."""
    datasets = transfer_datasets()
    return datasets[src].digits and datasets[tgt].digits


def trajectory_states(cli: FlowCLI) -> int:
    """How many states z1..zT the flow keeps: the recorder's snapshots after step 0 (the last step included)."""
    # Trainer.callbacks: set by Lightning, undeclared
    steps, every = cli.trainer.max_steps, next(c for c in cli.trainer.callbacks if isinstance(c, FlowRecorder)).every_n_steps  # type: ignore[attr-defined]
    if steps is None or steps < 1:
        raise ValueError(f"the transfer flow needs trainer.max_steps >= 1, got {steps}")
    return 1 if every == 0 else len(range(every, steps + 1, every)) + (steps % every != 0)


def fresh(run: Path) -> Path:
    """``run`` emptied before it is redone: Lightning would write ``last-v1.ckpt`` beside a stale ``last.ckpt``
    (and a shorter flow would leave stale trajectory snapshots), and the runner reads ``last.ckpt``."""
    shutil.rmtree(run, ignore_errors=True)
    return run


def _flow_labels(source: LabeledData, target: LabeledData, x_t: torch.Tensor, same: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) the particles' labels in the target's classes, and (C_source,) the target class of each source class.
    Digits keep theirs; else the label of where each particle landed, and the class most of a source class went to."""
    if same:
        return source.y, torch.arange(source.num_classes)
    y_flow = landing_labels(x_t, target.x, target.y)
    label = torch.stack([torch.bincount(y_flow[source.y == c], minlength=target.num_classes).argmax()
                         for c in range(source.num_classes)])  # (C_source,)
    return y_flow, label


def flowed_sets(cli: FlowCLI, where: Path, task: Task, record: TaskRecord, opts: TransferOptions
                ) -> dict[Setting, list[Path]]:
    """Write the flowed data of each setting (labels in target classes) under ``<where>/sets``; returns {setting:
    files}. Records where the particles land; the flow map is fitted only where + h(z0) is asked for and not
    already fitted (``record`` holds its scores)."""
    dm = cli.datamodule
    source, target = dm.source, dm.reference
    same = same_labels(task.src, task.tgt)
    traj = load_trajectory(where / "flow")
    x_t = torch.from_numpy(traj["x"][-1])  # (n, 1, 28, 28) final particles
    y_flow, label = _flow_labels(source, target, x_t, same)
    flow_figures(traj, y_flow, target, where / "figures", f"{task.pair}, {task.k}-shot, seed {task.seed}")
    record.landing = landing_report(x_t, source.y if same else None, target.x, target.y)
    record.landing_z0 = landing_report(source.x, source.y if same else None, target.x, target.y)
    sets, c = where / "sets", target.num_classes

    def save(name: str, x: torch.Tensor, y: torch.Tensor) -> Path:
        return save_tensors(sets / f"{name}.npz", LabeledData(x, y, c, name))

    kept = [(int(s), torch.from_numpy(x)) for s, x in zip(traj["steps"], traj["x"]) if s > 0]  # z1..zT
    files = {Setting.Z0: [save("z0", source.x, y_flow)], Setting.ZT: [save("zT", x_t, y_flow)],
             Setting.TRAJECTORY: [save(f"z{s}", x, y_flow) for s, x in kept]}
    if Setting.FLOW_MAP in opts.settings and Setting.FLOW_MAP not in record.acc:
        hz0 = sets / "hz0.npz"
        if record.map_mse is None or not hz0.is_file():
            _map_set(cli, where, record, opts, lambda x, y: save("hz0", x, label[y]))
        files[Setting.FLOW_MAP] = [hz0]
    return files


def _map_set(cli: FlowCLI, where: Path, record: TaskRecord, opts: TransferOptions,
             save: Callable[[torch.Tensor, torch.Tensor], Path]) -> None:
    """h(z0): the flow map h: x0 -> xT of the task's flow applied to the pool's samples that did not flow, saved
    with ``save(h(x), y)`` (y: their source labels); its scores into ``record``, Fig. 9 into ``flow_map/``."""
    from dsflow.callbacks.transfer_figures import flow_map_figure

    t0 = time.perf_counter()
    extra = cli.datamodule.source_spec.complement().load()  # the pool's samples that did not flow
    fit, pairs = runs.fit_flow_map(where / "flow", fresh(where / "flow_map"), opts.map_restarts, record.seed,
                                   common.overrides(opts.map_args, "--map-args"))
    if not isinstance(fit.module, FlowMap):
        raise RuntimeError(f"flow map: train.py fitted a {type(fit.module).__name__}, not a FlowMap")
    x0_val, xt_val = pairs.held_out  # held-out pairs, (n_val, 1, 28, 28) each
    identity = float(torch.nn.functional.mse_loss(x0_val, xt_val))
    flow_map_figure(x0_val[:32], xt_val[:32], fit.module.push(x0_val[:32]), where / "flow_map" / "fig9.png")
    save(fit.module.push(extra.x), extra.y)
    record.map_mse, record.map_identity_mse = fit.scores[fit.best_index], identity
    record.map_seconds = round(time.perf_counter() - t0, 1)
    print(f"{record.pair} k={record.k} seed={record.seed} flow map: held-out MSE of xT {record.map_mse:.5f} "
          f"(x0 itself {identity:.5f})", flush=True)


def flow_figures(traj: dict, y: torch.Tensor, target: LabeledData, out: Path, title: str, per_class: int = 4,
                 paths: int = 300) -> None:
    """``flow_grid.png`` (Fig. 5 style: ``per_class`` particles of each label, the same ones at every kept step) and
    ``trajectories.png`` (Fig. 3 style: ``paths`` particles' paths in the principal plane, the target as crosses).

    Args:
        traj: the flow's snapshots (``steps`` (T,), ``x`` (T, n, c, h, w)), from :func:`dsflow.io.load_trajectory`.
        y: (n,) the particles' labels in the target's classes.
    """
    from dsflow.callbacks.flow_figures import image_flow_figure, trajectory_figure

    gen = torch.Generator().manual_seed(0)
    grid = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in y.unique()])  # (<= per_class C,)
    image_flow_figure([(int(s), torch.from_numpy(x[grid.numpy()])) for s, x in zip(traj["steps"], traj["x"])], y[grid],
                      out / "flow_grid.png", title=f"{title}: the same particles along the flow (rows: label)")
    keep = torch.randperm(y.shape[0], generator=gen)[:paths].numpy()
    frames = [(int(s), x[keep].reshape(keep.size, -1)) for s, x in zip(traj["steps"], traj["x"])]
    trajectory_figure(frames, y[keep].numpy(), (target.flat().numpy(), target.y.numpy()), out / "trajectories.png",
                      title=f"{title}\nparticle paths (principal plane; k-shot target: crosses)")
