"""Fit the flow map h: x0 -> xT on a finished flow and draw the paper's Fig. 9.

    python flow.py fit --config configs/flow/usps_mnist.yaml --run_dir runs/usps_mnist
    python benchmarks/flow_map.py --run runs/usps_mnist --restarts 10 --epochs 20

Splits the flow's (x0, xT) pairs (``<run>/final.npz``) into training and held-out parts, fits the autoencoder of
appendix C ``--restarts`` times (Adam 1e-3, ``--epochs`` epochs; restart r seeded with seed + r) and keeps the one
with the lowest held-out reconstruction error of xT (MSE per pixel, pixels in [0, 1]). Prints every restart's
error next to the error of not mapping at all (x0 against xT), saves ``<out>/best.ckpt``, ``<out>/results.json``
and ``<out>/fig9.png`` (held-out x0, xT and h(x0) side by side).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dsflow.callbacks.transfer_figures import flow_map_figure
from dsflow.data.flow_pairs import FlowPairs
from dsflow.io import write_json
from dsflow.tasks.flow_map import fit_flow_map


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the flow's run directory (holds final.npz)")
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the pairs held out to pick the restart")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=32, help="held-out particles drawn in fig9.png")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="output folder (default: <run>/flow_map)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or Path(args.run) / "flow_map")
    pairs = FlowPairs(args.run, val_fraction=args.val_fraction, seed=args.seed, batch_size=args.batch_size)
    t0 = time.perf_counter()
    fit = fit_flow_map(pairs, args.restarts, args.epochs, args.seed, out_dir=out)
    seconds = time.perf_counter() - t0
    x0, xt = pairs.val_set.tensors
    k = min(args.images, x0.shape[0])
    flow_map_figure(x0[:k], xt[:k], fit.module.push(x0[:k]), out / "fig9.png")
    result = {"run": str(args.run), "restart_mse": fit.restart_mse, "best_mse": fit.best_mse,
              "identity_mse": fit.identity_mse, "held_out_pairs": int(x0.shape[0]), "seconds": round(seconds, 1),
              "args": vars(args)}
    write_json(out / "results.json", result)
    print("restart held-out MSE: " + ", ".join(f"{v:.5f}" for v in fit.restart_mse))
    print(f"best held-out MSE of xT: {fit.best_mse:.5f} (x0 itself: {fit.identity_mse:.5f}) on {x0.shape[0]} pairs, "
          f"{seconds:.0f} s; figure {out / 'fig9.png'}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
