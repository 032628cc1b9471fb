"""The guard of the GPU path, run on any device: host reads per flow step on every hot path.

Every read of a device value by the host (``.item()``, ``float(t)``, ``.tolist()``, a boolean mask, a copy to the
CPU) stalls a GPU until its queue drains. A flow step may read a handful of numbers (the stopping rule a few
times per Sinkhorn solve, the finite-objective check); a read inside the sweep loop would cost one per sweep, up
to hundreds a step. :class:`dsflow.host_reads.HostReads` counts them on the CPU exactly as they would happen on a
GPU, so this test fails on a CPU-only machine the day one is added. On CUDA, CUDA's own sync reports are checked
too (reads hidden in library kernels).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from dsflow.data.base import LabeledData
from dsflow.data.workloads import ClassBlobs
from dsflow.flows import (
    FeatureDriven, FlowModule, JointDrivenFixed, JointDrivenVariable, KMeansLabelRecovery, OTDDTerm,
)
from dsflow.host_reads import HostReads
from dsflow.ot import GaussianLabelDistance, WarmSinkhorn
from dsflow.ot.solvers import stopping
from tests.flow_helpers import make_flow

MOST_READS = 10  # per flow step, whatever the number of sweeps (issue #23)


def blobs(n: int, dim: int, seed: int, shift: float = 0.0) -> LabeledData:
    return ClassBlobs(n, num_classes=5, dim=dim, rank=8, shift=shift, seed=seed).load()


def table1_term(**solver: object) -> OTDDTerm:
    """Table 1's OTDD (configs/flow/table1/flow.yaml): eps 1, lambda_y 20, full Gaussian label distances, up to
    500 sweeps stopped on the marginals."""
    return OTDDTerm(eps=1.0, lambda_y=20.0, label_distance=GaussianLabelDistance(),
                    solver=WarmSinkhorn(max_iter=500, marginal_tol=1e-3, **solver))  # type: ignore[arg-type]


FLOWS: dict[str, Callable[[torch.device], FlowModule]] = {
    "table1-fd-fl": lambda dev: make_flow([table1_term()], blobs(100, 196, 0), blobs(100, 196, 1, 0.25),
                                          FeatureDriven(), dev),
    "table1-blocks": lambda dev: make_flow([table1_term(dense_limit=0, block_entries=4096)],
                                           blobs(100, 196, 0), blobs(100, 196, 1, 0.25), FeatureDriven(), dev),
    "jd-fl": lambda dev: make_flow([OTDDTerm(eps=0.05, solver=WarmSinkhorn(max_iter=200))],
                                   blobs(100, 2, 0), blobs(100, 2, 1, 0.5), JointDrivenFixed(), dev),
    "jd-vl": lambda dev: make_flow([OTDDTerm(eps=0.05, solver=WarmSinkhorn(max_iter=200))],
                                   blobs(100, 2, 0), blobs(100, 2, 1, 0.5),
                                   JointDrivenVariable(KMeansLabelRecovery(5), cluster_every=2), dev),
}


def reads_per_step(module: FlowModule, steps: int) -> list[tuple[HostReads, int]]:
    """Host reads and Sinkhorn sweeps of each of ``steps`` flow steps after a first (cold) one."""
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    module.flow_step(opt)
    where, sweeps = stopping._where, [0]

    def counting_where(mask: torch.Tensor, kept: tuple, new: tuple) -> tuple:  # called once per sweep
        sweeps[0] += 1
        return where(mask, kept, new)

    counts = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stopping, "_where", counting_where)
        for _ in range(steps):
            sweeps[0] = 0
            with HostReads() as reads:
                module.flow_step(opt)
            counts.append((reads, sweeps[0]))
    return counts


# hits the sweep cap: harmless, a capped sweep is the worst case of the read count
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
@pytest.mark.parametrize("flow", list(FLOWS))
def test_a_flow_step_reads_the_host_a_few_times(flow: str, device: torch.device) -> None:
    for reads, sweeps in reads_per_step(FLOWS[flow](device), 2):
        assert sweeps > 5 * MOST_READS, f"{sweeps} sweeps: the workload must sweep far more often than it may read"
        assert reads.count <= MOST_READS, reads.summary()
        if device.type == "cuda":
            assert reads.cuda_syncs <= MOST_READS, reads.summary()


def test_reference_shards_read_the_host_a_few_times_per_shard() -> None:
    module = FlowModule([table1_term()], FeatureDriven(), reference_shards=2)
    module.init_data(blobs(100, 196, 0), blobs(100, 196, 1, 0.25))
    for reads, _ in reads_per_step(module, 2):
        assert reads.count <= 2 * MOST_READS, reads.summary()


def test_the_guard_fails_on_a_read_planted_in_the_sweep_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    where = stopping._where

    def reading_where(mask: torch.Tensor, kept: tuple, new: tuple) -> tuple:
        bool(mask)  # the kind of line that must never enter a sweep: the host waits for every sweep
        return where(mask, kept, new)

    monkeypatch.setattr(stopping, "_where", reading_where)
    ((reads, _),) = reads_per_step(FLOWS["table1-fd-fl"](torch.device("cpu")), 1)
    assert reads.count > MOST_READS
    assert any("test_host_reads.py" in place for place in reads.where), reads.summary()
