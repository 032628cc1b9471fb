"""Unlabeled datasets (paper section 6.3): pseudo-labels drive the flow; true labels only score it.

:class:`PseudoLabeled` wraps any source: it clusters the features into k clusters (k = the source's number of
classes) and hands the flow the cluster indices as labels. The true labels are kept apart (:meth:`scoring_labels`)
for evaluation only; :func:`hungarian_alignment` maps pseudo-labels to true labels for that scoring.

How the clusters are made is chosen in YAML: ``features`` (a :class:`ClusterFeatures`) and ``clusterer`` (a
:class:`Clusterer`), or a whole ``method`` (a :class:`Pseudolabeler`, e.g. a label-free selection among several).
The default, k-means on pixels, is the paper's. The protocol that chose the recommended setting is in
docs/pseudo_labels.md.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dsflow.clustering import contingency, match_clusters
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.images import ImageDataModule, stratified_indices
from dsflow.data.pseudo.clusterers import Clusterer, KMeansClusterer
from dsflow.data.pseudo.features import ClusterFeatures, PixelFeatures
from dsflow.data.pseudo.selection import ClusterPipeline, Pseudolabeler

__all__ = ["PseudoLabeled", "WholeSplit", "aligned_accuracy", "hungarian_alignment", "whole_split"]


class WholeSplit:
    """All the samples of a source's split (``whole``) and the (m,) indices of the subset its ``load()`` returns."""

    def __init__(self, whole: LabeledData, subset: Tensor) -> None:
        self.whole, self.subset = whole, subset

    def data(self) -> LabeledData:
        """The subset, as the source's ``load()`` returns it."""
        w = self.whole
        return LabeledData(w.x[self.subset], w.y[self.subset], w.num_classes, w.name)


def whole_split(source: DatasetSource, limit: int | None = None, seed: int = 0) -> WholeSplit:
    """Every image of the split an image source reads, and which of them its ``n``-sample is (the same seeded,
    class-stratified draw as its ``load()``: :func:`~dsflow.data.images.stratified_indices`).

    ``limit``: at most this many images: the n-sample and a ``seed``-ed uniform draw of the others (e.g. MNIST's
    60,000 training digits: a UMAP of all of them takes minutes)."""
    if not isinstance(source, ImageDataModule):
        raise ValueError(f"PseudoLabeled: fit_on 'all' needs an image dataset with a split to read whole "
                         f"(an ImageDataModule such as ArrayFile, MNIST), got {type(source).__name__}")
    whole = source.load_split(source.split)
    total = whole.x.shape[0]
    subset = torch.arange(total) if source.n is None else stratified_indices(
        whole.y, source.n, whole.num_classes, source.seed, source.balanced, f"{source.name}/{source.split}")
    if limit is None or limit >= total:
        return WholeSplit(whole, subset)
    if limit < subset.shape[0]:
        raise ValueError(f"PseudoLabeled: fit_max {limit} is below the {subset.shape[0]} images that are flowed")
    others = torch.ones(total, dtype=torch.bool)
    others[subset] = False
    rest = torch.nonzero(others).flatten()
    rest = rest[torch.randperm(rest.shape[0], generator=torch.Generator().manual_seed(seed))[: limit - subset.shape[0]]]
    keep = torch.sort(torch.cat([subset, rest])).values  # (limit,) the subset among them
    where = torch.searchsorted(keep, subset)  # (m,) the subset's positions in keep
    kept = LabeledData(whole.x[keep], whole.y[keep], whole.num_classes, whole.name)
    return WholeSplit(kept, where)


def hungarian_alignment(pseudo: Tensor, true: Tensor, k: int, num_true: int) -> Tensor:
    """(k,) the true label assigned to each pseudo-label, maximising agreement (Hungarian method,
    :func:`dsflow.clustering.match_clusters`, the matching jd-vl uses to keep its label ids). Scoring only.

    Args:
        pseudo: (n,) pseudo-labels in [0, k).
        true: (n,) true labels in [0, num_true).
    With k > num_true, unmatched clusters take their majority true label.
    """
    counts = contingency(pseudo, true, k, num_true, "hungarian_alignment")  # (k, num_true)
    matching = match_clusters(counts)
    mapping = counts.argmax(1)  # (k,) majority label, used for clusters left unmatched
    mapping[matching.rows] = matching.cols
    return mapping


def aligned_accuracy(labels: Tensor, true: Tensor, k: int, num_true: int) -> float:
    """% of ``labels`` (n,) in [0, k) equal to ``true`` (n,) in [0, num_true) once each label is mapped to a true one
    by :func:`hungarian_alignment`. Scoring only."""
    labels, true = labels.cpu(), true.cpu()
    return 100.0 * float((hungarian_alignment(labels, true, k, num_true)[labels] == true).double().mean())


class PseudoLabeled(DatasetSource):
    """A source whose labels are replaced by clusters of its features.

    Args:
        source: the dataset (its labels are never given to the flow).
        num_clusters: k (default: the source's number of classes).
        seed: clusterer seed.
        n_init: restarts of the default k-means clusterer (ignored when ``clusterer`` or ``method`` is set).
        features: what is clustered (default: :class:`PixelFeatures`); the flow still moves the original
            features, only the labels come from the clustering.
        clusterer: how (default: k-means).
        method: a whole pseudo-labeler instead of ``features`` + ``clusterer`` (e.g. :class:`SelectByStability`).
        fit_on: what the clusters are fitted on: ``subset``, the ``n`` samples that are flowed; or ``all``, every
            image of the source's split (e.g. 10,000; the unlabeled data a user has), then the flowed subset takes
            its clusters from that fit (:meth:`Pseudolabeler.fit_subset`; re-balanced to equal sizes by a
            balanced clusterer). ``all`` needs an image source (:class:`~dsflow.data.images.ImageDataModule`).
        fit_max: with ``fit_on: all``, fit on at most this many images (the flowed ones and a seeded draw of the
            rest; None: every image of the split).
        oracle: a reference-trained classifier checkpoint for the feature maps that read one and name none
            (:class:`~dsflow.data.pseudo.oracle_features.OracleFeatures`); ignored by the others. The Table 1 runner passes its oracle here.
    """

    def __init__(self, source: DatasetSource, num_clusters: int | None = None, seed: int = 0, n_init: int = 10,
                 features: ClusterFeatures | None = None, clusterer: Clusterer | None = None,
                 method: Pseudolabeler | None = None, fit_on: Literal["subset", "all"] = "subset",
                 fit_max: int | None = None, oracle: str | None = None) -> None:
        if method is not None and (features is not None or clusterer is not None):
            raise ValueError("PseudoLabeled: give either method or features/clusterer, not both")
        if fit_on not in ("subset", "all"):
            raise ValueError(f"PseudoLabeled: fit_on must be 'subset' or 'all', got {fit_on!r}")
        if fit_max is not None and fit_max < 1:
            raise ValueError(f"PseudoLabeled: fit_max must be >= 1, got {fit_max}")
        self.fit_on, self.fit_max = fit_on, fit_max
        self.source, self.num_clusters, self.seed, self.n_init = source, num_clusters, seed, n_init
        self.features = features if features is not None else PixelFeatures()
        self.clusterer = clusterer if clusterer is not None else KMeansClusterer(n_init)
        self.method = method if method is not None else ClusterPipeline(self.features, self.clusterer)
        if oracle is not None:
            self.method.default_checkpoint(oracle)
        self._true: Tensor | None = None
        self._num_true = 0

    def load(self) -> LabeledData:
        if self.fit_on == "all":
            split = whole_split(self.source, self.fit_max, self.seed)
            data = split.data()
            k = self.num_clusters or data.num_classes
            pseudo = self.method.fit_subset(split.whole.x, split.subset, k, self.seed)  # labels never read here
        else:
            data = self.source.load()
            k = self.num_clusters or data.num_classes
            pseudo = self.method(data.x, k, self.seed)  # labels never read here
        self._true, self._num_true = data.y.clone(), data.num_classes
        return LabeledData(data.x, pseudo, k, f"{data.name} (pseudo-labels)")

    def scoring_labels(self) -> tuple[Tensor, int]:
        """(n,) the true labels and their class count: for evaluation only, never for the flow."""
        if self._true is None:
            raise ValueError("PseudoLabeled: load() has not run yet")
        return self._true, self._num_true
