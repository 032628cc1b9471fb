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
   (``transfer_settings.COMPARISON`` says what each is compared as):
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

Before the first task, the data of every task's flow is read and checked
(:func:`~dsflow.experiments.runs.validate_inputs`). Each task writes ``<out>/<src>-<tgt>-k<k>-s<seed>/task.json``
as each setting finishes; a rerun with the same options reuses what is there (flow, flow map and accuracies), so an
interrupted sweep continues where it stopped. Progress: one line per setting, and per task "task i of N; about M
min left". At the end: a Markdown table (pair, k, setting, comparison, mean and std over seeds), the landing table,
``<out>/results.json``, ``<out>/transfer_<pair>.png`` (Fig. 3e / 10: bars per k, spread over seeds),
``<out>/adaptation.png`` (Fig. 4: fine-tuning against + z1..T per pair and k) and per task ``flow_map/fig9.png``
(x0, xT and h(x0)), ``figures/flow_grid.png`` (Fig. 5 style: the same particles along the flow) and
``figures/trajectories.png`` (Fig. 3: the particles' paths between the datasets).

``--combine DIR [DIR ...]`` runs nothing: it puts the tables and figures of finished sweeps (one per pair, say)
together into ``--out``.

Overrides per kind of run, as KEY=VALUE: ``--flow-args trainer.max_steps=30 recorder.every_n_steps=10``,
``--lenet-args trainer.max_epochs=8`` (every LeNet-5), ``--finetune-args`` (the fine-tuning stage),
``--map-args trainer.max_epochs=8``.
"""


from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dsflow.cli import FlowCLI, TrainCLI
from dsflow.data import LabeledData, save_tensors
from dsflow.experiments import common, runs
from dsflow.experiments.datasets import transfer_datasets
from dsflow.experiments.transfer_data import flow_overrides, flowed_sets, fresh, trajectory_states
from dsflow.experiments.transfer_report import combine, figures, report, summarise
from dsflow.experiments.transfer_settings import Setting, SummaryRow, Task, TaskRecord, TransferOptions
from dsflow.io import write_json
from dsflow.process import flush_denormals
from dsflow.tasks.transfer import accuracy

__all__ = ["FLOW", "LENET", "FINETUNE", "SETTING_NAMES", "parse", "train", "source_model", "cached_task", "one_task", "main"]

FLOW = ["configs/flow/images.yaml", "configs/flow/transfer/flow.yaml"]
LENET = ["configs/train/lenet_mnist.yaml", "configs/train/transfer/lenet.yaml"]
FINETUNE = ["configs/train/transfer/finetune.yaml"]
SETTING_NAMES = [s.label for s in Setting]  # the settings' names, in the tables' order


def parse(argv: list[str] | None) -> argparse.Namespace:
    names = ", ".join(transfer_datasets())
    p = common.parser(__doc__, out="runs/transfer", seeds=(0, 1, 2), passthrough=None)
    p.add_argument("--pairs", nargs="+", default=["usps:mnist"], help="source:target, names among %s" % names)
    p.add_argument("--shots", nargs="+", type=int, default=[100], help="k, target samples per class")
    p.add_argument("--settings", nargs="+", default=list(SETTING_NAMES), choices=SETTING_NAMES)
    p.add_argument("--n-test", type=int, default=None, help="target test samples scored (default: the whole test split)")
    p.add_argument("--map-restarts", type=int, default=10, help="flow-map restarts (appendix C: 10)")
    p.add_argument("--config", nargs="+", default=FLOW, help="flow configs (default: %(default)s)")
    p.add_argument("--combine", nargs="+", default=None, metavar="DIR",
                   help="no runs: the tables and figures of finished sweeps (their results.json) together, into --out")
    for kind in ("flow", "lenet", "finetune", "map"):
        p.add_argument(f"--{kind}-args", nargs="*", default=[], metavar="KEY=VALUE", help=f"overrides of the {kind} runs")
    common.protocol_defaults(p, argv)
    args = p.parse_args(argv)
    _check(args)
    return args


def _check(args: argparse.Namespace) -> None:
    """Refuse pairs, settings and shots the runner cannot run, by name."""
    datasets = transfer_datasets()
    for pair in args.pairs:
        names = pair.split(":")
        if len(names) != 2:
            raise ValueError(f"--pairs takes source:target, got '{pair}'")
        for name in names:
            if name not in datasets:
                raise ValueError(f"unknown dataset '{name}' in --pairs {pair}: choose from {sorted(datasets)}")
    unknown = [s for s in args.settings if s not in SETTING_NAMES]  # --protocol values bypass argparse's choices
    if unknown:
        raise ValueError(f"unknown settings {unknown}: choose from {list(SETTING_NAMES)}")
    if any(k < 2 for k in args.shots):
        raise ValueError(f"--shots: k must be >= 2 (a class's Gaussian needs two samples), got {args.shots}")


def train(files: list[Path], seed: int, run: Path, opts: TransferOptions, finetune_from: Path | None = None) -> TrainCLI:
    """A LeNet-5 trained on the concatenated files (``train.py fit``) in a fresh ``run``; fine-tuned from a
    checkpoint when given."""
    fresh(run)
    over = ["--data.init_args.paths", "[" + ", ".join(str(f) for f in files) + "]", "--seed_everything", str(seed),
            *common.overrides(opts.lenet_args, "--lenet-args")]
    if finetune_from is not None:
        over += [*runs.configs(FINETUNE), "--model.init_args.weights", str(finetune_from),
                 *common.overrides(opts.finetune_args, "--finetune-args")]
    return runs.run_train(LENET, over, run)


def source_model(src: str, seed: int, source: LabeledData, opts: TransferOptions) -> Path:
    """The LeNet-5 trained on the 2,000 source samples of seed s (fine-tuning's first stage), trained once per
    source and seed in ``<out>/sources/<src>-s<seed>`` and reused for every target and k."""
    where = opts.out / "sources" / f"{src}-s{seed}"
    key = opts.source_key()
    done, ckpt = where / "done.json", where / "lenet" / "checkpoints" / "last.ckpt"
    if done.is_file() and ckpt.is_file() and json.loads(done.read_text()) == key:
        return ckpt
    train([save_tensors(where / "source.npz", source)], seed, where / "lenet", opts)
    write_json(done, key)
    return ckpt


def cached_task(where: Path, key: dict) -> TaskRecord | None:
    """The task's record from an earlier run with the same options, if there is one."""
    path = where / "task.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return TaskRecord.from_json(data) if data.get("key") == key else None


def _flow(task: Task, where: Path, record: TaskRecord, opts: TransferOptions, run: bool) -> FlowCLI:
    """The task's flow, run (``run``; its seconds into ``record``) or only built (its datasets)."""
    flow = _flow_args(task, opts)
    if not run:
        return runs.flow_config(opts.config, flow, where / "flow")
    t0 = time.perf_counter()
    cli = runs.run_flow(opts.config, flow, fresh(where / "flow"))
    record.flow_seconds = round(time.perf_counter() - t0, 1)
    write_json(where / "task.json", record.to_json())
    return cli


def _flow_args(task: Task, opts: TransferOptions) -> list[str]:
    """The overrides of the task's flow: its datasets, shots and seeds, then the ``--flow-args``."""
    return [*flow_overrides(*task), *common.overrides(opts.flow_args, "--flow-args")]


def _controls(cli: FlowCLI, target_file: Path) -> dict[Setting, list[Path]]:
    """The step-matched controls: the target repeated to as many samples as target + zT, and as target + z1..T."""
    n_source, m = cli.datamodule.source.y.shape[0], cli.datamodule.reference.y.shape[0]
    return {Setting.REPEATED: [target_file] * (round((m + n_source) / m) - 1),
            Setting.REPEATED_T: [target_file] * (round((m + trajectory_states(cli) * n_source) / m) - 1)}


def one_task(task: Task, opts: TransferOptions) -> TaskRecord:
    """All settings for one pair, k and seed: accuracy per setting plus flow, flow-map and landing diagnostics."""
    where = opts.out / task.name
    record = cached_task(where, opts.key()) or TaskRecord(task.pair, task.k, task.seed, opts.key())
    todo = [s for s in opts.settings if s not in record.acc]
    flowed = record.flow_seconds is not None and (where / "flow" / "summary.json").is_file()
    drawn = (where / "figures" / "trajectories.png").is_file()
    if not todo and (drawn or not flowed):
        return record
    run = not flowed and any(s.needs_flow for s in todo)
    cli = _flow(task, where, record, opts, run)
    files: dict[Setting, list[Path]] = {Setting.TARGET_ONLY: []}
    if (flowed or run) and (any(s.needs_flow for s in todo) or not drawn):  # (figures of a flow that has none yet)
        files |= flowed_sets(cli, where, task, record, opts)
        write_json(where / "task.json", record.to_json())
    test = cli.datamodule.reference_spec.load_split("test", n=opts.n_test)  # the target's test split
    record.test = {"name": test.name, "samples": int(test.y.shape[0])}
    target_file = save_tensors(where / "sets" / "target.npz", cli.datamodule.reference)
    files |= _controls(cli, target_file)
    for setting in todo:
        t0 = time.perf_counter()
        run_dir = where / "lenet" / setting.run_name
        if setting is Setting.FINETUNE:
            start = source_model(task.src, task.seed, cli.datamodule.source, opts)
            net = train([target_file], task.seed, run_dir, opts, start).model.net
        else:
            net = train([target_file, *files[setting]], task.seed, run_dir, opts).model.net
        record.acc[setting] = accuracy(net, test.x, test.y)
        write_json(where / "task.json", record.to_json())
        print(f"{task.pair} k={task.k} seed={task.seed} {setting.label}: {record.acc[setting]:.2f} % "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return record


def main(argv: list[str] | None = None) -> list[SummaryRow]:
    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    args = parse(argv)
    if args.combine:
        return combine(args.combine, Path(args.out))
    common.set_threads(args.threads)
    opts = TransferOptions.from_args(args)
    tasks = [Task(src, tgt, k, seed) for src, tgt in (p.split(":") for p in args.pairs)  # pairs checked by parse
             for k in args.shots for seed in args.seeds]
    runs.validate_inputs(runs.FlowSpec(opts.config, _flow_args(task, opts)) for task in tasks)  # all data, first
    progress, results, t0 = common.Progress(len(tasks)), [], time.perf_counter()
    for task in tasks:
        t1 = time.perf_counter()
        results.append(one_task(task, opts))
        print(f"{task.pair} k={task.k} seed={task.seed} done (task {progress.step(time.perf_counter() - t1)})", flush=True)
    rows = summarise(results, opts.settings)
    figures(rows, opts.out)
    seconds = time.perf_counter() - t0
    common.write_results(args.out, {"args": vars(args), "seconds": round(seconds, 1),
                                    "runs": [r.to_json() for r in results], "rows": [r.to_json() for r in rows]})
    report(rows, results)
    print(f"total {seconds:.0f} s", flush=True)
    return rows
