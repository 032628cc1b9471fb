"""LightningModules for oracles, and frozen-oracle loading."""

from dsflow.tasks.classifier import Classifier
from dsflow.tasks.oracle import Oracle, load_oracle, save_oracle

__all__ = ["Classifier", "Oracle", "load_oracle", "save_oracle"]
