"""Transfer learning via flows (paper section 7.2, Fig. 3e, 4, 10) in one command.

    DSFLOW_DATA=../shared/data python benchmarks/transfer.py --pairs usps:mnist --shots 100 --seeds 0 1 2

Every setting is YAML; this script sweeps pairs, shots, seeds and settings. For each source:target pair, k in
``--shots`` and seed s:

1. Flow (``flow.py fit`` of ``configs/flow/transfer/flow.yaml``): 2,000 source samples, a stratified part of a
   pool of 4,000 from the source's training split, flow onto the k-shot target (k per class of the target's
   training split, class-balanced); OTDD alone (eps 1, lambda_y 5, diagonal Gaussian label distances), fd-fl,
   SGD with tau = 0.1, 40 steps, the states every 8 steps kept (z1..zT). The datasets are
   ``configs/data/<name>.yaml`` (USPS: the usps_h5 arrays), 28 x 28 gray; seed s draws the pool, the part and the
   target.
2. Flow map h: x0 -> xT (``train.py fit`` of ``configs/train/flow_map.yaml`` + ``flow_map_restarts.yaml``,
   ``--map-restarts`` restarts, the best on held-out pairs kept), applied to the pool's other 2,000 samples.
3. LeNet-5s (``train.py fit`` of ``configs/train/lenet_mnist.yaml`` + ``configs/train/transfer/lenet.yaml``: 20
   epochs, Adam 1e-3, weight decay 1e-6, batches of 64, seeded with s) on the target alone and with each kind of
   flowed data added: z0, zT, the trajectory z1..T, h(z0) of the extra samples; fine-tuning (train on the 2,000
   source samples, then ``configs/train/transfer/finetune.yaml``: 10 epochs on the target from those weights);
   and a control, the target repeated to the size of target + zT (as many optimizer steps as + zT, no new data).
   Labels of flowed data: the source labels where source and target share classes (digits), else the label of
   the target sample each particle ended on (its whole trajectory takes it); h(z0) of an extra sample takes the
   target class most particles of its source class ended in.
4. Accuracy of each LeNet-5 on the target's test split (``--n-test`` of it, class-balanced; default all);
   prints a Markdown table (pair, k, setting, mean and std over seeds), writes ``<out>/results.json``,
   ``<out>/transfer_<pair>.png`` (Fig. 3e / 10) and ``<out>/adaptation.png`` (Fig. 4). The sets each LeNet-5
   trained on are in ``<out>/<pair>-k<k>-s<seed>/sets/``.

Overrides per kind of run, as KEY=VALUE: ``--flow-args trainer.max_steps=30 recorder.every_n_steps=10``,
``--lenet-args trainer.max_epochs=8`` (every LeNet-5), ``--finetune-args`` (the fine-tuning stage),
``--map-args trainer.max_epochs=8``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

import common
from dsflow.callbacks.transfer_figures import adaptation_figure, flow_map_figure, transfer_figure
from dsflow.data import LabeledData, save_tensors
from dsflow.io import load_trajectory
from dsflow.tasks.transfer import accuracy, landing_labels

#: dataset name -> (its spec under configs/data/, whether its labels are the ten digits)
DATASETS = {
    "usps": ("configs/data/usps_h5.yaml", True),
    "mnist": ("configs/data/mnist.yaml", True),
    "fmnist": ("configs/data/fmnist.yaml", False),
    "kmnist": ("configs/data/kmnist.yaml", False),
}
CLASSES = 10  # every dataset above has ten classes: a k-shot target has 10 k samples
SETTINGS = ("target only", "+ z0", "+ zT", "+ z1..T", "+ h(z0)", "fine-tune", "target repeated")
TARGET_ONLY = ("target only", "target repeated")  # settings that need no flow
FLOW = ["configs/flow/transfer/flow.yaml"]
LENET = ["configs/train/lenet_mnist.yaml", "configs/train/transfer/lenet.yaml"]
FINETUNE = ["configs/train/transfer/finetune.yaml"]


def parse(argv: list[str] | None):
    p = common.parser(__doc__, out="runs/transfer", seeds=(0, 1, 2), passthrough=None)
    p.add_argument("--pairs", nargs="+", default=["usps:mnist"], help="source:target, names among %s" % ", ".join(DATASETS))
    p.add_argument("--shots", nargs="+", type=int, default=[100], help="k, target samples per class")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--n-test", type=int, default=None, help="target test samples scored (default: the whole test split)")
    p.add_argument("--map-restarts", type=int, default=10, help="flow-map restarts (appendix C: 10)")
    p.add_argument("--config", nargs="+", default=FLOW, help="flow configs (default: %(default)s)")
    for kind in ("flow", "lenet", "finetune", "map"):
        p.add_argument(f"--{kind}-args", nargs="*", default=[], metavar="KEY=VALUE", help=f"overrides of the {kind} runs")
    return p.parse_args(argv)


def flow_overrides(src: str, tgt: str, k: int, seed: int) -> list[str]:
    """The pair's datasets, the shot count and the seeds of one flow (before the --flow-args)."""
    for name in (src, tgt):
        if name not in DATASETS:
            raise ValueError(f"unknown dataset '{name}': choose from {sorted(DATASETS)}")
    pool, target = "--data.init_args.source.init_args.source", "--data.init_args.reference"
    return [pool, str(common.ROOT / DATASETS[src][0]), f"{pool}.init_args.seed", str(seed),
            "--data.init_args.source.init_args.seed", str(seed),
            target, str(common.ROOT / DATASETS[tgt][0]), f"{target}.init_args.seed", str(seed),
            f"{target}.init_args.n", str(k * CLASSES)]


def flowed_sets(cli, task: Path, same: bool, out: dict, args) -> tuple[dict[str, list[Path]], Path]:
    """Write the flowed data of each setting (labels in target classes); returns {setting: files} and source.npz."""
    dm = cli.datamodule
    source, target = dm.source, dm.reference
    traj = load_trajectory(task / "flow")
    x_t = torch.from_numpy(traj["x"][-1])  # (n, 1, 28, 28) final particles
    if same:
        y_flow, label = source.y, torch.arange(source.num_classes)
    else:  # where each particle landed; extra samples take the target class their source class mostly went to
        y_flow = landing_labels(x_t, target.x, target.y)
        label = torch.stack([torch.bincount(y_flow[source.y == c], minlength=target.num_classes).argmax()
                             for c in range(source.num_classes)])  # (C_source,)
    sets = task / "sets"
    c = target.num_classes

    def save(name: str, x: torch.Tensor, y: torch.Tensor) -> Path:
        return save_tensors(sets / f"{name}.npz", LabeledData(x, y, c, name))

    states = [torch.from_numpy(x) for s, x in zip(traj["steps"], traj["x"]) if s > 0]  # z1..zT, (n, 1, 28, 28) each
    files = {"+ z0": [save("z0", source.x, y_flow)], "+ zT": [save("zT", x_t, y_flow)],
             "+ z1..T": [save(f"z{s}", x, y_flow) for s, x in zip([s for s in traj["steps"] if s > 0], states)]}
    if "+ h(z0)" in args.settings:
        t0 = time.perf_counter()
        extra = dm.source_spec.complement().load()  # the pool's samples that did not flow
        fit, pairs = common.fit_flow_map(task / "flow", task / "flow_map", args.map_restarts, out["seed"],
                                         common.overrides(args.map_args, "--map-args"))
        x0_val, xt_val = pairs.val_set.tensors  # held-out pairs, (n_val, 1, 28, 28) each
        identity = float(torch.nn.functional.mse_loss(x0_val, xt_val))
        out.update(map_mse=fit.scores[fit.best_index], map_identity_mse=identity, map_seconds=round(time.perf_counter() - t0, 1))
        flow_map_figure(x0_val[:32], xt_val[:32], fit.module.push(x0_val[:32]), task / "flow_map" / "fig9.png")
        print(f"{out['pair']} k={out['k']} seed={out['seed']} flow map: held-out MSE of xT {out['map_mse']:.5f} "
              f"(x0 itself {identity:.5f})", flush=True)
        files["+ h(z0)"] = [save("hz0", fit.module.push(extra.x), label[extra.y])]
    return files, save_tensors(sets / "source.npz", source)


def train(files: list[Path], seed: int, run: Path, args, finetune_from: Path | None = None):
    """A LeNet-5 trained on the concatenated files (``train.py fit``); fine-tuned from a checkpoint when given."""
    over = ["--data.init_args.paths", "[" + ", ".join(str(f) for f in files) + "]", "--seed_everything", str(seed),
            *common.overrides(args.lenet_args, "--lenet-args")]
    if finetune_from is not None:
        over += [*common.configs(FINETUNE), "--model.init_args.weights", str(finetune_from),
                 *common.overrides(args.finetune_args, "--finetune-args")]
    return common.run_train(LENET, over, run)


def one_task(src: str, tgt: str, k: int, seed: int, args) -> dict:
    """All settings for one pair, k and seed: {setting: accuracy} plus flow and flow-map diagnostics."""
    task = Path(args.out) / f"{src}-{tgt}-k{k}-s{seed}"
    out = {"pair": f"{src}->{tgt}", "k": k, "seed": seed, "acc": {}}
    flow = [*flow_overrides(src, tgt, k, seed), *common.overrides(args.flow_args, "--flow-args")]
    files: dict[str, list[Path]] = {"target only": []}
    if all(s in TARGET_ONLY for s in args.settings):  # the flow's data only
        cli = common.flow_config(args.config, flow, task / "flow")
    else:
        t0 = time.perf_counter()
        cli = common.run_flow(args.config, flow, task / "flow")
        out["flow_seconds"] = round(time.perf_counter() - t0, 1)
        flowed, source_file = flowed_sets(cli, task, DATASETS[src][1] and DATASETS[tgt][1], out, args)
        files |= flowed
    target = cli.datamodule.reference
    test = cli.datamodule.reference_spec.load_split("test", n=args.n_test)  # the target's test split
    out["test"] = {"name": test.name, "samples": int(test.y.shape[0])}
    target_file = save_tensors(task / "sets" / "target.npz", target)
    n_source = cli.datamodule.source.y.shape[0]
    repeat = round((target.y.shape[0] + n_source) / target.y.shape[0])  # target copies as many as target + zT
    files["target repeated"] = [target_file] * (repeat - 1)
    for setting in args.settings:
        t0 = time.perf_counter()
        run = task / "lenet" / setting.replace(" ", "_").replace("+", "plus").replace("..", "-").replace("(", "").replace(")", "")
        if setting == "fine-tune":
            train([source_file], seed, run / "source", args)
            net = train([target_file], seed, run / "target", args, run / "source" / "checkpoints" / "last.ckpt").model.net
        else:
            net = train([target_file, *files[setting]], seed, run, args).model.net
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
                rows.append({"pair": pair, "k": k, "setting": setting, "mean": statistics.fmean(accs), "std": std,
                             "seeds": len(accs)})
    return rows


def figures(rows: list[dict], out: Path, settings: list[str]) -> None:
    for pair in dict.fromkeys(r["pair"] for r in rows):
        transfer_figure([r for r in rows if r["pair"] == pair], out / f"transfer_{pair.replace('->', '_')}.png",
                        title=f"{pair} (target test accuracy)")
    points = [{"label": f"{r['pair']} {r['k']}", "finetune": r["mean"],
               "flow": next(q["mean"] for q in rows if q["pair"] == r["pair"] and q["k"] == r["k"] and q["setting"] == "+ z1..T")}
              for r in rows if r["setting"] == "fine-tune" and "+ z1..T" in settings]
    if points:
        adaptation_figure(points, out / "adaptation.png")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    common.set_threads(args.threads)
    pairs = [tuple(p.split(":")) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--pairs takes source:target, got {args.pairs}")
    t0 = time.perf_counter()
    results = [one_task(s, t, k, seed, args) for s, t in pairs for k in args.shots for seed in args.seeds]
    rows = summarise(results)
    figures(rows, Path(args.out), args.settings)
    seconds = time.perf_counter() - t0
    common.write_results(args.out, {"args": vars(args), "seconds": round(seconds, 1), "runs": results, "rows": rows})
    print(common.markdown_table(["pair", "k", "setting", "accuracy mean (%)", "std", "seeds"],
                                [[r["pair"], r["k"], r["setting"], f"{r['mean']:.2f}", f"{r['std']:.2f}", r["seeds"]] for r in rows]))
    for pair in dict.fromkeys(r["pair"] for r in results):
        mse = [(r["map_mse"], r["map_identity_mse"]) for r in results if r["pair"] == pair and "map_mse" in r]
        if mse:
            print(f"{pair} flow map, held-out MSE of xT per pixel: h(x0) {statistics.fmean(m for m, _ in mse):.5f}, "
                  f"x0 itself {statistics.fmean(i for _, i in mse):.5f} (mean over {len(mse)} flows)")
    print(f"total {seconds:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
