"""The paper's Table 1 in one command: one MNIST oracle classifies datasets flowed onto MNIST.

    DSFLOW_DATA=../shared/data python benchmarks/table1.py --targets usps=usps_h5/train.npz fmnist --threads 1

Every setting is YAML; this script sweeps targets, seeds and modes and prints the table:

1. The oracle: ``train.py fit`` of ``configs/train/lenet_mnist.yaml`` + ``configs/train/table1_oracle.yaml``
   (LeNet-5, all 60,000 MNIST training digits, 20 epochs, Adam 1e-3, weight decay 1e-6) into ``<out>/oracle``,
   once (``--oracle`` names another checkpoint); its accuracy on the MNIST test split by ``train.py test``.
2. For each target, seed and mode, ``flow.py fit`` of ``configs/flow/images.yaml`` + ``configs/flow/data/mnist_reference.yaml`` (2,000
   class-balanced MNIST test digits) + ``configs/flow/table1/flow.yaml`` (OTDD with eps 1, lambda_x 1,
   lambda_y 20, full-covariance Gaussian label distances, ``WarmSinkhorn(max_iter=500, marginal_tol=1e-3)``; fd-fl, SGD with
   tau = 0.1, 30 steps, scored every 10) + ``configs/flow/table1/<mode>.yaml`` (the target: 2,000 class-balanced
   test samples, 28 x 28 gray; unsupervised: balanced k-means pseudo-labels on a UMAP embedding of gradient
   histograms of deskewed images; docs/table1.md says how each setting was chosen).
   Targets are names (usps, fmnist, kmnist, emnist, mnist: the dataset class is swapped), ``.npz`` paths (the
   file's only split) or ``NAME=PATH.npz`` (a named row read from an array file). Seed s draws the target with
   seed s and the reference with s + 1 (and seeds the pseudo-labels); ``--n`` sets both sizes.
3. Scoring: through the coupling layer derived from the label distances, unless the flow is supervised and the
   target shares MNIST's labels (usps, mnist, ``--same-labels``); unsupervised scores also go through the
   Hungarian alignment of clusters to true labels (scoring only).
4. Prints a Markdown table (target, before, supervised, unsupervised accuracy %, the pseudo-labels' own
   accuracy through the same alignment, steps, seconds) and writes
   ``<out>/results.json``; each flow's run directory is ``<out>/<target>-<mode>[-s<seed>]``.
5. Every flow exports its particles (``configs/flow/images.yaml``: ``<run>/flowed.npz``, docs/export.md); the
   runner prints and records each export's path and how often its labels agree with the true labels after the
   Hungarian alignment (scoring only; an unsupervised export's labels are the coupled reference classes).

Before the oracle, the data of every flow is read and checked (:func:`validate_targets`): a bad target stops the
run in seconds with the file and the problem named.

Anything else goes to every flow after ``--``, e.g. the ablations of docs/table1.md:
``-- --model.init_args.terms.init_args.solver.init_args.max_iter 20`` or
``-- --data.init_args.source.init_args.features dsflow.data.PixelFeatures`` (unsupervised).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from dsflow.data.pseudo import ByStrokeWidth, PseudoLabeled, aligned_accuracy
from dsflow.experiments import common, runs
from dsflow.experiments.datasets import table1_targets
from dsflow.io import load_npz
from dsflow.process import flush_denormals

__all__ = ["Mode", "ModeRun", "Table1Row", "FLOW", "ORACLE", "parse", "target_overrides", "flow_args",
           "validate_targets", "oracle_checkpoint", "run_dir", "run_row", "export_agreement", "feature_choice", "main", "table"]

FLOW = ["configs/flow/images.yaml", "configs/flow/data/mnist_reference.yaml", "configs/flow/table1/flow.yaml"]
ORACLE = ["configs/train/lenet_mnist.yaml", "configs/train/table1_oracle.yaml"]


class Mode(Enum):
    """How the target is labeled for the flow: its true labels, or pseudo-labels (the value: its name)."""

    SUPERVISED = "supervised"
    UNSUPERVISED = "unsupervised"

    @property
    def config(self) -> str:
        """The mode's config, composed after the flow's."""
        return {Mode.SUPERVISED: "configs/flow/table1/supervised.yaml",
                Mode.UNSUPERVISED: "configs/flow/table1/unsupervised.yaml"}[self]

    @property
    def source_key(self) -> str:
        """The override key of the target's dataset (inside the pseudo-labeler when unsupervised)."""
        return "--data.init_args.source" + (".init_args.source" if self is Mode.UNSUPERVISED else "")


@dataclass
class ModeRun:
    """One flow of a row: the oracle's accuracy (%) after and before, its history, steps and seconds."""

    accuracy: float
    before: float
    history: list[dict]
    steps: int
    seconds: float
    clusters: float | None = None  # the pseudo-labels' own accuracy (%), when the flow had pseudo-labels
    export: str | None = None  # the flowed dataset (flowed.npz)
    agreement: float | None = None  # % of its labels equal to the true ones, Hungarian-aligned (scoring only)
    features: str | None = None  # which pseudo-label features a per-target choice (ByStrokeWidth) made, and why


@dataclass
class Table1Row:
    """One target and seed: a flow per mode, in the order run."""

    target: str
    seed: int
    runs: dict[Mode, ModeRun] = field(default_factory=dict)

    def result(self, mode: Mode) -> float | None:
        return self.runs[mode].accuracy if mode in self.runs else None

    @property
    def before(self) -> float | None:
        """The accuracy before the flow: the supervised flow's, else the first one's."""
        first = self.runs.get(Mode.SUPERVISED) or next(iter(self.runs.values()), None)
        return None if first is None else first.before

    @property
    def clusters(self) -> float | None:
        return next((r.clusters for r in reversed(self.runs.values()) if r.clusters is not None), None)

    @property
    def steps(self) -> int:
        return list(self.runs.values())[-1].steps

    def to_json(self) -> dict:
        """The row of ``results.json`` (keys as the runner has always written them)."""
        out: dict[str, Any] = {"target": self.target, "seed": self.seed, "before": self.before, **{m.value: self.result(m) for m in Mode},
               "seconds": [round(r.seconds, 1) for r in self.runs.values()]}
        for mode, r in self.runs.items():
            out |= {f"{mode.value}_before": r.before, f"{mode.value}_history": r.history}
            out |= {"clusters": r.clusters} if r.clusters is not None else {}
            out |= {f"{mode.value}_export": r.export, f"{mode.value}_export_agreement": r.agreement} if r.export else {}
            out |= {f"{mode.value}_features": r.features} if r.features else {}
            out["steps"] = r.steps
        return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__, out="runs/table1")
    p.add_argument("--targets", nargs="+", default=["usps", "fmnist"], help="names (%s), .npz paths or NAME=PATH.npz" % ", ".join(table1_targets()))
    p.add_argument("--modes", nargs="+", default=[m.value for m in Mode], choices=[m.value for m in Mode])
    p.add_argument("--n", type=int, default=None, help="target and reference samples (default: the configs', 2,000)")
    p.add_argument("--same-labels", nargs="*", default=[], help="further targets whose labels are MNIST's digits")
    p.add_argument("--config", nargs="+", default=FLOW, help="flow configs, before the mode's (default: %(default)s)")
    p.add_argument("--oracle", default=None, help="oracle checkpoint (default: trained once into <out>/oracle)")
    return p.parse_args(argv)


def target_overrides(target: str, mode: Mode, same_labels: list[str]) -> tuple[list[str], bool]:
    """Overrides that make the mode's source the target, and whether the target has MNIST's labels."""
    key, targets = mode.source_key, table1_targets()
    label, _, path = target.partition("=")  # "usps=usps_h5/train.npz": a named row read from an array file
    if path or target.endswith(".npz"):
        args = [f"{key}.class_path", "dsflow.data.ArrayFile", f"{key}.init_args.path", path or target,
                f"{key}.init_args.split", "train", f"{key}.init_args.name", label]
        return args, label in same_labels or (label in targets and targets[label].digits)
    if target not in targets:
        raise ValueError(f"unknown target '{target}': use one of {sorted(targets)}, the path of an .npz file or NAME=PATH.npz")
    dataset = targets[target]
    if dataset.target is None:
        raise RuntimeError(f"table1_targets() gave '{target}' without a target class")
    split = [f"{key}.init_args.split", dataset.split] if dataset.split else []
    return [f"{key}.class_path", dataset.target, *split], dataset.digits or target in same_labels


def flow_args(target: str, mode: Mode, seed: int, args: argparse.Namespace, oracle: str) -> list[str]:
    """The overrides of one flow of the sweep (after the composed configs)."""
    over, same = target_overrides(target, mode, args.same_labels)
    key = mode.source_key
    over += [f"{key}.init_args.seed", str(seed), "--data.init_args.reference.init_args.seed", str(seed + 1)]
    if mode is Mode.UNSUPERVISED:
        over += ["--data.init_args.source.init_args.seed", str(seed)]  # the clustering's seed (UMAP's stays 0)
        # the runner's oracle, for feature maps that read a checkpoint and name none (OracleFeatures); others ignore it
        over += ["--data.init_args.source.init_args.oracle", oracle]
    if args.n is not None:
        over += [f"{key}.init_args.n", str(args.n), "--data.init_args.reference.init_args.n", str(args.n)]
    coupling = mode is Mode.UNSUPERVISED or not same
    over += ["--trainer.callbacks.init_args.checkpoint", oracle, "--trainer.callbacks.init_args.coupling", str(coupling).lower()]
    return over + list(args.overrides)


def validate_targets(args: argparse.Namespace) -> None:
    """Read and check the data of every flow of the sweep (:func:`~dsflow.experiments.runs.validate_inputs`; the
    unsupervised flows' targets without their clustering) before the oracle is trained."""
    t0 = time.perf_counter()
    flows = [runs.FlowSpec([*args.config, mode.config], flow_args(target, mode, seed, args, "oracle.ckpt"))  # no oracle read
             for target in args.targets for seed in args.seeds for mode in map(Mode, args.modes)]
    read = runs.validate_inputs(flows)
    print(f"inputs: the data of {len(flows)} flows read and checked ({read} datasets, {time.perf_counter() - t0:.0f} s)",
          flush=True)


def oracle_checkpoint(args: argparse.Namespace) -> tuple[str, float]:
    """The oracle (trained here unless given or already trained) and its accuracy (%) on the MNIST test split."""
    out = Path(args.out)
    path = Path(args.oracle) if args.oracle else out / "oracle" / "checkpoints" / "last.ckpt"
    if not args.oracle and not path.is_file():
        runs.run_train(ORACLE, [], out / "oracle")
    if not path.is_file():
        raise FileNotFoundError(f"oracle checkpoint not found: {path}")
    tested = runs.run_train(ORACLE, ["--ckpt_path", str(path)], out / "oracle_test", subcommand="test")
    return str(path), 100.0 * float(tested.trainer.callback_metrics["test/acc"])


def run_dir(out: str, target: str, mode: Mode, seed: int, seeds: list[int]) -> Path:
    stem = Path(target.partition("=")[0]).stem
    return Path(out) / (f"{stem}-{mode.value}" + (f"-s{seed}" if len(seeds) > 1 else ""))


def run_mode(target: str, mode: Mode, seed: int, args: argparse.Namespace, oracle: str) -> ModeRun:
    """One flow of the sweep, scored by the oracle (its run directory: :func:`run_dir`)."""
    run = run_dir(args.out, target, mode, seed, args.seeds)
    t0 = time.perf_counter()
    cli = runs.run_flow([*args.config, mode.config], flow_args(target, mode, seed, args, oracle), run)
    seconds = time.perf_counter() - t0
    export, agreement = export_agreement(run / "flowed.npz", cli.datamodule)
    history = json.loads((run / "oracle" / "history.json").read_text())
    clusters = run / "oracle" / "clusters.json"  # the pseudo-labels' own accuracy: what the unsupervised flow moves
    return ModeRun(history[-1]["accuracy"], history[0]["accuracy"], history,
                   json.loads((run / "summary.json").read_text())["steps"], seconds,
                   json.loads(clusters.read_text())["accuracy"] if clusters.is_file() else None,
                   export, agreement, feature_choice(cli.datamodule))


def feature_choice(datamodule: Any) -> str | None:
    """What a per-target feature choice (:class:`~dsflow.data.ByStrokeWidth`) of the flow's pseudo-labels
    measured and chose (None: the flow has no such choice)."""
    spec = datamodule.source_spec
    if not isinstance(spec, PseudoLabeled) or not isinstance(spec.features, ByStrokeWidth):
        return None
    return spec.features.describe()


def export_agreement(path: Path, datamodule: Any) -> tuple[str | None, float | None]:
    """The export (None: the flow wrote none) and % of its ``labels`` equal to the true labels of the source, after
    the Hungarian alignment of export labels to true labels (scoring only: the true labels never reach the flow)."""
    if not path.is_file():
        return None, None
    labels = torch.from_numpy(load_npz(path, keys=("labels",))["labels"])
    spec = datamodule.source_spec
    true, c_true = spec.scoring_labels() if isinstance(spec, PseudoLabeled) else (datamodule.source.y, datamodule.source.num_classes)
    k = max(int(labels.max()) + 1, c_true)
    return str(path), aligned_accuracy(labels, true, k, c_true)


def run_row(target: str, seed: int, args: argparse.Namespace, oracle: str, progress: common.Progress) -> Table1Row:
    """The flows of one target and seed, a line printed per flow."""
    row = Table1Row(target.partition("=")[0], seed)
    for mode in map(Mode, args.modes):
        r = row.runs[mode] = run_mode(target, mode, seed, args, oracle)
        print(f"{target} seed {seed} {mode.value}: {r.before:.1f} % -> {r.accuracy:.1f} % in {r.seconds:.0f} s "
              f"(flow {progress.step(r.seconds)})", flush=True)
        if r.features is not None:
            print(f"  pseudo-labels: {r.features}", flush=True)
        if r.export is not None:
            print(f"  export: {r.export}, labels agree with the true labels {r.agreement:.1f} % (Hungarian-aligned)",
                  flush=True)
    return row


def main(argv: list[str] | None = None) -> list[Table1Row]:
    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    args = parse(argv)
    common.set_threads(args.threads)
    validate_targets(args)
    oracle, oracle_acc = oracle_checkpoint(args)
    print(f"oracle: {oracle} (LeNet-5), MNIST test accuracy {oracle_acc:.2f} %", flush=True)
    progress = common.Progress(len(args.targets) * len(args.seeds) * len(args.modes))
    rows = [run_row(target, seed, args, oracle, progress) for target in args.targets for seed in args.seeds]
    print(table(rows, len(args.seeds) > 1))
    common.write_results(args.out, {"oracle": oracle, "oracle_acc": oracle_acc, "args": vars(args),
                                    "rows": [r.to_json() for r in rows]})
    return rows


def table(rows: list[Table1Row], with_seed: bool = False) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    body = [[r.target + (f" (seed {r.seed})" if with_seed else ""), f(r.before), f(r.result(Mode.SUPERVISED)),
             f(r.result(Mode.UNSUPERVISED)), f(r.clusters), r.steps,
             " / ".join(f"{round(x.seconds, 1):.0f}" for x in r.runs.values())] for r in rows]
    header = ["target", "before", "supervised", "unsupervised", "clusters alone", "steps", "seconds"]
    return common.markdown_table(header, body)
