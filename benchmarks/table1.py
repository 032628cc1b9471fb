"""The paper's Table 1 in one command: one MNIST oracle classifies datasets flowed onto MNIST.

    DSFLOW_DATA=../shared/data python benchmarks/table1.py --targets usps fmnist --n 2000 --steps 100

1. Trains (or loads, from ``--oracle``) a LeNet-5 on the MNIST training split (20 epochs, Adam 1e-3, wd 1e-6).
2. For each target (a name: usps, fmnist, kmnist, emnist, mnist; the path of any ``.npz`` with ``images`` and
   ``labels``; or ``NAME=PATH.npz`` to read a named row from an array file), takes n stratified samples of it and n MNIST samples from the test split (never seen by the
   oracle), and flows the target onto MNIST with the OTDD alone (fd-fl dynamics, SGD = forward Euler):
   supervised (true labels drive the flow) and unsupervised (k-means pseudo-labels drive it; k-means on
   ``--pseudo-features``: a t-SNE embedding (``--perplexity`` 100) by default, whitened and normalised principal
   components, or raw pixels). The outer Sinkhorn runs up to ``--sinkhorn-iters`` sweeps per step: with a large
   label weight the OTDD cost spans thousands of eps, and a short Sinkhorn leaves the reference marginal unmet
   (several classes then pile onto one reference class).
3. Scores the particles with the frozen oracle before and after, through the coupling layer derived from label
   distances unless the target shares MNIST's label set (usps, mnist, or ``--same-labels``); unsupervised scores
   go through the coupling and the Hungarian alignment of clusters to true labels (scoring only).
4. Prints a Markdown table: target, before, supervised, unsupervised (accuracy %), steps, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch

from dsflow.callbacks.oracle import OracleScorer
from dsflow.data import (
    EMNIST, KMNIST, MNIST, USPS, ArrayFile, FashionMNIST, FlowDataModule, PCAFeatures, PixelFeatures, PseudoLabeled,
    TSNEFeatures,
)
from dsflow.data.base import DatasetSource
from dsflow.data.pseudo import ClusterFeatures
from dsflow.flows import FeatureDriven, FlowModule, OTDDTerm
from dsflow.models import LeNet5
from dsflow.ot.label_distance import DiagonalGaussianLabelDistance, GaussianLabelDistance
from dsflow.ot.warm_sinkhorn import WarmSinkhorn
from dsflow.tasks import Classifier, load_oracle

#: named targets: the dataset class and whether its labels are MNIST's digits (no coupling layer needed)
TARGETS = {
    "usps": (USPS, True),
    "mnist": (MNIST, True),
    "fmnist": (FashionMNIST, False),
    "kmnist": (KMNIST, False),
    "emnist": (EMNIST, False),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="*", default=["usps", "fmnist"], help="names (%s) or .npz paths" % ", ".join(TARGETS))
    p.add_argument("--n", type=int, default=2000, help="particles (target samples) and MNIST reference samples")
    p.add_argument("--steps", type=int, default=100, help="flow steps")
    p.add_argument("--lr", type=float, default=0.1, help="step size tau (eq. 17)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: forward Euler)")
    p.add_argument("--eps", type=float, default=1.0, help="entropic regularisation (squared pixel-distance units)")
    p.add_argument("--lambda-x", type=float, default=1.0)
    p.add_argument("--lambda-y", type=float, default=5.0, help="weight of the label term")
    p.add_argument("--scaling", type=float, default=0.7, help="Sinkhorn epsilon-scaling ratio")
    p.add_argument("--sinkhorn-iters", type=int, default=500,
                   help="most outer Sinkhorn sweeps per flow step (WarmSinkhorn max_iter; its library default is 20)")
    p.add_argument("--diagonal", action="store_true", help="diagonal Gaussian label distances (default: full covariances)")
    p.add_argument("--pseudo-features", choices=["tsne", "pca", "pixels"], default="tsne",
                   help="what k-means clusters for the pseudo-labels: a t-SNE embedding, whitened and L2-normalised "
                        "principal components, or raw pixels")
    p.add_argument("--pca-components", type=int, default=12, help="principal components of --pseudo-features pca")
    p.add_argument("--perplexity", type=float, default=100.0,
                   help="t-SNE perplexity of --pseudo-features tsne (about half a class of the n samples; at most n / 4)")
    p.add_argument("--balanced", action="store_true", help="class-balanced subsets of targets and reference")
    p.add_argument("--split", default="test", help="split of the named targets (the MNIST reference is always test)")
    p.add_argument("--modes", nargs="+", default=["supervised", "unsupervised"], choices=["supervised", "unsupervised"])
    p.add_argument("--same-labels", nargs="*", default=[], help="extra targets that share MNIST's labels (no coupling)")
    p.add_argument("--every", type=int, default=0, help="score every k steps (0: before and after only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="data root (default: $DSFLOW_DATA, else ~/.cache/dsflow/data)")
    p.add_argument("--oracle", default="runs/table1/lenet_mnist.ckpt", help="oracle checkpoint (trained when absent)")
    p.add_argument("--oracle-epochs", type=int, default=20)
    p.add_argument("--oracle-n", type=int, default=None, help="MNIST training samples for the oracle (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="runs/table1", help="folder of the flows' run directories and results.json")
    return p.parse_args(argv)


def oracle_checkpoint(args: argparse.Namespace) -> tuple[str, float]:
    """Path of the MNIST LeNet-5 (trained here if absent) and its accuracy (%) on the MNIST test split."""
    path = Path(args.oracle)
    mnist = MNIST(root=args.root, n=args.oracle_n, seed=args.seed, val_fraction=0.0, batch_size=128)
    if not path.is_file():
        L.seed_everything(args.seed, verbose=False)
        model = Classifier(LeNet5(), partial(torch.optim.Adam, lr=1e-3, weight_decay=1e-6))
        trainer = L.Trainer(max_epochs=args.oracle_epochs, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                            default_root_dir=str(path.parent))
        trainer.fit(model, datamodule=mnist)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
    oracle = load_oracle(path)
    test = mnist.load_split("test")
    acc = 100.0 * float((oracle.probs(test.x).argmax(-1) == test.y).double().mean())
    return str(path), acc


def target_source(name: str, args: argparse.Namespace) -> tuple[DatasetSource, bool]:
    """The target dataset (n stratified samples of its test split, 28 x 28 gray) and whether it has MNIST labels."""
    common = dict(root=args.root, n=args.n, seed=args.seed, size=28, channels=1, balanced=args.balanced)
    label, _, path = name.partition("=")  # "usps=usps_h5/train.npz": a named row read from an array file
    if path or name.endswith(".npz"):
        path = path or name
        same = label in args.same_labels or (label in TARGETS and TARGETS[label][1])
        return ArrayFile(path=path, name=label, **common), same
    if name not in TARGETS:
        raise ValueError(f"unknown target '{name}': use one of {sorted(TARGETS)} or the path of an .npz file")
    cls, same = TARGETS[name]
    return cls(split=args.split, **common), same or name in args.same_labels


def run_flow(source: DatasetSource, reference: DatasetSource, oracle: str, coupling: bool, out: Path,
             args: argparse.Namespace) -> tuple[float, float, float, list]:
    """Flow ``source`` onto ``reference``; returns accuracy before, after, seconds, scoring history."""
    distance = DiagonalGaussianLabelDistance() if args.diagonal else GaussianLabelDistance()
    term = OTDDTerm(eps=args.eps, lambda_x=args.lambda_x, lambda_y=args.lambda_y, scaling=args.scaling, label_distance=distance,
                    solver=WarmSinkhorn(max_iter=args.sinkhorn_iters))
    model = FlowModule([term], FeatureDriven(), partial(torch.optim.SGD, lr=args.lr, momentum=args.momentum))
    scorer = OracleScorer(oracle, every_n_steps=args.every, coupling=coupling, label_distance=distance)
    trainer = L.Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[scorer], default_root_dir=str(out))
    data = FlowDataModule(source, reference, steps_per_epoch=max(args.steps, 1))
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - t0
    return scorer.history[0]["accuracy"], scorer.history[-1]["accuracy"], seconds, scorer.history


def cluster_features(args: argparse.Namespace) -> ClusterFeatures:
    """What k-means clusters for the unsupervised flows (computed from the features alone)."""
    if args.pseudo_features == "pixels":
        return PixelFeatures()
    if args.pseudo_features == "pca":
        return PCAFeatures(components=args.pca_components, seed=args.seed)
    return TSNEFeatures(perplexity=min(args.perplexity, args.n / 4), seed=args.seed)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    oracle, oracle_acc = oracle_checkpoint(args)
    print(f"oracle: {oracle} (LeNet-5), MNIST test accuracy {oracle_acc:.2f} %", flush=True)
    reference = MNIST(root=args.root, split="test", n=args.n, seed=args.seed + 1, balanced=args.balanced)
    rows = []
    for name in args.targets:
        source, same = target_source(name, args)
        label = name.partition("=")[0] if "=" in name else name
        row = {"target": label, "before": None, "supervised": None, "unsupervised": None, "steps": args.steps, "seconds": []}
        for mode in args.modes:
            flow_source = source if mode == "supervised" else PseudoLabeled(source, seed=args.seed, features=cluster_features(args))
            coupling = mode == "unsupervised" or not same
            out = Path(args.out) / f"{Path(name.partition('=')[0]).stem}-{mode}"
            before, after, seconds, history = run_flow(flow_source, reference, oracle, coupling, out, args)
            if mode == "supervised":
                row["before"] = before
            row[mode], row[f"{mode}_before"], row[f"{mode}_history"] = after, before, history
            row["seconds"].append(round(seconds, 1))
            print(f"{name} {mode}: {before:.1f} % -> {after:.1f} % in {seconds:.0f} s", flush=True)
        rows.append(row)
    print(table(rows, args))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps({"oracle_acc": oracle_acc, "args": vars(args), "rows": rows}, indent=2))
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = ["| target | before | supervised | unsupervised | steps | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        before = r["before"] if r["before"] is not None else r.get("unsupervised_before")
        secs = " / ".join(f"{s:.0f}" for s in r["seconds"])
        lines.append(f"| {r['target']} | {f(before)} | {f(r['supervised'])} | {f(r['unsupervised'])} | {r['steps']} | {secs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
