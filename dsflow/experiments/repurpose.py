"""Model re-purposing (paper 7.3, Fig. 5, 6, 11): flow a dataset onto the one a frozen classifier was trained on,
and track the objective and the classifier's accuracy along the flow.

    python train.py fit --config configs/train/lenet_mnist.yaml --run_dir runs/lenet_mnist       # the oracle, once
    DSFLOW_DATA=../shared/data python benchmarks/repurpose.py --config configs/flow/images.yaml configs/flow/usps_mnist.yaml --lambda-y 1 5 10

Takes any flow whose trainer has an :class:`~dsflow.callbacks.OracleScorer` callback (``--config``: its configs,
composed in order as by ``flow.py``'s repeated ``--config``; the commands are in the first lines of
``usps_mnist``, ``stl10_cifar10``, ``camelyon_cifar10``), optionally with another oracle checkpoint (``--oracle``)
and sample count (``--n``, source and reference), and sweeps the label-term weight (``--lambda-y``: one flow per
weight, the curves of Fig. 6). The data of every flow is read and checked before the first one runs. Each flow
runs through ``flow.py``'s own entry point in ``<out>/<label>/``; its scorer writes ``oracle/history.json`` (step,
objective, accuracy). Prints each curve, and draws ``<out>/repurpose.png``: objective and accuracy against step,
accuracy against objective. Further ``flow.py`` arguments go after ``--`` (e.g. ``--trainer.max_steps 30
--trainer.callbacks.init_args.every_n_steps 3``).
"""


from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
from pathlib import Path

import yaml

from dsflow.cli import flow_main
from dsflow.experiments import common, runs
from dsflow.io import write_json
from dsflow.process import flush_denormals

__all__ = ["parse", "configs", "main"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__, out=None, seeds=None)
    p.add_argument("--config", nargs="+", required=True,
                   help="the flow's configs (composed in order), with an OracleScorer callback")
    p.add_argument("--oracle", default=None, help="oracle checkpoint (default: the config's)")
    p.add_argument("--lambda-y", nargs="+", type=float, default=None, help="one flow per weight of the OTDD label term")
    p.add_argument("--n", type=int, default=None, help="source and reference samples (default: the config's)")
    return p.parse_args(argv)


def _scorer(cfg: dict, path: str) -> dict:
    for cb in cfg.get("trainer", {}).get("callbacks") or []:
        if isinstance(cb, dict) and cb.get("class_path", "").endswith("OracleScorer"):
            return cb["init_args"]
    raise ValueError(f"{path}: no dsflow.callbacks.OracleScorer among trainer.callbacks; re-purposing needs an oracle")


def composed(files: list[str]) -> dict:
    """The configuration ``flow.py fit`` composes from ``files`` (its ``--print_config``), as a dict."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), runs._own_argv():
            flow_main(["fit", *runs.configs(files), "--print_config"])
    except SystemExit as done:
        if done.code:  # the parser's own message is on stderr
            raise ValueError(f"--config {' '.join(files)}: flow.py cannot compose these configs") from None
    return yaml.safe_load(out.getvalue())


def configs(args: argparse.Namespace) -> dict[str, dict]:
    """Label -> flow config (a dict) for each run of the sweep."""
    cfg = composed(args.config)
    scorer = _scorer(cfg, args.config[-1])
    if args.oracle:
        scorer["checkpoint"] = args.oracle
    if args.n is not None:
        for part in ("source", "reference"):
            cfg["data"]["init_args"][part]["init_args"]["n"] = args.n
    if not args.lambda_y:
        return {"config": cfg}
    runs = {}
    for lam in args.lambda_y:
        run = copy.deepcopy(cfg)
        terms = [t for t in run["model"]["init_args"]["terms"] if t["class_path"].endswith("OTDDTerm")]
        if not terms:
            raise ValueError(f"{args.config[-1]}: --lambda-y needs an OTDDTerm among model.init_args.terms")
        terms[0]["init_args"]["lambda_y"] = lam
        runs[f"lambda_y={lam:g}"] = run
    return runs


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Run the sweep; returns each run's label -> its scorer's history (step, objective, accuracy %)."""
    from dsflow.callbacks.transfer_figures import repurpose_figure

    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    args = parse(argv)
    common.set_threads(args.threads)
    sweep = configs(args)
    out = Path(args.out or f"runs/repurpose-{Path(args.config[-1]).stem}")
    for label, cfg in sweep.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        (out / label / "input.yaml").write_text(yaml.safe_dump(cfg))
    runs.validate_inputs(runs.FlowSpec([out / label / "input.yaml"], args.overrides) for label in sweep)  # data first
    curves = {}
    for label in sweep:
        run_dir = out / label
        runs.run_flow([run_dir / "input.yaml"], args.overrides, run_dir)
        curves[label] = json.loads((run_dir / "oracle" / "history.json").read_text())
        print(f"{label}: " + ", ".join(f"step {h['step']} obj {h['objective']:.3g} acc {h['accuracy']:.1f} %" for h in curves[label]), flush=True)
    write_json(out / "curves.json", curves)
    repurpose_figure(curves, out / "repurpose.png", title=f"re-purposing: {Path(args.config[-1]).stem}")
    print(f"figure: {out / 'repurpose.png'}")
    return curves
