"""What a clusterer sees: feature maps (n, ...) images -> (n, p) float64 points, computed without any label.

* :class:`PixelFeatures`: the flattened features as they are.
* :class:`PCAFeatures`: the leading principal components, whitened (each scaled to unit variance) and optionally
  projected onto the unit sphere (k-means then compares directions: spherical k-means). In raw pixels a few
  high-variance directions (brightness, size) dominate the Euclidean distance; whitening weighs them equally.
* :class:`TSNEFeatures`: a t-SNE embedding (van der Maaten & Hinton 2008) of the leading principal components.
* :class:`Chain`: feature maps applied one after the other (e.g. gradient histograms, then UMAP).

Image-specific maps live in :mod:`~dsflow.data.pseudo.image_features`, graph embeddings (UMAP, spectral) in
:mod:`~dsflow.data.pseudo.embeddings`. Every map receives ``num_clusters`` (C, the k the clusterer will use) so
that neighbourhood sizes can follow the expected class size n / C instead of a constant tuned on one dataset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor

__all__ = ["ClusterFeatures", "PixelFeatures", "PCAFeatures", "TSNEFeatures", "Chain", "leading_components"]


class ClusterFeatures(ABC):
    """What the clusterer clusters: (n, ...) features -> (n, p) float64 points (computed without any label)."""

    @abstractmethod
    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        """(n, p) points of the features x (n, ...); ``num_clusters`` is the k that will be asked for."""

    def default_checkpoint(self, path: str) -> None:
        """Offer a reference-trained classifier checkpoint (the Table 1 oracle's) to the maps that read one and
        were given none (:class:`~dsflow.data.pseudo.oracle_features.OracleFeatures`); others ignore it."""
        return None


def leading_components(flat: np.ndarray, components: int, seed: int) -> np.ndarray:
    """(n, min(components, d)) principal components of ``flat`` (n, d); unchanged when d <= components."""
    if flat.shape[1] <= components or flat.shape[0] <= components:
        return flat
    return PCA(components, random_state=seed).fit_transform(flat)  # (n, components)


class PixelFeatures(ClusterFeatures):
    """The features flattened, unchanged."""

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        return x.reshape(x.shape[0], -1).double()  # (n, d)


class PCAFeatures(ClusterFeatures):
    """Leading principal components of the flattened features, whitened and optionally L2-normalised.

    Args:
        components: p, the number of components kept (at most min(n, d)).
        whiten: divide each component by its standard deviation (all p directions weigh the same).
        normalize: project each point onto the unit sphere (spherical k-means: cosine similarity).
        seed: random state of the (randomised, for large inputs) SVD.
    """

    def __init__(self, components: int = 12, whiten: bool = True, normalize: bool = True, seed: int = 0) -> None:
        if components < 1:
            raise ValueError(f"PCAFeatures: components must be >= 1, got {components}")
        self.components, self.whiten, self.normalize, self.seed = components, whiten, normalize, seed

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        flat = x.reshape(x.shape[0], -1).double().cpu().numpy()  # (n, d)
        if self.components > min(flat.shape):
            raise ValueError(f"PCAFeatures: {self.components} components from features of shape {flat.shape}")
        z = PCA(self.components, whiten=self.whiten, random_state=self.seed).fit_transform(flat)  # (n, p)
        if self.normalize:
            z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(z)


class TSNEFeatures(ClusterFeatures):
    """t-SNE embedding of the flattened features (after PCA to ``pca_components`` when they have more dimensions).

    Args:
        components: embedding dimension (2 or 3: sklearn's Barnes-Hut t-SNE).
        perplexity: effective number of neighbours (must be below n).
        pca_components: principal components t-SNE starts from (denoises, and speeds up the neighbour search).
        seed: random state (the embedding is initialised by PCA, so it hardly depends on it).
    """

    def __init__(self, components: int = 2, perplexity: float = 30.0, pca_components: int = 50, seed: int = 0) -> None:
        if components not in (2, 3) or perplexity <= 0 or pca_components < 1:
            raise ValueError(f"TSNEFeatures: need components in (2, 3), perplexity > 0 and pca_components >= 1, got "
                             f"{components}, {perplexity}, {pca_components}")
        self.components, self.perplexity, self.pca_components, self.seed = components, perplexity, pca_components, seed

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        flat = x.reshape(x.shape[0], -1).double().cpu().numpy()  # (n, d)
        if self.perplexity >= flat.shape[0]:
            raise ValueError(f"TSNEFeatures: perplexity {self.perplexity} must be below the number of samples {flat.shape[0]}")
        flat = leading_components(flat, self.pca_components, self.seed)  # (n, <= pca_components)
        tsne = TSNE(self.components, perplexity=self.perplexity, init="pca", random_state=self.seed)
        return torch.from_numpy(tsne.fit_transform(flat).astype(np.float64))  # (n, components)


class Chain(ClusterFeatures):
    """Feature maps applied in order: ``steps[-1](... steps[0](x))``.

    Args:
        steps: the maps, first applied first (e.g. ``[GradientHistogramFeatures(), UMAPFeatures()]``).
    """

    def __init__(self, steps: list[ClusterFeatures]) -> None:
        if not steps:
            raise ValueError("Chain: steps must hold at least one feature map")
        self.steps = list(steps)

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        for step in self.steps:
            x = step(x, num_clusters)
        return x

    def default_checkpoint(self, path: str) -> None:
        for step in self.steps:
            step.default_checkpoint(path)
