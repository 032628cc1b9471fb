"""Process-wide settings (not math): float32 denormals flushed to zero on the CPU, for the whole process; the
float32 matmul precision, for a block of work.

At a small epsilon most entries of a Sinkhorn kernel are tiny (classes far apart under the label cost), and their
products with the scalings and the particles' coordinates fall below float32's smallest normal number
(1.2e-38). CPUs compute such denormal numbers up to a hundred times slower than normal ones: one step of a Table 1
flow (n = 2,000, lambda_y = 20, on 2 cores) took 6 s with them and 0.7 s without (``benchmarks/step_speed.py
--workloads fmnist``). Their values lie below 1e-38 relative to the entries that matter, so flushing them to
zero changes no result beyond float32 rounding. TensorFlow and XLA flush them by default; torch does not.

The setting (:func:`torch.set_flush_denormal`) belongs to each CPU thread, and torch's worker threads take it from
the thread that starts them: it must be made before torch's first parallel operation. ``flow.py`` and ``train.py``
(:func:`dsflow.cli.flow_main`, :func:`~dsflow.cli.train_main`) make it first thing; a script that uses dsflow
as a library calls :func:`flush_denormals` at its start.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch

__all__ = ["MatmulPrecision", "flush_denormals", "float32_matmul_precision"]

#: torch's float32 matmul precisions: "highest" (IEEE float32 products), "high" (TF32 or bf16x3 on GPUs that have
#: them: 10-bit mantissa inputs), "medium" (bf16 inputs)
MatmulPrecision = Literal["highest", "high", "medium"]


def flush_denormals() -> bool:
    """Flush CPU denormals to zero from now on (:func:`torch.set_flush_denormal`); returns whether the CPU can.
    Worker threads of torch's matrix products started before this call keep computing denormals (see the module
    docstring)."""
    return torch.set_flush_denormal(True)


@contextmanager
def float32_matmul_precision(precision: MatmulPrecision | None) -> Iterator[None]:
    """torch's float32 matmul precision (:func:`torch.set_float32_matmul_precision`) set to ``precision`` for the
    block, and put back after it (None: left as it is).

    A user's ``torch.set_float32_matmul_precision("high")`` (which Lightning advises on every GPU start) lets
    CUDA round the inputs of float32 products to TF32 (10-bit mantissas): the OTDD's cost products
    |x|^2 + |y|^2 - 2 x.y then lose their small differences between large norms. A flow sets its own precision
    around its steps (``FlowModule(matmul_precision=...)``, "highest" by default), whatever the process's.
    """
    if precision is None:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
