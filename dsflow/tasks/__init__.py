"""LightningModules for oracles and the flow map, random restarts, and frozen-oracle loading."""

from dsflow.tasks.classifier import Classifier
from dsflow.tasks.flow_map import FlowMap, FlowMapFit, Pushed, fit_flow_map
from dsflow.tasks.oracle import Oracle, load_oracle, save_oracle
from dsflow.tasks.restarts import RestartResult, fit_restarts, select_restarts

__all__ = ["Classifier", "FlowMap", "FlowMapFit", "fit_flow_map", "Oracle", "Pushed", "RestartResult", "fit_restarts", "load_oracle", "save_oracle",
           "select_restarts"]
