"""Pseudo-label quality without tuning on the scored data: Hungarian cluster accuracy per dataset x method.

    PYTHONPATH=. DSFLOW_DATA=../shared/data python benchmarks/pseudo_labels.py --n 2000 --seeds 0 1 \
        --large-n 5000 --large-methods pixels-km hog-umap-km --out runs/pseudo_labels

For every development dataset (class-balanced subsets of ``n``, subset seed = clustering seed = s) and method,
clusters into C = #classes and scores the clusters against the true labels (Hungarian alignment; scoring only).
Then the two label-free choices of docs/pseudo_labels.md:

* leave-one-dataset-out: for each dataset, the method with the best mean accuracy on the OTHER datasets (all
  seeds, at ``n``) and the accuracy that method gets on it;
* per dataset, what :class:`~dsflow.data.SelectByAgreement` (among all methods run) and, when ``select-stability``
  is among the methods, :class:`~dsflow.data.SelectByStability` (among ``STABILITY_CANDIDATES``) pick from its
  images alone.

Prints Markdown tables (accuracy %, mean over seeds; seconds per clustering, features included) and writes
``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from dsflow.data import (
    MNIST, ArrayFile, Chain, ClusterFeatures, ClusterPipeline, Clusterer, ConsensusClusterer, DeskewFeatures,
    FashionMNIST, GaussianMixtureClusterer, GradientHistogramFeatures, KMeansClusterer, OverClusterMerge, PCAFeatures,
    PixelFeatures, Pseudolabeler, SelectByAgreement, SelectByStability, SpectralClusterer, TSNEFeatures, UMAPFeatures,
    hungarian_alignment,
)
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.distorted import Distorted


def _common(n: int, seed: int) -> dict:
    return dict(n=n, seed=seed, size=28, channels=1, balanced=True)


#: development datasets: name -> (what it is, source of n balanced samples with seed s)
DATASETS: dict[str, tuple[str, Callable[[int, int], DatasetSource]]] = {
    "mnist": ("MNIST test digits", lambda n, s: MNIST(split="test", **_common(n, s))),
    "mnist-train": ("MNIST training digits (the oracle's data; another sample of MNIST)", lambda n, s: MNIST(split="train", **_common(n, s))),
    "mnist-warp": ("MNIST test digits, randomly rotated/sheared/elastically warped/thickened (Distorted)",
                   lambda n, s: Distorted(MNIST(split="test", **_common(n, s)), seed=s)),
    "fmnist": ("Fashion-MNIST test (a Table 1 target)", lambda n, s: FashionMNIST(split="test", **_common(n, s))),
    "usps": ("USPS h5 training split, 16x16 -> 28x28 (deslanted copy of a Table 1 target)",
             lambda n, s: ArrayFile("usps_h5/train.npz", name="usps", **_common(n, s))),
    "cifar-gray": ("CIFAR-10 test, gray 28x28 (JPEG copy): natural images, far from strokes",
                   lambda n, s: ArrayFile("cifar10_jpeg/test.npz", name="cifar", **_common(n, s))),
}

#: feature maps shared by several methods (computed once per dataset, n and seed)
FEATURES: dict[str, Callable[[int], ClusterFeatures]] = {
    "pixels": lambda s: PixelFeatures(),
    "pca": lambda s: PCAFeatures(seed=s),
    "tsne100": lambda s: TSNEFeatures(perplexity=100, seed=s),
    "umap": lambda s: UMAPFeatures(seed=s),
    "hog": lambda s: GradientHistogramFeatures(),
    "hog-umap": lambda s: Chain([GradientHistogramFeatures(), UMAPFeatures(seed=s)]),
    "hog-umap-x0.5": lambda s: Chain([GradientHistogramFeatures(), UMAPFeatures(neighbor_scale=0.5, seed=s)]),
    "hog-umap-x2": lambda s: Chain([GradientHistogramFeatures(), UMAPFeatures(neighbor_scale=2.0, seed=s)]),
    "deskew-umap": lambda s: Chain([DeskewFeatures(), UMAPFeatures(seed=s)]),
    "deskew-hog-umap": lambda s: Chain([DeskewFeatures(blur=0.0), GradientHistogramFeatures(), UMAPFeatures(seed=s)]),
}

#: methods: name -> (feature key, clusterer)
METHODS: dict[str, tuple[str, Callable[[], Clusterer]]] = {
    "pixels-km": ("pixels", KMeansClusterer),
    "pca-km": ("pca", KMeansClusterer),
    "tsne100-km": ("tsne100", KMeansClusterer),
    "hog-km": ("hog", KMeansClusterer),
    "hog-spectral": ("hog", SpectralClusterer),
    "umap-km": ("umap", KMeansClusterer),
    "hog-umap-km": ("hog-umap", KMeansClusterer),
    "hog-umap-gmm": ("hog-umap", GaussianMixtureClusterer),
    "hog-umap-merge": ("hog-umap", lambda: OverClusterMerge(factor=3)),
    "hog-umap-consensus": ("hog-umap", ConsensusClusterer),
    "hog-umap-x0.5-km": ("hog-umap-x0.5", KMeansClusterer),
    "hog-umap-x2-km": ("hog-umap-x2", KMeansClusterer),
    "deskew-umap-km": ("deskew-umap", KMeansClusterer),
    "deskew-hog-umap-km": ("deskew-hog-umap", KMeansClusterer),
}

#: what SelectByStability chooses among (kept small: each candidate runs on three subsamples)
STABILITY_CANDIDATES = ["hog-umap-x0.5-km", "hog-umap-km", "hog-umap-x2-km", "deskew-hog-umap-km", "umap-km"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=list(DATASETS), help="from: " + ", ".join(DATASETS))
    p.add_argument("--methods", nargs="*", default=list(METHODS), help="from: " + ", ".join([*METHODS, "select-stability"]))
    p.add_argument("--n", type=int, default=2000, help="samples per dataset (class-balanced)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="subset and clustering seeds")
    p.add_argument("--large-n", type=int, default=None, help="a second, larger n for --large-methods")
    p.add_argument("--large-methods", nargs="*", default=[], help="methods also run at --large-n (first seed only)")
    p.add_argument("--out", default="runs/pseudo_labels", help="folder of results.json and results.md")
    return p.parse_args(argv)


def accuracy(pseudo: Tensor, true: Tensor, k: int) -> float:
    """Hungarian cluster accuracy (%), scoring only."""
    return 100.0 * float((hungarian_alignment(pseudo, true, k, k)[pseudo] == true).double().mean())


class _Fixed(Pseudolabeler):
    """Labels already computed (lets SelectByAgreement choose among cached clusterings)."""

    def __init__(self, labels: Tensor) -> None:
        self.labels = labels

    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        return self.labels


def run_methods(name: str, n: int, seed: int, methods: list[str]) -> tuple[dict[str, tuple[str | None, float, float]], LabeledData]:
    """Per method: (what a selection chose or None, seconds with features, accuracy %); and the data sample."""
    data = DATASETS[name][1](n, seed).load()
    k, cache, out = data.num_classes, {}, {}
    for m in methods:
        fkey, make = METHODS[m]
        if fkey not in cache:
            t0 = time.perf_counter()
            z = FEATURES[fkey](seed)(data.x, k)
            cache[fkey] = (z.reshape(z.shape[0], -1).double(), time.perf_counter() - t0)
        z, ft = cache[fkey]
        t0 = time.perf_counter()
        labels = make()(z, k, seed)
        out[m] = (labels, ft + time.perf_counter() - t0, accuracy(labels, data.y, k))
        print(f"{name} n={n} seed={seed} {m}: {out[m][2]:.1f} % in {out[m][1]:.1f} s", flush=True)
    if len(methods) >= 3:
        select = SelectByAgreement([_Fixed(out[m][0]) for m in methods])
        labels = select(data.x, k, seed)
        out["select-agreement"] = (methods[select.last.chosen], 0.0, accuracy(labels, data.y, k))
    return {m: (v[0] if isinstance(v[0], str) else None, v[1], v[2]) for m, v in out.items()}, data


def run_stability(data: LabeledData, seed: int) -> tuple[str, float, float, list[float]]:
    """What SelectByStability picks on one dataset sample: method, accuracy, seconds, scores."""
    cands = [ClusterPipeline(FEATURES[METHODS[m][0]](seed), METHODS[m][1](), name=m) for m in STABILITY_CANDIDATES]
    select = SelectByStability(cands)
    t0 = time.perf_counter()
    labels = select(data.x, data.num_classes, seed)
    return STABILITY_CANDIDATES[select.last.chosen], accuracy(labels, data.y, data.num_classes), time.perf_counter() - t0, select.last.scores


def leave_one_out(acc: dict[str, dict[str, float]], methods: list[str]) -> dict[str, tuple[str, float]]:
    """For each dataset: the method best on average over the other datasets, and its accuracy here."""
    choice = {}
    for d in acc:
        others = [e for e in acc if e != d]
        best = max(methods, key=lambda m: np.mean([acc[e][m] for e in others]))
        choice[d] = (best, acc[d][best])
    return choice


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    base = [m for m in args.methods if m in METHODS]
    acc: dict[str, dict[str, list[float]]] = {d: {} for d in args.datasets}
    secs: dict[str, dict[str, list[float]]] = {d: {} for d in args.datasets}
    picks: dict[str, dict[str, list]] = {d: {"select-agreement": [], "select-stability": []} for d in args.datasets}
    for d in args.datasets:
        for s in args.seeds:
            res, data = run_methods(d, args.n, s, base)
            for m, (chosen, t, a) in res.items():
                acc[d].setdefault(m, []).append(a)
                secs[d].setdefault(m, []).append(t)
                if chosen is not None:
                    picks[d][m].append(chosen)
            if "select-stability" in args.methods:
                chosen, a, t, scores = run_stability(data, s)
                print(f"{d} seed={s} select-stability: {chosen} ({a:.1f} %) scores {np.round(scores, 3).tolist()}", flush=True)
                acc[d].setdefault("select-stability", []).append(a)
                secs[d].setdefault("select-stability", []).append(t)
                picks[d]["select-stability"].append(chosen)
    mean = {d: {m: float(np.mean(v)) for m, v in acc[d].items()} for d in acc}
    lodo = leave_one_out(mean, base) if len(args.datasets) > 1 else {}
    large = {d: run_methods(d, args.large_n, args.seeds[0], args.large_methods)[0] for d in args.datasets} if args.large_n and args.large_methods else {}
    md = tables(mean, secs, lodo, picks, large, args)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args), "accuracy": acc, "seconds": secs, "lodo": lodo, "picks": picks,
              "large": {d: {m: v[1:] for m, v in r.items()} for d, r in large.items()}}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(md)
    return result


def tables(mean, secs, lodo, picks, large, args) -> str:
    """Markdown: accuracy (mean over seeds) per method x dataset, seconds, LODO and label-free choices."""
    ds = list(mean)
    methods = list(next(iter(mean.values())))
    lines = [f"Hungarian cluster accuracy (%), n={args.n}, mean of seeds {args.seeds}; s = mean seconds per clustering", "",
             "| method | " + " | ".join(ds) + " | mean | s |", "|---" * (len(ds) + 3) + "|"]
    for m in methods:
        row = [mean[d][m] for d in ds]
        s = np.mean([np.mean(secs[d][m]) for d in ds])
        lines.append(f"| {m} | " + " | ".join(f"{a:.1f}" for a in row) + f" | {np.mean(row):.1f} | {s:.1f} |")
    if lodo:
        lines += ["", "| leave-one-dataset-out | " + " | ".join(ds) + " |", "|---" * (len(ds) + 1) + "|",
                  "| chosen on the others | " + " | ".join(lodo[d][0] for d in ds) + " |",
                  "| its accuracy here | " + " | ".join(f"{lodo[d][1]:.1f}" for d in ds) + " |"]
    for sel in ("select-agreement", "select-stability"):
        if any(picks[d][sel] for d in ds):
            lines.append(f"| {sel} picks | " + " | ".join("/".join(picks[d][sel]) for d in ds) + " |")
    if large:
        lm = list(next(iter(large.values())))
        lines += ["", f"n={args.large_n}, seed {args.seeds[0]}: accuracy % (seconds)", "",
                  "| method | " + " | ".join(ds) + " |", "|---" * (len(ds) + 1) + "|"]
        for m in lm:
            lines.append(f"| {m} | " + " | ".join(f"{large[d][m][2]:.1f} ({large[d][m][1]:.0f})" for d in ds) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
