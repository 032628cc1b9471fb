"""Lightning callbacks: run outputs (trajectory, figures, summary)."""

from dsflow.callbacks.recorder import FlowRecorder

__all__ = ["FlowRecorder"]
