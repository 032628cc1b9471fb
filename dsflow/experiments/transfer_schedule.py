"""How the transfer flow's schedule and label distance were chosen: the OTDD objective along a long flow, and
where the particles land, judged on the k-shot target only (the labeled data a k-shot user has), never on the
test split the transfer runner scores.

    DSFLOW_DATA=../shared/data python benchmarks/transfer_schedule.py --pairs usps:mnist fmnist:mnist --shots 5 100 \
        --steps 120 --label-distances diagonal full [--flow-args model.init_args.terms.init_args.lambda_y=20]

For each pair, k and label distance, one flow of ``configs/flow/transfer/flow.yaml`` (the transfer runner's
datasets and seeds, :func:`dsflow.experiments.transfer_data.flow_overrides`) runs ``--steps`` steps with a CSV logger. The table gives
the objective at the checkpoints in ``--report``, as a fraction of the way from its start to its last value
(1.0: converged to where it ends), and at the last step :func:`dsflow.tasks.transfer.landing_report` of the
particles against the k-shot target: mean distance to the nearest target sample against the target's own
spacing, the fraction of target samples covered, and (digits onto digits) the fraction of particles that sit
on a target sample of another class. Writes ``<out>/results.json`` and ``<out>/objective.png``.
"""


from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsflow.experiments import common, runs
from dsflow.experiments.transfer import FLOW
from dsflow.experiments.transfer_data import flow_overrides, same_labels
from dsflow.io import load_trajectory
from dsflow.process import flush_denormals
from dsflow.tasks.transfer import landing_report

__all__ = ["LABEL_DISTANCES", "ScheduleRun", "parse", "objective_curve", "run_one", "main", "table", "figure"]

#: --label-distances name -> the flow override that selects it
LABEL_DISTANCES = {"diagonal": "dsflow.ot.DiagonalGaussianLabelDistance", "full": "dsflow.ot.GaussianLabelDistance"}


@dataclass
class ScheduleRun:
    """One long flow: its objective curve, the fraction of the objective's fall made by each reported step, and
    :func:`dsflow.tasks.transfer.landing_report` of the particles at the start and at the last step."""

    pair: str
    k: int
    seed: int
    label_distance: str
    seconds: float
    steps: list[int]
    objective: list[float]
    fraction_of_fall: dict[int, float]
    landing: dict
    start: dict


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__, out="runs/transfer_schedule", seeds=(0,), passthrough=None)
    p.add_argument("--pairs", nargs="+", default=["usps:mnist"])
    p.add_argument("--shots", nargs="+", type=int, default=[5, 100])
    p.add_argument("--steps", type=int, default=120, help="flow steps (default: %(default)s)")
    p.add_argument("--report", nargs="+", type=int, default=[20, 40, 60, 80], help="steps reported in the table")
    p.add_argument("--label-distances", nargs="+", default=["diagonal", "full"], choices=LABEL_DISTANCES)
    p.add_argument("--flow-args", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the flows")
    return p.parse_args(argv)


def objective_curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, objective) from the run's CSV log."""
    rows = []
    for f in sorted(run.glob("logs/**/metrics.csv")):
        with f.open() as fh:
            rows += [(int(r["step"]), float(r["train/objective"])) for r in csv.DictReader(fh) if r.get("train/objective")]
    if not rows:
        raise FileNotFoundError(f"no train/objective in {run}/logs")
    steps, obj = zip(*sorted(rows))
    return np.array(steps), np.array(obj)


def run_one(pair: str, k: int, seed: int, dist: str, args: argparse.Namespace) -> ScheduleRun:
    """One flow of ``--steps`` steps with a CSV logger in ``<out>/<src>-<tgt>-k<k>-s<seed>-<dist>``."""
    src, tgt = pair.split(":")
    run = Path(args.out) / f"{src}-{tgt}-k{k}-s{seed}-{dist}"
    t0 = time.perf_counter()
    over = [*flow_overrides(src, tgt, k, seed), "--trainer.max_steps", str(args.steps),
            "--model.init_args.terms.init_args.label_distance", LABEL_DISTANCES[dist],
            "--recorder.every_n_steps", "0", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.init_args.save_dir", str(run / "logs"), *common.overrides(args.flow_args, "--flow-args")]
    cli = runs.run_flow(FLOW, over, run)
    seconds = time.perf_counter() - t0
    steps, obj = objective_curve(run)
    source, target = cli.datamodule.source, cli.datamodule.reference
    x_t = torch.from_numpy(load_trajectory(run)["x"][-1])
    y = source.y if same_labels(src, tgt) else None
    frac = {s: float((obj[0] - obj[steps <= s][-1]) / (obj[0] - obj[-1])) for s in args.report if s <= steps[-1]}
    return ScheduleRun(pair, k, seed, dist, round(seconds, 1), steps.tolist(), obj.tolist(), frac,
                       landing_report(x_t, y, target.x, target.y), landing_report(source.x, y, target.x, target.y))


def main(argv: list[str] | None = None) -> list[ScheduleRun]:
    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    args = parse(argv)
    common.set_threads(args.threads)
    out, results = Path(args.out), []
    jobs = [(p, k, s, d) for p in args.pairs for k in args.shots for s in args.seeds for d in args.label_distances]
    progress = common.Progress(len(jobs))
    for pair, k, seed, dist in jobs:
        t0 = time.perf_counter()
        r = run_one(pair, k, seed, dist, args)
        seconds = time.perf_counter() - t0
        results.append(r)
        print(f"{pair} k={k} seed={seed} {dist}: objective {r.objective[0]:.1f} -> {r.objective[-1]:.1f} in {r.seconds:.0f} s, "
              f"off-class {r.landing['off_class']:.3f} (run {progress.step(seconds)})", flush=True)
    common.write_results(out, {"args": vars(args), "runs": [vars(r) for r in results]})
    figure(results, out / "objective.png")
    print(table(results, args.report, args.steps))
    return results


def table(results: list[ScheduleRun], report: list[int], steps: int) -> str:
    """Markdown: per flow, the fraction of the fall at each reported step and where the particles landed."""
    header = ["pair", "k", "label distance", *[f"fall at {s}" for s in report], "nearest / spacing",
              "covered", "off-class", "s/step"]
    return common.markdown_table(header, [
        [r.pair, r.k, r.label_distance, *[f"{r.fraction_of_fall.get(s, float('nan')):.3f}" for s in report],
         f"{r.landing['nearest']:.2f} / {r.landing['spacing']:.2f}", f"{r.landing['covered']:.2f}",
         f"{r.landing['off_class']:.3f}", f"{r.seconds / steps:.2f}"] for r in results])


def figure(results: list[ScheduleRun], path: Path) -> Path:
    """Objective against step: one row of panels per pair, one panel per k, one line per label distance."""
    from dsflow.callbacks.figures import plt

    pairs, ks = list(dict.fromkeys(r.pair for r in results)), sorted({r.k for r in results})
    fig, axes = plt.subplots(len(pairs), len(ks), figsize=(3.6 * len(ks), 2.8 * len(pairs)), squeeze=False)
    for (i, pair), (j, k) in ((a, b) for a in enumerate(pairs) for b in enumerate(ks)):
        ax = axes[i][j]
        for r in (r for r in results if (r.pair, r.k) == (pair, k)):
            ax.semilogy(r.steps, r.objective, label=f"{r.label_distance} (seed {r.seed})")
        ax.set(title=f"{pair}, {k}-shot", xlabel="flow step", ylabel="OTDD objective")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
