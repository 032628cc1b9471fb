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

Anything else goes to every flow after ``--``, e.g. the ablations of docs/table1.md:
``-- --model.init_args.terms.init_args.solver.init_args.max_iter 20`` or
``-- --data.init_args.source.init_args.features dsflow.data.PixelFeatures`` (unsupervised).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import common

#: named targets: the dataset class and whether its labels are MNIST's digits (no coupling layer needed)
TARGETS = {
    "usps": ("dsflow.data.USPS", True),
    "mnist": ("dsflow.data.MNIST", True),
    "mnist-train": ("dsflow.data.MNIST", True),  # a development row: MNIST's training split onto its test digits
    "fmnist": ("dsflow.data.FashionMNIST", False),
    "kmnist": ("dsflow.data.KMNIST", False),
    "emnist": ("dsflow.data.EMNIST", False),
}
#: named targets read from another split than the configs' test split
SPLITS = {"mnist-train": "train"}
FLOW = ["configs/flow/images.yaml", "configs/flow/data/mnist_reference.yaml", "configs/flow/table1/flow.yaml"]
MODES = {"supervised": "configs/flow/table1/supervised.yaml", "unsupervised": "configs/flow/table1/unsupervised.yaml"}
ORACLE = ["configs/train/lenet_mnist.yaml", "configs/train/table1_oracle.yaml"]


def parse(argv: list[str] | None):
    p = common.parser(__doc__, out="runs/table1")
    p.add_argument("--targets", nargs="+", default=["usps", "fmnist"], help="names (%s), .npz paths or NAME=PATH.npz" % ", ".join(TARGETS))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--n", type=int, default=None, help="target and reference samples (default: the configs', 2,000)")
    p.add_argument("--same-labels", nargs="*", default=[], help="further targets whose labels are MNIST's digits")
    p.add_argument("--config", nargs="+", default=FLOW, help="flow configs, before the mode's (default: %(default)s)")
    p.add_argument("--oracle", default=None, help="oracle checkpoint (default: trained once into <out>/oracle)")
    return p.parse_args(argv)


def target_overrides(target: str, mode: str, same_labels: list[str]) -> tuple[list[str], bool]:
    """Overrides that make the mode's source the target, and whether the target has MNIST's labels."""
    key = "--data.init_args.source" + (".init_args.source" if mode == "unsupervised" else "")
    label, _, path = target.partition("=")  # "usps=usps_h5/train.npz": a named row read from an array file
    if path or target.endswith(".npz"):
        args = [f"{key}.class_path", "dsflow.data.ArrayFile", f"{key}.init_args.path", path or target,
                f"{key}.init_args.split", "train", f"{key}.init_args.name", label]
        return args, label in same_labels or TARGETS.get(label, ("", False))[1]
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}': use one of {sorted(TARGETS)}, the path of an .npz file or NAME=PATH.npz")
    class_path, digits = TARGETS[target]
    split = [f"{key}.init_args.split", SPLITS[target]] if target in SPLITS else []
    return [f"{key}.class_path", class_path, *split], digits or target in same_labels


def flow_args(target: str, mode: str, seed: int, args, oracle: str) -> list[str]:
    """The overrides of one flow of the sweep (after the composed configs)."""
    over, same = target_overrides(target, mode, args.same_labels)
    key = "--data.init_args.source" + (".init_args.source" if mode == "unsupervised" else "")
    over += [f"{key}.init_args.seed", str(seed), "--data.init_args.reference.init_args.seed", str(seed + 1)]
    if mode == "unsupervised":
        over += ["--data.init_args.source.init_args.seed", str(seed)]  # the clustering's seed (UMAP's stays 0)
    if args.n is not None:
        over += [f"{key}.init_args.n", str(args.n), "--data.init_args.reference.init_args.n", str(args.n)]
    coupling = mode == "unsupervised" or not same
    over += ["--trainer.callbacks.init_args.checkpoint", oracle, "--trainer.callbacks.init_args.coupling", str(coupling).lower()]
    return over + list(args.overrides)


def oracle_checkpoint(args) -> tuple[str, float]:
    """The oracle (trained here unless given or already trained) and its accuracy (%) on the MNIST test split."""
    out = Path(args.out)
    path = Path(args.oracle) if args.oracle else out / "oracle" / "checkpoints" / "last.ckpt"
    if not args.oracle and not path.is_file():
        common.run_train(ORACLE, [], out / "oracle")
    if not path.is_file():
        raise FileNotFoundError(f"oracle checkpoint not found: {path}")
    tested = common.run_train(ORACLE, ["--ckpt_path", str(path)], out / "oracle_test", subcommand="test")
    return str(path), 100.0 * float(tested.trainer.callback_metrics["test/acc"])


def run_dir(out: str, target: str, mode: str, seed: int, seeds: list[int]) -> Path:
    stem = Path(target.partition("=")[0]).stem
    return Path(out) / (f"{stem}-{mode}" + (f"-s{seed}" if len(seeds) > 1 else ""))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    common.set_threads(args.threads)
    oracle, oracle_acc = oracle_checkpoint(args)
    print(f"oracle: {oracle} (LeNet-5), MNIST test accuracy {oracle_acc:.2f} %", flush=True)
    rows, progress = [], common.Progress(len(args.targets) * len(args.seeds) * len(args.modes))
    for target in args.targets:
        for seed in args.seeds:
            label = target.partition("=")[0]
            row = {"target": label, "seed": seed, "before": None, "supervised": None, "unsupervised": None, "seconds": []}
            for mode in args.modes:
                run = run_dir(args.out, target, mode, seed, args.seeds)
                t0 = time.perf_counter()
                common.run_flow([*args.config, MODES[mode]], flow_args(target, mode, seed, args, oracle), run)
                seconds = time.perf_counter() - t0
                history = json.loads((run / "oracle" / "history.json").read_text())
                before, after = history[0]["accuracy"], history[-1]["accuracy"]
                row["before"] = before if row["before"] is None or mode == "supervised" else row["before"]
                row[mode], row[f"{mode}_before"], row[f"{mode}_history"] = after, before, history
                clusters = run / "oracle" / "clusters.json"
                if clusters.is_file():  # the pseudo-labels' own accuracy: what the unsupervised flow moves
                    row["clusters"] = json.loads(clusters.read_text())["accuracy"]
                row["steps"] = json.loads((run / "summary.json").read_text())["steps"]
                row["seconds"].append(round(seconds, 1))
                print(f"{target} seed {seed} {mode}: {before:.1f} % -> {after:.1f} % in {seconds:.0f} s "
                      f"(flow {progress.step(seconds)})", flush=True)
            rows.append(row)
    print(table(rows, len(args.seeds) > 1))
    common.write_results(args.out, {"oracle": oracle, "oracle_acc": oracle_acc, "args": vars(args), "rows": rows})
    return rows


def table(rows: list[dict], with_seed: bool = False) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    body = [[r["target"] + (f" (seed {r['seed']})" if with_seed else ""), f(r["before"]), f(r["supervised"]),
             f(r["unsupervised"]), f(r.get("clusters")), r["steps"], " / ".join(f"{s:.0f}" for s in r["seconds"])]
            for r in rows]
    header = ["target", "before", "supervised", "unsupervised", "clusters alone", "steps", "seconds"]
    return common.markdown_table(header, body)


if __name__ == "__main__":
    main(sys.argv[1:])
