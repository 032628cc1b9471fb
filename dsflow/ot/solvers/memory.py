"""How large a stored cost may be, by device: the dense/block choice of :class:`~dsflow.ot.solvers.WarmSinkhorn`."""

from __future__ import annotations

import torch

__all__ = ["CPU_DENSE_ENTRIES", "dense_entries"]

#: stored-cost entries n m + n^2 on a CPU: float32 matrices of 240 MB, what a laptop affords, and about where the
#: block path catches up on 2 cores (docs/speed.md)
CPU_DENSE_ENTRIES = 60_000_000


def dense_entries(device: torch.device | None) -> int:
    """The most entries n m + n^2 a Sinkhorn solve may store on ``device`` (None: the CPU).

    On a GPU, what half of its free memory holds now, counting about three float32 matrices per entry (the cost,
    its kernel and the products shared with the label tables): n = m = 50,000 (5e9 entries) on an idle 141 GB
    H200, where the block path would recompute a product every sweep.
    """
    if device is None or device.type != "cuda":
        return CPU_DENSE_ENTRIES
    free, _ = torch.cuda.mem_get_info(device)
    return int(free // 2 // (3 * 4))
