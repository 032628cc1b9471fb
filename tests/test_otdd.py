"""OTDD: metric properties, invariances, gradients, and an independent POT computation (float64)."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from dsflow.ot import ExactLabelDistance, GaussianLabelDistance, LabelCosts, OTDDSettings, otdd
from dsflow.ot.solvers import WarmSinkhorn

DT = torch.float64
SETTINGS = OTDDSettings(eps=0.5, scaling=0.99)


def _data(seed: int, n: int, c: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, 2, generator=gen, dtype=DT) + 2.0 * torch.stack([y.to(DT), (y % 2).to(DT)], 1) + shift
    return x, y


def _costs(xa, ya, ca, xb, yb, cb, distance=GaussianLabelDistance()) -> LabelCosts:
    sa, sb = distance.summarize(xa, ya, ca), distance.summarize(xb, yb, cb)
    return LabelCosts(ya, yb, distance.table(sa, sa), distance.table(sa, sb), distance.table(sb, sb))


def _otdd(xa, ya, ca, xb, yb, cb, settings=SETTINGS) -> torch.Tensor:
    return otdd(xa, xb, _costs(xa, ya, ca, xb, yb, cb), settings)


def test_distance_to_itself_is_zero() -> None:
    x, y = _data(0, 30, 3)
    assert abs(float(_otdd(x, y, 3, x, y, 3))) < 1e-8


def test_symmetry() -> None:
    xa, ya = _data(0, 24, 3)
    xb, yb = _data(1, 20, 2, shift=1.5)
    torch.testing.assert_close(_otdd(xa, ya, 3, xb, yb, 2), _otdd(xb, yb, 2, xa, ya, 3), rtol=1e-6, atol=1e-8)


def test_invariant_to_renaming_classes() -> None:
    xa, ya = _data(0, 24, 3)
    xb, yb = _data(1, 20, 2, shift=1.5)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(_otdd(xa, ya, 3, xb, yb, 2), _otdd(xa, perm[ya], 3, xb, yb, 2), rtol=1e-6, atol=1e-8)


def test_label_term_separates_relabelled_datasets() -> None:
    """Same features, labels shuffled across samples: feature-only OT sees nothing, the OTDD does."""
    x, y = _data(0, 30, 2)
    shuffled = y[torch.randperm(30, generator=torch.Generator().manual_seed(0))]
    assert float(_otdd(x, y, 2, x, shuffled, 2)) > 1.0
    feature_only = OTDDSettings(eps=0.5, scaling=0.99, lambda_y=0.0)
    assert abs(float(_otdd(x, y, 2, x, shuffled, 2, feature_only))) < 1e-8


def _entropic_ot(a: np.ndarray, b: np.ndarray, cost: np.ndarray, eps: float) -> float:
    """OT_eps = <P, C> + eps KL(P | a b^T), P from POT's log-domain Sinkhorn run to convergence."""
    plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", stopThr=1e-9, numItermax=20_000)
    kl = (plan * np.log(np.maximum(plan, 1e-300) / np.outer(a, b))).sum()
    return float((plan * cost).sum() + eps * kl)


def test_equals_pot_on_explicit_augmented_cost() -> None:
    xa, ya = _data(0, 12, 3)
    xb, yb = _data(1, 10, 2, shift=1.0)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    ours = float(otdd(xa, xb, labels, SETTINGS))
    table = labels.joint().numpy()
    za, zb = xa.numpy(), xb.numpy()
    ia, ib = ya.numpy(), 3 + yb.numpy()

    def cost(p, ip, q, iq):  # lambda_x |x - x'|^2 + lambda_y W(y, y'), built explicitly
        return ((p[:, None] - q[None]) ** 2).sum(-1) + table[ip][:, iq]

    a, b = np.full(12, 1 / 12), np.full(10, 1 / 10)
    eps = SETTINGS.eps
    ref = (
        _entropic_ot(a, b, cost(za, ia, zb, ib), eps)
        - 0.5 * _entropic_ot(a, a, cost(za, ia, za, ia), eps)
        - 0.5 * _entropic_ot(b, b, cost(zb, ib, zb, ib), eps)
    )
    assert ours == pytest.approx(ref, rel=1e-3)


def test_gradcheck_in_x() -> None:
    xa, ya = _data(0, 9, 3)
    xb, yb = _data(1, 8, 2, shift=1.0)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    settings = OTDDSettings(eps=2.0, scaling=0.995)

    def f(x: torch.Tensor) -> torch.Tensor:
        return otdd(x, xb, labels, settings)

    # geomloss's annealed Sinkhorn stops short of full convergence: its value is second-order accurate but the
    # envelope gradient only first-order (about 0.3 % here), hence the tolerance.
    assert torch.autograd.gradcheck(f, (xa.clone().requires_grad_(True),), atol=5e-3, rtol=1e-2)


def test_gradcheck_in_x_converged_solver() -> None:
    """Solved to convergence (the flows' own solver, cold), the envelope gradient is exact: tight gradcheck."""
    xa, ya = _data(0, 9, 3)
    xb, yb = _data(1, 8, 2, shift=1.0)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    solver = WarmSinkhorn(tol=1e-12, max_iter=100_000, warm_start=False)

    def f(x: torch.Tensor) -> torch.Tensor:
        return otdd(x, xb, labels, OTDDSettings(eps=2.0, scaling=0.9), solver=solver)

    assert torch.autograd.gradcheck(f, (xa.clone().requires_grad_(True),), atol=1e-6, rtol=1e-5)


def test_gradient_flows_into_label_tables() -> None:
    xa, ya = _data(0, 12, 3)
    xb, yb = _data(1, 10, 2, shift=1.0)
    x = xa.clone().requires_grad_(True)
    labels = _costs(x, ya, 3, xb, yb, 2)  # tables differentiable in x
    otdd(x, xb, labels, SETTINGS).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_exact_label_distance_matches_pot_emd() -> None:
    xa, ya = _data(0, 18, 3)
    xb, yb = _data(1, 12, 2, shift=1.0)
    table = ExactLabelDistance(eps=1e-3, scaling=0.95)(xa, ya, 3, xb, yb, 2)
    for i in range(3):
        for j in range(2):
            pa, pb = xa[ya == i].numpy(), xb[yb == j].numpy()
            cost = ((pa[:, None] - pb[None]) ** 2).sum(-1)
            emd = ot.emd2(np.full(len(pa), 1 / len(pa)), np.full(len(pb), 1 / len(pb)), cost)
            assert float(table[i, j]) == pytest.approx(emd, rel=2e-2, abs=1e-2)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="eps"):
        OTDDSettings(eps=0.0)
    with pytest.raises(ValueError, match="scaling"):
        OTDDSettings(scaling=1.5)
