"""Recovering discrete labels from per-particle label Gaussians (jd-vl dynamics, paper section 6.1, appendix C).

Each particle i carries N(mu_i, diag(sd_i^2)); the points clustered are (mu_i, sd_i) (n, 2d), whose Euclidean
distance is exactly the Bures-Wasserstein distance W_2 between diagonal Gaussians, so ``eps`` of DBSCAN is in the
units of W_2. Variants are classes chosen in YAML: :class:`KMeansClustering` (fixed number of classes) and
:class:`DBSCANClustering` (the number of classes follows the data). :func:`match_labels` keeps label ids stable
from one clustering to the next (so colours and per-class energies follow the same groups).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import DBSCAN, KMeans
from torch import Tensor

__all__ = ["Clustering", "KMeansClustering", "DBSCANClustering", "match_labels"]


class Clustering(ABC):
    """Maps (n, p) points to (n,) int64 labels in [0, K)."""

    @abstractmethod
    def __call__(self, points: Tensor) -> Tensor:
        """(n,) cluster labels of the (n, p) points."""


def _check_points(points: Tensor, who: str) -> np.ndarray:
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{who}: expected points of shape (n, p) with n >= 1, got {tuple(points.shape)}")
    arr = points.detach().cpu().double().numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{who}: the label Gaussians contain non-finite values; lower the step size")
    return arr


class KMeansClustering(Clustering):
    """k-means with a fixed number of clusters (sklearn, seeded: the same points give the same labels).

    Args:
        num_clusters: k.
        n_init: restarts of k-means++.
        seed: random state.
    """

    def __init__(self, num_clusters: int, n_init: int = 3, seed: int = 0) -> None:
        if num_clusters < 1 or n_init < 1:
            raise ValueError(f"KMeansClustering: num_clusters and n_init must be >= 1, got {num_clusters}, {n_init}")
        self.num_clusters, self.n_init, self.seed = num_clusters, n_init, seed

    def __call__(self, points: Tensor) -> Tensor:
        arr = _check_points(points, "KMeansClustering")
        if arr.shape[0] < self.num_clusters:
            raise ValueError(f"KMeansClustering: {arr.shape[0]} points cannot form {self.num_clusters} clusters")
        km = KMeans(self.num_clusters, n_init=self.n_init, random_state=self.seed)
        return torch.from_numpy(km.fit_predict(arr).astype(np.int64))


class DBSCANClustering(Clustering):
    """DBSCAN (sklearn): the number of clusters is whatever the density says (paper: eps 5, 4 points).

    Points DBSCAN calls noise join the cluster of their nearest clustered point, so every particle keeps a label.

    Args:
        eps: neighbourhood radius (W_2 units, see the module docstring).
        min_samples: points within ``eps`` that make a core point (the point itself included).
    """

    def __init__(self, eps: float = 5.0, min_samples: int = 4) -> None:
        if eps <= 0 or min_samples < 1:
            raise ValueError(f"DBSCANClustering: need eps > 0 and min_samples >= 1, got {eps}, {min_samples}")
        self.eps, self.min_samples = eps, min_samples

    def __call__(self, points: Tensor) -> Tensor:
        arr = _check_points(points, "DBSCANClustering")
        labels = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit_predict(arr)
        noise = labels < 0
        if noise.all():
            raise ValueError(
                f"DBSCANClustering: no cluster found among {arr.shape[0]} points with eps={self.eps} and "
                f"min_samples={self.min_samples}; raise eps or lower min_samples"
            )
        if noise.any():
            d2 = ((arr[noise][:, None, :] - arr[~noise][None, :, :]) ** 2).sum(-1)  # (n_noise, n_clustered)
            labels[noise] = labels[~noise][d2.argmin(1)]
        return torch.from_numpy(labels.astype(np.int64))


def match_labels(new: Tensor, old: Tensor) -> Tensor:
    """Rename the clusters of ``new`` to overlap ``old`` as much as possible (Hungarian matching).

    Matched clusters take the old id; clusters left over take the smallest ids not in use. Ids may therefore have
    gaps when clusters disappear (a class with no particle), which per-particle label tables do not mind.

    Args:
        new: (n,) labels in [0, K).
        old: (n,) previous labels in [0, K').
    """
    if new.shape != old.shape or new.ndim != 1:
        raise ValueError(f"match_labels: need two (n,) label vectors, got {tuple(new.shape)} and {tuple(old.shape)}")
    k_new, k_old = int(new.max()) + 1, int(old.max()) + 1
    overlap = torch.zeros(k_new, k_old, dtype=torch.long)
    overlap.index_put_((new.cpu(), old.cpu()), torch.ones_like(new.cpu()), accumulate=True)  # (K, K')
    rows, cols = linear_sum_assignment(-overlap.numpy())
    mapping = {int(r): int(c) for r, c in zip(rows, cols) if overlap[r, c] > 0}
    free = (i for i in range(k_new + k_old) if i not in set(mapping.values()))
    for r in range(k_new):
        if r not in mapping:
            mapping[r] = next(free)
    lut = torch.tensor([mapping[r] for r in range(k_new)], dtype=new.dtype)
    return lut[new.cpu()].to(new.device)
