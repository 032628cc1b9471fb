"""Transfer learning via flows (paper section 7.2, Fig. 3e, 4, 10) in one command.

    DSFLOW_DATA=../shared/data python benchmarks/transfer.py --pairs usps:mnist --shots 100 --seeds 0 1 2

For each source:target pair, k in ``--shots`` and seed:

1. Data: a class-balanced k-shot target set (k per class) from the target's training split; ``--n-source``
   (2,000) source samples to flow and ``--n-extra`` further, disjoint source samples for the flow map, all from the
   source's training split (USPS: the usps_h5 array copy); the target's test split to score. Images 28 x 28 gray.
2. Flow the source samples to the k-shot target: OTDD alone, fd-fl dynamics, SGD (forward Euler) with step
   ``--lr`` for ``--steps`` steps; ``--snapshots`` evenly spaced states z1..zT are kept (the trajectory).
3. Fit the flow map h: x0 -> xT on the flow's pairs (``--map-restarts`` restarts of ``--map-epochs`` epochs, best
   held out) and push the extra source samples through it.
4. Train a LeNet-5 (Adam 1e-3, weight decay 1e-6, ``--epochs`` epochs; appendix C: 20) on the target alone and
   with each kind of flowed data added: z0, zT, the trajectory z1..T, h(z0) of the extra samples; and the model
   adaptation baseline: train on the 2,000 source samples, fine-tune ``--finetune-epochs`` (10) on the target;
   and a control, the target repeated to the size of target + zT (as many optimizer steps as + zT, no new data).
   Labels of flowed data: the source labels where source and target share classes (digits), else the label of
   the target sample each particle ended on (its whole trajectory takes it); h(z0) of an extra sample takes the
   target class most particles of its source class ended in.
5. Print a Markdown table (setting, k, mean and std of target test accuracy over seeds), write
   ``<out>/results.json``, ``<out>/transfer_<pair>.png`` (Fig. 3e / 10) and ``<out>/adaptation.png`` (Fig. 4).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from dsflow.callbacks.recorder import FlowRecorder
from dsflow.callbacks.transfer_figures import adaptation_figure, flow_map_figure, transfer_figure
from dsflow.data import KMNIST, MNIST, ArrayFile, FashionMNIST, FlowDataModule, FlowPairs
from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.images import ImageDataModule, stratified_indices
from dsflow.flows import FeatureDriven, FlowModule, OTDDTerm
from dsflow.io import load_trajectory
from dsflow.ot.label_distance import DiagonalGaussianLabelDistance
from dsflow.tasks.flow_map import fit_flow_map
from dsflow.tasks.transfer import accuracy, augmented, landing_labels, train_lenet

#: dataset name -> (constructor, whether its labels are the ten digits)
DATASETS = {
    "usps": (partial(ArrayFile, path="usps_h5/train.npz", test_path="usps_h5/test.npz", name="usps"), True),
    "mnist": (MNIST, True),
    "fmnist": (FashionMNIST, False),
    "kmnist": (KMNIST, False),
}
SETTINGS = ("target only", "+ z0", "+ zT", "+ z1..T", "+ h(z0)", "fine-tune", "target repeated")
#: settings that need no flow
TARGET_ONLY = ("target only", "target repeated")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", default=["usps:mnist"], help="source:target pairs of %s" % ", ".join(DATASETS))
    p.add_argument("--shots", nargs="+", type=int, default=[100], help="k, target samples per class")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-source", type=int, default=2000, help="source samples flowed")
    p.add_argument("--n-extra", type=int, default=2000, help="extra source samples mapped by h")
    p.add_argument("--n-test", type=int, default=None, help="target test samples scored (default: all)")
    p.add_argument("--steps", type=int, default=40, help="flow steps T")
    p.add_argument("--snapshots", type=int, default=5, help="states z1..zT kept of the trajectory (evenly spaced)")
    p.add_argument("--lr", type=float, default=0.1, help="flow step size tau")
    p.add_argument("--eps", type=float, default=1.0, help="entropic regularisation of the OTDD")
    p.add_argument("--lambda-y", type=float, default=5.0, help="weight of the label term of the OTDD")
    p.add_argument("--epochs", type=int, default=20, help="LeNet-5 epochs (appendix C: 20)")
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--map-restarts", type=int, default=10, help="flow-map restarts (appendix C: 10)")
    p.add_argument("--map-epochs", type=int, default=20)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--root", default=None, help="data root (default: $DSFLOW_DATA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/transfer")
    return p.parse_args(argv)


class _Given(DatasetSource):
    """A dataset already in memory, as a flow source."""

    def __init__(self, data: LabeledData) -> None:
        self.data = data

    def load(self) -> LabeledData:
        return self.data


def dataset(name: str, seed: int, args: argparse.Namespace, balanced: bool = False) -> tuple[ImageDataModule, bool]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}': choose from {sorted(DATASETS)}")
    build, digits = DATASETS[name]
    return build(root=args.root, seed=seed, size=28, channels=1, balanced=balanced), digits


def flow(source: LabeledData, target: LabeledData, run_dir: Path, args: argparse.Namespace) -> tuple[dict, float]:
    """Flow ``source`` onto ``target``; returns the saved trajectory (steps, x, y) and the seconds taken."""
    term = OTDDTerm(eps=args.eps, lambda_x=1.0, lambda_y=args.lambda_y, label_distance=DiagonalGaussianLabelDistance())
    module = FlowModule([term], FeatureDriven(), partial(torch.optim.SGD, lr=args.lr))
    every = max(args.steps // max(args.snapshots, 1), 1)
    trainer = L.Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=str(run_dir),
                        callbacks=[FlowRecorder(every_n_steps=every, figure=False)])
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=FlowDataModule(_Given(source), _Given(target), steps_per_epoch=args.steps))
    return load_trajectory(run_dir), time.perf_counter() - t0


def flowed_data(source: LabeledData, pool: LabeledData, extra_idx: Tensor, target: LabeledData, run_dir: Path,
                same: bool, out: dict, args: argparse.Namespace) -> dict[str, list[tuple[Tensor, Tensor]]]:
    """Flow ``source`` onto ``target``, fit h; the extra training data of each flow setting (labels in target classes)."""
    traj, flow_s = flow(source, target, run_dir / "flow", args)
    x_t = torch.from_numpy(traj["x"][-1])  # (n, 1, 28, 28) final particles
    if same:
        y_flow = source.y
        label = torch.arange(pool.num_classes)
    else:  # where each particle landed; extra samples take the target class their source class mostly went to
        y_flow = landing_labels(x_t, target.x, target.y)
        label = torch.stack([torch.bincount(y_flow[source.y == c], minlength=target.num_classes).argmax()
                             for c in range(source.num_classes)])  # (C_source,)
    n_traj = [torch.from_numpy(x) for s, x in zip(traj["steps"], traj["x"]) if s > 0]  # z1..zT, (n, 1, 28, 28) each
    out["flow_seconds"] = round(flow_s, 1)
    extra = {"+ z0": [(source.x, y_flow)], "+ zT": [(x_t, y_flow)], "+ z1..T": [(x, y_flow) for x in n_traj]}
    if "+ h(z0)" in args.settings:
        t0 = time.perf_counter()
        fit_pairs = FlowPairs(str(run_dir / "flow"), seed=out["seed"])
        fit = fit_flow_map(fit_pairs, args.map_restarts, args.map_epochs, out["seed"], out_dir=run_dir / "flow_map")
        out.update(map_mse=fit.best_mse, map_identity_mse=fit.identity_mse, map_seconds=round(time.perf_counter() - t0, 1))
        x0_val, xt_val = fit_pairs.val_set.tensors  # held-out pairs, (n_val, 1, 28, 28) each
        flow_map_figure(x0_val[:32], xt_val[:32], fit.module.push(x0_val[:32]), run_dir / "flow_map" / "fig9.png")
        print(f"{out['pair']} k={out['k']} seed={out['seed']} flow map: held-out MSE of xT {fit.best_mse:.5f} "
              f"(x0 itself {fit.identity_mse:.5f})", flush=True)
        extra["+ h(z0)"] = [(fit.module.push(pool.x[extra_idx]), label[pool.y[extra_idx]])]
    return extra


def one_task(src_name: str, tgt_name: str, k: int, seed: int, args: argparse.Namespace) -> dict:
    """All settings for one pair, k and seed: {setting: accuracy} plus flow and flow-map diagnostics."""
    tgt_dm, tgt_digits = dataset(tgt_name, seed, args, balanced=True)
    src_dm, src_digits = dataset(src_name, seed, args)
    target = tgt_dm.load_split("train", n=k * 10)
    test = tgt_dm.load_split("test", n=args.n_test)
    pool = src_dm.load_split("train", n=args.n_source + args.n_extra)
    idx = stratified_indices(pool.y, args.n_source, pool.num_classes, seed)  # the flowed samples, stratified
    rest = torch.ones(pool.x.shape[0], dtype=torch.bool)
    rest[idx] = False
    extra_idx = torch.nonzero(rest).flatten()  # disjoint extra samples for h
    source = LabeledData(pool.x[idx], pool.y[idx], pool.num_classes, f"{src_name}/flow")
    run_dir = Path(args.out) / f"{src_name}-{tgt_name}-k{k}-s{seed}"
    out = {"pair": f"{src_name}->{tgt_name}", "k": k, "seed": seed, "acc": {}}
    repeat = round((target.x.shape[0] + args.n_source) / target.x.shape[0])  # target copies as many as target + zT
    extra = {"target repeated": [(target.x, target.y)] * (repeat - 1)}
    if any(s not in TARGET_ONLY for s in args.settings):
        extra |= flowed_data(source, pool, extra_idx, target, run_dir, src_digits and tgt_digits, out, args)
    train = partial(train_lenet, epochs=args.epochs, seed=seed, batch_size=args.batch_size)
    for setting in args.settings:
        t0 = time.perf_counter()
        if setting == "fine-tune":
            pre = train(source.x, source.y, source.num_classes)
            net = train_lenet(target.x, target.y, target.num_classes, args.finetune_epochs, seed, args.batch_size, init=pre)
        else:
            x, y = augmented(target.x, target.y, extra.get(setting, []))
            net = train(x, y, target.num_classes)
        out["acc"][setting] = accuracy(net, test.x, test.y)
        print(f"{out['pair']} k={k} seed={seed} {setting}: {out['acc'][setting]:.2f} % ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def summarise(results: list[dict]) -> list[dict]:
    """One row per (pair, k, setting): mean and std (over seeds) of the accuracy."""
    rows = []
    for pair in dict.fromkeys(r["pair"] for r in results):
        for k in sorted({r["k"] for r in results if r["pair"] == pair}):
            runs = [r for r in results if r["pair"] == pair and r["k"] == k]
            for setting in runs[0]["acc"]:
                accs = [r["acc"][setting] for r in runs]
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                rows.append({"pair": pair, "k": k, "setting": setting, "mean": statistics.fmean(accs), "std": std, "seeds": len(accs)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| pair | k | setting | accuracy mean (%) | std | seeds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['k']} | {r['setting']} | {r['mean']:.2f} | {r['std']:.2f} | {r['seeds']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = [tuple(p.split(":")) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--pairs takes source:target, got {args.pairs}")
    t0 = time.perf_counter()
    results = [one_task(s, t, k, seed, args) for s, t in pairs for k in args.shots for seed in args.seeds]
    rows = summarise(results)
    out = Path(args.out)
    for pair in dict.fromkeys(r["pair"] for r in rows):
        name = pair.replace("->", "_")
        transfer_figure([r for r in rows if r["pair"] == pair], out / f"transfer_{name}.png", title=f"{pair} (target test accuracy)")
    points = [{"label": f"{r['pair']} {r['k']}", "finetune": r["mean"],
               "flow": next(q["mean"] for q in rows if q["pair"] == r["pair"] and q["k"] == r["k"] and q["setting"] == "+ z1..T")}
              for r in rows if r["setting"] == "fine-tune" and "+ z1..T" in args.settings]
    if points:
        adaptation_figure(points, out / "adaptation.png")
    seconds = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps({"args": vars(args), "seconds": round(seconds, 1), "runs": results, "rows": rows}, indent=2))
    print(table(rows))
    for pair in dict.fromkeys(r["pair"] for r in results):
        mse = [(r["map_mse"], r["map_identity_mse"]) for r in results if r["pair"] == pair and "map_mse" in r]
        if mse:
            print(f"{pair} flow map, held-out MSE of xT per pixel: h(x0) {statistics.fmean(m for m, _ in mse):.5f}, "
                  f"x0 itself {statistics.fmean(i for _, i in mse):.5f} (mean over {len(mse)} flows)")
    print(f"total {seconds:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
