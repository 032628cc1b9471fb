"""Test-wide settings: W&B offline and silent, headless plots; the ``device`` every math test runs on."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

#: every device a test taking ``device`` runs on: the CPU always, CUDA when there is one
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES, ids=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device of the test's tensors (parametrized: ``test[cpu]``, ``test[cuda]``)."""
    return torch.device(request.param)
