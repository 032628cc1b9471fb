"""The mathematical core of dsflow: plain torch, no Lightning, no I/O.

Three rooms and their doors:

* :mod:`dsflow.ot.solvers`: outer solvers of the OT problem under the augmented cost (:class:`WarmSinkhorn`, the
  fast path; :class:`GeomlossSolver`, the dense reference).
* :mod:`dsflow.ot.labels`: label tables: per-class statistics, label distances, Bures-Wasserstein tables, the
  class coupling layer.
* :mod:`dsflow.ot.energies`: potentials, interaction energies and their kernels.

At the top: :mod:`~dsflow.ot.costs` (the cost bundles :class:`LabelCosts`, :class:`OTDDSettings`),
:mod:`~dsflow.ot.otdd` (:func:`otdd`, the distance itself) and :mod:`~dsflow.ot.distances` (squared distances).
"""

from dsflow.ot.costs import LabelCosts, OTDDSettings, augmented_cost
from dsflow.ot.labels import (
    BaseGaussianLabelDistance, ClassLayout, ClassSamples, DiagonalGaussianLabelDistance, DiagonalStats,
    EigenNuclearNorms, ExactLabelDistance, GaussianLabelDistance, Gram, LabelDistance, LabelStats, LayoutCache,
    NewtonSchulzNuclearNorms, NuclearNorms, Samples, SharedProducts,
    bures_pair_table, bures_wasserstein_table, check_labels, class_factors, class_layout, class_means, class_stats,
    cross_term_eig, cross_term_gram, cross_term_svd, group_by_class, sqrtm_psd,
)
from dsflow.ot.otdd import otdd
from dsflow.ot.solvers import GeomlossSolver, OuterSolver, SinkhornCapWarning, WarmSinkhorn, WarmState

__all__ = [
    "BaseGaussianLabelDistance",
    "ClassLayout",
    "ClassSamples",
    "DiagonalGaussianLabelDistance",
    "DiagonalStats",
    "EigenNuclearNorms",
    "ExactLabelDistance",
    "GeomlossSolver",
    "GaussianLabelDistance",
    "Gram",
    "LabelCosts",
    "LabelDistance",
    "LabelStats",
    "LayoutCache",
    "NewtonSchulzNuclearNorms",
    "NuclearNorms",
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
