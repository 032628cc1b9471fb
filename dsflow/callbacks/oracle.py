"""OracleScorer: classify the particles with a frozen oracle along the flow (paper Fig. 5, 6, 11).

Every ``every_n_steps`` steps (and before the first and after the last), the current particles are classified by
a frozen oracle and the accuracy against their true labels is logged as ``oracle/acc`` next to
``oracle/objective``; image particles also get a fixed grid (the same particles, a few per class) as
``flow/particles``. Files in the run directory: ``oracle/history.json`` (step, objective, accuracy),
``oracle/grid_step_{t:06d}.png`` and, at the end of the flow, three figures (also logged to W&B as
``figures/*``): ``oracle/flow_grid.png`` (paper Fig. 5: the grid's particles at every scored step, one row per
class, titled with step and accuracy), ``oracle/curves.png`` (Fig. 6: accuracy and objective against the step) and
``oracle/trajectories.png`` (Fig. 3: the paths of up to 30 particles per class in the principal plane of source
and reference); see :mod:`dsflow.callbacks.flow_figures`.

Scoring (:func:`score`): the oracle's C-class probabilities, mapped to the flow's C' labels by a
:class:`~dsflow.ot.labels.CouplingHead` when ``coupling`` is set (the plan between the particles' classes and the
reference classes for the flow's own label distances; never a mapping read off true labels). For flows on k-means
pseudo-labels (:class:`~dsflow.data.PseudoLabeled`), the predicted cluster is mapped to a true label by the
Hungarian alignment of clusters to true labels: for scoring only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from dsflow.callbacks.flow_figures import image_flow_figure, score_curves_figure, trajectory_figure
from dsflow.data.pair import FlowDataModule
from dsflow.data.pseudo import PseudoLabeled, hungarian_alignment
from dsflow.flows.interface import FlowLike, as_flow, particle_features
from dsflow.io import write_json
from dsflow.ot.labels.coupling import CouplingHead, label_coupling
from dsflow.ot.labels.label_distance import GaussianLabelDistance, LabelDistance
from dsflow.ot.labels.stats import class_counts
from dsflow.tasks.oracle import Oracle, load_oracle

__all__ = ["OracleScorer", "score", "coupling_head", "label_plan"]


def label_plan(x: Tensor, y: Tensor, c: int, x_ref: Tensor, y_ref: Tensor, c_ref: int, distance: LabelDistance) -> Tensor:
    """(C', C) the class coupling (an OT plan on the host) between the classes of (x (n, d), y (n,)) and
    (x_ref (m, d), y_ref (m,)) for the label distances; rows of classes absent from y are zero."""
    cost = distance(x, y, c, x_ref, y_ref, c_ref)  # (C', C)
    return label_coupling(cost, class_counts(y, c).double(), class_counts(y_ref, c_ref).double())  # (C', C), host


def coupling_head(x: Tensor, y: Tensor, c: int, x_ref: Tensor, y_ref: Tensor, c_ref: int, distance: LabelDistance) -> CouplingHead:
    """The coupling layer (C', C) between the classes of (x (n, d), y (n,)) and (x_ref (m, d), y_ref (m,))."""
    return CouplingHead(label_plan(x, y, c, x_ref, y_ref, c_ref, distance)).to(x.device)


def score(oracle: Oracle, x: Tensor, true: Tensor, head: CouplingHead | None = None, alignment: Tensor | None = None) -> float:
    """Accuracy (%) of the oracle on x (n, ...) against true labels (n,).

    Args:
        head: maps the oracle's probabilities to the flow's label set (None: predictions are compared as they are).
        alignment: (k,) true label of each flow label (pseudo-label), applied after ``head``.
    """
    probs = oracle.probs(x)  # (n, C)
    if head is not None:
        probs = head(probs)  # (n, C')
    pred = probs.argmax(-1)
    if alignment is not None:
        pred = alignment[pred]
    return 100.0 * float((pred == true.to(pred.device)).double().mean())  # one host read


class OracleScorer(L.Callback):
    """Scores the particles with a frozen oracle every k steps and logs a grid of particle images.

    Args:
        checkpoint: oracle checkpoint written by ``train.py`` (:class:`~dsflow.tasks.Classifier`).
        every_n_steps: scoring interval k (0: before and after the flow only).
        coupling: score through the coupling layer derived from label distances (label sets that differ, or
            whose correspondence is unknown); otherwise oracle classes must be the particles' true classes.
        label_distance: label distance of the coupling (default: Gaussian, full covariances).
        images_per_class: particles per class in the image grid (0: no grid).
        seed: which particles the grid shows.
    """

    def __init__(self, checkpoint: str, every_n_steps: int = 10, coupling: bool = False,
                 label_distance: LabelDistance | None = None, images_per_class: int = 4, seed: int = 0) -> None:
        if every_n_steps < 0 or images_per_class < 0:
            raise ValueError(f"OracleScorer: every_n_steps and images_per_class must be >= 0, got {every_n_steps}, {images_per_class}")
        self.checkpoint, self.every_n_steps, self.coupling = checkpoint, every_n_steps, coupling
        self.label_distance = label_distance or GaussianLabelDistance()
        self.images_per_class, self.seed = images_per_class, seed
        self.history: list[dict[str, float]] = []
        self.oracle: Oracle | None = None
        self._true: Tensor | None = None
        self._alignment: Tensor | None = None
        self.cluster_accuracy: float | None = None  # pseudo-labeled sources: the clusters' own accuracy (%)
        self._grid_idx: Tensor | None = None
        self._path_idx: Tensor | None = None
        self._frames: list[tuple[int, Tensor]] = []  # (step, grid particles (k, c, h, w)) for the Fig. 5 grid
        self._paths: list[tuple[int, Tensor]] = []  # (step, path particles (k', d)) for the Fig. 3 paths

    # ------------------------------------------------------------ set-up and validation (before the first step)
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.oracle = load_oracle(self.checkpoint)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flow = as_flow(pl_module, "OracleScorer")
        oracle, p, ref = self.oracle, flow.particles, flow.reference
        if oracle is None:
            raise RuntimeError("OracleScorer: no oracle loaded (setup() runs before on_fit_start)")
        oracle.check_input(p.feature_shape)
        oracle.to(pl_module.device)  # scores where the particles are: no copy of them to the host
        # where the true labels of a pseudo-labeled source are kept (Trainer.datamodule: set by Lightning, undeclared)
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        spec = datamodule.source_spec if isinstance(datamodule, FlowDataModule) else None
        true, c_true = (spec.scoring_labels() if isinstance(spec, PseudoLabeled) else (p.y, p.num_classes))
        self._true = true.to(pl_module.device)
        if isinstance(spec, PseudoLabeled):
            if not self.coupling and oracle.num_classes != c_true:
                raise ValueError(f"OracleScorer: oracle has {oracle.num_classes} classes, the data {c_true}; set coupling: true")
            aligned = hungarian_alignment(p.y.cpu(), true.cpu(), p.num_classes, c_true)
            self._alignment = aligned.to(pl_module.device) if self.coupling else None
            # what the pseudo-labels alone score (the same alignment): the flow moves clusters, so this bounds it
            self.cluster_accuracy = 100.0 * float((aligned[p.y.cpu()] == true.cpu()).double().mean())
            for logger in trainer.loggers:
                logger.log_metrics({"oracle/cluster_acc": self.cluster_accuracy}, step=0)
        elif self.coupling and oracle.num_classes != ref.num_classes:
            raise ValueError(f"OracleScorer: the coupling maps reference classes, but the oracle has {oracle.num_classes} classes and the reference {ref.num_classes}")
        elif not self.coupling and oracle.num_classes != p.num_classes:
            raise ValueError(f"OracleScorer: oracle has {oracle.num_classes} classes but the particles {p.num_classes}; set coupling: true")
        self._grid_idx = _grid_indices(p.y.cpu(), p.num_classes, self.images_per_class, self.seed) if len(p.feature_shape) == 3 else None
        self._path_idx = _grid_indices(p.y.cpu(), p.num_classes, 30, self.seed + 1)
        self._frames, self._paths = [], []

    # ------------------------------------------------------------ scoring
    def current(self, flow: FlowLike) -> float:
        """Accuracy (%) of the oracle on the flow's current particles."""
        if self.oracle is None or self._true is None:
            raise RuntimeError("OracleScorer.current: called before on_fit_start loaded the oracle and the true labels")
        p, ref = flow.particles, flow.reference
        x = particle_features(flow)
        head = None
        if self.coupling:
            head = coupling_head(x, p.y, p.num_classes, ref.x, ref.y, ref.num_classes, self.label_distance)
        return score(self.oracle, x, self._true, head, self._alignment)

    def _record(self, trainer: L.Trainer, flow: FlowLike) -> None:
        step = trainer.global_step
        if self.history and self.history[-1]["step"] == step:
            return
        acc = self.current(flow)
        loss = flow.last_loss
        objective = float(loss.total) if loss is not None and step > 0 else float("nan")
        self.history.append({"step": step, "objective": objective, "accuracy": acc})
        for logger in trainer.loggers:
            metrics = {"oracle/acc": acc} | ({"oracle/objective": objective} if step > 0 else {})
            logger.log_metrics(metrics, step=step)
        x = particle_features(flow)
        if self._path_idx is not None:
            self._paths.append((step, x[self._path_idx].reshape(self._path_idx.numel(), -1).cpu().clone()))
        if self._grid_idx is not None:
            frame = x[self._grid_idx].reshape(-1, *flow.particles.feature_shape).cpu().clone()  # (k C, c, h, w)
            self._frames.append((step, frame))
            if trainer.is_global_zero:
                self._grid(trainer, frame, step)

    def _grid(self, trainer: L.Trainer, frame: Tensor, step: int) -> None:
        """Save (and log) the grid particles (k C, c, h, w) of this step as one image."""
        imgs = frame.clamp(0, 1)
        path = Path(trainer.default_root_dir) / "oracle" / f"grid_step_{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(imgs, nrow=max(self.images_per_class, 1), padding=1), path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="flow/particles", images=[str(path)], step=step, caption=[f"step {step}"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, as_flow(pl_module, "OracleScorer"))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        k = self.every_n_steps
        if k and trainer.global_step % k == 0:
            self._record(trainer, as_flow(pl_module, "OracleScorer"))
        if self.history:  # the latest accuracy in the progress bar's postfix, next to the objective
            pl_module.log("oracle_acc", self.history[-1]["accuracy"], prog_bar=True, logger=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flow = as_flow(pl_module, "OracleScorer")
        self._record(trainer, flow)
        if trainer.is_global_zero:
            write_json(Path(trainer.default_root_dir) / "oracle" / "history.json", self.history)
            if self.cluster_accuracy is not None:
                write_json(Path(trainer.default_root_dir) / "oracle" / "clusters.json",
                           {"accuracy": self.cluster_accuracy, "num_clusters": int(flow.particles.num_classes)})
            self._figures(trainer, flow)

    def _figures(self, trainer: L.Trainer, flow: FlowLike) -> None:
        """Write (and log to W&B) the Fig. 5 grid, the Fig. 6 curves and the Fig. 3 paths of this flow."""
        out, p, ref = Path(trainer.default_root_dir) / "oracle", flow.particles, flow.reference
        acc = {int(h["step"]): h["accuracy"] for h in self.history}
        kind = "cluster" if self._alignment is not None else "class"
        figures = {"curves": score_curves_figure(self.history, out / "curves.png")}
        if self._grid_idx is not None and self._frames:
            figures["flow_grid"] = image_flow_figure(
                self._frames, p.y.cpu()[self._grid_idx], out / "flow_grid.png", acc,
                title=f"the same particles along the flow (rows: {kind})")
        if self._path_idx is not None and len(self._paths) > 1:
            keep = torch.randperm(ref.x.shape[0], generator=torch.Generator().manual_seed(self.seed))[:500]
            reference = (ref.x[keep].reshape(keep.numel(), -1).cpu().numpy(), ref.y[keep].cpu().numpy())
            figures["trajectories"] = trajectory_figure(
                [(s, x.numpy()) for s, x in self._paths], p.y.cpu()[self._path_idx].numpy(), reference,
                out / "trajectories.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name, path in figures.items():
                    logger.log_image(key=f"figures/{name}", images=[str(path)], step=trainer.global_step)


def _grid_indices(y: Tensor, c: int, per_class: int, seed: int) -> Tensor | None:
    """(<= per_class * C,) fixed particle indices, ``per_class`` of each class in class order."""
    if per_class == 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for k in range(c):
        members = torch.nonzero(y == k).flatten()
        picks.append(members[torch.randperm(members.numel(), generator=gen)[:per_class]])
    return torch.cat(picks)
