"""Energies of a flow beyond OTDD: potentials and pairwise interactions (plain torch), and interaction kernels.

:mod:`~dsflow.ot.energies.energy_functions` holds the potentials and interaction means that
:mod:`dsflow.flows.energies` wraps as objective terms; :mod:`~dsflow.ot.energies.interaction_kernels` the kernels W
of an interaction energy.
"""

from dsflow.ot.energies.energy_functions import (
    affine_potential, ball_potential, class_affine_potential, collapse_potential, hinge_potential, interaction_mean,
    norm_potential, pair_mask, pairwise_sq_distances, potential_mean,
)
from dsflow.ot.energies.interaction_kernels import (
    ExponentialKernel, GaussianKernel, InverseMultiquadricKernel, Kernel, NegativeSquaredDistance,
)

__all__ = [
    "ExponentialKernel",
    "GaussianKernel",
    "InverseMultiquadricKernel",
    "Kernel",
    "NegativeSquaredDistance",
    "affine_potential",
    "ball_potential",
    "class_affine_potential",
    "collapse_potential",
    "hinge_potential",
    "interaction_mean",
    "norm_potential",
    "pair_mask",
    "pairwise_sq_distances",
    "potential_mean",
]
