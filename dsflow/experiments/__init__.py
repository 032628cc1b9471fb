"""Experiments that run dsflow end to end and report on it (``dsflow.experiments.gpu_check``: the GPU check)."""
