"""Seconds per flow step with 1 and 2 processes (Lightning DDP): ``python benchmarks/ddp_speed.py [--sizes N ...]``.

Each row is one ``Trainer.fit`` of the flow of ``configs/flow/speed/784d.yaml`` (fd-fl, OTDD alone, default fast
solver; the ``784d`` workload of ``benchmarks/step_speed.py``: n particles, m = n or ``--ref-factor`` n reference
samples, 784-d, 10 + 10 classes, full Gaussian label distances; overrides after ``--``), started in a fresh process; with W > 1 processes it runs ``strategy=ddp`` (gloo on CPU, NCCL on GPUs), the
reference split into W shards (see :mod:`dsflow.flows.distributed`). The step time is the median over the timed
steps of the slowest rank (one step = objective, backward with DDP's gradient all-reduce, optimizer step).

What the processes share out: the cross term OT(rho, beta_s) costs n m / W per process and the reference's self
terms m^2 / W^2 (solved once), but the source statistics, label tables and the self term OT(rho, rho) (n^2) are
replicated on every process, so at n = m the best speed-up is about (n m + n^2) / (n m / W + n^2), 1.33 for W = 2.
CPU rows split the machine's cores between the processes (threads per process = cores / W, or ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import lightning as L
import torch

from dsflow.experiments import common, runs
from dsflow.process import flush_denormals


class StepTimer(L.Callback):
    """Wall time of each training step (Lightning's batch start to batch end)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t = warmup, [], 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.times.append(time.perf_counter() - self._t)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        local = torch.tensor([statistics.median(self.times[self.warmup:]), self.times[0]], dtype=torch.float64)
        slowest = trainer.strategy.reduce(local.to(pl_module.device), reduce_op="max").cpu()
        if trainer.is_global_zero:
            print(json.dumps({"median": float(slowest[0]), "first": float(slowest[1]),
                              "objective": float(pl_module.last_loss.total), "threads": torch.get_num_threads()}))


def run_one(devices: int, n: int, m: int, steps: int, warmup: int, accelerator: str, threads: int, overrides: list[str]) -> None:
    torch.set_num_threads(threads)
    sizes = ["--data.init_args.source.init_args.n", str(n), "--data.init_args.reference.init_args.n", str(m)]
    with tempfile.TemporaryDirectory() as run_dir:
        cli = runs.flow_config(["configs/flow/speed/base.yaml", "configs/flow/speed/784d.yaml"], [*sizes, *overrides], run_dir)
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=warmup + steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[StepTimer(warmup)],
    )
    trainer.fit(cli.model, datamodule=cli.datamodule)


def main(argv: list[str] | None = None) -> None:
    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    parser = common.parser(__doc__, out=None, seeds=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000], help="n particles")
    parser.add_argument("--ref-factor", type=int, default=1, help="reference size m = ref_factor * n")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="processes W")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (median of the slowest rank)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first is a cold start)")
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (one GPU per process)")
    parser.add_argument("--one", nargs=2, type=int, metavar=("DEVICES", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        run_one(args.one[0], args.one[1], args.ref_factor * args.one[1], args.steps, args.warmup, args.accelerator,
                args.threads or 1, args.overrides)
        return
    cores = os.cpu_count() or 1
    header = ["workload", "n", "m", "processes W", "device", "threads/process", "median s/step", "first (cold) step s"]
    print(common.markdown_table(header, [], "lrrrlrrr"), flush=True)
    for n in args.sizes:
        for w in args.devices:
            threads = args.threads or max(1, cores // w)
            cmd = [sys.executable, __file__, "--one", str(w), str(n), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--ref-factor", str(args.ref_factor), "--accelerator", args.accelerator,
                   "--threads", str(threads)]
            cmd += ["--", *args.overrides] if args.overrides else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
            device = "cpu (gloo)" if args.accelerator == "cpu" else torch.cuda.get_device_name()
            row = ["784d, fd-fl", n, args.ref_factor * n, w, device, r["threads"], f"{r['median']:.3f}", f"{r['first']:.2f}"]
            print(common.markdown_table(header, [row]).splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
