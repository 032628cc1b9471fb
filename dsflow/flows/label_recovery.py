"""jd-vl label recovery: discrete labels from per-particle label Gaussians (paper section 6.1, Algorithm 3, app. C).

Each particle i carries N(mu_i, diag(sd_i^2)); the points clustered are (mu_i, sd_i) (n, 2d), whose Euclidean
distance is exactly the Bures-Wasserstein distance W_2 between diagonal Gaussians, so DBSCAN's ``radius`` is in
the units of W_2. Variants are classes chosen in YAML: :class:`KMeansLabelRecovery` (fixed number of classes) and
:class:`DBSCANLabelRecovery` (the number of classes follows the data). :func:`match_labels` keeps label ids stable
from one recovery to the next (so colours and per-class energies follow the same groups).

This is not pseudo-labelling (:class:`~dsflow.data.pseudo.Clusterer`, called with k and a seed): a recovery is
called with the points alone. Both share :mod:`dsflow.clustering` (one k-means, one Hungarian matching).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from sklearn.cluster import DBSCAN
from torch import Tensor

from dsflow.clustering import contingency, kmeans, match_clusters, points_array

__all__ = ["LabelRecovery", "KMeansLabelRecovery", "DBSCANLabelRecovery", "match_labels"]


class LabelRecovery(ABC):
    """jd-vl's label recovery: (n, p) label-Gaussian points -> (n,) int64 labels in [0, K), K chosen here."""

    @abstractmethod
    def __call__(self, points: Tensor) -> Tensor:
        """(n,) labels of the (n, p) points."""


def _check_points(points: Tensor, who: str) -> np.ndarray:
    arr = points_array(points, who)
    if not np.isfinite(arr).all():
        raise ValueError(f"{who}: the label Gaussians contain non-finite values; lower the step size")
    return arr


class KMeansLabelRecovery(LabelRecovery):
    """k-means with a fixed number of clusters (seeded: the same points give the same labels).

    Args:
        num_clusters: k.
        n_init: restarts of k-means++.
        seed: random state.
    """

    def __init__(self, num_clusters: int, n_init: int = 3, seed: int = 0) -> None:
        if num_clusters < 1 or n_init < 1:
            raise ValueError(f"KMeansLabelRecovery: num_clusters and n_init must be >= 1, got {num_clusters}, {n_init}")
        self.num_clusters, self.n_init, self.seed = num_clusters, n_init, seed

    def __call__(self, points: Tensor) -> Tensor:
        arr = _check_points(points, "KMeansLabelRecovery")
        if arr.shape[0] < self.num_clusters:
            raise ValueError(f"KMeansLabelRecovery: {arr.shape[0]} points cannot form {self.num_clusters} clusters")
        return torch.from_numpy(kmeans(arr, self.num_clusters, self.n_init, self.seed).labels)


class DBSCANLabelRecovery(LabelRecovery):
    """DBSCAN (sklearn): the number of clusters is whatever the density says (paper: radius 5, 4 points).

    Points DBSCAN calls noise join the cluster of their nearest clustered point, so every particle keeps a label.

    Args:
        radius: neighbourhood radius, sklearn's ``eps`` (W_2 units, see the module docstring; not the OTDD's
            entropic ``eps``).
        min_samples: points within ``radius`` that make a core point (the point itself included).
    """

    def __init__(self, radius: float = 5.0, min_samples: int = 4) -> None:
        if radius <= 0 or min_samples < 1:
            raise ValueError(f"DBSCANLabelRecovery: need radius > 0 and min_samples >= 1, got {radius}, {min_samples}")
        self.radius, self.min_samples = radius, min_samples

    def __call__(self, points: Tensor) -> Tensor:
        arr = _check_points(points, "DBSCANLabelRecovery")
        labels = DBSCAN(eps=self.radius, min_samples=self.min_samples).fit_predict(arr)
        noise = labels < 0
        if noise.all():
            raise ValueError(
                f"DBSCANLabelRecovery: no cluster found among {arr.shape[0]} points with radius={self.radius} and "
                f"min_samples={self.min_samples}; raise radius or lower min_samples"
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
    overlap = contingency(new, old, k_new, k_old, "match_labels")  # (K, K')
    matching = match_clusters(overlap)
    mapping = {int(r): int(c) for r, c in zip(matching.rows.tolist(), matching.cols.tolist()) if overlap[r, c] > 0}
    free = (i for i in range(k_new + k_old) if i not in set(mapping.values()))
    for r in range(k_new):
        if r not in mapping:
            mapping[r] = next(free)
    lut = torch.tensor([mapping[r] for r in range(k_new)], dtype=new.dtype)
    return lut[new.cpu()].to(new.device)
