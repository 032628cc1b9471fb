"""The inner-product GEMM shared by the label tables and the outer cost, and the class layouts, as explicit data
owned by one flow (dsflow.ot.labels.products, dsflow.ot.labels.class_layout)."""

from __future__ import annotations

import pytest
import torch
from tests.flow_helpers import flow_steps, make_flow, two_blobs

from dsflow.flows import OTDDTerm
from dsflow.ot import (
    LabelCosts, LayoutCache, OTDDSettings, SharedProducts, WarmSinkhorn, bures_pair_table, class_stats, otdd,
)
from dsflow.ot.labels.products import inner_products
from dsflow.ot.solvers.blocks import GroundCost

DT = torch.float64


def _labeled(n: int, d: int, classes: int, seed: int, device: torch.device, shift: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unequal, shuffled classes at pixel-like offsets (the products must survive the cancellation)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    y[:classes] = torch.arange(classes)  # every class present
    y[classes:2 * classes] = torch.arange(classes)  # and with at least two samples
    x = 5.0 + shift + torch.randn(n, d, generator=gen, dtype=DT) * torch.linspace(0.2, 2, d, dtype=DT)
    return x.to(device), y.to(device)


def test_bundle_returns_the_same_product_until_taken_or_changed(device: torch.device) -> None:
    x, _ = _labeled(30, 4, 3, 0, device)
    y, _ = _labeled(20, 4, 3, 1, device)
    products = SharedProducts(limit=10**6)
    g = products.gram(x, y)
    torch.testing.assert_close(g.prod, (x - g.centre) @ (y - g.centre).T)
    assert products.gram(x.detach(), y) is g  # same storage and version: a hit
    x.add_(1.0)  # an in-place update (an optimizer step) bumps the version: a miss
    assert products.take(x, y) is None
    g2 = products.gram(x, y)
    assert products.take(x, y) is g2 and products.take(x, y) is None  # taken once
    for other in (x, y, x.T.contiguous().T):  # at most two products are kept, the newest
        products.gram(other, y)
    assert len(products) == 2 and products.take(x, y) is None
    with pytest.raises(ValueError, match="limit >= 0"):
        SharedProducts(limit=-1)


def test_tables_from_the_shared_product_equal_the_factor_tables(device: torch.device) -> None:
    x, y = _labeled(70, 30, 4, 0, device)  # classes below d: the factor (small-SVD) form
    x_ref, y_ref = _labeled(50, 30, 3, 1, device, shift=1.0)
    a, b = class_stats(x, y, 4), class_stats(x_ref, y_ref, 3)
    assert a.factors is not None and a.samples is not None
    products = SharedProducts(limit=70 * 70)
    # float64 round-off, amplified by the square roots of the near-zero eigenvalues of rank-deficient classes
    torch.testing.assert_close(bures_pair_table(a, b, products), bures_pair_table(a, b), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(bures_pair_table(a, products=products), bures_pair_table(a), rtol=1e-7, atol=1e-7)
    assert products.take(x, x_ref) is not None and products.take(x, x) is not None  # kept for the outer cost
    small = SharedProducts(limit=70 * 50 - 1)  # below x x_ref^T's size: not shared, the factors give the table
    torch.testing.assert_close(bures_pair_table(a, b, small), bures_pair_table(a, b), rtol=0, atol=0)
    assert len(small) == 0


def test_cost_from_the_shared_product_equals_its_own_gemm(device: torch.device) -> None:
    x, y = _labeled(40, 6, 3, 0, device)
    x_ref, y_ref = _labeled(30, 6, 3, 1, device, shift=2.0)
    table = torch.rand(3, 3, generator=torch.Generator().manual_seed(0), dtype=DT).to(device)
    own = GroundCost(x, x_ref, y, y_ref, table, 0.7, 2.0, 10, store=True).full
    shared = GroundCost(x, x_ref, y, y_ref, table, 0.7, 2.0, 10, store=True, gram=inner_products(x, x_ref)).full
    expected = 0.7 * torch.cdist(x, x_ref).pow(2) + 2.0 * table[y][:, y_ref]
    torch.testing.assert_close(shared, own)
    torch.testing.assert_close(shared, expected)


def test_a_flow_step_through_shared_products_equals_one_without(device: torch.device, monkeypatch) -> None:
    """The OTDD value and gradient with tables and costs from shared products equal those without."""
    taken = []
    original = SharedProducts.take

    def spy(self, a, b):
        g = original(self, a, b)
        taken.append(g is not None)
        return g

    monkeypatch.setattr(SharedProducts, "take", spy)
    x, y = _labeled(60, 30, 3, 0, device)
    x_ref, y_ref = _labeled(45, 30, 3, 1, device, shift=1.0)
    settings = OTDDSettings(eps=0.5)

    def run(share: bool) -> tuple[torch.Tensor, torch.Tensor]:
        solver = WarmSinkhorn(tol=1e-12, max_iter=5000)
        products = solver.shared_products() if share else None
        a, b = class_stats(x, y, 3), class_stats(x_ref, y_ref, 3)
        rr = bures_pair_table(b, products=products)  # first: the bundle keeps the last two products, ss's and sr's
        labels = LabelCosts(y, y_ref, bures_pair_table(a, products=products), bures_pair_table(a, b, products), rr,
                            products)
        taken.clear()
        xg = x.requires_grad_()  # the tables' products were taken of x itself: the solver gets that same tensor
        value = otdd(xg, x_ref, labels, settings, solver=solver)
        (grad,) = torch.autograd.grad(value, xg)
        x.requires_grad_(False)
        assert sum(taken) == (2 if share else 0), taken  # both costs (cross and self) reused the tables' GEMM
        assert products is None or len(products) == 0  # what the solver did not take is dropped
        return value.detach(), grad

    (v0, g0), (v1, g1) = run(False), run(True)
    torch.testing.assert_close(v1, v0, rtol=1e-9, atol=1e-9)
    assert float((g1 - g0).norm() / g0.norm()) < 1e-7


def test_the_solver_dense_limit_decides_what_the_tables_share(device: torch.device) -> None:
    source, reference = two_blobs(30, d=40, seed=0), two_blobs(25, d=40, seed=1)  # classes < d: factor tables
    for limit, shared in ((60_000_000, 2), (60 * 60 - 1, 1), (0, 0)):  # (x, x) is 60 x 60, (x, x_ref) 60 x 50
        flow = make_flow([OTDDTerm(eps=0.5, solver=WarmSinkhorn(dense_limit=limit))], source, reference,
                         device=device)
        flow.state()  # the first step also builds (and caches) the reference's own table rr
        labels = flow.state().labels
        assert labels is not None and labels.products is not None and len(labels.products) == shared


# hits the sweep cap: harmless, the claim is that two flows do not interfere
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_two_flows_in_one_process_share_no_state(device: torch.device) -> None:
    """Each OTDD term owns its class layouts and lends every step a fresh products bundle: two flows stepped in
    turn move exactly as each does alone."""
    data = [(two_blobs(30, d=40, seed=s), two_blobs(25, d=40, gap=2.0, seed=s + 10)) for s in (0, 1)]

    def flows():
        return [make_flow([OTDDTerm(eps=0.5)], src, ref, device=device) for src, ref in data]

    alone = []
    for flow in flows():
        flow_steps(flow, 3)
        alone.append(flow.particles.x.detach())
    together = flows()
    terms = [f.objective.terms[0] for f in together]
    assert terms[0].layouts is not terms[1].layouts
    assert terms[0].table_inputs().products is not terms[0].table_inputs().products  # one bundle per step
    optimizers = [torch.optim.SGD([f.particles.x], lr=0.1) for f in together]
    for _ in range(3):  # A's tables, B's tables, A's solve, B's solve: nothing leaks from one to the other
        states = [f.state() for f in together]
        losses = [f.objective(s).total for f, s in zip(together, states)]
        for f, opt, loss in zip(together, optimizers, losses):
            opt.zero_grad()
            loss.backward()
            f.scale_grads()
            opt.step()
    for flow, x in zip(together, alone):
        assert torch.equal(flow.particles.x.detach(), x)
    assert all(len(t.layouts) >= 1 for t in terms)


def test_layouts_are_computed_once_per_label_vector(device: torch.device) -> None:
    x, y = _labeled(40, 3, 4, 0, device)
    cache = LayoutCache()
    layout = cache.get(y, 4)
    assert cache.get(y, 4) is layout and len(cache) == 1
    stats = class_stats(x, y, 4, layout=layout)
    assert stats.samples is not None and stats.samples.layout is layout
    torch.testing.assert_close(stats.means, class_stats(x, y, 4).means, rtol=0, atol=0)
    y.add_(0)  # an in-place relabelling bumps the version: a new layout
    assert cache.get(y, 4) is not layout and len(cache) == 2
    with pytest.raises(ValueError, match="class layout covers 40 samples in 4 classes"):
        class_stats(x[:30], y[:30], 4, layout=layout)


def test_stored_costs_are_sized_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense/blocked choice: 60 million entries on a CPU; on a GPU half its free memory (three float32
    matrices an entry), read once per device: an idle 141 GB H200 stores the costs of n = m = 50,000."""
    from dsflow.ot.solvers import memory

    assert WarmSinkhorn().dense_entries(torch.device("cpu")) == memory.CPU_DENSE_ENTRIES
    assert WarmSinkhorn(dense_limit=7).dense_entries(torch.device("cpu")) == 7
    calls = []

    def h200(device: torch.device) -> tuple[int, int]:
        calls.append(device)
        return 141 * 10**9, 141 * 10**9

    monkeypatch.setattr(torch.cuda, "mem_get_info", h200)
    solver = WarmSinkhorn()
    n = 50_000
    assert solver.dense_entries(torch.device("cuda", 0)) >= n * n + n * n
    assert solver.shared_products(torch.device("cuda", 0)).admits(n, n)
    assert len(calls) == 1  # kept: the path does not change as the flow allocates
