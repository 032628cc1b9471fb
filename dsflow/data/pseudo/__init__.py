"""Pseudo-labels for unlabeled datasets (paper section 6.3): feature maps, clusterers, label-free selection.

A pseudo-label is ``clusterer(features(x), k)``; neither part reads a label. See docs/pseudo_labels.md for the
methods measured on the development datasets and the protocol that chose the recommended one.
"""

from dsflow.data.pseudo.balanced import BalancedKMeansClusterer, balanced_assignment
from dsflow.data.pseudo.clusterers import (
    AgglomerativeClusterer, Clusterer, GaussianMixtureClusterer, KMeansClusterer, SpectralClusterer, relabel_by_size,
)
from dsflow.data.pseudo.embeddings import SpectralFeatures, UMAPFeatures, class_neighbors
from dsflow.data.pseudo.ensembles import ConsensusClusterer, OverClusterMerge
from dsflow.data.pseudo.features import Chain, ClusterFeatures, PCAFeatures, PixelFeatures, TSNEFeatures
from dsflow.data.pseudo.glyph_encoder import GlyphEncoderFeatures
from dsflow.data.pseudo.image_features import DeskewFeatures, GradientHistogramFeatures
from dsflow.data.pseudo.labeled import PseudoLabeled, WholeSplit, aligned_accuracy, hungarian_alignment, whole_split
from dsflow.data.pseudo.learned import Augment, SelfSupervisedFeatures
from dsflow.data.pseudo.oracle_features import Concat, OracleFeatures
from dsflow.data.pseudo.stroke_switch import ByStrokeWidth, StrokeReading, deep_ink_fraction
from dsflow.data.pseudo.selection import ClusterPipeline, Pseudolabeler, SelectByAgreement, SelectByStability, Selection

__all__ = [
    "AgglomerativeClusterer", "Augment", "BalancedKMeansClusterer", "ByStrokeWidth", "StrokeReading", "deep_ink_fraction", "Chain", "Concat", "ClusterFeatures", "ClusterPipeline", "Clusterer", "ConsensusClusterer",
    "DeskewFeatures", "GaussianMixtureClusterer", "GlyphEncoderFeatures", "GradientHistogramFeatures", "KMeansClusterer", "OverClusterMerge",
    "OracleFeatures", "PCAFeatures", "PixelFeatures", "PseudoLabeled", "Pseudolabeler", "SelectByAgreement", "SelectByStability",
    "Selection", "SelfSupervisedFeatures", "SpectralClusterer", "SpectralFeatures", "TSNEFeatures", "UMAPFeatures", "class_neighbors",
    "WholeSplit", "aligned_accuracy", "balanced_assignment", "hungarian_alignment", "relabel_by_size", "whole_split",
]
