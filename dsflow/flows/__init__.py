"""Particles, objectives, energies, label dynamics and the FlowModule."""

from dsflow.flows.clustering import Clustering, DBSCANClustering, KMeansClustering, match_labels
from dsflow.flows.dynamics import FeatureDriven, LabelDynamics
from dsflow.flows.energies import (
    AffineTerm,
    BallTerm,
    ClassAffineTerm,
    ClassRepulsionTerm,
    ClassSpreadTerm,
    CollapseTerm,
    InteractionTerm,
    MarginTerm,
    NormTerm,
)
from dsflow.flows.joint import JointDrivenFixed, JointDrivenVariable
from dsflow.flows.module import FlowModule
from dsflow.flows.objective import FlowLoss, FlowState, Objective, ObjectiveTerm, OTDDTerm
from dsflow.flows.particles import Particles, Reference

__all__ = [
    "AffineTerm",
    "BallTerm",
    "ClassAffineTerm",
    "ClassRepulsionTerm",
    "ClassSpreadTerm",
    "Clustering",
    "CollapseTerm",
    "DBSCANClustering",
    "FeatureDriven",
    "FlowLoss",
    "FlowModule",
    "FlowState",
    "InteractionTerm",
    "JointDrivenFixed",
    "JointDrivenVariable",
    "KMeansClustering",
    "LabelDynamics",
    "MarginTerm",
    "NormTerm",
    "Objective",
    "ObjectiveTerm",
    "OTDDTerm",
    "Particles",
    "Reference",
    "match_labels",
]
