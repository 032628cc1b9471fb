"""Pseudo-label quality without tuning on the scored data: Hungarian cluster accuracy per dataset x method.

    DSFLOW_DATA=../shared/data python benchmarks/pseudo_labels.py --n 2000 --seeds 0 1 \
        --large-n 5000 --large-methods pixels-km hog-umap-km --out runs/pseudo_labels

For every development dataset (class-balanced subsets of ``n``, subset seed = clustering seed = s) and method,
clusters into C = #classes and scores the clusters against the true labels (Hungarian alignment; scoring only).
Then the two label-free choices of docs/pseudo_labels.md:

* leave-one-dataset-out: for each dataset, the method with the best mean accuracy on the OTHER datasets (all
  seeds, at ``n``) and the accuracy that method gets on it;
* per dataset, what :class:`~dsflow.data.SelectByAgreement` (among all methods run) and, when ``select-stability``
  is among the methods, :class:`~dsflow.data.SelectByStability` (among ``STABILITY_CANDIDATES``) pick from its
  images alone.

Methods named ``oracle-*`` read the activations of a frozen classifier checkpoint (``--oracle``, the Table 1
oracle's); a method name followed by ``@all`` fits its clusters on every image of the dataset's file and scores the
n-sample (PseudoLabeled's ``fit_on: all``).

Prints Markdown tables (accuracy %, mean over seeds; seconds per clustering, features included) and writes
``results.json`` and ``results.md`` under ``--out``.
"""


from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from torch import Tensor

from dsflow.data import (
    Chain, Concat, GlyphEncoderFeatures, OracleFeatures, SelfSupervisedFeatures, ClusterFeatures, ClusterPipeline, Clusterer, ConsensusClusterer, DeskewFeatures, GaussianMixtureClusterer,
    GradientHistogramFeatures, KMeansClusterer, OverClusterMerge, PCAFeatures, PixelFeatures, Pseudolabeler,
    SelectByAgreement, SelectByStability, SpectralClusterer, TSNEFeatures, UMAPFeatures, aligned_accuracy,
)
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.distorted import Distorted
from dsflow.data.pseudo import WholeSplit, whole_split
from dsflow.experiments.datasets import development_datasets, require_files, script_datasets

__all__ = ["FEATURES", "METHODS", "ALL", "whole_sample", "STABILITY_CANDIDATES", "MethodScore", "Choice", "Study", "parse", "accuracy",
           "run_methods", "run_stability", "leave_one_out", "main", "tables"]

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
    # issue 25: features learned label-free (the oracle's checkpoint: --oracle)
    "oracle-umap": lambda s: Chain([OracleFeatures(), UMAPFeatures(seed=s)]),
    "oracleconv-umap": lambda s: Chain([OracleFeatures(layer="features"), UMAPFeatures(seed=s)]),
    "deskew-hog+oracle-umap": lambda s: Chain([Concat([Chain([DeskewFeatures(blur=0.0), GradientHistogramFeatures()]),
                                                       OracleFeatures()]), UMAPFeatures(seed=s)]),
    "ssl-umap": lambda s: Chain([SelfSupervisedFeatures(seed=s), UMAPFeatures(seed=s)]),
    # issue 25, characters with more strokes than digits: finer cells (4 px), and both grids side by side (a
    # two-level pyramid of histograms, PHOG's idea)
    "deskew-hog7-umap": lambda s: Chain([DeskewFeatures(blur=0.0), GradientHistogramFeatures(cells=7), UMAPFeatures(seed=s)]),
    "deskew-phog-umap": lambda s: Chain([DeskewFeatures(blur=0.0), Concat([GradientHistogramFeatures(cells=4),
                                                                           GradientHistogramFeatures(cells=7)]),
                                         UMAPFeatures(seed=s)]),
    # a frozen character encoder pretrained on rendered kanji (no development or hold-out class), alone and beside
    # the 4-px gradient histograms
    "glyphenc-umap": lambda s: Chain([GlyphEncoderFeatures(), UMAPFeatures(seed=s)]),
    "deskew-hog7+glyphenc-umap": lambda s: Chain([Concat([Chain([DeskewFeatures(blur=0.0),
                                                                 GradientHistogramFeatures(cells=7)]),
                                                          GlyphEncoderFeatures()]), UMAPFeatures(seed=s)]),
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
    "oracle-umap-km": ("oracle-umap", KMeansClusterer),
    "oracleconv-umap-km": ("oracleconv-umap", KMeansClusterer),
    "deskew-hog+oracle-umap-km": ("deskew-hog+oracle-umap", KMeansClusterer),
    "ssl-umap-km": ("ssl-umap", KMeansClusterer),
    "deskew-hog7-umap-km": ("deskew-hog7-umap", KMeansClusterer),
    "deskew-phog-umap-km": ("deskew-phog-umap", KMeansClusterer),
    "glyphenc-umap-km": ("glyphenc-umap", KMeansClusterer),
    "deskew-hog7+glyphenc-umap-km": ("deskew-hog7+glyphenc-umap", KMeansClusterer),
}

#: a method name ending in this fits its clusters on every image of the dataset's file, then scores the n-sample
#: (PseudoLabeled's ``fit_on: all``)
ALL = "@all"

#: what SelectByStability chooses among (kept small: each candidate runs on three subsamples)
STABILITY_CANDIDATES = ["hog-umap-x0.5-km", "hog-umap-km", "hog-umap-x2-km", "deskew-hog-umap-km", "umap-km"]
SELECTIONS = ("select-agreement", "select-stability")


class MethodScore(NamedTuple):
    """One clustering of a dataset sample: what a selection chose (None: not a selection), seconds with features,
    Hungarian accuracy (%)."""

    chosen: str | None
    seconds: float
    accuracy: float


class Choice(NamedTuple):
    """Leave-one-dataset-out: the method best on the other datasets, and its accuracy (%) on this one."""

    method: str
    accuracy: float


@dataclass
class Study:
    """Per dataset and method: accuracy (%) and seconds per seed; what the selections picked per seed; the
    leave-one-dataset-out choices; the scores at ``--large-n`` (first seed)."""

    accuracy: dict[str, dict[str, list[float]]]
    seconds: dict[str, dict[str, list[float]]]
    picks: dict[str, dict[str, list[str]]]
    lodo: dict[str, Choice]
    large: dict[str, dict[str, MethodScore]]

    def mean(self) -> dict[str, dict[str, float]]:
        """Accuracy (%) per dataset and method, mean over seeds."""
        return {d: {m: float(np.mean(v)) for m, v in self.accuracy[d].items()} for d in self.accuracy}

    def add(self, dataset: str, method: str, score: MethodScore) -> None:
        self.accuracy[dataset].setdefault(method, []).append(score.accuracy)
        self.seconds[dataset].setdefault(method, []).append(score.seconds)
        if score.chosen is not None:
            self.picks[dataset][method].append(score.chosen)

    def to_json(self, args: argparse.Namespace) -> dict:
        """``results.json``."""
        return {"args": vars(args), "accuracy": self.accuracy, "seconds": self.seconds, "lodo": self.lodo,
                "picks": self.picks, "large": {d: {m: v[1:] for m, v in r.items()} for d, r in self.large.items()}}


def parse(argv: list[str] | None) -> argparse.Namespace:
    datasets = development_datasets(scripts=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=list(development_datasets()), help="from: " + ", ".join(datasets))
    p.add_argument("--scripts", action="store_true", help="add the synthetic-script datasets (their files: "
                   "benchmarks/make_scripts.py; docs/pseudo_labels.md)")
    p.add_argument("--methods", nargs="*", default=list(METHODS), help="from: " + ", ".join([*METHODS, "select-stability"])
                   + f"; a method followed by {ALL} fits on all the images of the dataset's file, then scores the n-sample")
    p.add_argument("--oracle", default=None, help="classifier checkpoint of the oracle-* methods (the Table 1 oracle's)")
    p.add_argument("--n", type=int, default=2000, help="samples per dataset (class-balanced)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="subset and clustering seeds")
    p.add_argument("--large-n", type=int, default=None, help="a second, larger n for --large-methods")
    p.add_argument("--large-methods", nargs="*", default=[], help="methods also run at --large-n (first seed only)")
    p.add_argument("--out", default="runs/pseudo_labels", help="folder of results.json and results.md")
    args = p.parse_args(argv)
    args.datasets += [d for d in script_datasets() if args.scripts and d not in args.datasets]
    unknown = [d for d in args.datasets if d not in datasets]
    if unknown:
        p.error(f"--datasets: unknown {unknown}; known: {', '.join(datasets)}")
    return args


def accuracy(pseudo: Tensor, true: Tensor, k: int) -> float:
    """Hungarian cluster accuracy (%), scoring only."""
    return aligned_accuracy(pseudo, true, k, k)


class _Fixed(Pseudolabeler):
    """Labels already computed (lets SelectByAgreement choose among cached clusterings)."""

    def __init__(self, labels: Tensor) -> None:
        self.labels = labels

    def __call__(self, x: Tensor, k: int, seed: int = 0) -> Tensor:
        return self.labels


def whole_sample(source: DatasetSource) -> WholeSplit:
    """Every image of a development dataset's file and which of them its n-sample is (:func:`whole_split`);
    a :class:`Distorted` dataset warps the whole file (its n-sample is then another draw of the same warps)."""
    if isinstance(source, Distorted):
        w = whole_split(source.source)
        x = source.warp(w.whole.x).to(w.whole.x.dtype)
        return WholeSplit(LabeledData(x, w.whole.y, w.whole.num_classes, f"{w.whole.name} (warped)"), w.subset)
    return whole_split(source)


def _labels(m: str, seed: int, data: LabeledData, whole: WholeSplit | None, oracle: str | None,
            cache: dict[tuple[str, bool], tuple[Tensor, float]]) -> tuple[Tensor, float]:
    """(n,) clusters of method ``m`` on the sample (fitted on ``whole`` for an ``@all`` method) and seconds,
    features included (cached per feature map and fit)."""
    on_all = m.endswith(ALL)
    fkey, make = METHODS[m.removesuffix(ALL)]
    x = whole.whole.x if on_all and whole is not None else data.x
    k = data.num_classes
    if (fkey, on_all) not in cache:
        t0 = time.perf_counter()
        features = FEATURES[fkey](seed)
        if oracle is not None:
            features.default_checkpoint(oracle)
        z = features(x, k)
        cache[fkey, on_all] = (z.reshape(z.shape[0], -1).double(), time.perf_counter() - t0)
    z, ft = cache[fkey, on_all]
    t0 = time.perf_counter()
    clusterer = make()
    labels = clusterer(z, k, seed)
    if on_all and whole is not None:
        labels = clusterer.restrict(z, labels, whole.subset, k)
    return labels, ft + time.perf_counter() - t0


def run_methods(name: str, n: int, seed: int, methods: list[str],
                oracle: str | None = None) -> tuple[dict[str, MethodScore], LabeledData]:
    """Per method (and ``select-agreement`` among them, given three or more): its score; and the data sample.
    ``oracle``: the checkpoint of the OracleFeatures methods."""
    sample = development_datasets(scripts=True)[name].sample
    if sample is None:
        raise RuntimeError(f"run_methods: development dataset '{name}' has no sample()")
    whole = whole_sample(sample(n, seed)) if any(m.endswith(ALL) for m in methods) else None
    data = whole.data() if whole is not None else sample(n, seed).load()
    k, labels, out = data.num_classes, {}, {}
    cache: dict[tuple[str, bool], tuple[Tensor, float]] = {}
    for m in methods:
        labels[m], seconds = _labels(m, seed, data, whole, oracle, cache)
        out[m] = MethodScore(None, seconds, accuracy(labels[m], data.y, k))
        print(f"{name} n={n} seed={seed} {m}: {out[m].accuracy:.1f} % in {out[m].seconds:.1f} s", flush=True)
    if len(methods) >= 3:
        select = SelectByAgreement([_Fixed(labels[m]) for m in methods])
        chosen = select(data.x, k, seed)
        if select.last is None:
            raise RuntimeError("SelectByAgreement recorded no selection")
        out["select-agreement"] = MethodScore(methods[select.last.chosen], 0.0, accuracy(chosen, data.y, k))
    return out, data


def run_stability(data: LabeledData, seed: int) -> tuple[MethodScore, list[float]]:
    """What SelectByStability picks on one dataset sample (its score), and the candidates' stability scores."""
    cands: list[Pseudolabeler] = [ClusterPipeline(FEATURES[METHODS[m][0]](seed), METHODS[m][1](), name=m) for m in STABILITY_CANDIDATES]
    select = SelectByStability(cands)
    t0 = time.perf_counter()
    labels = select(data.x, data.num_classes, seed)
    acc = accuracy(labels, data.y, data.num_classes)
    if select.last is None:
        raise RuntimeError("SelectByStability recorded no selection")
    return MethodScore(STABILITY_CANDIDATES[select.last.chosen], time.perf_counter() - t0, acc), select.last.scores


def leave_one_out(acc: dict[str, dict[str, float]], methods: list[str]) -> dict[str, Choice]:
    """For each dataset: the method best on average over the other datasets, and its accuracy here."""
    choice = {}
    for d in acc:
        others = [e for e in acc if e != d]
        best = max(methods, key=lambda m: np.mean([acc[e][m] for e in others]))
        choice[d] = Choice(best, acc[d][best])
    return choice


def _run_dataset(study: Study, d: str, args: argparse.Namespace, base: list[str]) -> None:
    """Every method (and the selections) on each seed's sample of dataset ``d``, into ``study``."""
    for s in args.seeds:
        scores, data = run_methods(d, args.n, s, base, args.oracle)
        for m, score in scores.items():
            study.add(d, m, score)
        if "select-stability" in args.methods:
            score, stability = run_stability(data, s)
            print(f"{d} seed={s} select-stability: {score.chosen} ({score.accuracy:.1f} %) "
                  f"scores {np.round(stability, 3).tolist()}", flush=True)
            study.add(d, "select-stability", score)


def main(argv: list[str] | None = None) -> Study:
    args = parse(argv)
    require_files(args.datasets)
    base = [m for m in args.methods if m.removesuffix(ALL) in METHODS]
    study = Study({d: {} for d in args.datasets}, {d: {} for d in args.datasets},
                  {d: {sel: [] for sel in SELECTIONS} for d in args.datasets}, {}, {})
    for d in args.datasets:
        _run_dataset(study, d, args, base)
    study.lodo = leave_one_out(study.mean(), base) if len(args.datasets) > 1 else {}
    if args.large_n and args.large_methods:
        study.large = {d: run_methods(d, args.large_n, args.seeds[0], args.large_methods, args.oracle)[0] for d in args.datasets}
    md = tables(study, args)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(study.to_json(args), indent=2))
    (out / "results.md").write_text(md)
    return study


def tables(study: Study, args: argparse.Namespace) -> str:
    """Markdown: accuracy (mean over seeds) per method x dataset, seconds, LODO and label-free choices."""
    mean, ds = study.mean(), list(study.accuracy)
    lines = [f"Hungarian cluster accuracy (%), n={args.n}, mean of seeds {args.seeds}; s = mean seconds per clustering", "",
             "| method | " + " | ".join(ds) + " | mean | s |", "|---" * (len(ds) + 3) + "|"]
    for m in next(iter(mean.values())):
        row = [mean[d][m] for d in ds]
        s = np.mean([np.mean(study.seconds[d][m]) for d in ds])
        lines.append(f"| {m} | " + " | ".join(f"{a:.1f}" for a in row) + f" | {np.mean(row):.1f} | {s:.1f} |")
    if study.lodo:
        lines += ["", "| leave-one-dataset-out | " + " | ".join(ds) + " |", "|---" * (len(ds) + 1) + "|",
                  "| chosen on the others | " + " | ".join(study.lodo[d].method for d in ds) + " |",
                  "| its accuracy here | " + " | ".join(f"{study.lodo[d].accuracy:.1f}" for d in ds) + " |"]
    for sel in SELECTIONS:
        if any(study.picks[d][sel] for d in ds):
            lines.append(f"| {sel} picks | " + " | ".join("/".join(study.picks[d][sel]) for d in ds) + " |")
    if study.large:
        lines += ["", f"n={args.large_n}, seed {args.seeds[0]}: accuracy % (seconds)", "",
                  "| method | " + " | ".join(ds) + " |", "|---" * (len(ds) + 1) + "|"]
        for m in next(iter(study.large.values())):
            lines.append(f"| {m} | " + " | ".join(f"{study.large[d][m].accuracy:.1f} ({study.large[d][m].seconds:.0f})"
                                                  for d in ds) + " |")
    return "\n".join(lines)
