"""Seconds per flow step and peak memory: ``python benchmarks/step_speed.py [--sizes N ...]``.

One step is what FlowModule's training step does (fd-fl, paper Algorithm 1): refresh the source class
statistics and the label-distance tables ss and sr (the reference's rr is cached), evaluate the OTDD, backward,
scale the gradient by n (eq. 17) and take an SGD step. Workloads:

* ``784d``: n = m particles in 784-d (MNIST-sized), 10 + 10 classes, full Gaussian (Bures) label distances;
  each class is a random 32-dimensional Gaussian blob around its own centre, pixel-like scale (|x - x'|^2 ~ 10^2).
* ``2d``: the 2-D three-Gaussian mixtures of ``configs/flow/gaussians_2d.yaml`` (eps = 0.01), n per class = n / 3.

Each (workload, n) runs in a fresh subprocess, so that the peak resident memory (``ru_maxrss``, the whole
process including the ~0.4 GB of Python and torch) belongs to that run alone; on CUDA the peak is
``torch.cuda.max_memory_allocated``. Prints a Markdown table.

Speed means nothing without accuracy: for n up to ``--check-up-to`` the table also gives the relative error of the
gradient a step uses (the solver as configured, warm-started as in the flow) against a converged cold solve at the
same particles, taken at the first timed step (mid-flow, where the particles move most; near the end of a flow
the error is far smaller). At eps = 1 on these costs (spread ~ 300) Sinkhorn contracts slowly; ``--solver dense`` (geomloss,
epsilon-scaling 0.7) shows what the plain dense path gives there.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from dsflow.data.base import LabeledData
from dsflow.flows import FlowModule, OTDDTerm
from dsflow.ot.otdd import otdd
from dsflow.ot.geomloss_solver import GeomlossSolver
from dsflow.ot.warm_sinkhorn import WarmSinkhorn

DEFAULT_SIZES = {"784d": [500, 2000, 5000], "2d": [300, 3000]}


def make_784d(n: int, seed: int, shift: float, device: torch.device) -> LabeledData:
    """10 classes of n / 10 points in 784-d: centre + 32-d Gaussian blob + small isotropic noise."""
    gen = torch.Generator().manual_seed(seed)
    c, d, k = 10, 784, 32
    if n % c:
        raise ValueError(f"784d workload: n must be a multiple of {c} (equal classes), got {n}")
    centres = 0.5 * torch.rand(c, d, generator=gen) + shift  # (C, d)
    basis = torch.randn(c, k, d, generator=gen) * (0.3 / k**0.5)  # (C, k, d)
    y = torch.arange(n) % c  # (n,)
    z = torch.randn(n, k, generator=gen)  # (n, k)
    blob = torch.bmm(z.view(n // c, c, k).transpose(0, 1), basis).transpose(0, 1).reshape(n, d)  # (n, d), row i: z_i basis[y_i]
    x = centres[y] + blob + 0.05 * torch.randn(n, d, generator=gen)
    return LabeledData(x.to(device), y.to(device), c, f"784d-{seed}")


def make_2d(n: int, seed: int, means: list[list[float]], std: float, device: torch.device) -> LabeledData:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.tensor(means)[y] + std * torch.randn(n, 2, generator=gen)
    return LabeledData(x.to(device), y.to(device), 3, f"2d-{seed}")


def build(workload: str, n: int, device: torch.device, solver: str, max_iter: int, warm_levels: int = 16,
          tol: float = 1e-4, warm_margin: int = 0, overrelax: float = 1.5) -> FlowModule:
    """A FlowModule (OTDD alone, fd-fl, Gaussian label distances) with the workload's data on ``device``."""
    if workload == "784d":
        source, reference, eps = make_784d(n, 0, 0.0, device), make_784d(n, 1, 0.25, device), 1.0
    else:
        source = make_2d(n, 0, [[-4.0, 2.0], [-4.0, -2.0], [-1.0, 0.0]], 0.5, device)
        reference, eps = make_2d(n, 1, [[3.0, 3.0], [4.0, -2.0], [6.0, 1.0]], 0.5, device), 0.01
    outer = GeomlossSolver() if solver == "dense" else WarmSinkhorn(
        tol=tol, max_iter=max_iter, warm_levels=warm_levels, warm_margin=warm_margin, overrelax=overrelax)
    module = FlowModule(terms=[OTDDTerm(eps=eps, solver=outer)])
    module.init_data(source, reference)
    return module.to(device)


def gradient_error(module: FlowModule) -> float:
    """Relative error |g - g*| / |g*| of the OTDD gradient a step uses at the current particles (g: the module's
    own solver, warm as in the flow) against a converged cold solve g* (tolerance 1e-7, up to 5,000 sweeps).
    The solver's warm-start state is put back afterwards, so that the next step starts as it would have."""
    term = module.objective.terms[0]
    state = module.state()
    saved = getattr(term.solver, "_state", None)  # a WarmState (dsflow.ot.warm_state), never changed in place
    grads = []
    for solver in (term.solver, WarmSinkhorn(tol=1e-7, max_iter=5000, warm_start=False)):
        x = state.x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(otdd(x, state.x_ref, state.labels, term.settings, solver=solver), x)
        grads.append(g)
    if saved is not None:
        term.solver._state = saved
    return float((grads[0] - grads[1]).norm() / grads[1].norm())


def run_one(workload: str, n: int, steps: int, warmup: int, solver: str, max_iter: int, warm_levels: int,
            tol: float, check: bool, warm_margin: int = 0, overrelax: float = 1.5) -> dict:
    """Time ``steps`` flow steps after ``warmup`` (the first one starts Sinkhorn cold) in this process."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = build(workload, n, device, solver, max_iter, warm_levels, tol, warm_margin, overrelax)
    opt = torch.optim.SGD([module.particles.x], lr=0.1)
    times, grad_err = [], None
    for i in range(warmup + steps):
        if check and i == warmup:  # mid-flow, where the particles (and potentials) move most
            grad_err = gradient_error(module)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = module.flow_step(opt).total
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"workload": workload, "n": n, "device": name, "median": statistics.median(times[warmup:]),
            "first": times[0], "peak_mb": peak, "objective": float(loss.detach()), "solver": solver,
            "grad_err": grad_err}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", help="n = m for every workload (default: per workload)")
    parser.add_argument("--workloads", nargs="+", default=["784d", "2d"], choices=["784d", "2d"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first is a cold start)")
    parser.add_argument("--solver", default="fast", choices=["fast", "dense"], help="WarmSinkhorn or geomloss")
    parser.add_argument("--max-iter", type=int, default=50, help="WarmSinkhorn sweeps per step at most")
    parser.add_argument("--warm-margin", type=int, default=0, help="WarmSinkhorn warm_margin")
    parser.add_argument("--overrelax", type=float, default=1.5, help="WarmSinkhorn overrelax (1: plain sweeps)")
    parser.add_argument("--tol", type=float, default=1e-4, help="WarmSinkhorn tolerance (log-marginal change)")
    parser.add_argument("--check-up-to", type=int, default=5000,
                        help="report the gradient error against a converged solve for n up to this (it costs a solve)")
    parser.add_argument("--warm-levels", type=int, default=16, help="WarmSinkhorn warm_levels (0 for huge n)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--one", nargs=2, metavar=("WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        n = int(args.one[1])
        print(json.dumps(run_one(args.one[0], n, args.steps, args.warmup, args.solver, args.max_iter,
                                 args.warm_levels, args.tol, n <= args.check_up_to, args.warm_margin,
                                 args.overrelax)))
        return
    print("| workload | n | device | median s/step | peak memory MB | first (cold) step s | gradient error |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for workload in args.workloads:
        for n in args.sizes or DEFAULT_SIZES[workload]:
            cmd = [sys.executable, __file__, "--one", workload, str(n), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--solver", args.solver, "--max-iter", str(args.max_iter),
                   "--warm-levels", str(args.warm_levels), "--tol", str(args.tol), "--check-up-to", str(args.check_up_to),
                   "--warm-margin", str(args.warm_margin), "--overrelax", str(args.overrelax)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            label = f"{r['workload']}, fd-fl, {args.solver}"
            err = "-" if r["grad_err"] is None else f"{r['grad_err']:.1e}"
            print(f"| {label} | {r['n']} | {r['device']} | {r['median']:.3f} | {r['peak_mb']:.0f} | {r['first']:.2f} "
                  f"| {err} |", flush=True)


if __name__ == "__main__":
    main()
