"""Fit the flow map h: x0 -> xT on a finished flow and draw the paper's Fig. 9.

    python flow.py fit --config configs/flow/images.yaml --config configs/flow/usps_mnist.yaml --run_dir runs/usps_mnist
    python benchmarks/flow_map.py --run runs/usps_mnist --restarts 10

Fits the autoencoder of appendix C (``configs/train/flow_map.yaml``: 20 epochs, Adam 1e-3; the flow's (x0, xT)
pairs from ``<run>/final.npz``, 20 % held out) ``--restarts`` times with ``train.py fit`` (restart r seeded with
seed + r; the held-out split with ``--seed``) and keeps the one with the lowest held-out reconstruction error of xT
(MSE per pixel, pixels in [0, 1]) of its final weights. Prints every restart's error next to the error of not
mapping at all (x0 against xT); writes ``<out>/restart_<r>/`` (each run), ``<out>/results.json`` and
``<out>/fig9.png`` (held-out x0, xT and h(x0) side by side). Further ``train.py`` arguments go after ``--``
(e.g. ``--trainer.max_epochs 8``).
"""


from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dsflow.experiments import common, runs
from dsflow.process import flush_denormals
from dsflow.tasks import FlowMap

__all__ = ["FlowMapResult", "parse", "main"]


@dataclass(frozen=True)
class FlowMapResult:
    """The restarts' held-out MSE of xT per pixel, the best one and its last weights, and the MSE of not mapping
    (x0 against xT) on ``held_out_pairs`` pairs."""

    run: str
    restart_mse: list[float]
    best_mse: float
    best_checkpoint: str
    identity_mse: float
    held_out_pairs: int
    seconds: float


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = common.parser(__doc__, out=None, seeds=None, passthrough="train.py")
    p.add_argument("--run", required=True, help="the flow's run directory (holds final.npz)")
    p.add_argument("--restarts", type=int, default=10, help="restarts swept (appendix C: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first restart and of the held-out split")
    p.add_argument("--images", type=int, default=32, help="held-out particles drawn in fig9.png")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> FlowMapResult:
    """Fit and keep the best restart (``<out>/results.json``: the result and the options)."""
    from dsflow.callbacks.transfer_figures import flow_map_figure

    flush_denormals()  # before torch's worker threads start (dsflow.process), as flow.py does
    args = parse(argv)
    common.set_threads(args.threads)
    out = Path(args.out or Path(args.run) / "flow_map")
    t0 = time.perf_counter()
    fit, pairs = runs.fit_flow_map(args.run, out, args.restarts, args.seed, args.overrides)
    if not isinstance(fit.module, FlowMap):
        raise RuntimeError(f"flow map: train.py fitted a {type(fit.module).__name__}, not a FlowMap")
    seconds = time.perf_counter() - t0
    x0, xt = pairs.held_out  # (n_val, c, h, w) each
    identity = float(torch.nn.functional.mse_loss(x0, xt))
    best = fit.scores[fit.best_index]
    k = min(args.images, x0.shape[0])
    flow_map_figure(x0[:k], xt[:k], fit.module.push(x0[:k]), out / "fig9.png")
    result = FlowMapResult(str(args.run), fit.scores, best, str(fit.checkpoint), identity, int(x0.shape[0]),
                           round(seconds, 1))
    common.write_results(out, {**asdict(result), "args": vars(args)})
    print("restart held-out MSE: " + ", ".join(f"{v:.5f}" for v in fit.scores))
    print(f"best held-out MSE of xT: {best:.5f} (x0 itself: {identity:.5f}) on {x0.shape[0]} pairs, "
          f"{seconds:.0f} s; figure {out / 'fig9.png'}", flush=True)
    return result
