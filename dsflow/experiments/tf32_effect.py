"""What TF32 would do to a flow, measured on any machine: ``python benchmarks/tf32_effect.py [--n 2000]``.

On Ampere and later GPUs, ``torch.set_float32_matmul_precision("high")`` (Lightning advises it at every GPU start)
lets float32 matrix products round their inputs to TF32: 10 explicit mantissa bits instead of 23, products still
accumulated in float32. A flow sets "highest" around its steps (``FlowModule(matmul_precision=...)``); this
measures what opting into "high" costs, without a GPU: :class:`SimulatedTF32` rounds the float32 inputs of every
matrix product to TF32 (round to nearest) and leaves the rest in float32.

It reports, for the Table 1 Fashion-MNIST flow onto MNIST at n (the settings of ``configs/flow/table1/``):

* the relative error of one step's OTDD gradient with TF32 products against the same step in float32, at step
  ``--at`` of the flow (mid-flow, where the particles move most);
* the whole supervised row (30 steps, oracle-scored) with and without TF32 products: accuracy and final objective.

The oracle is ``--oracle`` (a LeNet-5 checkpoint, e.g. the Table 1 runner's ``<out>/oracle/checkpoints/last.ckpt``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dsflow.experiments import common, table1
from dsflow.experiments.step_speed import build
from dsflow.ot.otdd import otdd
from dsflow.process import flush_denormals

__all__ = ["SimulatedTF32", "tf32_round", "main"]

_aten = torch.ops.aten
_PRODUCTS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default, _aten.addmv.default,
             _aten.mv.default, _aten.dot.default}


def tf32_round(t: torch.Tensor) -> torch.Tensor:
    """float32 t rounded to TF32 (10 mantissa bits, round to nearest, ties away from zero), still float32."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)  # the 13 low mantissa bits rounded off


class SimulatedTF32(TorchDispatchMode):
    """Inside it, float32 matrix products (mm, addmm, bmm, baddbmm, mv, addmv, dot) see TF32-rounded inputs."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _PRODUCTS:
            args = tuple(tf32_round(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a
                         for a in args)
        return func(*args, **(kwargs or {}))


def gradient_error(n: int, at: int) -> float:
    """|g_tf32 - g| / |g| of the OTDD gradient at step ``at`` of the Fashion-MNIST Table 1 flow at n (same
    particles, same warm start)."""
    module = build("fmnist", n, [], torch.device("cpu"))
    opt = module.configure_optimizers()
    for _ in range(at):
        module.flow_step(opt)
    term: Any = module.objective.terms[0]  # the OTDDTerm (ModuleList items are typed as Module)
    state = module.state()
    if state.labels is None:
        raise RuntimeError("tf32_effect: the Table 1 flow has no label tables")
    saved = getattr(term.solver, "_state", None)
    grads = []
    for simulate in (False, True):
        term.solver._state = saved  # both start from the flow's own warm start
        x = state.x.detach().clone().requires_grad_(True)
        with SimulatedTF32() if simulate else contextlib.nullcontext():
            (g,) = torch.autograd.grad(otdd(x, state.x_ref, state.labels, term.settings, solver=term.solver), x)
        grads.append(g)
    return float((grads[1] - grads[0]).norm() / grads[0].norm())


def main(argv: list[str] | None = None) -> None:
    flush_denormals()
    p = common.parser(__doc__, out="runs/tf32_effect", seeds=None)
    p.add_argument("--n", type=int, default=2000, help="target and reference samples")
    p.add_argument("--at", type=int, default=10, help="flow step at which the gradient is compared")
    p.add_argument("--oracle", required=True, help="LeNet-5 MNIST oracle checkpoint")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    err = gradient_error(args.n, args.at)
    rows = []
    for name, simulate in (("float32 (highest)", False), ("TF32 products (high)", True)):
        run = ["--targets", "fmnist", "--modes", "supervised", "--n", str(args.n), "--oracle", args.oracle,
               "--out", f"{args.out}/{'tf32' if simulate else 'fp32'}"]
        with SimulatedTF32() if simulate else contextlib.nullcontext():
            (row,) = table1.main(run)
        result = row.runs[table1.Mode.SUPERVISED]
        objective = result.history[-1]["objective"]
        rows.append([name, f"{result.before:.1f}", f"{result.accuracy:.1f}", f"{objective:.4g}",
                     f"{err:.1e}" if simulate else "-"])
    header = ["products", "before %", "after 30 steps %", "final objective", f"gradient rel. error (step {args.at})"]
    print(common.markdown_table(header, rows, "lrrrr"))


if __name__ == "__main__":
    main()
