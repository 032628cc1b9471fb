"""Lightning callbacks: run outputs (trajectory, figures, summary) and graceful interrupts."""

from dsflow.callbacks.interrupt import GracefulInterrupt
from dsflow.callbacks.recorder import FlowRecorder

__all__ = ["FlowRecorder", "GracefulInterrupt"]
