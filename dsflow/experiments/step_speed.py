"""Seconds per flow step and peak memory: ``python benchmarks/step_speed.py [--sizes N ...]``.

One step is :meth:`FlowModule.flow_step`, what a training step does (fd-fl, paper Algorithm 1): refresh the
source class statistics and the label-distance tables ss and sr (the reference's rr is cached), evaluate the
OTDD, backward, scale the gradient by n (eq. 17), take the SGD step and check that the flow stays finite. The
workloads are flow configs (``configs/flow/speed/``); the script sweeps sizes n = m:

* ``784d``: n = m particles in 784-d (MNIST-sized), 10 + 10 classes, full Gaussian (Bures) label distances;
  each class is a random 32-dimensional Gaussian blob around its own centre, pixel-like scale (|x - x'|^2 ~ 10^2).
* ``2d``: the 2-D three-Gaussian mixtures of ``configs/flow/gaussians_2d.yaml`` (eps = 0.01), n per class = n / 3.
* ``fmnist``, ``usps`` (and ``fmnist-pseudo``, ``usps-pseudo``): the Table 1 flows, real data from the data root
  (``DSFLOW_DATA``): n class-balanced Fashion-MNIST test images (USPS training digits) onto n MNIST test digits
  with the settings of ``configs/flow/table1/`` (eps 1, lambda_y 20, up to 500 outer sweeps a step), labeled by
  their true labels (supervised) or by the Table 1 pseudo-labels (``-pseudo``), without the oracle's scoring.
  A whole Table 1 row (30 steps, scoring and pseudo-labels included) is timed by ``benchmarks/table1.py``.

Each (workload, n) runs in a fresh subprocess, so that the peak resident memory (``ru_maxrss``, the whole
process including the ~0.4 GB of Python and torch) belongs to that run alone; on CUDA the peak is
``torch.cuda.max_memory_allocated``. Prints a Markdown table. Solver settings are overrides after ``--``, e.g.
``-- --model.init_args.terms.init_args.solver dsflow.ot.GeomlossSolver`` (the dense geomloss path,
epsilon-scaling 0.7) or ``-- --model.init_args.terms.init_args.solver.init_args.max_iter 20``.

Speed means nothing without accuracy: for n up to ``--check-up-to`` the table also gives the relative error of the
gradient a step uses (the solver as configured, warm-started as in the flow) against a converged cold solve at the
same particles, taken at the first timed step (mid-flow, where the particles move most; near the end of a flow
the error is far smaller). At eps = 1 on these costs (spread ~ 300) Sinkhorn contracts slowly.

Host reads per step: one more step after the timed ones, untimed, counted with :class:`dsflow.host_reads.HostReads`
(the reads that make the host wait for the device; on CUDA each stalls the queue).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from dsflow.experiments import common, runs, table1
from dsflow.flows import FlowModule, OTDDTerm
from dsflow.host_reads import HostReads
from dsflow.process import flush_denormals
from dsflow.ot.otdd import otdd
from dsflow.ot import WarmSinkhorn

DEFAULT_SIZES = {"784d": [500, 2000, 5000], "2d": [300, 3000], **{
    name: [2000, 5000] for name in ("fmnist", "fmnist-pseudo", "usps", "usps-pseudo")}}
#: the real workloads: a benchmarks/table1.py target and mode
REAL = {"fmnist": ("fmnist", table1.Mode.SUPERVISED), "fmnist-pseudo": ("fmnist", table1.Mode.UNSUPERVISED),
        "usps": ("usps=usps_h5/train.npz", table1.Mode.SUPERVISED),
        "usps-pseudo": ("usps=usps_h5/train.npz", table1.Mode.UNSUPERVISED)}
SOLVERS = {"WarmSinkhorn": "fast", "GeomlossSolver": "dense"}  # the table's names


def workload_config(workload: str, n: int) -> tuple[list[str], list[str]]:
    """The config files and overrides of a workload at n = m."""
    if workload in REAL:
        target, mode = REAL[workload]
        over, _ = table1.target_overrides(target, mode, [])
        sizes = [f"{mode.source_key}.init_args.n", str(n), "--data.init_args.reference.init_args.n", str(n)]
        return [*table1.FLOW, mode.config], [*over, *sizes, "--trainer.callbacks", "[]"]
    sizes = ["--data.init_args.source.init_args.n", str(n), "--data.init_args.reference.init_args.n", str(n)]
    return ["configs/flow/speed/base.yaml", f"configs/flow/speed/{workload}.yaml"], sizes


def build(workload: str, n: int, overrides: list[str], device: torch.device) -> FlowModule:
    """The workload's FlowModule (n = m) with its data, on ``device``."""
    files, args = workload_config(workload, n)
    with tempfile.TemporaryDirectory() as run_dir:
        cli = runs.flow_config(files, [*args, *overrides], run_dir)
    module = cli.model
    module.init_data(cli.datamodule.source, cli.datamodule.reference)
    return module.to(device)


def gradient_error(module: FlowModule) -> float:
    """Relative error |g - g*| / |g*| of the OTDD gradient a step uses at the current particles (g: the module's
    own solver, warm as in the flow) against a converged cold solve g* (tolerance 1e-7, up to 5,000 sweeps).
    The solver's warm-start state is put back afterwards, so that the next step starts as it would have."""
    term = module.objective.terms[0]
    if not isinstance(term, OTDDTerm):
        raise ValueError(f"gradient_error: the first objective term is a {type(term).__name__}, not an OTDDTerm")
    state = module.state()
    if state.labels is None:
        raise RuntimeError("gradient_error: the OTDD term's step has no label tables")
    saved = getattr(term.solver, "_state", None)  # a WarmState (dsflow.ot.solvers.warm_state), never changed in place
    grads = []
    for solver in (term.solver, WarmSinkhorn(tol=1e-7, max_iter=5000, warm_start=False)):
        x = state.x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(otdd(x, state.x_ref, state.labels, term.settings, solver=solver), x)
        grads.append(g)
    if saved is not None:
        term.solver._state = saved  # type: ignore[attr-defined]  # a WarmSinkhorn: the getattr above found it
    return float((grads[0] - grads[1]).norm() / grads[1].norm())


def run_one(workload: str, n: int, steps: int, warmup: int, check: bool, overrides: list[str]) -> dict:
    """Time ``steps`` flow steps after ``warmup`` (the first one starts Sinkhorn cold) in this process."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = build(workload, n, overrides, device)
    opt = module.configure_optimizers()  # the config's (SGD, tau = 0.1)
    times, sweeps, grad_err = [], [], None
    solver = module.objective.terms[0].solver
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
        sweeps.append(getattr(solver, "last_cross_iterations", None))
    with HostReads() as reads:  # one more step, untimed: counting slows it
        module.flow_step(opt)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"workload": workload, "n": n, "device": name, "median": statistics.median(times[warmup:]),
            "first": times[0], "peak_mb": peak, "objective": float(loss.detach()),
            "solver": SOLVERS.get(type(module.objective.terms[0].solver).__name__, "other"), "grad_err": grad_err,
            "sweeps": None if None in sweeps[warmup:] else statistics.median(s for s in sweeps[warmup:] if s is not None), "host_reads": reads.count}


def main(argv: list[str] | None = None) -> None:
    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    p = common.parser(__doc__, out=None, seeds=None)
    p.add_argument("--sizes", type=int, nargs="+", help="n = m for every workload (default: per workload)")
    p.add_argument("--workloads", nargs="+", default=["784d", "2d"], choices=list(DEFAULT_SIZES))
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first is a cold start)")
    p.add_argument("--check-up-to", type=int, default=5000,
                   help="report the gradient error against a converged solve for n up to this (it costs a solve)")
    p.add_argument("--one", nargs=2, metavar=("WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    if args.one:
        n = int(args.one[1])
        print(json.dumps(run_one(args.one[0], n, args.steps, args.warmup, n <= args.check_up_to, args.overrides)))
        return
    header = ["workload", "n", "device", "median s/step", "outer sweeps/step", "peak memory MB",
              "first (cold) step s", "gradient error", "host reads/step"]
    print(common.markdown_table(header, [], "lrlrrrrrr"), flush=True)
    for workload in args.workloads:
        for n in args.sizes or DEFAULT_SIZES[workload]:
            cmd = [sys.executable, "-m", "dsflow.experiments.step_speed", "--one", workload, str(n), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--check-up-to", str(args.check_up_to)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--", *args.overrides] if args.overrides else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            err = "-" if r["grad_err"] is None else f"{r['grad_err']:.1e}"
            row = [f"{r['workload']}, fd-fl, {r['solver']}", r["n"], r["device"], f"{r['median']:.3f}",
                   "-" if r["sweeps"] is None else f"{r['sweeps']:.0f}", f"{r['peak_mb']:.0f}", f"{r['first']:.2f}", err, r["host_reads"]]
            print(common.markdown_table(header, [row]).splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
