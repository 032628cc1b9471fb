"""The mathematical core of dsflow: plain torch, no Lightning, no I/O."""

from dsflow.ot.bures import (
    bures_pair_table, bures_wasserstein_table, cross_term_eig, cross_term_gram, cross_term_svd, sqrtm_psd,
)
from dsflow.ot.class_layout import ClassLayout, LayoutCache, class_layout
from dsflow.ot.costs import LabelCosts, OTDDSettings, augmented_cost
from dsflow.ot.geomloss_solver import GeomlossSolver
from dsflow.ot.label_distance import (
    BaseGaussianLabelDistance, ClassSamples, DiagonalGaussianLabelDistance, DiagonalStats, ExactLabelDistance,
    GaussianLabelDistance, LabelDistance,
)
from dsflow.ot.otdd import otdd
from dsflow.ot.outer_solver import OuterSolver
from dsflow.ot.products import Gram, SharedProducts
from dsflow.ot.stats import LabelStats, Samples, check_labels, class_factors, class_means, class_stats, group_by_class
from dsflow.ot.warm_sinkhorn import SinkhornCapWarning, WarmSinkhorn
from dsflow.ot.warm_state import WarmState

__all__ = [
    "BaseGaussianLabelDistance",
    "ClassLayout",
    "ClassSamples",
    "DiagonalGaussianLabelDistance",
    "DiagonalStats",
    "ExactLabelDistance",
    "GeomlossSolver",
    "GaussianLabelDistance",
    "Gram",
    "LabelCosts",
    "LabelDistance",
    "LabelStats",
    "LayoutCache",
    "OTDDSettings",
    "OuterSolver",
    "Samples",
    "SharedProducts",
    "SinkhornCapWarning",
    "WarmSinkhorn",
    "WarmState",
    "augmented_cost",
    "bures_pair_table",
    "bures_wasserstein_table",
    "check_labels",
    "class_factors",
    "class_layout",
    "class_means",
    "class_stats",
    "cross_term_eig",
    "cross_term_gram",
    "cross_term_svd",
    "group_by_class",
    "otdd",
    "sqrtm_psd",
]
