"""Nuclear norms of the label tables: eigensolvers against Newton–Schulz products (dsflow.ot.labels.nuclear).

For each batch, size and dtype it times both methods on rank-deficient matrices (rank 3/4 of the size, as centred
class factors are), and the cross term of full covariances (d x d roots, then |S_b S_a|_*), and prints a Markdown
table: seconds, the largest relative error against a float64 SVD, the GEMM rate measured beside it on this device,
and the FLOPs of the Newton–Schulz path with the time they would take at --tflops (H200: ~60 TFLOP/s float32).

    python benchmarks/nuclear_speed.py                       # 45 pairs of 200 x 200, 2 covariances of 784-d
    python benchmarks/nuclear_speed.py --sizes 200 500 --batch 45 --cov-dim 784 --device cuda
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch


from dsflow.ot.labels.bures import cross_term_pairs_eig, nuclear_norms
from dsflow.ot.labels.nuclear import (
    DEFAULT_FLOORS, ROOT_FLOORS, NewtonSchulzNuclearNorms, newton_schulz_nuclear_norms, ns_schedule,
)

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _seconds(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeats`` calls (CUDA: synchronised), and the last result."""
    best, out = float("inf"), torch.empty(0)
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def _steps(dtype: torch.dtype, floors: dict[torch.dtype, float]) -> int:
    return len(ns_schedule(floors[dtype], torch.finfo(dtype).eps))


def _gemm_rate(batch: int, size: int, dtype: torch.dtype, device: torch.device) -> float:
    """GFLOP/s of a batched (batch, size, size) matrix product on this device."""
    a = torch.randn(batch, size, size, dtype=dtype, device=device)
    seconds, _ = _seconds(lambda: a @ a, device, 3)
    return 2 * batch * size**3 / seconds / 1e9


def _rows(args: argparse.Namespace, device: torch.device) -> list[list[str]]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, dtype in DTYPES.items():
        if name not in args.dtypes:
            continue
        for size in args.sizes:
            rank = 3 * size // 4
            mats64 = torch.randn(args.batch, size, rank, generator=gen, dtype=torch.float64) @ torch.randn(
                args.batch, rank, size, generator=gen, dtype=torch.float64)  # (P, size, size), rank 3/4
            mats = mats64.to(dtype).to(device)
            ref = torch.linalg.svdvals(mats.double().cpu()).sum(-1)
            flops = args.batch * _steps(dtype, DEFAULT_FLOORS) * 2 * 2 * size**3  # two GEMMs a step
            rate = _gemm_rate(args.batch, size, dtype, device)
            for method, fn in (("eigvalsh", lambda mats=mats: nuclear_norms(mats)),
                               ("newton-schulz", lambda mats=mats: newton_schulz_nuclear_norms(mats))):
                seconds, out = _seconds(fn, device, args.repeats)
                err = float(((out.double().cpu() - ref).abs() / ref).max())
                rows.append([method, "norms", str(args.batch), f"{size}x{size}", name, f"{seconds:.4f}", f"{err:.1e}",
                             f"{rate:.0f}", f"{flops / 1e9:.1f}" if method != "eigvalsh" else "",
                             f"{flops / args.tflops / 1e9:.2f}" if method != "eigvalsh" else ""])
        rows += _cov_rows(args, name, dtype, device, gen)
    return rows


def _cov_rows(args: argparse.Namespace, name: str, dtype: torch.dtype, device: torch.device,
              gen: torch.Generator) -> list[list[str]]:
    """One pair of d x d covariances of d // 4 samples (singular): the full-covariance cross term."""
    d, n = args.cov_dim, args.cov_dim // 4
    factors = torch.randn(2, d, n, generator=gen, dtype=torch.float64) / n**0.5  # (2, d, n)
    covs = (factors @ factors.mT).to(dtype).to(device)
    ref = torch.linalg.svdvals(factors[1].T @ factors[0]).sum()
    ia, ib = torch.tensor([0], device=device), torch.tensor([1], device=device)
    flops = (2 * _steps(dtype, DEFAULT_FLOORS) * 2 + 2 * (3 * _steps(dtype, ROOT_FLOORS) + 1)  # PSD parts, roots
             + 1 + _steps(dtype, DEFAULT_FLOORS) * 2) * 2 * d**3  # the product S_b S_a and its polar factor
    rate = _gemm_rate(2, d, dtype, device)
    rows = []
    for method, fn in (("eigh", lambda: cross_term_pairs_eig(covs, covs, ia, ib)),
                       ("newton-schulz", lambda: NewtonSchulzNuclearNorms().cov_pair_cross(covs, covs, ia, ib))):
        seconds, out = _seconds(fn, device, args.repeats)
        err = float((out.double().cpu() - ref).abs().max() / ref)
        rows.append([method, "cov cross", "1", f"{d}x{d}", name, f"{seconds:.4f}", f"{err:.1e}", f"{rate:.0f}",
                     f"{flops / 1e9:.1f}" if method != "eigh" else "",
                     f"{flops / args.tflops / 1e9:.2f}" if method != "eigh" else ""])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=45, help="matrices per call (default: %(default)s, a 10-class table)")
    p.add_argument("--sizes", type=int, nargs="+", default=[200], help="matrix sizes (default: %(default)s)")
    p.add_argument("--cov-dim", type=int, default=784, help="covariance dimension (default: %(default)s)")
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    p.add_argument("--repeats", type=int, default=2, help="timed calls, best kept (default: %(default)s)")
    p.add_argument("--tflops", type=float, default=60.0, help="device rate for the estimate (default: H200 fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    header = ["method", "what", "batch", "size", "dtype", "seconds", "max rel err vs float64 SVD",
              "GEMM GFLOP/s here", "NS GFLOP", f"NS ms at {args.tflops:g} TFLOP/s"]
    rows = _rows(args, device)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
