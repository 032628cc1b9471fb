"""The mathematical core of dsflow: plain torch, no Lightning, no I/O."""

from dsflow.ot.bures import (
    bures_pair_table, bures_wasserstein_table, cross_term_eig, cross_term_gram, cross_term_svd, sqrtm_psd,
)
from dsflow.ot.label_distance import ClassSamples, ExactLabelDistance, GaussianLabelDistance, LabelDistance
from dsflow.ot.otdd import LabelCosts, OTDDSettings, augmented_cost, otdd
from dsflow.ot.solvers import GeomlossSolver, OuterSolver, WarmSinkhorn
from dsflow.ot.stats import LabelStats, check_labels, class_factors, class_means, class_stats, group_by_class

__all__ = [
    "ClassSamples",
    "ExactLabelDistance",
    "GeomlossSolver",
    "GaussianLabelDistance",
    "LabelCosts",
    "LabelDistance",
    "LabelStats",
    "OTDDSettings",
    "OuterSolver",
    "WarmSinkhorn",
    "augmented_cost",
    "bures_pair_table",
    "bures_wasserstein_table",
    "check_labels",
    "class_factors",
    "class_means",
    "class_stats",
    "cross_term_eig",
    "cross_term_gram",
    "cross_term_svd",
    "group_by_class",
    "otdd",
    "sqrtm_psd",
]
