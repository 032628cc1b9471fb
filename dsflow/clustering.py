"""The one k-means and the one Hungarian matching of dsflow, shared by pseudo-labels and jd-vl label recovery.

Two parts of dsflow cluster points, under two contracts that cannot share one signature:

* pseudo-labels (paper section 6.3): a :class:`~dsflow.data.pseudo.Clusterer` maps (n, p) points to k clusters,
  ``clusterer(z, k, seed)``; k (the number of classes) and the seed come from the caller. New clustering
  algorithms for unlabeled datasets subclass ``Clusterer``.
* jd-vl label recovery (paper section 6.1, Algorithm 3): a :class:`~dsflow.flows.LabelRecovery` re-derives the
  discrete labels of a flow from its per-particle label Gaussians, ``recovery(points)``; the number of classes may
  follow the data (DBSCAN), so the configured object, not the caller, decides it.

Both reach sklearn's ``KMeans`` only through :func:`kmeans` and scipy's Hungarian solver only through
:func:`match_clusters` (on a :func:`contingency` table): scoring pseudo-labels against true labels
(``hungarian_alignment``) and keeping jd-vl label ids stable from one clustering to the next (``match_labels``)
are the same matching. This module imports neither ``dsflow.data`` nor ``dsflow.flows``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import Tensor

__all__ = ["KMeansFit", "kmeans", "points_array", "contingency", "ClusterMatching", "match_clusters"]


def points_array(points: Tensor, who: str) -> np.ndarray:
    """(n, p) float64 numpy copy of the points (n, p), after checking their shape (n >= 1)."""
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{who}: points must be (n, p) with n >= 1, got shape {tuple(points.shape)}")
    return points.detach().cpu().double().numpy()


@dataclass(frozen=True)
class KMeansFit:
    """A k-means result: ``labels`` (n,) int64 in [0, k) and ``centres`` (k, p)."""

    labels: np.ndarray
    centres: np.ndarray


def kmeans(points: np.ndarray, k: int, n_init: int = 10, seed: int = 0) -> KMeansFit:
    """k-means of the points (n, p): Lloyd's iterations from ``n_init`` k-means++ starts, the lowest within-cluster
    sum of squares wins (sklearn's ``KMeans``). ``seed`` is its ``random_state``: the same points, k, n_init and
    seed give the same labels, in sklearn's order (callers that need a canonical order relabel them)."""
    if points.ndim != 2 or not 1 <= k <= points.shape[0]:
        raise ValueError(f"kmeans: need points (n, p) and 1 <= k <= n, got shape {points.shape} and k={k}")
    if n_init < 1:
        raise ValueError(f"kmeans: n_init must be >= 1, got {n_init}")
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(points)
    return KMeansFit(model.labels_.astype(np.int64), model.cluster_centers_)


def contingency(a: Tensor, b: Tensor, num_a: int, num_b: int, who: str = "contingency") -> Tensor:
    """(num_a, num_b) int64 counts[i, j] = #{points labelled i by ``a`` and j by ``b``}.

    Args:
        a: (n,) labels in [0, num_a).
        b: (n,) labels in [0, num_b), of the same points.
    """
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{who}: need two (n,) label vectors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.long().cpu(), b.long().cpu()
    for labels, num in ((a, num_a), (b, num_b)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num):
            raise ValueError(f"{who}: labels must lie in [0, {num}), got [{int(labels.min())}, {int(labels.max())}]")
    counts = torch.zeros(num_a, num_b, dtype=torch.long)
    counts.index_put_((a, b), torch.ones_like(a), accumulate=True)  # (num_a, num_b)
    return counts


@dataclass(frozen=True)
class ClusterMatching:
    """A one-to-one matching: row ``rows[j]`` goes with column ``cols[j]``; both (m,) int64, m = min(rows, cols)."""

    rows: Tensor
    cols: Tensor


def match_clusters(counts: Tensor) -> ClusterMatching:
    """The one-to-one matching of the rows of ``counts`` (r, c) to its columns of largest total count (the
    Hungarian method, Kuhn 1955; scipy's ``linear_sum_assignment``). Rows are sorted; with r > c, r - c rows stay
    unmatched, with r < c, c - r columns."""
    if counts.ndim != 2:
        raise ValueError(f"match_clusters: counts must be (r, c), got shape {tuple(counts.shape)}")
    rows, cols = linear_sum_assignment(counts.cpu().numpy(), maximize=True)
    return ClusterMatching(torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
