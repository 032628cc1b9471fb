"""Model re-purposing (paper 7.3, Fig. 5, 6, 11): flow a dataset onto the one a frozen classifier was trained on,
and track the objective and the classifier's accuracy along the flow.

    python train.py fit --config configs/train/lenet_mnist.yaml --run_dir runs/lenet_mnist       # the oracle, once
    DSFLOW_DATA=../shared/data python benchmarks/repurpose.py --config configs/flow/usps_mnist.yaml \\
        --lambda-y 1 5 10 --steps 40

Takes any flow config whose trainer has an :class:`~dsflow.callbacks.OracleScorer` callback (configs
``usps_mnist``, ``stl10_cifar10``, ``camelyon_cifar10``), optionally with another oracle checkpoint (``--oracle``),
flow length, sample count and one flow per label-term weight (``--lambda-y``, the curves of Fig. 6). Each flow
runs through ``flow.py``'s own entry point (:func:`dsflow.cli.flow_main`) in ``<out>/<label>/``; its scorer
writes ``oracle/history.json`` (step, objective, accuracy). Prints each curve, and draws ``<out>/repurpose.png``:
objective and accuracy against step, accuracy against objective. Further ``flow.py`` arguments go after ``--``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from dsflow.callbacks.transfer_figures import repurpose_figure
from dsflow.cli import flow_main
from dsflow.io import write_json


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="flow config with an OracleScorer callback")
    p.add_argument("--oracle", default=None, help="oracle checkpoint (default: the config's)")
    p.add_argument("--lambda-y", nargs="+", type=float, default=None, help="one flow per weight of the OTDD label term")
    p.add_argument("--steps", type=int, default=None, help="flow steps (default: the config's)")
    p.add_argument("--every", type=int, default=None, help="scoring interval (default: the config's)")
    p.add_argument("--n", type=int, default=None, help="source and reference samples (default: the config's)")
    p.add_argument("--out", default=None, help="output folder (default: runs/repurpose-<config name>)")
    p.add_argument("flow_args", nargs="*", help="further flow.py arguments (after --)")
    return p.parse_args(argv)


def _scorer(cfg: dict, path: str) -> dict:
    for cb in cfg.get("trainer", {}).get("callbacks") or []:
        if isinstance(cb, dict) and cb.get("class_path", "").endswith("OracleScorer"):
            return cb["init_args"]
    raise ValueError(f"{path}: no dsflow.callbacks.OracleScorer among trainer.callbacks; re-purposing needs an oracle")


def configs(args: argparse.Namespace) -> dict[str, dict]:
    """Label -> flow config (a dict) for each run, the config edited as the options say."""
    cfg = yaml.safe_load(Path(args.config).read_text())
    scorer = _scorer(cfg, args.config)
    if args.oracle:
        scorer["checkpoint"] = args.oracle
    if args.every is not None:
        scorer["every_n_steps"] = args.every
    if args.steps is not None:
        cfg["trainer"]["max_steps"] = args.steps
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
            raise ValueError(f"{args.config}: --lambda-y needs an OTDDTerm among model.init_args.terms")
        terms[0]["init_args"]["lambda_y"] = lam
        runs[f"lambda_y={lam:g}"] = run
    return runs


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    args = parse(argv)
    runs = configs(args)
    out = Path(args.out or f"runs/repurpose-{Path(args.config).stem}")
    curves = {}
    for label, cfg in runs.items():
        run_dir = out / label
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "input.yaml").write_text(yaml.safe_dump(cfg))
        flow_main(["fit", "--config", str(run_dir / "input.yaml"), "--run_dir", str(run_dir), *args.flow_args])
        curves[label] = json.loads((run_dir / "oracle" / "history.json").read_text())
        print(f"{label}: " + ", ".join(f"step {h['step']} obj {h['objective']:.3g} acc {h['accuracy']:.1f} %" for h in curves[label]), flush=True)
    write_json(out / "curves.json", curves)
    repurpose_figure(curves, out / "repurpose.png", title=f"re-purposing: {Path(args.config).stem}")
    print(f"figure: {out / 'repurpose.png'}")
    return curves


if __name__ == "__main__":
    main(sys.argv[1:])
