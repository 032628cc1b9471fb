"""Pseudo-labelers (features + clusterer) and label-free choices among them, made on the target's images alone.

* :class:`ClusterPipeline`: a feature map, then a clusterer.
* :class:`SelectByStability`: the candidate whose clusterings of random subsamples agree most with each other
  (mean pairwise adjusted Rand index on the points two subsamples share; Ben-Hur, Elisseeff & Guyon 2002;
  Lange et al. 2004). A setting that follows real structure is reproduced from other samples of it.
* :class:`SelectByAgreement`: the candidate that agrees most (mean ARI) with all the other candidates: the
  medoid of the candidate clusterings (in the spirit of cluster ensembles, Strehl & Ghosh 2002).

Neither reads a label; both record what they chose in ``last`` (a :class:`Selection`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from torch import Tensor

from dsflow.data.pseudo.clusterers import Clusterer, KMeansClusterer
from dsflow.data.pseudo.features import ClusterFeatures, PixelFeatures

__all__ = ["Pseudolabeler", "ClusterPipeline", "Selection", "SelectByStability", "SelectByAgreement"]


class Pseudolabeler(ABC):
    """(n, ...) features -> (n,) int64 pseudo-labels in [0, k), never reading a label."""

    @abstractmethod
    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        """(n,) pseudo-labels of the features x (n, ...)."""

    def fit_subset(self, x: Tensor, subset: Tensor, k: int, seed: int = 0) -> Tensor:
        """(m,) pseudo-labels of the points ``x[subset]`` (subset: (m,) indices into x (N, ...)), clustered with
        all N points: here the whole clustering restricted to the subset."""
        return self(x, k, seed)[subset]

    def default_checkpoint(self, path: str) -> None:
        """Offer a classifier checkpoint to the feature maps that read one and were given none
        (:meth:`ClusterFeatures.default_checkpoint`); a pseudo-labeler without feature maps ignores it."""
        return None


class ClusterPipeline(Pseudolabeler):
    """``clusterer(features(x), k)``.

    Args:
        features: the feature map (default: pixels).
        clusterer: the clusterer (default: k-means, 10 restarts).
        name: what tables call it (default: the two class names).
    """

    def __init__(self, features: ClusterFeatures | None = None, clusterer: Clusterer | None = None,
                 name: str | None = None) -> None:
        self.features = features if features is not None else PixelFeatures()
        self.clusterer = clusterer if clusterer is not None else KMeansClusterer()
        self.name = name or f"{type(self.features).__name__}+{type(self.clusterer).__name__}"

    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        z = self.features(x, k)
        return self.clusterer(z.reshape(z.shape[0], -1).double(), k, seed)

    def fit_subset(self, x: Tensor, subset: Tensor, k: int, seed: int = 0) -> Tensor:
        """Features and clusters of all N points; the subset's labels by :meth:`Clusterer.restrict` (a balanced
        clusterer re-balances them on the subset)."""
        z = self.features(x, k)
        z = z.reshape(z.shape[0], -1).double()
        return self.clusterer.restrict(z, self.clusterer(z, k, seed), subset, k)

    def default_checkpoint(self, path: str) -> None:
        self.features.default_checkpoint(path)


@dataclass(frozen=True)
class Selection:
    """What a label-free selection saw: one score per candidate (higher is better) and the index chosen."""

    scores: list[float]
    chosen: int


def _check_candidates(candidates: list[Pseudolabeler], who: str) -> list[Pseudolabeler]:
    if len(candidates) < 1:
        raise ValueError(f"{who}: candidates must hold at least one pseudo-labeler")
    return list(candidates)


class SelectByStability(Pseudolabeler):
    """The candidate most stable under subsampling, then run on all the points.

    Score of a candidate: the mean adjusted Rand index between its clusterings of ``runs`` random subsamples
    (each a share ``subsample`` of the points, each with its own seed), compared on the points each pair shares.

    Args:
        candidates: the pseudo-labelers to choose among.
        runs: subsamples per candidate (>= 2: a score needs a pair).
        subsample: share of the points in each subsample.
    """

    def __init__(self, candidates: list[Pseudolabeler], runs: int = 3, subsample: float = 0.8) -> None:
        if runs < 2 or not 0 < subsample < 1:
            raise ValueError(f"SelectByStability: need runs >= 2 and 0 < subsample < 1, got {runs}, {subsample}")
        self.candidates = _check_candidates(candidates, "SelectByStability")
        self.runs, self.subsample = runs, subsample
        self.last: Selection | None = None

    def score(self, method: Pseudolabeler, x: Tensor, k: int, seed: int = 0) -> float:
        """Mean pairwise ARI of ``method`` over ``runs`` subsamples of x (n, ...)."""
        n = x.shape[0]
        m = max(k, round(self.subsample * n))
        rng = np.random.default_rng(seed)
        runs = []
        for r in range(self.runs):
            idx = np.sort(rng.choice(n, m, replace=False))
            full = np.full(n, -1, dtype=np.int64)  # (n,) label of each sampled point, -1 elsewhere
            full[idx] = method(x[torch.from_numpy(idx)], k, seed + r).numpy()
            runs.append(full)
        aris = [adjusted_rand_score(a[(a >= 0) & (b >= 0)], b[(a >= 0) & (b >= 0)]) for a, b in combinations(runs, 2)]
        return float(np.mean(aris))

    def default_checkpoint(self, path: str) -> None:
        for c in self.candidates:
            c.default_checkpoint(path)

    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        scores = [self.score(c, x, k, seed) for c in self.candidates]
        self.last = Selection(scores, int(np.argmax(scores)))
        return self.candidates[self.last.chosen](x, k, seed)


class SelectByAgreement(Pseudolabeler):
    """The candidate whose clustering has the highest mean ARI with the other candidates' clusterings.

    Each candidate runs once on all the points; the chosen one's labels are returned as they are.

    Args:
        candidates: the pseudo-labelers to choose among (at least 3, so that "the others" is a majority of two).
    """

    def __init__(self, candidates: list[Pseudolabeler]) -> None:
        self.candidates = _check_candidates(candidates, "SelectByAgreement")
        if len(self.candidates) < 3:
            raise ValueError(f"SelectByAgreement: needs at least 3 candidates, got {len(self.candidates)}")
        self.last: Selection | None = None

    def default_checkpoint(self, path: str) -> None:
        for c in self.candidates:
            c.default_checkpoint(path)

    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        labels = [c(x, k, seed).numpy() for c in self.candidates]
        c = len(labels)
        ari = np.eye(c)
        for i, j in combinations(range(c), 2):
            ari[i, j] = ari[j, i] = adjusted_rand_score(labels[i], labels[j])
        scores = ((ari.sum(1) - 1) / (c - 1)).tolist()  # mean ARI with the others
        self.last = Selection(scores, int(np.argmax(scores)))
        return torch.from_numpy(labels[self.last.chosen])
