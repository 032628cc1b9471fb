"""Clusterers: (n, p) float64 points -> (n,) cluster indices in [0, k), relabelled by cluster size (largest first).

* :class:`KMeansClusterer`: k-means (Lloyd, k-means++ starts), the paper's choice (section 6.3).
* :class:`GaussianMixtureClusterer`: a Gaussian mixture by EM (clusters of different shapes and spreads).
* :class:`SpectralClusterer`: spectral clustering of the symmetrised kNN graph (Ng, Jordan & Weiss 2001;
  labels assigned by the deterministic QR rotation of Damle et al. 2019).
* :class:`AgglomerativeClusterer`: Ward agglomeration restricted to merges along kNN-graph edges (follows
  elongated classes that Ward alone would cut).

Ensembles (over-clustering with a label-free merge, co-association consensus) are in
:mod:`~dsflow.data.pseudo.ensembles`. A new clustering algorithm for pseudo-labels subclasses :class:`Clusterer`;
jd-vl's label recovery during a flow is another protocol (:class:`~dsflow.flows.LabelRecovery`, called with the
points alone). Both use the one k-means wrapper of :mod:`dsflow.clustering`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import kneighbors_graph
from torch import Tensor

from dsflow.clustering import kmeans, points_array
from dsflow.data.pseudo.embeddings import class_neighbors

__all__ = [
    "Clusterer", "KMeansClusterer", "GaussianMixtureClusterer", "SpectralClusterer", "AgglomerativeClusterer",
    "relabel_by_size", "check_points",
]


def relabel_by_size(labels: np.ndarray, k: int) -> Tensor:
    """(n,) int64 labels renumbered so that cluster 0 is the largest (ties by index): a canonical order."""
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return torch.from_numpy(rank[np.asarray(labels, dtype=np.int64)])


def check_points(z: Tensor, k: int, who: str) -> np.ndarray:
    """(n, p) float64 numpy copy of the points z (n, p), after checking 1 <= k <= n."""
    pts = points_array(z, who)
    if not 1 <= k <= pts.shape[0]:
        raise ValueError(f"{who}: need 1 <= k <= n, got k={k}, n={pts.shape[0]}")
    return pts


class Clusterer(ABC):
    """(n, p) points -> (n,) int64 cluster indices in [0, k), never reading any label."""

    @abstractmethod
    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        """(n,) indices of k clusters of the points z (n, p)."""

    def restrict(self, z: Tensor, labels: Tensor, subset: Tensor, k: int) -> Tensor:
        """(m,) the clusters of the points ``z[subset]`` given the clustering ``labels`` (N,) of all points z (N, p)
        (fit on more data than is flowed): here the labels as they are."""
        return labels[subset]


class KMeansClusterer(Clusterer):
    """k-means with ``n_init`` k-means++ restarts (the lowest within-cluster sum of squares wins)."""

    def __init__(self, n_init: int = 10) -> None:
        if n_init < 1:
            raise ValueError(f"KMeansClusterer: n_init must be >= 1, got {n_init}")
        self.n_init = n_init

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        pts = check_points(z, k, "KMeansClusterer")
        return relabel_by_size(kmeans(pts, k, self.n_init, seed).labels, k)


class GaussianMixtureClusterer(Clusterer):
    """Gaussian mixture fitted by EM from k-means starts; each point goes to its most probable component.

    Args:
        covariance: sklearn's ``covariance_type`` (full: one covariance per component).
        n_init: EM restarts (the highest likelihood wins).
        reg: added to covariance diagonals (keeps collapsed components invertible).
    """

    def __init__(self, covariance: Literal["full", "tied", "diag", "spherical"] = "full", n_init: int = 3,
                 reg: float = 1e-6) -> None:
        if n_init < 1 or reg < 0:
            raise ValueError(f"GaussianMixtureClusterer: need n_init >= 1 and reg >= 0, got {n_init}, {reg}")
        self.covariance, self.n_init, self.reg = covariance, n_init, reg

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        pts = check_points(z, k, "GaussianMixtureClusterer")
        gmm = GaussianMixture(k, covariance_type=self.covariance, n_init=self.n_init, reg_covar=self.reg, random_state=seed)
        return relabel_by_size(gmm.fit(pts).predict(pts), k)


class SpectralClusterer(Clusterer):
    """Spectral clustering of the symmetrised kNN graph of the points.

    Args:
        neighbors: kNN graph size (None: ``neighbor_scale * sqrt(n / k)``, see :func:`class_neighbors`).
        neighbor_scale: factor of the derived neighbour count.
    """

    def __init__(self, neighbors: int | None = None, neighbor_scale: float = 1.0) -> None:
        if neighbor_scale <= 0:
            raise ValueError(f"SpectralClusterer: neighbor_scale must be > 0, got {neighbor_scale}")
        self.neighbors, self.neighbor_scale = neighbors, neighbor_scale

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        pts = check_points(z, k, "SpectralClusterer")
        nn = class_neighbors(pts.shape[0], k, self.neighbor_scale, self.neighbors)
        sc = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=nn, assign_labels="cluster_qr", random_state=seed)
        return relabel_by_size(sc.fit_predict(pts), k)


class AgglomerativeClusterer(Clusterer):
    """Agglomerative clustering (Ward by default) whose merges follow the kNN graph of the points.

    Args:
        linkage: sklearn's linkage (ward: least increase of within-cluster variance).
        neighbors: kNN connectivity size (None: ``neighbor_scale * sqrt(n / k)``).
        neighbor_scale: factor of the derived neighbour count.
    """

    def __init__(self, linkage: Literal["ward", "average", "complete", "single"] = "ward", neighbors: int | None = None,
                 neighbor_scale: float = 1.0) -> None:
        if neighbor_scale <= 0:
            raise ValueError(f"AgglomerativeClusterer: neighbor_scale must be > 0, got {neighbor_scale}")
        self.linkage, self.neighbors, self.neighbor_scale = linkage, neighbors, neighbor_scale

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        pts = check_points(z, k, "AgglomerativeClusterer")
        nn = class_neighbors(pts.shape[0], k, self.neighbor_scale, self.neighbors)
        graph = kneighbors_graph(pts, nn, include_self=False)
        model = AgglomerativeClustering(k, linkage=self.linkage, connectivity=graph)
        return relabel_by_size(model.fit_predict(pts), k)
