"""Lightning callbacks: run outputs (trajectory, figures, summary), oracle scoring along the flow."""

from dsflow.callbacks.oracle import OracleScorer
from dsflow.callbacks.recorder import FlowRecorder

__all__ = ["FlowRecorder", "OracleScorer"]
