"""Transfer learning with flows (paper section 7.2, appendix C): the pieces the transfer runner composes.

* :func:`train_lenet`: a LeNet-5 trained on tensors (Adam 1e-3, weight decay 1e-6, as appendix C), optionally
  starting from given weights (the fine-tuning baseline);
* :func:`accuracy`: its accuracy on a test split;
* :func:`class_map`: which target class each source class became, read from the label distances between the
  flowed particles and the target (an exact OT plan between the class histograms; section 6.4), for source and
  target label sets that differ;
* :func:`landing_labels`: the label of the target sample each flowed particle ended on (for label sets that
  differ, where a source class may split over several target classes);
* :func:`augmented`: target data with extra (flowed) samples appended.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from dsflow.models.lenet import LeNet5
from dsflow.ot.coupling import label_coupling
from dsflow.ot.label_distance import LabelDistance
from dsflow.ot.stats import class_counts
from dsflow.tasks.classifier import Classifier

__all__ = ["train_lenet", "accuracy", "class_map", "landing_labels", "augmented"]


def train_lenet(x: Tensor, y: Tensor, num_classes: int, epochs: int = 20, seed: int = 0, batch_size: int = 64,
                init: nn.Module | None = None, lr: float = 1e-3, weight_decay: float = 1e-6) -> nn.Module:
    """A LeNet-5 fitted on x (n, c, s, s), y (n,); a copy of ``init`` is fine-tuned when given.

    Returns the network in eval mode (on the CPU).
    """
    if x.shape[0] != y.shape[0] or x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"train_lenet: need square images (n, c, s, s) and n labels, got {tuple(x.shape)}, {tuple(y.shape)}")
    if epochs < 1:
        raise ValueError(f"train_lenet: epochs must be >= 1, got {epochs}")
    L.seed_everything(seed, verbose=False)
    net = LeNet5(x.shape[1], num_classes, x.shape[-1])
    if init is not None:
        net.load_state_dict(init.state_dict())
    model = Classifier(net, partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay))
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, train_dataloaders=loader)
    return net.eval()


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


def landing_labels(x: Tensor, x_ref: Tensor, y_ref: Tensor, batch_size: int = 1024) -> Tensor:
    """(n,) label of the nearest target sample (Euclidean) to each final particle x (n, ...); x_ref (m, ...), y_ref (m,).

    Entropic OTDD flows onto a small target end with particles on (near copies of) target samples, so the
    nearest target label says which target class each particle was transported to.
    """
    flat_ref = x_ref.reshape(x_ref.shape[0], -1)  # (m, d)
    near = [torch.cdist(b.reshape(b.shape[0], -1), flat_ref).argmin(1) for b in x.split(batch_size)]  # (b,) each
    return y_ref[torch.cat(near)]


def augmented(x: Tensor, y: Tensor, extra: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """(x, y) with every (x_extra (k, ...), y_extra (k,)) of ``extra`` appended."""
    xs, ys = [x, *(e[0] for e in extra)], [y, *(e[1] for e in extra)]
    for xe in xs[1:]:
        if xe.shape[1:] != x.shape[1:]:
            raise ValueError(f"augmented: extra samples of shape {tuple(xe.shape[1:])} do not match {tuple(x.shape[1:])}")
    return torch.cat(xs), torch.cat(ys)
