"""OTDD: metric properties, invariances, gradients, and an independent POT computation (float64)."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from dsflow.ot import (
    DiagonalGaussianLabelDistance, ExactLabelDistance, GaussianLabelDistance, GeomlossSolver, LabelCosts,
    OTDDSettings, WarmSinkhorn, otdd,
)

DT = torch.float64
SETTINGS = OTDDSettings(eps=0.5, scaling=0.99)
DENSE = GeomlossSolver()  # the dense reference these properties were written for (otdd() defaults to WarmSinkhorn)


def _data(seed: int, n: int, c: int, shift: float = 0.0, device: torch.device | str = "cpu"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, 2, generator=gen, dtype=DT) + 2.0 * torch.stack([y.to(DT), (y % 2).to(DT)], 1) + shift
    return x.to(device), y.to(device)


_GAUSSIAN = GaussianLabelDistance()


def _costs(xa, ya, ca, xb, yb, cb, distance=_GAUSSIAN) -> LabelCosts:
    sa, sb = distance.summarize(xa, ya, ca), distance.summarize(xb, yb, cb)
    return LabelCosts(ya, yb, distance.table(sa, sa), distance.table(sa, sb), distance.table(sb, sb))


def _otdd(xa, ya, ca, xb, yb, cb, settings=SETTINGS) -> torch.Tensor:
    return otdd(xa, xb, _costs(xa, ya, ca, xb, yb, cb), settings, solver=DENSE)


def test_distance_to_itself_is_zero(device: torch.device) -> None:
    x, y = _data(0, 30, 3, device=device)
    assert abs(float(_otdd(x, y, 3, x, y, 3))) < 1e-8


def test_symmetry(device: torch.device) -> None:
    xa, ya = _data(0, 24, 3, device=device)
    xb, yb = _data(1, 20, 2, shift=1.5, device=device)
    torch.testing.assert_close(_otdd(xa, ya, 3, xb, yb, 2), _otdd(xb, yb, 2, xa, ya, 3), rtol=1e-6, atol=1e-8)


def test_invariant_to_renaming_classes(device: torch.device) -> None:
    xa, ya = _data(0, 24, 3, device=device)
    xb, yb = _data(1, 20, 2, shift=1.5, device=device)
    perm = torch.tensor([2, 0, 1], device=device)
    torch.testing.assert_close(_otdd(xa, ya, 3, xb, yb, 2), _otdd(xa, perm[ya], 3, xb, yb, 2), rtol=1e-6, atol=1e-8)


def test_label_term_separates_relabelled_datasets(device: torch.device) -> None:
    """Same features, labels shuffled across samples: feature-only OT sees nothing, the OTDD does."""
    x, y = _data(0, 30, 2, device=device)
    shuffled = y[torch.randperm(30, generator=torch.Generator().manual_seed(0)).to(device)]
    assert float(_otdd(x, y, 2, x, shuffled, 2)) > 1.0
    feature_only = OTDDSettings(eps=0.5, scaling=0.99, lambda_y=0.0)
    assert abs(float(_otdd(x, y, 2, x, shuffled, 2, feature_only))) < 1e-8


def _entropic_ot(a: np.ndarray, b: np.ndarray, cost: np.ndarray, eps: float) -> float:
    """OT_eps = <P, C> + eps KL(P | a b^T), P from POT's log-domain Sinkhorn run to convergence."""
    plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", stopThr=1e-9, numItermax=20_000)
    kl = (plan * np.log(np.maximum(plan, 1e-300) / np.outer(a, b))).sum()
    return float((plan * cost).sum() + eps * kl)


def test_equals_pot_on_explicit_augmented_cost(device: torch.device) -> None:
    xa, ya = _data(0, 12, 3, device=device)
    xb, yb = _data(1, 10, 2, shift=1.0, device=device)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    ours = float(otdd(xa, xb, labels, SETTINGS, solver=DENSE))
    table = labels.joint().cpu().numpy()
    za, zb = xa.cpu().numpy(), xb.cpu().numpy()
    ia, ib = ya.cpu().numpy(), 3 + yb.cpu().numpy()

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


def test_gradcheck_in_x(device: torch.device) -> None:
    xa, ya = _data(0, 9, 3, device=device)
    xb, yb = _data(1, 8, 2, shift=1.0, device=device)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    settings = OTDDSettings(eps=2.0, scaling=0.995)

    def f(x: torch.Tensor) -> torch.Tensor:
        return otdd(x, xb, labels, settings, solver=DENSE)

    # geomloss's annealed Sinkhorn stops short of full convergence: its value is second-order accurate but the
    # envelope gradient only first-order (about 0.3 % here), hence the tolerance.
    assert torch.autograd.gradcheck(f, (xa.clone().requires_grad_(True),), atol=5e-3, rtol=1e-2)


def test_gradcheck_in_x_converged_solver(device: torch.device) -> None:
    """Solved to convergence (the flows' own solver, cold), the envelope gradient is exact: tight gradcheck."""
    xa, ya = _data(0, 9, 3, device=device)
    xb, yb = _data(1, 8, 2, shift=1.0, device=device)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    solver = WarmSinkhorn(tol=1e-12, max_iter=100_000, warm_start=False)

    def f(x: torch.Tensor) -> torch.Tensor:
        return otdd(x, xb, labels, OTDDSettings(eps=2.0, scaling=0.9), solver=solver)

    assert torch.autograd.gradcheck(f, (xa.clone().requires_grad_(True),), atol=1e-6, rtol=1e-5)


CONVERGED = dict(tol=1e-12, max_iter=100_000, warm_start=False)


@pytest.mark.parametrize("distance", [GaussianLabelDistance(), DiagonalGaussianLabelDistance()], ids=["full", "diag"])
def test_gradcheck_through_the_label_tables(distance, device: torch.device) -> None:
    """x enters the outer cost and, through the class Gaussians, the tables ss and sr: the whole gradient
    matches central finite differences (a converged solve, float64)."""
    xa, ya = _data(0, 12, 3, device=device)
    xb, yb = _data(1, 10, 2, shift=1.0, device=device)
    ref = distance.summarize(xb, yb, 2)
    rr = distance.self_table(ref)
    solver = WarmSinkhorn(**CONVERGED)

    def f(x: torch.Tensor) -> torch.Tensor:
        src = distance.summarize(x, ya, 3)  # tables differentiable in x
        labels = LabelCosts(ya, yb, distance.self_table(src), distance.table(src, ref), rr)
        return otdd(x, xb, labels, OTDDSettings(eps=2.0, scaling=0.9), solver=solver)

    x = xa.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x,), atol=1e-6, rtol=1e-5)
    (through_tables,) = torch.autograd.grad(f(x), x)
    features_only = otdd(x, xb, _costs(xa, ya, 3, xb, yb, 2, distance), OTDDSettings(eps=2.0, scaling=0.9),
                         solver=solver)
    (direct,) = torch.autograd.grad(features_only, x)
    assert float((through_tables - direct).norm()) > 1e-3 * float(direct.norm())  # the tables' part is not nil


def test_geomloss_table_gradients_are_the_envelope_gradients(device: torch.device) -> None:
    """The dense path's gradients in the label tables ss and sr (halved from geomloss's, see GeomlossSolver)
    equal the converged solver's envelope gradients, and hence its gradient in x through Gaussian tables."""
    xa, ya = _data(0, 12, 3, device=device)
    xb, yb = _data(1, 10, 2, shift=1.0, device=device)
    labels = _costs(xa, ya, 3, xb, yb, 2)
    settings = OTDDSettings(eps=2.0, scaling=0.9999)  # geomloss converges as scaling -> 1
    grads = []
    for solver in (GeomlossSolver(), WarmSinkhorn(**CONVERGED)):
        ss, sr = labels.ss.clone().requires_grad_(), labels.sr.clone().requires_grad_()
        x = xa.clone().requires_grad_()
        otdd(x, xb, labels._replace(ss=ss, sr=sr), settings, solver=solver).backward()
        grads.append((x.grad, ss.grad, sr.grad))
    for dense, exact in zip(*grads):  # geomloss stops short of convergence (~1e-4); twice the envelope: 100 %
        assert float((dense - exact).norm() / exact.norm()) < 1e-3


def test_exact_label_distance_matches_pot_emd(device: torch.device) -> None:
    xa, ya = _data(0, 18, 3, device=device)
    xb, yb = _data(1, 12, 2, shift=1.0, device=device)
    table = ExactLabelDistance(eps=1e-3, scaling=0.95)(xa, ya, 3, xb, yb, 2)
    for i in range(3):
        for j in range(2):
            pa, pb = xa[ya == i].cpu().numpy(), xb[yb == j].cpu().numpy()
            cost = ((pa[:, None] - pb[None]) ** 2).sum(-1)
            emd = ot.emd2(np.full(len(pa), 1 / len(pa)), np.full(len(pb), 1 / len(pb)), cost)
            assert float(table[i, j]) == pytest.approx(emd, rel=2e-2, abs=1e-2)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="eps"):
        OTDDSettings(eps=0.0)
    with pytest.raises(ValueError, match="scaling"):
        OTDDSettings(scaling=1.5)
