"""Seconds per flow step with 1 and 2 processes (Lightning DDP): ``python benchmarks/ddp_speed.py [--sizes N ...]``.

Each row is one ``Trainer.fit`` of a FlowModule (fd-fl, OTDD alone, default fast solver) on the ``784d`` workload
of ``benchmarks/step_speed.py`` (n particles, m = n or ``--ref-factor`` n reference samples, 784-d, 10 + 10
classes, full Gaussian label distances),
started in a fresh process; with W > 1 processes it runs ``strategy=ddp`` (gloo on CPU, NCCL on GPUs), the
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
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_speed's workload
from step_speed import make_784d  # noqa: E402

from dsflow.data.base import DatasetSource, LabeledData  # noqa: E402
from dsflow.data.pair import FlowDataModule  # noqa: E402
from dsflow.flows import FlowModule, OTDDTerm  # noqa: E402


class Blobs784(DatasetSource):
    """The 784-d workload of step_speed.py as a dataset source."""

    def __init__(self, n: int, seed: int, shift: float) -> None:
        self.n, self.seed, self.shift = n, seed, shift

    def load(self) -> LabeledData:
        return make_784d(self.n, self.seed, self.shift, torch.device("cpu"))


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


def run_one(devices: int, n: int, m: int, steps: int, warmup: int, accelerator: str, threads: int) -> None:
    torch.set_num_threads(threads)
    data = FlowDataModule(Blobs784(n, 0, 0.0), Blobs784(m, 1, 0.25))
    module = FlowModule([OTDDTerm(eps=1.0)])
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=warmup + steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[StepTimer(warmup)],
    )
    trainer.fit(module, datamodule=data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000], help="n particles")
    parser.add_argument("--ref-factor", type=int, default=1, help="reference size m = ref_factor * n")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="processes W")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (median of the slowest rank)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first is a cold start)")
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (one GPU per process)")
    parser.add_argument("--one", nargs=2, type=int, metavar=("DEVICES", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: cores / W)")
    args = parser.parse_args(argv)
    if args.one:
        run_one(args.one[0], args.one[1], args.ref_factor * args.one[1], args.steps, args.warmup, args.accelerator, args.threads)
        return
    cores = os.cpu_count() or 1
    print("| workload | n | m | processes W | device | threads/process | median s/step | first (cold) step s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for n in args.sizes:
        for w in args.devices:
            threads = args.threads or max(1, cores // w)
            cmd = [sys.executable, __file__, "--one", str(w), str(n), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--ref-factor", str(args.ref_factor), "--accelerator", args.accelerator, "--threads", str(threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
            device = "cpu (gloo)" if args.accelerator == "cpu" else torch.cuda.get_device_name()
            print(f"| 784d, fd-fl | {n} | {args.ref_factor * n} | {w} | {device} | {r['threads']} | {r['median']:.3f} | {r['first']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
