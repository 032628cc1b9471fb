"""The fast OTDD paths agree with the dense reference (float64, small problems; no timings here)."""

from __future__ import annotations

import warnings

import pytest
import torch

from dsflow.ot import (
    GeomlossSolver, LabelCosts, OTDDSettings, WarmSinkhorn, bures_pair_table, bures_wasserstein_table, class_stats,
    otdd,
)

TIGHT = dict(tol=1e-13, max_iter=20_000, check_every=10)


def problem(n: int = 40, m: int = 30, d: int = 3, seed: int = 0, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor, LabelCosts]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x_ref = torch.randn(m, d, generator=gen, dtype=torch.float64) + 1.0
    y, y_ref = torch.arange(n) % 3, torch.arange(m) % 4
    ss = torch.rand(3, 3, generator=gen, dtype=torch.float64)
    rr = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    ss, rr = (ss + ss.T).fill_diagonal_(0), (rr + rr.T).fill_diagonal_(0)
    sr = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    return _on(device, x, x_ref, LabelCosts(y, y_ref, ss, sr, rr))


def _on(device: torch.device | str, x: torch.Tensor, x_ref: torch.Tensor, labels: LabelCosts
        ) -> tuple[torch.Tensor, torch.Tensor, LabelCosts]:
    """The problem (x, x_ref, labels) on ``device``."""
    return x.to(device), x_ref.to(device), LabelCosts(*(t.to(device) for t in labels[:5]))


def value_and_grads(x, x_ref, labels, settings, solver):
    """(value, grad in x, grad in ss, grad in sr) of otdd with the given solver."""
    x = x.clone().requires_grad_()
    ss, sr = labels.ss.clone().requires_grad_(), labels.sr.clone().requires_grad_()
    value = otdd(x, x_ref, labels._replace(ss=ss, sr=sr), settings, solver=solver)
    value.backward()
    return value.detach(), x.grad, ss.grad, sr.grad


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("fast", [TIGHT, dict(marginal_tol=1e-12, max_iter=20_000),
                                  dict(marginal_tol=1e-12, max_iter=20_000, dense_limit=0, block_entries=600)],
                         ids=["tol", "marginal_tol", "marginal_tol-blocks"])
def test_fast_path_matches_geomloss(debias: bool, fast: dict, device: torch.device) -> None:
    x, x_ref, labels = problem(device=device)
    dense = OTDDSettings(eps=2.0, scaling=0.9999, debias=debias)  # geomloss converges as scaling -> 1
    v0, g0, _, _ = value_and_grads(x, x_ref, labels, dense, GeomlossSolver())
    v1, g1, _, _ = value_and_grads(x, x_ref, labels, dense, WarmSinkhorn(**fast))
    assert rel(v1, v0) < 1e-4
    assert rel(g1, g0) < 1e-4


def _plan_marginal_error(x, x_ref, labels, s: OTDDSettings, f: torch.Tensor, g: torch.Tensor) -> float:
    """L1 error of the row and column marginals of the plan of potentials (f, g) on uniform masses."""
    cost = s.lambda_x * torch.cdist(x, x_ref).pow(2) + s.lambda_y * labels.sr[labels.src_index][:, labels.ref_index]
    n, m = cost.shape
    plan = ((f[:, None] + g[None, :] - cost) / s.eps).exp() / (n * m)
    return float((plan.sum(1) - 1 / n).abs().sum() + (plan.sum(0) - 1 / m).abs().sum())


@pytest.mark.parametrize("debias", [True, False])
def test_block_path_equals_stored_path(debias: bool, device: torch.device) -> None:
    x, x_ref, labels = problem(n=70, m=50, device=device)
    s = OTDDSettings(eps=0.5, debias=debias)
    stored = value_and_grads(x, x_ref, labels, s, WarmSinkhorn(**TIGHT))
    blocks = value_and_grads(x, x_ref, labels, s, WarmSinkhorn(dense_limit=0, block_entries=1200, **TIGHT))
    multiscale = value_and_grads(
        x, x_ref, labels, s, WarmSinkhorn(dense_limit=0, block_entries=1200, coarse_size=16, **TIGHT)
    )
    for got in (blocks, multiscale):
        for a, b in zip(got, stored):
            if b is not None:
                assert rel(a, b) < 1e-9


def test_warm_start_equals_cold_start_at_convergence(device: torch.device) -> None:
    x, x_ref, labels = problem(device=device)
    s = OTDDSettings(eps=0.2)
    warm = WarmSinkhorn(**TIGHT)
    value_and_grads(x, x_ref, labels, s, warm)  # potentials of the previous step
    moved = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype).to(device)
    got = value_and_grads(moved, x_ref, labels, s, warm)
    cold = value_and_grads(moved, x_ref, labels, s, WarmSinkhorn(warm_start=False, **TIGHT))
    for a, b in zip(got, cold):
        assert rel(a, b) < 1e-9


def test_gradients_are_the_envelope_gradients(device: torch.device) -> None:
    """d S / d x, d S / d ss and d S / d sr match central finite differences (a free table entry).

    (geomloss's path gives twice these table gradients: its detach trick counts the shared table once per
    cross potential.)
    """
    x, x_ref, labels = problem(n=20, m=15, device=device)
    s = OTDDSettings(eps=0.3)
    _, g_x, g_ss, g_sr = value_and_grads(x, x_ref, labels, s, WarmSinkhorn(**TIGHT))
    h = 1e-5
    step = torch.zeros_like(x)  # on x's device
    step[3, 1] = h
    fd = otdd(x + step, x_ref, labels, s, solver=WarmSinkhorn(**TIGHT)) - otdd(x - step, x_ref, labels, s,
                                                                              solver=WarmSinkhorn(**TIGHT))
    assert float(g_x[3, 1]) == pytest.approx(float(fd) / (2 * h), rel=1e-5)
    for name, grad, (i, j) in (("ss", g_ss, (0, 1)), ("sr", g_sr, (2, 3))):
        values = []
        for sign in (1, -1):
            table = getattr(labels, name).clone()
            table[i, j] += sign * h
            values.append(otdd(x, x_ref, labels._replace(**{name: table}), s, solver=WarmSinkhorn(**TIGHT)))
        assert float(grad[i, j]) == pytest.approx(float(values[0] - values[1]) / (2 * h), rel=1e-5, abs=1e-9)


def test_fixed_sweeps_without_checks_give_finite_values(device: torch.device) -> None:
    x, x_ref, labels = problem(device=device)
    solver = WarmSinkhorn(max_iter=3, check_every=10)
    values = [value_and_grads(x, x_ref, labels, OTDDSettings(eps=0.05), solver)[0] for _ in range(3)]
    assert all(torch.isfinite(v) for v in values)
    assert rel(values[-1], value_and_grads(x, x_ref, labels, OTDDSettings(eps=0.05), WarmSinkhorn(**TIGHT))[0]) < 1e-2


def test_fast_path_rejects_a_differentiable_reference(device: torch.device) -> None:
    x, x_ref, labels = problem(device=device)
    with pytest.raises(ValueError, match="x_ref requires grad"):
        otdd(x, x_ref.requires_grad_(), labels, solver=WarmSinkhorn())
    with pytest.raises(ValueError, match="tol > 0"):
        WarmSinkhorn(tol=0)


@pytest.mark.parametrize("d", [30, 8])  # classes smaller than d (factors, Gram form) and larger (eig form)
def test_pair_bures_table_matches_autograd_table(d: int, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, d, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 2, d, dtype=torch.float64)
    x_ref = torch.randn(48, d, generator=gen, dtype=torch.float64)
    y, y_ref = (torch.arange(60) % 4).to(device), (torch.arange(48) % 3).to(device)
    a, b = class_stats(x.to(device), y, 4), class_stats(x_ref.to(device), y_ref, 3)
    assert (a.factors is not None) == (d == 30)
    torch.testing.assert_close(bures_pair_table(a, b), bures_wasserstein_table(a, b), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(bures_pair_table(a), bures_wasserstein_table(a, a), rtol=1e-7, atol=1e-7)


def stiff_problem(n: int = 120, seed: int = 0, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor, LabelCosts]:
    """Well separated classes and a label term far above eps: plain Sinkhorn contracts slowly here."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    centres = 6.0 * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    x = centres[y] + torch.randn(n, 5, generator=gen, dtype=torch.float64)
    x_ref = centres[y] + 1.5 + torch.randn(n, 5, generator=gen, dtype=torch.float64)
    table = torch.cdist(centres, centres + 1.5).pow(2)
    ss = torch.cdist(centres, centres).pow(2)
    return _on(device, x, x_ref, LabelCosts(y, y.clone(), ss, table, ss.clone()))


@pytest.mark.parametrize("dense_limit, omega", [(60_000_000, 1.0), (60_000_000, 1.5), (0, 1.0)],
                         ids=["stored", "stored-overrelaxed", "blocks"])
def test_marginal_tolerance_stops_once_the_plan_meets_it(dense_limit: int, omega: float,
                                                         device: torch.device) -> None:
    """On a slowly contracting problem, marginal_tol stops the cross solve once its plan's marginals are that
    close to the masses (checked on the plan itself): a looser one after fewer sweeps."""
    x, x_ref, labels = stiff_problem(n=80, device=device)
    s = OTDDSettings(eps=0.5, debias=False)
    sweeps = {}
    for marginal_tol in (1e-2, 1e-5):
        solver = WarmSinkhorn(marginal_tol=marginal_tol, max_iter=50_000, overrelax=omega, dense_limit=dense_limit,
                              block_entries=4000, check_every=1)
        otdd(x, x_ref, labels, s, solver=solver)
        assert solver.last_converged
        sweeps[marginal_tol] = solver.last_cross_iterations if dense_limit else solver.last_iterations
        state = solver._state
        assert _plan_marginal_error(x, x_ref, labels, s, state.f, state.g) < 3 * marginal_tol
    assert sweeps[1e-2] < sweeps[1e-5], sweeps


@pytest.mark.parametrize("omega", [1.5, 1.9])
def test_overrelaxed_sinkhorn_reaches_the_plain_fixed_point(omega: float, device: torch.device) -> None:
    x, x_ref, labels = stiff_problem(device=device)
    s = OTDDSettings(eps=0.5)
    plain_solver = WarmSinkhorn(overrelax=1.0, **(TIGHT | {"max_iter": 30_000}))  # plain: ~22k sweeps to 1e-13 here
    plain = value_and_grads(x, x_ref, labels, s, plain_solver)
    relaxed = value_and_grads(x, x_ref, labels, s, WarmSinkhorn(overrelax=omega, **TIGHT))
    assert rel(relaxed[0], plain[0]) < 1e-9
    assert rel(relaxed[1], plain[1]) < 1e-7


def test_overrelaxation_converges_in_fewer_sweeps_on_a_stiff_problem(device: torch.device) -> None:
    x, x_ref, labels = stiff_problem(device=device)
    s = OTDDSettings(eps=0.5)
    sweeps = {}
    for omega in (1.0, 1.5):
        solver = WarmSinkhorn(overrelax=omega, tol=1e-10, max_iter=50_000, check_every=5)
        otdd(x, x_ref, labels, s, solver=solver)  # cold start; then a warm call from slightly moved points
        otdd(x + 0.05, x_ref, labels, s, solver=solver)
        sweeps[omega] = solver.last_cross_iterations
    assert sweeps[1.5] < 0.7 * sweeps[1.0], sweeps


def test_overrelaxation_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="overrelax"):
        WarmSinkhorn(overrelax=2.0)
    with pytest.raises(ValueError, match="marginal_tol > 0"):
        WarmSinkhorn(marginal_tol=0.0)


def test_solver_warns_once_when_it_stops_short_of_its_tolerance(device: torch.device) -> None:
    x, x_ref, labels = stiff_problem(device=device)
    s = OTDDSettings(eps=0.5)
    capped = WarmSinkhorn(max_iter=5, check_every=5)
    with pytest.warns(RuntimeWarning, match="max_iter=5"):
        otdd(x, x_ref, labels, s, solver=capped)
    assert not capped.last_converged
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per solver: the second short call is silent
        otdd(x + 0.01, x_ref, labels, s, solver=capped)
        converged = WarmSinkhorn(**TIGHT)
        otdd(x, x_ref, labels, s, solver=converged)  # meets its tolerance: no warning
    assert converged.last_converged


def test_a_warm_step_with_fixed_sweeps_reads_back_once(monkeypatch, device: torch.device) -> None:
    """On a GPU every read of a device value (item, tolist, bool, int, float) is a host round trip that stalls
    the queue. A warm fd-fl step (Gaussian tables through the shared products, stored costs, fixed sweeps)
    reads back twice: the previous call's two potential changes, which on CUDA come from pinned memory
    copied a step earlier (dsflow.ot.solvers.warm_state.host_later), and the divergence guard after the optimizer step
    (deliberate: a NaN must stop the flow before a checkpoint saves it). Eigensolver error checks inside torch
    are not seen."""
    from dsflow.flows import OTDDTerm
    from tests.flow_helpers import flow_steps, make_flow, two_blobs

    source, reference = two_blobs(30, d=40, seed=0), two_blobs(30, d=40, seed=1)  # classes < d: factor tables
    flow = make_flow([OTDDTerm(eps=0.5, solver=WarmSinkhorn(max_iter=5, check_every=6))], source, reference,
                     device=device)
    flow_steps(flow, 2)  # cold start, then warm: the label layouts and the reference term are cached
    reads = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    flow_steps(flow, 1)
    monkeypatch.undo()
    assert reads == ["tolist", "__bool__"], reads


def test_flush_denormals_zeroes_denormal_results() -> None:
    """After flush_denormals (flow.py and train.py call it first thing), a product below float32's smallest
    normal number is 0 instead of a (slowly computed) denormal; normal numbers are untouched."""
    import platform

    from dsflow.process import flush_denormals

    tiny = torch.full((), 2e-38, dtype=torch.float32)
    supported = flush_denormals()
    if platform.machine().lower() in {"x86_64", "amd64"}:  # SSE3 flushes; elsewhere it may be unsupported
        assert supported
    if supported:
        assert float(tiny * 0.25) == 0.0
    assert float(tiny * 2) == pytest.approx(4e-38)
