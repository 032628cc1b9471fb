"""DatasetExport: a flow's particles as a dataset a user can train on (docs/export.md).

Image flows export by default (``configs/flow/images.yaml``). Files in the run directory:

* ``flowed.npz``: the final particles in :class:`~dsflow.data.ArrayFile`'s format (:mod:`dsflow.export`): ``images``
  uint8 (N, H, W) or (N, H, W, 3), ``labels`` int64 (N,) and every label array below;
* ``flowed.png``: a grid of exported samples, a few per label (what a user is about to train on);
* ``flowed/train/<class>/<index>.png`` with ``image_folder`` (``torchvision.datasets.ImageFolder`` reads it);
* ``flowed_step{t:06d}.npz`` (and ``.png``, and the folder ``flowed_step{t:06d}/``) at each step t of ``steps``:
  the paper's trajectory z1..zT, each state a dataset;
* ``export.json``: one record per export (file, step, count, clipped fraction, labels, arrays); the end-of-run
  summary prints the final one.

Label arrays (:class:`ParticleLabels`), one int64 (N,) each:

* ``flow_labels``, or ``pseudo_labels`` when the source is :class:`~dsflow.data.PseudoLabeled`: the particles' own
  labels (the data's; with jd-vl the recovered ones; for unlabeled data the clusters);
* ``coupled_labels``: the reference class each particle's class is coupled to by the coupling layer (the OT plan
  between the classes for the label distances, :func:`~dsflow.callbacks.oracle.label_plan`, at the exported step);
* ``oracle_labels``: the prediction of the :class:`~dsflow.callbacks.OracleScorer`'s oracle, when one scores the flow.

``labels`` picks which of them the file's ``labels`` are. The default, ``auto``, is ``coupled`` for a pseudo-labeled
flow and ``flow`` otherwise: cluster indices name no class, and the coupled class is what the flow did with each
cluster (it moved it onto that reference class), needs no oracle and reads no true label; a labeled flow keeps
its own labels. True labels are never read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from dsflow.callbacks.flow_figures import image_flow_figure
from dsflow.callbacks.oracle import OracleScorer, label_plan
from dsflow.data.pair import FlowDataModule
from dsflow.data.pseudo import PseudoLabeled
from dsflow.export import Export, export_images
from dsflow.flows.interface import FlowLike, as_flow, particle_features
from dsflow.io import write_json
from dsflow.ot.labels.label_distance import GaussianLabelDistance, LabelDistance
from dsflow.tasks.oracle import Oracle

__all__ = ["DatasetExport", "ParticleLabels", "particle_labels", "export_figure", "LabelChoice"]

#: which labels an export's ``labels`` are (module docstring)
LabelChoice = Literal["auto", "flow", "coupled", "oracle"]


@dataclass(frozen=True)
class ParticleLabels:
    """The labels of each particle an export can carry.

    Attributes:
        flow: (n,) the particles' own labels, in [0, C').
        coupled: (n,) the reference class each particle's class is coupled to, in [0, C).
        oracle: (n,) the oracle's predicted class, in [0, C) (None: no oracle scored the flow).
        pseudo: whether ``flow`` are pseudo-labels (clusters of an unlabeled source).
        num_classes: C', the particles' label set.
        num_reference: C, the reference's label set.
    """

    flow: Tensor
    coupled: Tensor
    oracle: Tensor | None
    pseudo: bool
    num_classes: int
    num_reference: int

    @property
    def own_key(self) -> str:
        """The file's key of the particles' own labels: ``pseudo_labels`` (clusters) or ``flow_labels``."""
        return "pseudo_labels" if self.pseudo else "flow_labels"

    def arrays(self) -> dict[str, Tensor]:
        """Every label array under its key in the file (module docstring)."""
        extra = {} if self.oracle is None else {"oracle_labels": self.oracle}
        return {self.own_key: self.flow, "coupled_labels": self.coupled, **extra}

    def pick(self, choice: LabelChoice) -> tuple[str, Tensor, int]:
        """(key, labels (n,), class count) of ``choice`` (``auto``: ``coupled`` if pseudo-labeled, else ``flow``)."""
        if choice == "auto":
            choice = "coupled" if self.pseudo else "flow"
        if choice == "flow":
            return self.own_key, self.flow, self.num_classes
        if choice == "coupled":
            return "coupled_labels", self.coupled, self.num_reference
        if choice == "oracle":
            if self.oracle is None:
                raise ValueError("DatasetExport: labels 'oracle' need an OracleScorer among trainer.callbacks")
            return "oracle_labels", self.oracle, self.num_reference
        raise ValueError(f"DatasetExport: labels must be one of auto, flow, coupled, oracle; got {choice!r}")


def particle_labels(flow: FlowLike, distance: LabelDistance, pseudo: bool = False,
                    oracle: Oracle | None = None) -> ParticleLabels:
    """The labels of the flow's current particles: their own, their class's coupled reference class, and the
    oracle's prediction (with ``oracle``). Reads no true label."""
    x, p, ref = particle_features(flow), flow.particles, flow.reference  # x (n, d)
    plan = label_plan(x, p.y, p.num_classes, ref.x, ref.y, ref.num_classes, distance)  # (C', C), host
    coupled = plan.argmax(1).to(p.y.device)[p.y]  # (n,) the reference class each class sends most mass to
    predicted = None
    if oracle is not None:
        with torch.no_grad():
            predicted = oracle.probs(x).argmax(-1)  # (n,) in the oracle's classes
    return ParticleLabels(p.y.detach().clone(), coupled, predicted, pseudo, p.num_classes, ref.num_classes)


class DatasetExport(L.Callback):
    """Writes the flow's final particles (and those of ``steps``) as datasets: module docstring.

    Args:
        labels: which labels the files' ``labels`` are: ``auto`` (default), ``flow``, ``coupled`` or ``oracle``.
        steps: further steps exported as ``flowed_step{t:06d}.npz`` (0: the start; the end is always exported).
        image_folder: also write each export as an image folder (``<stem>/train/<class>/<index>.png``).
        figure_per_label: samples per label in the grid ``<stem>.png`` (0: no grid).
        class_names: names of the exported label set (stored in the file, and naming the image folder's classes).
        label_distance: the label distance of the coupling (default: the flow's own, that of its OTDD term; a flow
            without one: Gaussian, full covariances).
        seed: which samples the grid shows.
    """

    def __init__(self, labels: LabelChoice = "auto", steps: list[int] | None = None, image_folder: bool = False,
                 figure_per_label: int = 8, class_names: list[str] | None = None,
                 label_distance: LabelDistance | None = None, seed: int = 0) -> None:
        if labels not in ("auto", "flow", "coupled", "oracle"):
            raise ValueError(f"DatasetExport: labels must be one of auto, flow, coupled, oracle; got {labels!r}")
        if steps is not None and any(s < 0 for s in steps):
            raise ValueError(f"DatasetExport: steps must be >= 0, got {steps}")
        if figure_per_label < 0:
            raise ValueError(f"DatasetExport: figure_per_label must be >= 0, got {figure_per_label}")
        self.labels, self.steps, self.image_folder = labels, sorted(set(steps or [])), image_folder
        self.figure_per_label, self.class_names, self.seed = figure_per_label, class_names, seed
        self.label_distance = label_distance
        self.distance: LabelDistance = label_distance or GaussianLabelDistance()  # the one in use (set at fit start)
        self.exports: list[Export] = []  # what this run exported, the final one last
        self.last_labels: ParticleLabels | None = None  # every label array of the latest export
        self._pseudo = False
        self._oracle: OracleScorer | None = None

    # ------------------------------------------------------------ checks (before the first step)
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flow = as_flow(pl_module, "DatasetExport")
        shape = flow.particles.feature_shape
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ValueError(f"DatasetExport: exports images (c, h, w) with c = 1 or 3, but the particles have shape "
                             f"{tuple(shape)}; leave it out for other data (--export null)")
        if self.label_distance is None:  # the flow's own (FlowModule.objective; not part of FlowLike)
            own = getattr(getattr(pl_module, "objective", None), "label_distance", None)
            self.distance = own if isinstance(own, LabelDistance) else GaussianLabelDistance()
        datamodule = getattr(trainer, "datamodule", None)
        self._pseudo = isinstance(datamodule, FlowDataModule) and isinstance(datamodule.source_spec, PseudoLabeled)
        self._oracle = next((cb for cb in trainer.callbacks if isinstance(cb, OracleScorer)), None)  # type: ignore[attr-defined]
        if self.labels == "oracle" and self._oracle is None:
            raise ValueError("DatasetExport: labels 'oracle' need an OracleScorer among trainer.callbacks")

    # ------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0 and 0 in self.steps:
            self._export(trainer, as_flow(pl_module, "DatasetExport"), "flowed_step000000")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step in self.steps:
            self._export(trainer, as_flow(pl_module, "DatasetExport"), f"flowed_step{step:06d}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._export(trainer, as_flow(pl_module, "DatasetExport"), "flowed")

    # ------------------------------------------------------------ outputs
    def _export(self, trainer: L.Trainer, flow: FlowLike, stem: str) -> None:
        if not trainer.is_global_zero:
            return
        oracle = self._oracle.oracle if self._oracle is not None else None
        labels = particle_labels(flow, self.distance, self._pseudo, oracle)
        key, chosen, c = labels.pick(self.labels)
        run_dir = Path(trainer.default_root_dir)
        x = particle_features(flow).reshape(-1, *flow.particles.feature_shape)  # (n, c, h, w)
        folder = run_dir / stem if self.image_folder else None
        out = export_images(run_dir / f"{stem}.npz", x, chosen, key, labels.arrays(), self.class_names, c, folder)
        figure = None
        if self.figure_per_label:
            figure = export_figure(x, chosen, run_dir / f"{stem}.png", trainer.global_step, self.figure_per_label, self.seed,
                                   self.class_names, f"{stem}.npz by label ({key})")
        self.exports.append(out)
        self.last_labels = labels
        self._record(run_dir, out, trainer.global_step, sorted(labels.arrays()), figure)

    def _record(self, run_dir: Path, out: Export, step: int, arrays: list[str], figure: Path | None) -> None:
        """Add this export to ``export.json`` (records of earlier runs of the same run directory kept)."""
        path = run_dir / "export.json"
        records = _read_records(path)
        record = {"file": out.path.name, "step": step, "count": out.count, "clipped": out.clipped,
                  "clipped_visibly": out.clipped_visibly, "max_outside": out.max_outside,
                  "labels": out.label_key, "arrays": arrays,
                  "folder": out.folder.name if out.folder is not None else None,
                  "figure": figure.name if figure is not None else None}
        records = [r for r in records if r.get("file") != record["file"]] + [record]
        write_json(path, {"exports": records})


def _read_records(path: Path) -> list[dict]:
    import json

    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("exports", []))


def export_figure(x: Tensor, labels: Tensor, path: str | Path, step: int, per_label: int = 8, seed: int = 0,
                  class_names: list[str] | None = None, title: str = "") -> Path:
    """A grid of up to ``per_label`` samples of each label of x (n, c, h, w) with labels (n,) at flow ``step``: one
    row per label (:func:`~dsflow.callbacks.flow_figures.image_flow_figure`, one panel), pixels clipped to [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    y = labels.cpu()
    picks = [members[torch.randperm(members.numel(), generator=gen)[:per_label]]
             for members in (torch.nonzero(y == k).flatten() for k in torch.unique(y))]
    idx = torch.cat(picks)  # (k,) class by class
    return image_flow_figure([(step, x[idx].detach().cpu())], y[idx], path, class_names=class_names, title=title)
