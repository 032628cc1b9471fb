"""Datasets and LightningDataModules."""

from dsflow.data.arrays import ArrayFile, ImageFolder
from dsflow.data.flow_pairs import FlowPairs, load_pairs
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.images import ImageDataModule, RawImages, stratified_indices, to_float_images
from dsflow.data.glyphs import GlyphDistortion, GlyphSpec, MissingFontError, render_glyph_dataset
from dsflow.data.pair import FlowDataModule
from dsflow.data.pseudo import (
    AgglomerativeClusterer, Chain, ClusterFeatures, ClusterPipeline, Clusterer, ConsensusClusterer, DeskewFeatures,
    BalancedKMeansClusterer, GaussianMixtureClusterer, GradientHistogramFeatures, KMeansClusterer, OverClusterMerge, PCAFeatures, PixelFeatures,
    PseudoLabeled, Pseudolabeler, SelectByAgreement, SelectByStability, SpectralClusterer, SpectralFeatures, TSNEFeatures,
    UMAPFeatures, aligned_accuracy, hungarian_alignment,
)
from dsflow.data.pseudo import Augment, ByStrokeWidth, Concat, GlyphEncoderFeatures, OracleFeatures, SelfSupervisedFeatures
from dsflow.data.root import MissingDataError, data_root
from dsflow.data.subset import Subset
from dsflow.data.swiss_roll import SwissRoll
from dsflow.data.synthetic import GaussianMixture
from dsflow.data.tensors import TensorFiles, TensorSource, save_tensors
from dsflow.data.workloads import ClassBlobs, CyclicMixture
from dsflow.data.vision import CIFAR10, EMNIST, KMNIST, MNIST, PCAM, STL10, USPS, FashionMNIST

__all__ = [
    "AgglomerativeClusterer",
    "ArrayFile",
    "CIFAR10",
    "Augment",
    "ByStrokeWidth",
    "Chain",
    "Concat",
    "ClassBlobs",
    "ClusterFeatures",
    "ClusterPipeline",
    "Clusterer",
    "ConsensusClusterer",
    "CyclicMixture",
    "DatasetSource",
    "DeskewFeatures",
    "EMNIST",
    "FashionMNIST",
    "FlowDataModule",
    "FlowPairs",
    "GaussianMixture",
    "GaussianMixtureClusterer",
    "GlyphDistortion",
    "GlyphEncoderFeatures",
    "GlyphSpec",
    "GradientHistogramFeatures",
    "ImageDataModule",
    "ImageFolder",
    "KMNIST",
    "BalancedKMeansClusterer",
    "KMeansClusterer",
    "LabeledData",
    "MNIST",
    "MissingDataError",
    "MissingFontError",
    "OverClusterMerge",
    "OracleFeatures",
    "PCAFeatures",
    "PCAM",
    "PixelFeatures",
    "PseudoLabeled",
    "Pseudolabeler",
    "RawImages",
    "STL10",
    "SelectByAgreement",
    "SelectByStability",
    "SelfSupervisedFeatures",
    "SpectralClusterer",
    "SpectralFeatures",
    "Subset",
    "SwissRoll",
    "TSNEFeatures",
    "TensorFiles",
    "TensorSource",
    "UMAPFeatures",
    "USPS",
    "data_root",
    "aligned_accuracy",
    "hungarian_alignment",
    "load_pairs",
    "render_glyph_dataset",
    "save_tensors",
    "stratified_indices",
    "to_float_images",
]
