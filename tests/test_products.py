"""The inner-product GEMM shared by the label tables and the outer cost (dsflow.ot.products)."""

from __future__ import annotations

import dataclasses

import torch

from dsflow.ot import OTDDSettings, WarmSinkhorn, bures_pair_table, class_stats, otdd
from dsflow.ot.blocks import GroundCost
from dsflow.ot.otdd import LabelCosts
from dsflow.ot.products import clear_grams, shared_gram, take_gram

DT = torch.float64


def _labeled(n: int, d: int, classes: int, seed: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unequal, shuffled classes at pixel-like offsets (the products must survive the cancellation)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    y[:classes] = torch.arange(classes)  # every class present
    y[classes:2 * classes] = torch.arange(classes)  # and with at least two samples
    x = 5.0 + shift + torch.randn(n, d, generator=gen, dtype=DT) * torch.linspace(0.2, 2, d, dtype=DT)
    return x, y


def test_memo_returns_the_same_product_until_taken_or_changed() -> None:
    clear_grams()
    x, _ = _labeled(30, 4, 3, 0)
    y, _ = _labeled(20, 4, 3, 1)
    g = shared_gram(x, y)
    torch.testing.assert_close(g.prod, (x - g.centre) @ (y - g.centre).T)
    assert shared_gram(x.detach(), y) is g  # same storage and version: a hit
    x.add_(1.0)  # an in-place update (an optimizer step) bumps the version: a miss
    assert take_gram(x, y) is None
    g2 = shared_gram(x, y)
    assert take_gram(x, y) is g2 and take_gram(x, y) is None  # taken once
    clear_grams()


def test_tables_from_the_shared_product_equal_the_factor_tables() -> None:
    clear_grams()
    x, y = _labeled(70, 30, 4, 0)  # classes below d: the factor (small-SVD) form
    x_ref, y_ref = _labeled(50, 30, 3, 1, shift=1.0)
    a, b = class_stats(x, y, 4), class_stats(x_ref, y_ref, 3)
    assert a.factors is not None and a.samples is not None
    plain_a, plain_b = dataclasses.replace(a, samples=None), dataclasses.replace(b, samples=None)
    # float64 round-off, amplified by the square roots of the near-zero eigenvalues of rank-deficient classes
    torch.testing.assert_close(bures_pair_table(a, b), bures_pair_table(plain_a, plain_b), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(bures_pair_table(a), bures_pair_table(plain_a), rtol=1e-7, atol=1e-7)
    clear_grams()


def test_cost_from_the_shared_product_equals_its_own_gemm() -> None:
    clear_grams()
    x, y = _labeled(40, 6, 3, 0)
    x_ref, y_ref = _labeled(30, 6, 3, 1, shift=2.0)
    table = torch.rand(3, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    own = GroundCost(x, x_ref, y, y_ref, table, 0.7, 2.0, 10, store=True).full
    shared_gram(x, x_ref)
    shared = GroundCost(x, x_ref, y, y_ref, table, 0.7, 2.0, 10, store=True).full
    assert take_gram(x, x_ref) is None  # the cost took the product
    expected = 0.7 * torch.cdist(x, x_ref).pow(2) + 2.0 * table[y][:, y_ref]
    torch.testing.assert_close(shared, own)
    torch.testing.assert_close(shared, expected)


def test_a_flow_step_through_shared_products_equals_one_without(monkeypatch) -> None:
    """The OTDD value and gradient with tables and costs from shared products equal those without."""
    import dsflow.ot.blocks as blocks

    taken = []

    def spy(a, b):
        g = take_gram(a, b)
        taken.append(g is not None)
        return g

    monkeypatch.setattr(blocks, "take_gram", spy)
    x, y = _labeled(60, 30, 3, 0)
    x_ref, y_ref = _labeled(45, 30, 3, 1, shift=1.0)
    settings = OTDDSettings(eps=0.5)

    def run(share: bool) -> tuple[torch.Tensor, torch.Tensor]:
        clear_grams()
        a, b = class_stats(x, y, 3), class_stats(x_ref, y_ref, 3)
        if not share:
            a, b = dataclasses.replace(a, samples=None), dataclasses.replace(b, samples=None)
        rr = bures_pair_table(b)  # first: the memo keeps the last two products, ss's and sr's
        labels = LabelCosts(y, y_ref, bures_pair_table(a), bures_pair_table(a, b), rr)
        taken.clear()
        xg = x.clone().requires_grad_()
        if share:  # the tables' products were taken of x itself: hand the solver that same tensor
            xg = x.requires_grad_()
        value = otdd(xg, x_ref, labels, settings, solver=WarmSinkhorn(tol=1e-12, max_iter=5000))
        (grad,) = torch.autograd.grad(value, xg)
        x.requires_grad_(False)
        assert sum(taken) == (2 if share else 0), taken  # both costs (cross and self) reused the tables' GEMM
        return value.detach(), grad

    (v0, g0), (v1, g1) = run(False), run(True)
    torch.testing.assert_close(v1, v0, rtol=1e-9, atol=1e-9)
    assert float((g1 - g0).norm() / g0.norm()) < 1e-7
