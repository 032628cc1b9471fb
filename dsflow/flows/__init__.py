"""Particles, objectives, label dynamics and the FlowModule."""

from dsflow.flows.dynamics import FeatureDriven, LabelDynamics
from dsflow.flows.module import FlowModule
from dsflow.flows.objective import FlowLoss, FlowState, Objective, ObjectiveTerm, OTDDTerm
from dsflow.flows.particles import Particles, Reference

__all__ = [
    "FeatureDriven",
    "FlowLoss",
    "FlowModule",
    "FlowState",
    "LabelDynamics",
    "Objective",
    "ObjectiveTerm",
    "OTDDTerm",
    "Particles",
    "Reference",
]
