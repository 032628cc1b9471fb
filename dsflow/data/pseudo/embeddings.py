"""Graph embeddings: points placed so that neighbours in a k-nearest-neighbour graph stay together.

* :class:`UMAPFeatures`: UMAP (McInnes, Healy & Melville 2018) to a few dimensions with ``min_dist = 0`` (points
  may pile up: what a clusterer wants), as in N2D (McConville et al. 2020). Needs the ``umap-learn`` package.
* :class:`SpectralFeatures`: the leading eigenvectors of the normalised Laplacian of a symmetrised kNN graph (the
  embedding of spectral clustering, Ng, Jordan & Weiss 2001, constant-like first vector included), rows normalised.

Neighbourhood size. A kNN graph should join each class internally and join classes to each other little. With n
points in C classes, a class holds about n / C; the neighbour count defaults to ``neighbor_scale * sqrt(n / C)``
(:func:`class_neighbors`): it grows with the class size but stays far below it (14 for n = 2,000, C = 10, about
UMAP's own default of 15; 22 for n = 5,000). No dataset's labels chose it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.manifold import spectral_embedding
from sklearn.neighbors import kneighbors_graph
from torch import Tensor

from dsflow.data.pseudo.features import ClusterFeatures, leading_components

__all__ = ["UMAPFeatures", "SpectralFeatures", "class_neighbors"]


def class_neighbors(n: int, num_clusters: int | None, scale: float = 1.0, fixed: int | None = None) -> int:
    """Neighbour count of a kNN graph on n points expected to hold ``num_clusters`` classes.

    ``fixed`` when given, else ``round(scale * sqrt(n / C))`` (C = 1 when unknown), clipped to [5, n - 1] (fewer than 5 neighbours splits classes of a few dozen points).
    """
    if fixed is not None:
        if not 1 <= fixed < n:
            raise ValueError(f"neighbors must lie in [1, n - 1] = [1, {n - 1}], got {fixed}")
        return fixed
    k = round(scale * math.sqrt(n / max(num_clusters or 1, 1)))
    return int(min(max(k, 5), n - 1))


class UMAPFeatures(ClusterFeatures):
    """UMAP embedding of the flattened features (after PCA to ``pca_components`` when they have more dimensions).

    Args:
        components: embedding dimension (10: room for C = 10 clusters to separate, as in N2D).
        neighbors: kNN graph size (None: :func:`class_neighbors` from n and C).
        neighbor_scale: factor of the derived neighbour count.
        min_dist: smallest distance UMAP keeps between embedded points (0: clusters may contract fully).
        pca_components: principal components UMAP starts from (denoises; speeds up the neighbour search).
        seed: random state (fixed: UMAP is then deterministic, though single-threaded).
    """

    def __init__(self, components: int = 10, neighbors: int | None = None, neighbor_scale: float = 1.0,
                 min_dist: float = 0.0, pca_components: int = 50, seed: int = 0) -> None:
        if components < 1 or neighbor_scale <= 0 or min_dist < 0 or pca_components < 1:
            raise ValueError(f"UMAPFeatures: need components >= 1, neighbor_scale > 0, min_dist >= 0, pca_components >= 1, "
                             f"got {components}, {neighbor_scale}, {min_dist}, {pca_components}")
        self.components, self.neighbors, self.neighbor_scale = components, neighbors, neighbor_scale
        self.min_dist, self.pca_components, self.seed = min_dist, pca_components, seed

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        import umap  # optional heavy import (numba): only when UMAP is asked for

        flat = leading_components(x.reshape(x.shape[0], -1).double().cpu().numpy(), self.pca_components, self.seed)
        n = flat.shape[0]
        if self.components >= n - 1:
            raise ValueError(f"UMAPFeatures: {self.components} components from {n} samples")
        k = class_neighbors(n, num_clusters, self.neighbor_scale, self.neighbors)
        reducer = umap.UMAP(n_neighbors=k, n_components=self.components, min_dist=self.min_dist,
                            random_state=self.seed, init="spectral" if n > self.components + 1 else "random")
        return torch.from_numpy(reducer.fit_transform(flat).astype(np.float64))  # (n, components)


class SpectralFeatures(ClusterFeatures):
    """Row-normalised Laplacian eigenmap of the kNN graph of the features (n, components).

    Args:
        components: eigenvectors kept (None: C, the number of clusters asked for).
        neighbors: kNN graph size (None: :func:`class_neighbors` from n and C).
        neighbor_scale: factor of the derived neighbour count.
        pca_components: principal components the graph is built on.
        seed: random state of the eigensolver.
    """

    def __init__(self, components: int | None = None, neighbors: int | None = None, neighbor_scale: float = 1.0,
                 pca_components: int = 50, seed: int = 0) -> None:
        if (components is not None and components < 1) or neighbor_scale <= 0 or pca_components < 1:
            raise ValueError(f"SpectralFeatures: need components >= 1, neighbor_scale > 0, pca_components >= 1, "
                             f"got {components}, {neighbor_scale}, {pca_components}")
        self.components, self.neighbors, self.neighbor_scale = components, neighbors, neighbor_scale
        self.pca_components, self.seed = pca_components, seed

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        flat = leading_components(x.reshape(x.shape[0], -1).double().cpu().numpy(), self.pca_components, self.seed)
        n = flat.shape[0]
        p = self.components or num_clusters
        if p is None or not 1 <= p < n:
            raise ValueError(f"SpectralFeatures: components must lie in [1, n) = [1, {n}), got {p}")
        k = class_neighbors(n, num_clusters, self.neighbor_scale, self.neighbors)
        graph = kneighbors_graph(flat, k, include_self=True)
        adjacency = 0.5 * (graph + graph.T)  # (n, n) symmetrised kNN graph, as SpectralClustering builds it
        z = spectral_embedding(adjacency, n_components=p, drop_first=False, random_state=self.seed)  # (n, p)
        return torch.from_numpy(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12))  # (n, p)
