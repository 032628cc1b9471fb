"""Particles, objectives, energies, label dynamics (with jd-vl label recovery) and the FlowModule."""

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
from dsflow.flows.label_recovery import DBSCANLabelRecovery, KMeansLabelRecovery, LabelRecovery, match_labels
from dsflow.flows.module import FlowModule
from dsflow.flows.objective import FlowLoss, FlowState, Objective, ObjectiveTerm, OTDDTerm
from dsflow.flows.particles import Particles, Reference

__all__ = [
    "AffineTerm",
    "BallTerm",
    "ClassAffineTerm",
    "ClassRepulsionTerm",
    "ClassSpreadTerm",
    "CollapseTerm",
    "DBSCANLabelRecovery",
    "FeatureDriven",
    "FlowLoss",
    "FlowModule",
    "FlowState",
    "InteractionTerm",
    "JointDrivenFixed",
    "JointDrivenVariable",
    "KMeansLabelRecovery",
    "LabelDynamics",
    "LabelRecovery",
    "MarginTerm",
    "NormTerm",
    "Objective",
    "ObjectiveTerm",
    "OTDDTerm",
    "Particles",
    "Reference",
    "match_labels",
]
