"""Unlabeled datasets (paper section 6.3): k-means pseudo-labels drive the flow; true labels only score it.

:class:`PseudoLabeled` wraps any source: it clusters the features (k-means, k = the source's number of classes)
and hands the flow the cluster indices as labels. The true labels are kept apart (:meth:`scoring_labels`) for
evaluation only; :func:`hungarian_alignment` maps pseudo-labels to true labels for that scoring.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import Tensor

from dsflow.data.base import DatasetSource, LabeledData

__all__ = ["PseudoLabeled", "kmeans_labels", "hungarian_alignment"]


def kmeans_labels(x: Tensor, k: int, seed: int = 0, n_init: int = 10) -> Tensor:
    """(n,) k-means cluster indices of the features x (n, ...), relabelled by cluster size (largest first)."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"kmeans_labels: need 1 <= k <= n, got k={k}, n={x.shape[0]}")
    flat = x.reshape(x.shape[0], -1).double().cpu().numpy()
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(flat)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return torch.from_numpy(rank[labels])


def hungarian_alignment(pseudo: Tensor, true: Tensor, k: int, num_true: int) -> Tensor:
    """(k,) the true label assigned to each pseudo-label, maximising agreement (Hungarian method).

    Args:
        pseudo: (n,) pseudo-labels in [0, k).
        true: (n,) true labels in [0, num_true).
    With k > num_true, unmatched clusters take their majority true label.
    """
    if pseudo.shape != true.shape:
        raise ValueError(f"hungarian_alignment: shapes {tuple(pseudo.shape)} and {tuple(true.shape)} differ")
    counts = torch.zeros(k, num_true, dtype=torch.long)
    counts.index_put_((pseudo.long().cpu(), true.long().cpu()), torch.ones_like(pseudo, dtype=torch.long).cpu(), accumulate=True)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    mapping = counts.argmax(1)  # (k,) majority label, used for clusters left unmatched
    mapping[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return mapping


class PseudoLabeled(DatasetSource):
    """A source whose labels are replaced by k-means clusters of its features.

    Args:
        source: the dataset (its labels are never given to the flow).
        num_clusters: k (default: the source's number of classes).
        seed: k-means seed.
        n_init: k-means restarts.
    """

    def __init__(self, source: DatasetSource, num_clusters: int | None = None, seed: int = 0, n_init: int = 10) -> None:
        self.source = source
        self.num_clusters = num_clusters
        self.seed = seed
        self.n_init = n_init
        self._true: Tensor | None = None
        self._num_true = 0

    def load(self) -> LabeledData:
        data = self.source.load()
        k = self.num_clusters or data.num_classes
        pseudo = kmeans_labels(data.x, k, self.seed, self.n_init)
        self._true, self._num_true = data.y.clone(), data.num_classes
        return LabeledData(data.x, pseudo, k, f"{data.name} (k-means pseudo-labels)")

    def scoring_labels(self) -> tuple[Tensor, int]:
        """(n,) the true labels and their class count: for evaluation only, never for the flow."""
        if self._true is None:
            raise ValueError("PseudoLabeled: load() has not run yet")
        return self._true, self._num_true
