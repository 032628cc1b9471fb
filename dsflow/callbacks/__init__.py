"""Lightning callbacks: run outputs (trajectory, figures, summary)."""

from dsflow.callbacks.recorder import FlowRecorder
from dsflow.callbacks.threads import TorchThreads

__all__ = ["FlowRecorder", "TorchThreads"]
