"""Label tables: per-class statistics, the distances between classes, and the class coupling layer.

Doors: the label distances (:class:`LabelDistance` and its Gaussian, diagonal Gaussian and exact variants), the
per-class statistics (:class:`LabelStats`, :func:`class_stats`), the Bures-Wasserstein tables, the inner products
shared with a solver (:class:`SharedProducts`), how the Bures cross terms' nuclear norms are computed (:class:`NuclearNorms`: eigensolvers, or
Newton-Schulz products on GPUs), the class layout of a label vector (:class:`ClassLayout`), and the
coupling layer between label sets that differ (:func:`label_coupling`, :class:`CouplingHead`).
"""

from dsflow.ot.labels.bures import (
    bures_pair_table, bures_wasserstein_table, cross_term_eig, cross_term_gram, cross_term_svd, sqrtm_psd,
)
from dsflow.ot.labels.class_layout import ClassLayout, LayoutCache, class_layout
from dsflow.ot.labels.coupling import CouplingHead, label_coupling
from dsflow.ot.labels.label_distance import (
    BaseGaussianLabelDistance, ClassSamples, DiagonalGaussianLabelDistance, DiagonalStats, ExactLabelDistance,
    GaussianLabelDistance, LabelDistance,
)
from dsflow.ot.labels.nuclear import EigenNuclearNorms, NewtonSchulzNuclearNorms, NuclearNorms
from dsflow.ot.labels.products import Gram, SharedProducts, inner_products
from dsflow.ot.labels.stats import (
    LabelStats, Samples, check_labels, class_counts, class_factors, class_means, class_stats, group_by_class,
)

__all__ = [
    "BaseGaussianLabelDistance",
    "ClassLayout",
    "ClassSamples",
    "CouplingHead",
    "DiagonalGaussianLabelDistance",
    "DiagonalStats",
    "EigenNuclearNorms",
    "ExactLabelDistance",
    "GaussianLabelDistance",
    "Gram",
    "LabelDistance",
    "LabelStats",
    "LayoutCache",
    "NewtonSchulzNuclearNorms",
    "NuclearNorms",
    "Samples",
    "SharedProducts",
    "bures_pair_table",
    "bures_wasserstein_table",
    "check_labels",
    "class_counts",
    "class_factors",
    "class_layout",
    "class_means",
    "class_stats",
    "cross_term_eig",
    "cross_term_gram",
    "cross_term_svd",
    "group_by_class",
    "inner_products",
    "label_coupling",
    "sqrtm_psd",
]
