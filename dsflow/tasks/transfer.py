"""Transfer learning with flows (paper section 7.2, appendix C): the pieces the transfer runner composes (its
LeNet-5s are ``train.py`` runs of ``configs/train/transfer/``, on sets in :class:`~dsflow.data.TensorFiles`).

* :func:`accuracy`: a classifier's accuracy on a test split;
* :func:`class_map`: which target class each source class became, read from the label distances between the
  flowed particles and the target (an exact OT plan between the class histograms; section 6.4), for source and
  target label sets that differ;
* :func:`landing_labels`: the label of the target sample each flowed particle ended on (for label sets that
  differ, where a source class may split over several target classes);
* :func:`landing_report`: where flowed particles sit relative to the target samples (how close to the nearest
  one, how many target samples they cover, how many sit on a target sample of another class).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dsflow.ot.labels.coupling import label_coupling
from dsflow.ot.labels.label_distance import LabelDistance
from dsflow.ot.labels.stats import class_counts

__all__ = ["accuracy", "class_map", "landing_labels", "landing_report"]


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Accuracy (%) of ``net`` on x (n, ...) against labels y (n,)."""
    net.eval()
    pred = torch.cat([net(b).argmax(-1) for b in x.split(batch_size)])
    return 100.0 * float((pred == y).double().mean())


def class_map(x: Tensor, y: Tensor, c: int, x_ref: Tensor, y_ref: Tensor, c_ref: int, distance: LabelDistance) -> Tensor:
    """(c,) the target class of each source class: the largest entry of its row of the class coupling.

    Args:
        x, y: the flowed particles (n, d) and their (source) labels (n,) in c classes.
        x_ref, y_ref: the target samples (m, d) and labels (m,) in c_ref classes.
    """
    flat, flat_ref = x.reshape(x.shape[0], -1), x_ref.reshape(x_ref.shape[0], -1)  # (n, d), (m, d)
    cost = distance(flat, y, c, flat_ref, y_ref, c_ref)  # (c, c_ref)
    plan = label_coupling(cost, class_counts(y, c).double(), class_counts(y_ref, c_ref).double())
    return plan.argmax(1)


def _nearest(x: Tensor, x_ref: Tensor, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Distance (n,) from each x (n, ...) to its nearest x_ref (m, ...), and that sample's index (n,)."""
    flat_ref = x_ref.reshape(x_ref.shape[0], -1)  # (m, d)
    parts = [torch.cdist(b.reshape(b.shape[0], -1), flat_ref).min(1) for b in x.split(batch_size)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def landing_labels(x: Tensor, x_ref: Tensor, y_ref: Tensor, batch_size: int = 1024) -> Tensor:
    """(n,) label of the nearest target sample (Euclidean) to each final particle x (n, ...); x_ref (m, ...), y_ref (m,).

    Entropic OTDD flows onto a small target end with particles on (near copies of) target samples, so the
    nearest target label says which target class each particle was transported to.
    """
    return y_ref[_nearest(x, x_ref, batch_size)[1]]


@torch.no_grad()
def landing_report(x: Tensor, y: Tensor | None, x_ref: Tensor, y_ref: Tensor) -> dict[str, float]:
    """Where particles x (n, ...) sit relative to target samples x_ref (m, ...) with labels y_ref (m,), m >= 2.

    Returns (Euclidean distances in the data's own units):
        ``nearest``: mean distance from a particle to its nearest target sample;
        ``spacing``: mean distance from a target sample to its nearest other target sample (the scale of
            "near": a particle much closer than this to a target sample is a near copy of it);
        ``covered``: fraction of the target samples that are the nearest one of at least one particle;
        ``off_class``: fraction of particles whose nearest target sample has another label than the particle's
            own label y (n,), when y is given in the target's classes (NaN otherwise).
    """
    if x_ref.shape[0] < 2:
        raise ValueError(f"landing_report: need at least 2 target samples, got {x_ref.shape[0]}")
    dist, idx = _nearest(x, x_ref)
    flat_ref = x_ref.reshape(x_ref.shape[0], -1)  # (m, d)
    own = torch.cdist(flat_ref, flat_ref)  # (m, m)
    own.fill_diagonal_(float("inf"))
    off = float((y_ref[idx] != y).double().mean()) if y is not None else float("nan")
    return {"nearest": float(dist.mean()), "spacing": float(own.min(1).values.mean()),
            "covered": float(idx.unique().numel() / x_ref.shape[0]), "off_class": off}
