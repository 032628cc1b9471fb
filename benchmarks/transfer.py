"""Transfer learning via flows (paper section 7.2, appendix C and E; Fig. 3e, 4, 9, 10) in one command.

    DSFLOW_DATA=../shared/data python benchmarks/transfer.py --protocol configs/transfer/paper.yaml --pairs usps:mnist

``--protocol FILE`` takes the sweep from YAML (``configs/transfer/paper.yaml``: the paper's pairs, k = 5, 10 and
100 shots, 3 seeds, 10 flow-map restarts, every setting); options on the command line win. Every flow and training
setting is YAML too; this script sweeps pairs, shots, seeds and settings. For each source:target pair, k in
``--shots`` and seed s (a "task"):

1. Flow (``flow.py fit`` of ``configs/flow/images.yaml`` + ``configs/flow/transfer/flow.yaml``): 2,000 source samples, a stratified part of a
   pool of 4,000 from the source's training split, flow onto the k-shot target (k per class of the target's
   training split, class-balanced); OTDD alone (eps 1, lambda_y 5, Gaussian label distances), fd-fl, SGD with
   tau = 0.1, 40 steps, the states every 8 steps kept (z1..zT). The datasets are ``configs/data/<name>.yaml``
   (USPS: the usps_h5 arrays), 28 x 28 gray; seed s draws the pool, the part and the target.
2. Flow map h: x0 -> xT (``train.py fit`` of ``configs/train/flow_map.yaml`` + ``flow_map_restarts.yaml``,
   ``--map-restarts`` restarts of 20 epochs, the best on held-out pairs kept), applied to the pool's other 2,000
   samples.
3. LeNet-5s (``train.py fit`` of ``configs/train/lenet_mnist.yaml`` + ``configs/train/transfer/lenet.yaml``: 20
   epochs, Adam 1e-3, weight decay 1e-6, batches of 64, seeded with s), one per setting
   (``transfer_report.COMPARISON`` says what each is compared as):
   * equal epochs, the paper's comparison: the target alone, and with each kind of flowed data added: z0, zT,
     the trajectory z1..T, h(z0) of the extra samples;
   * model adaptation with the same labeled data (Fig. 4): train on the 2,000 source samples, then
     ``configs/train/transfer/finetune.yaml``: 10 epochs on the target from those weights. The source model
     depends on the source and the seed only: it is trained once and reused for every target and k;
   * step-matched controls: the target repeated to the size of target + zT, and to the size of target + z1..T
     (as many optimizer steps as those settings, no new data).
   Labels of flowed data: the source labels where source and target share classes (digits), else the label of
   the target sample each particle ended on (its whole trajectory takes it); h(z0) of an extra sample takes the
   target class most particles of its source class ended in.
4. Accuracy of each LeNet-5 on the target's test split (``--n-test`` of it, class-balanced; default all), and
   where the final particles sit relative to the k-shot target (:func:`dsflow.tasks.transfer.landing_report`).

Each task writes ``<out>/<src>-<tgt>-k<k>-s<seed>/task.json`` as each setting finishes; a rerun with the same
options reuses what is there (flow, flow map and accuracies), so an interrupted sweep continues where it stopped.
Progress: one line per setting, and per task "task i of N; about M min left". At the end: a Markdown table
(pair, k, setting, comparison, mean and std over seeds), the landing table, ``<out>/results.json``,
``<out>/transfer_<pair>.png`` (Fig. 3e / 10: bars per k, spread over seeds), ``<out>/adaptation.png`` (Fig. 4:
fine-tuning against + z1..T per pair and k) and per task ``flow_map/fig9.png`` (x0, xT and h(x0)),
``figures/flow_grid.png`` (Fig. 5 style: the same particles along the flow) and ``figures/trajectories.png``
(Fig. 3: the particles' paths between the datasets).

``--combine DIR [DIR ...]`` runs nothing: it puts the tables and figures of finished sweeps (one per pair, say)
together into ``--out``.

Overrides per kind of run, as KEY=VALUE: ``--flow-args trainer.max_steps=30 recorder.every_n_steps=10``,
``--lenet-args trainer.max_epochs=8`` (every LeNet-5), ``--finetune-args`` (the fine-tuning stage),
``--map-args trainer.max_epochs=8``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

import common
from dsflow.callbacks.flow_figures import image_flow_figure, trajectory_figure
from dsflow.callbacks.recorder import FlowRecorder
from dsflow.callbacks.transfer_figures import flow_map_figure
from dsflow.data import LabeledData, save_tensors
from dsflow.io import load_trajectory, write_json
from dsflow.tasks.transfer import accuracy, landing_labels, landing_report
from transfer_report import REPEATED_T, SETTINGS, combine, figures, report, summarise

#: dataset name -> (its spec under configs/data/, whether its labels are the ten digits)
DATASETS = {
    "usps": ("configs/data/usps_h5.yaml", True),
    "mnist": ("configs/data/mnist.yaml", True),
    "fmnist": ("configs/data/fmnist.yaml", False),
    "kmnist": ("configs/data/kmnist.yaml", False),
}
CLASSES = 10  # every dataset above has ten classes: a k-shot target has 10 k samples
NO_FLOW = ("target only", "fine-tune", "target repeated", REPEATED_T)  # settings that need no flow
FLOW = ["configs/flow/images.yaml", "configs/flow/transfer/flow.yaml"]
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
    p.add_argument("--combine", nargs="+", default=None, metavar="DIR",
                   help="no runs: the tables and figures of finished sweeps (their results.json) together, into --out")
    for kind in ("flow", "lenet", "finetune", "map"):
        p.add_argument(f"--{kind}-args", nargs="*", default=[], metavar="KEY=VALUE", help=f"overrides of the {kind} runs")
    common.protocol_defaults(p, argv)
    args = p.parse_args(argv)
    for pair in args.pairs:
        names = pair.split(":")
        if len(names) != 2:
            raise ValueError(f"--pairs takes source:target, got '{pair}'")
        for name in names:
            if name not in DATASETS:
                raise ValueError(f"unknown dataset '{name}' in --pairs {pair}: choose from {sorted(DATASETS)}")
    unknown = [s for s in args.settings if s not in SETTINGS]  # --protocol values bypass argparse's choices
    if unknown:
        raise ValueError(f"unknown settings {unknown}: choose from {list(SETTINGS)}")
    if any(k < 2 for k in args.shots):
        raise ValueError(f"--shots: k must be >= 2 (a class's Gaussian needs two samples), got {args.shots}")
    return args


def flow_overrides(src: str, tgt: str, k: int, seed: int) -> list[str]:
    """The pair's datasets, the shot count and the seeds of one flow (before the --flow-args)."""
    for name in (src, tgt):
        if name not in DATASETS:
            raise ValueError(f"unknown dataset '{name}': choose from {sorted(DATASETS)}")
    pool, target = "--data.init_args.source.init_args.source", "--data.init_args.reference"
    return [pool, str(common.ROOT / DATASETS[src][0]), f"{pool}.init_args.seed", str(seed),
            "--data.init_args.source.init_args.seed", str(seed),
            target, str(common.ROOT / DATASETS[tgt][0]), f"{target}.init_args.seed", str(seed),
            f"{target}.init_args.n", str(k * CLASSES), f"{target}.init_args.split", "train",
            f"{target}.init_args.balanced", "true"]


def trajectory_states(cli) -> int:
    """How many states z1..zT the flow keeps: the recorder's snapshots after step 0 (the last step included)."""
    steps, every = cli.trainer.max_steps, next(c for c in cli.trainer.callbacks if isinstance(c, FlowRecorder)).every_n_steps
    if steps is None or steps < 1:
        raise ValueError(f"the transfer flow needs trainer.max_steps >= 1, got {steps}")
    return 1 if every == 0 else len(range(every, steps + 1, every)) + (steps % every != 0)


def flowed_sets(cli, task: Path, same: bool, out: dict, args) -> dict[str, list[Path]]:
    """Write the flowed data of each setting (labels in target classes); returns {setting: files}. The flow map
    is fitted only where + h(z0) is asked for and not already fitted (``out`` holds its scores)."""
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
    flow_figures(traj, y_flow, target, task / "figures", f"{out['pair']}, {out['k']}-shot, seed {out['seed']}")
    out["landing"] = landing_report(x_t, source.y if same else None, target.x, target.y)
    out["landing_z0"] = landing_report(source.x, source.y if same else None, target.x, target.y)
    sets = task / "sets"
    c = target.num_classes

    def save(name: str, x: torch.Tensor, y: torch.Tensor) -> Path:
        return save_tensors(sets / f"{name}.npz", LabeledData(x, y, c, name))

    kept = [(int(s), torch.from_numpy(x)) for s, x in zip(traj["steps"], traj["x"]) if s > 0]  # z1..zT
    files = {"+ z0": [save("z0", source.x, y_flow)], "+ zT": [save("zT", x_t, y_flow)],
             "+ z1..T": [save(f"z{s}", x, y_flow) for s, x in kept]}
    if "+ h(z0)" in args.settings and "+ h(z0)" not in out["acc"]:
        hz0 = sets / "hz0.npz"
        if "map_mse" not in out or not hz0.is_file():
            t0 = time.perf_counter()
            extra = dm.source_spec.complement().load()  # the pool's samples that did not flow
            fit, pairs = common.fit_flow_map(task / "flow", fresh(task / "flow_map"), args.map_restarts, out["seed"],
                                             common.overrides(args.map_args, "--map-args"))
            x0_val, xt_val = pairs.val_set.tensors  # held-out pairs, (n_val, 1, 28, 28) each
            identity = float(torch.nn.functional.mse_loss(x0_val, xt_val))
            flow_map_figure(x0_val[:32], xt_val[:32], fit.module.push(x0_val[:32]), task / "flow_map" / "fig9.png")
            save("hz0", fit.module.push(extra.x), label[extra.y])
            out.update(map_mse=fit.scores[fit.best_index], map_identity_mse=identity,
                       map_seconds=round(time.perf_counter() - t0, 1))
            print(f"{out['pair']} k={out['k']} seed={out['seed']} flow map: held-out MSE of xT {out['map_mse']:.5f} "
                  f"(x0 itself {identity:.5f})", flush=True)
        files["+ h(z0)"] = [hz0]
    return files


def fresh(run: Path) -> Path:
    """``run`` emptied before it is redone: Lightning would write ``last-v1.ckpt`` beside a stale ``last.ckpt``
    (and a shorter flow would leave stale trajectory snapshots), and the runner reads ``last.ckpt``."""
    shutil.rmtree(run, ignore_errors=True)
    return run


def flow_figures(traj: dict, y: torch.Tensor, target: LabeledData, out: Path, title: str, per_class: int = 4,
                 paths: int = 300) -> None:
    """``flow_grid.png`` (Fig. 5 style: ``per_class`` particles of each label, the same ones at every kept step) and
    ``trajectories.png`` (Fig. 3 style: ``paths`` particles' paths in the principal plane, the target as crosses).

    Args:
        traj: the flow's snapshots (``steps`` (T,), ``x`` (T, n, c, h, w)), from :func:`dsflow.io.load_trajectory`.
        y: (n,) the particles' labels in the target's classes.
    """
    gen = torch.Generator().manual_seed(0)
    grid = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in y.unique()])  # (<= per_class C,)
    image_flow_figure([(int(s), torch.from_numpy(x[grid.numpy()])) for s, x in zip(traj["steps"], traj["x"])], y[grid],
                      out / "flow_grid.png", title=f"{title}: the same particles along the flow (rows: label)")
    keep = torch.randperm(y.shape[0], generator=gen)[:paths].numpy()
    frames = [(int(s), x[keep].reshape(keep.size, -1)) for s, x in zip(traj["steps"], traj["x"])]
    trajectory_figure(frames, y[keep].numpy(), (target.flat().numpy(), target.y.numpy()), out / "trajectories.png",
                      title=f"{title}\nparticle paths (principal plane; k-shot target: crosses)")


def train(files: list[Path], seed: int, run: Path, args, finetune_from: Path | None = None):
    """A LeNet-5 trained on the concatenated files (``train.py fit``) in a fresh ``run``; fine-tuned from a
    checkpoint when given."""
    fresh(run)
    over = ["--data.init_args.paths", "[" + ", ".join(str(f) for f in files) + "]", "--seed_everything", str(seed),
            *common.overrides(args.lenet_args, "--lenet-args")]
    if finetune_from is not None:
        over += [*common.configs(FINETUNE), "--model.init_args.weights", str(finetune_from),
                 *common.overrides(args.finetune_args, "--finetune-args")]
    return common.run_train(LENET, over, run)


def source_model(src: str, seed: int, source: LabeledData, args) -> Path:
    """The LeNet-5 trained on the 2,000 source samples of seed s (fine-tuning's first stage), trained once per
    source and seed in ``<out>/sources/<src>-s<seed>`` and reused for every target and k."""
    where = Path(args.out) / "sources" / f"{src}-s{seed}"
    key = {"config": args.config, "flow_args": args.flow_args, "lenet_args": args.lenet_args}  # what draws and trains it
    done, ckpt = where / "done.json", where / "lenet" / "checkpoints" / "last.ckpt"
    if done.is_file() and ckpt.is_file() and json.loads(done.read_text()) == key:
        return ckpt
    train([save_tensors(where / "source.npz", source)], seed, where / "lenet", args)
    write_json(done, key)
    return ckpt


def task_key(args) -> dict:
    """The options a task's results depend on besides its pair, k and seed: a rerun reuses them only if equal."""
    return {name: getattr(args, name) for name in ("config", "flow_args", "lenet_args", "finetune_args", "map_args",
                                                     "map_restarts", "n_test")}


def cached_task(task: Path, key: dict) -> dict | None:
    path = task / "task.json"
    if not path.is_file():
        return None
    out = json.loads(path.read_text())
    return out if out.get("key") == key else None


def run_name(setting: str) -> str:
    return setting.replace(" ", "_").replace("+", "plus").replace("..", "-").replace("(", "").replace(")", "")


def one_task(src: str, tgt: str, k: int, seed: int, args) -> dict:
    """All settings for one pair, k and seed: {setting: accuracy} plus flow, flow-map and landing diagnostics."""
    task = Path(args.out) / f"{src}-{tgt}-k{k}-s{seed}"
    key = task_key(args)
    out = cached_task(task, key) or {"pair": f"{src}->{tgt}", "k": k, "seed": seed, "key": key, "acc": {}}
    todo = [s for s in args.settings if s not in out["acc"]]
    flowed = "flow_seconds" in out and (task / "flow" / "summary.json").is_file()
    drawn = (task / "figures" / "trajectories.png").is_file()
    if not todo and (drawn or not flowed):
        return out
    flow = [*flow_overrides(src, tgt, k, seed), *common.overrides(args.flow_args, "--flow-args")]
    files: dict[str, list[Path]] = {"target only": []}
    if flowed or all(s in NO_FLOW for s in todo):  # the flow's data only
        cli = common.flow_config(args.config, flow, task / "flow")
    else:
        t0 = time.perf_counter()
        cli = common.run_flow(args.config, flow, fresh(task / "flow"))
        out["flow_seconds"] = round(time.perf_counter() - t0, 1)
        write_json(task / "task.json", out)
        flowed = True
    if flowed and (any(s not in NO_FLOW for s in todo) or not drawn):  # (figures of a flow that has none yet)
        files |= flowed_sets(cli, task, DATASETS[src][1] and DATASETS[tgt][1], out, args)
        write_json(task / "task.json", out)
    target = cli.datamodule.reference
    test = cli.datamodule.reference_spec.load_split("test", n=args.n_test)  # the target's test split
    out["test"] = {"name": test.name, "samples": int(test.y.shape[0])}
    target_file = save_tensors(task / "sets" / "target.npz", target)
    n_source, m = cli.datamodule.source.y.shape[0], target.y.shape[0]
    files["target repeated"] = [target_file] * (round((m + n_source) / m) - 1)  # as many samples as target + zT
    files[REPEATED_T] = [target_file] * (round((m + trajectory_states(cli) * n_source) / m) - 1)  # ... + z1..T
    for setting in todo:
        t0 = time.perf_counter()
        run = task / "lenet" / run_name(setting)
        if setting == "fine-tune":
            start = source_model(src, seed, cli.datamodule.source, args)
            net = train([target_file], seed, run, args, start).model.net
        else:
            net = train([target_file, *files[setting]], seed, run, args).model.net
        out["acc"][setting] = accuracy(net, test.x, test.y)
        write_json(task / "task.json", out)
        print(f"{out['pair']} k={k} seed={seed} {setting}: {out['acc'][setting]:.2f} % ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    if args.combine:
        return combine(args.combine, Path(args.out))
    common.set_threads(args.threads)
    tasks = [(*p.split(":"), k, seed) for p in args.pairs for k in args.shots for seed in args.seeds]
    progress, results, t0 = common.Progress(len(tasks)), [], time.perf_counter()
    for src, tgt, k, seed in tasks:
        t1 = time.perf_counter()
        results.append(one_task(src, tgt, k, seed, args))
        print(f"{src}->{tgt} k={k} seed={seed} done (task {progress.step(time.perf_counter() - t1)})", flush=True)
    rows = summarise(results, args.settings)
    figures(rows, Path(args.out))
    seconds = time.perf_counter() - t0
    common.write_results(args.out, {"args": vars(args), "seconds": round(seconds, 1), "runs": results, "rows": rows})
    report(rows, results)
    print(f"total {seconds:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
