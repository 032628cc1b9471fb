"""Clusterers built from other clusterers: over-clustering merged along the kNN graph, and co-association consensus.

* :class:`OverClusterMerge`: a class written in several styles is several clusters; cluster into
  m = factor * k fine clusters, then merge them to k along the kNN graph: repeatedly join the two groups a, b of
  largest average connectivity E(a, b) / (|a| |b|), with E(a, b) the number of kNN edges between them (average
  linkage on the graph; no label is read).
* :class:`ConsensusClusterer`: evidence accumulation (Fred & Jain 2005): the co-association
  S_ij = P(i, j in one cluster) over ``runs`` clusterings of random subsamples, then average-linkage on 1 - S.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import AgglomerativeClustering
from sklearn.neighbors import kneighbors_graph
from torch import Tensor

from dsflow.data.pseudo.clusterers import Clusterer, KMeansClusterer, check_points, relabel_by_size
from dsflow.data.pseudo.embeddings import class_neighbors

__all__ = ["OverClusterMerge", "ConsensusClusterer", "merge_by_connectivity"]


def merge_by_connectivity(fine: np.ndarray, graph: sp.spmatrix, k: int) -> np.ndarray:
    """(n,) labels in [0, k): the fine clusters (n,) in [0, m) merged greedily by average kNN-graph connectivity.

    Args:
        fine: (n,) fine cluster index of each point.
        graph: (n, n) kNN adjacency (symmetrised here).
    """
    m = int(fine.max()) + 1
    onehot = sp.csr_matrix((np.ones_like(fine, dtype=np.float64), (np.arange(fine.size), fine)), shape=(fine.size, m))
    adj = graph + graph.T
    edges = np.asarray((onehot.T @ adj @ onehot).todense())  # (m, m) kNN edges between fine clusters
    sizes = np.bincount(fine, minlength=m).astype(np.float64)  # (m,)
    group = np.arange(m)  # group of each fine cluster
    alive = sizes > 0
    while alive.sum() > k:
        score = edges / np.outer(sizes, sizes).clip(min=1.0)  # (m, m) average connectivity
        np.fill_diagonal(score, -np.inf)
        score[~alive] = score[:, ~alive] = -np.inf
        a, b = np.unravel_index(np.argmax(score), score.shape)
        edges[a] += edges[b]
        edges[:, a] += edges[:, b]
        sizes[a] += sizes[b]
        alive[b], sizes[b] = False, 0.0
        edges[b] = edges[:, b] = 0.0
        group[group == b] = a
    _, merged = np.unique(group[fine], return_inverse=True)
    return merged


class OverClusterMerge(Clusterer):
    """``factor * k`` clusters by ``base``, merged to k by average kNN-graph connectivity.

    Args:
        factor: over-clustering factor (3: room for about three styles per class).
        base: the clusterer of the fine clusters (default k-means).
        neighbors: kNN graph size (None: ``neighbor_scale * sqrt(n / k)``).
        neighbor_scale: factor of the derived neighbour count.
    """

    def __init__(self, factor: int = 3, base: Clusterer | None = None, neighbors: int | None = None,
                 neighbor_scale: float = 1.0) -> None:
        if factor < 1 or neighbor_scale <= 0:
            raise ValueError(f"OverClusterMerge: need factor >= 1 and neighbor_scale > 0, got {factor}, {neighbor_scale}")
        self.factor, self.base = factor, base if base is not None else KMeansClusterer()
        self.neighbors, self.neighbor_scale = neighbors, neighbor_scale

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        pts = check_points(z, k, "OverClusterMerge")
        n = pts.shape[0]
        fine = self.base(z, min(self.factor * k, n), seed).numpy()  # (n,) in [0, m)
        graph = kneighbors_graph(pts, class_neighbors(n, k, self.neighbor_scale, self.neighbors), include_self=False)
        return relabel_by_size(merge_by_connectivity(fine, graph, k), k)


class ConsensusClusterer(Clusterer):
    """Average-linkage clustering of the co-association of ``runs`` base clusterings on random subsamples.

    Args:
        base: the clusterer run repeatedly (default k-means with one start: diversity is the point).
        runs: number of clusterings.
        subsample: share of the points each run clusters (1: all points, only the seed varies).
    """

    def __init__(self, base: Clusterer | None = None, runs: int = 10, subsample: float = 0.8) -> None:
        if runs < 1 or not 0 < subsample <= 1:
            raise ValueError(f"ConsensusClusterer: need runs >= 1 and 0 < subsample <= 1, got {runs}, {subsample}")
        self.base = base if base is not None else KMeansClusterer(n_init=1)
        self.runs, self.subsample = runs, subsample

    def __call__(self, z: Tensor, k: int, seed: int = 0) -> Tensor:
        check_points(z, k, "ConsensusClusterer")
        n = z.shape[0]
        m = max(k, round(self.subsample * n))
        rng = np.random.default_rng(seed)
        together = np.zeros((n, n), dtype=np.float32)  # (n, n) runs placing i and j in one cluster
        seen = np.zeros((n, n), dtype=np.float32)  # (n, n) runs sampling both i and j
        for r in range(self.runs):
            idx = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
            lab = self.base(z[torch.from_numpy(idx)], k, seed + r).numpy()  # (m,)
            onehot = np.eye(k, dtype=np.float32)[lab]  # (m, k)
            together[np.ix_(idx, idx)] += onehot @ onehot.T
            seen[np.ix_(idx, idx)] += 1.0
        distance = 1.0 - together / np.maximum(seen, 1.0)  # pairs never sampled together count as apart
        model = AgglomerativeClustering(k, metric="precomputed", linkage="average")
        return relabel_by_size(model.fit_predict(distance.astype(np.float64)), k)
