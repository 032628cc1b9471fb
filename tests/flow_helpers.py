"""Helpers for flow tests: flows without a Trainer, through the step Lightning takes (FlowModule.flow_step)."""

from __future__ import annotations

import pytest
import torch

from dsflow.data.base import LabeledData
from dsflow.flows import FlowModule, LabelDynamics, ObjectiveTerm


def make_flow(terms: list[ObjectiveTerm], source: LabeledData, reference: LabeledData,
              dynamics: LabelDynamics | None = None, device: torch.device | str = "cpu") -> FlowModule:
    """A FlowModule started from ``source`` towards ``reference``, on ``device``."""
    module = FlowModule(terms, dynamics)
    module.init_data(source, reference)
    return module.to(device)


def flow_steps(module: FlowModule, steps: int, lr: float = 0.1, callback=None) -> torch.optim.Optimizer:
    """Run ``steps`` SGD flow steps with :meth:`FlowModule.flow_step`, calling ``callback(module)`` after each."""
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        module.flow_step(opt)
        if callback is not None:
            callback(module)
    return opt


def two_blobs(n: int = 40, gap: float = 1.0, d: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> LabeledData:
    """Two overlapping Gaussian classes centred at -gap/2 and +gap/2 along the first axis."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, d, generator=gen, dtype=dtype)
    x[:n, 0] -= gap / 2
    x[n:, 0] += gap / 2
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return LabeledData(x, y, 2, "blobs")


@pytest.fixture(autouse=False)
def single_thread():
    """One intra-op thread for tiny matrices (much faster on a busy machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
