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

import sys
import time
from pathlib import Path

import torch

import common
from dsflow.callbacks.transfer_figures import flow_map_figure


def parse(argv: list[str] | None):
    p = common.parser(__doc__, out=None, seeds=None, passthrough="train.py")
    p.add_argument("--run", required=True, help="the flow's run directory (holds final.npz)")
    p.add_argument("--restarts", type=int, default=10, help="restarts swept (appendix C: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first restart and of the held-out split")
    p.add_argument("--images", type=int, default=32, help="held-out particles drawn in fig9.png")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    common.set_threads(args.threads)
    out = Path(args.out or Path(args.run) / "flow_map")
    t0 = time.perf_counter()
    fit, pairs = common.fit_flow_map(args.run, out, args.restarts, args.seed, args.overrides)
    seconds = time.perf_counter() - t0
    x0, xt = pairs.val_set.tensors  # (n_val, c, h, w) each
    identity = float(torch.nn.functional.mse_loss(x0, xt))
    best = fit.scores[fit.best_index]
    k = min(args.images, x0.shape[0])
    flow_map_figure(x0[:k], xt[:k], fit.module.push(x0[:k]), out / "fig9.png")
    result = {"run": str(args.run), "restart_mse": fit.scores, "best_mse": best, "best_checkpoint": str(fit.checkpoint),
              "identity_mse": identity, "held_out_pairs": int(x0.shape[0]), "seconds": round(seconds, 1), "args": vars(args)}
    common.write_results(out, result)
    print("restart held-out MSE: " + ", ".join(f"{v:.5f}" for v in fit.scores))
    print(f"best held-out MSE of xT: {best:.5f} (x0 itself: {identity:.5f}) on {x0.shape[0]} pairs, "
          f"{seconds:.0f} s; figure {out / 'fig9.png'}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
