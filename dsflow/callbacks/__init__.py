"""Lightning callbacks: run outputs (trajectory, figures, summary), flowed datasets, oracle scoring, graceful
interrupts, progress lines for logs, pushed samples."""

from dsflow.callbacks.dataset_export import DatasetExport
from dsflow.callbacks.interrupt import GracefulInterrupt
from dsflow.callbacks.oracle import OracleScorer
from dsflow.callbacks.progress import LineProgress
from dsflow.callbacks.push_writer import PushWriter
from dsflow.callbacks.recorder import FlowRecorder
from dsflow.callbacks.threads import TorchThreads

__all__ = ["DatasetExport", "FlowRecorder", "GracefulInterrupt", "LineProgress", "OracleScorer", "PushWriter",
           "TorchThreads"]
