"""Bures-Wasserstein tables against POT and closed forms (float64)."""

from __future__ import annotations

import ot
import pytest
import torch

from dsflow.ot.labels.bures import batched_eigvalsh, bures_wasserstein_table, cross_term_eig, cross_term_svd
from dsflow.ot.labels.stats import LabelStats, class_stats

DT = torch.float64


def _random_stats(c: int, d: int, gen: torch.Generator, device: torch.device | str = "cpu") -> LabelStats:
    a = torch.randn(c, d, d, generator=gen, dtype=DT)
    covs = a @ a.transpose(1, 2) / d + 0.1 * torch.eye(d, dtype=DT)
    means = torch.randn(c, d, generator=gen, dtype=DT)
    return LabelStats(means.to(device), covs.to(device), None, torch.ones(c, dtype=DT, device=device))


def _randn(*shape: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=DT).to(device)


def test_table_equals_pot(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = _random_stats(3, 4, gen, device), _random_stats(2, 4, gen, device)
    ours = bures_wasserstein_table(a, b)
    pot = torch.as_tensor(ot.gaussian.bures_wasserstein_distance(a.means, b.means, a.covs, b.covs)).to(device) ** 2
    torch.testing.assert_close(ours, pot, rtol=1e-8, atol=1e-10)


def test_closed_forms(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(1)
    a = _random_stats(3, 5, gen, device)
    assert bures_wasserstein_table(a, a).diagonal().abs().max() < 1e-7  # same Gaussian: 0
    shifted = LabelStats(a.means + _randn(3, 5, gen=gen, device=device), a.covs, None, a.counts)
    expected = (a.means - shifted.means).pow(2).sum(-1)  # same covariance: squared mean distance
    torch.testing.assert_close(bures_wasserstein_table(a, shifted).diagonal(), expected, rtol=1e-7, atol=1e-9)


def test_batched_equals_looped(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = _random_stats(4, 3, gen, device), _random_stats(3, 3, gen, device)
    table = bures_wasserstein_table(a, b)
    for i in range(4):
        for j in range(3):
            one = bures_wasserstein_table(
                LabelStats(a.means[i : i + 1], a.covs[i : i + 1], None, a.counts[:1]),
                LabelStats(b.means[j : j + 1], b.covs[j : j + 1], None, b.counts[:1]),
            )
            torch.testing.assert_close(table[i, j], one[0, 0])


def test_small_svd_form_equals_eig_form(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(3)
    x = _randn(40, 12, gen=gen, device=device)  # classes of 8 and 5 samples in 12-d: rank-deficient
    y = (torch.arange(40) % 5).to(device)
    x2 = _randn(18, 12, gen=gen, device=device) * 2
    y2 = (torch.arange(18) % 3).to(device)
    a, b = class_stats(x, y, 5), class_stats(x2, y2, 3)
    assert a.factors is not None and b.factors is not None  # small classes keep factors
    torch.testing.assert_close(cross_term_svd(a.factors, b.factors), cross_term_eig(a.full_covs(), b.full_covs()), rtol=1e-6, atol=1e-8)
    full = class_stats(x, y, 5, keep_covs=True), class_stats(x2, y2, 3, keep_covs=True)
    torch.testing.assert_close(bures_wasserstein_table(a, b), bures_wasserstein_table(*full), rtol=1e-6, atol=1e-8)


def test_sample_statistics_match_numpy(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(4)
    x = _randn(30, 3, gen=gen, device=device)
    y = (torch.arange(30) % 3).to(device)
    stats = class_stats(x, y, 3, keep_covs=True)
    for c in range(3):
        torch.testing.assert_close(stats.means[c], x[y == c].mean(0))
        torch.testing.assert_close(stats.covs[c], torch.cov(x[y == c].T))
        assert stats.counts[c] == 10


def test_gradient_finite_on_singular_image_classes(device: torch.device) -> None:
    """Constant 'border pixels' and fewer samples than pixels: the paper's code fails here."""
    gen = torch.Generator().manual_seed(5)
    x = torch.zeros(60, 49, dtype=DT)
    x[:, 10:30] = torch.rand(60, 20, generator=gen, dtype=DT)  # the other 29 pixels are constant
    x = x.to(device).requires_grad_(True)
    y = (torch.arange(60) % 3).to(device)
    ref = torch.zeros(45, 49, dtype=DT)
    ref[:, 15:35] = torch.rand(45, 20, generator=gen, dtype=DT)
    ref_stats = class_stats(ref.to(device), (torch.arange(45) % 3).to(device), 3)
    table = bures_wasserstein_table(class_stats(x, y, 3), ref_stats)
    assert torch.isfinite(table).all() and (table > 0).all()
    table.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(("d", "per_class"), [(2, 5), (5, 8), (12, 4)])  # eig, eig, small-SVD form
def test_gradcheck_in_samples(d: int, per_class: int, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(6)
    x = _randn(3 * per_class, d, gen=gen, device=device).requires_grad_(True)
    y = (torch.arange(x.shape[0]) % 3).to(device)
    ref = class_stats(_randn(20, d, gen=gen, device=device), (torch.arange(20) % 2).to(device), 2)

    def f(x: torch.Tensor) -> torch.Tensor:
        return bures_wasserstein_table(class_stats(x, y, 3), ref)

    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batched_eigvalsh_equals_torch(threads: int, device: torch.device) -> None:
    """Splitting the batch across threads gives torch.linalg.eigvalsh's eigenvalues, whatever the thread count
    (batches smaller than it, leading batch dimensions, a single matrix)."""
    before = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    try:
        torch.set_num_threads(threads)
        for shape in [(7, 3, 12, 12), (2, 5, 5), (5, 5)]:
            a = torch.randn(*shape, generator=gen).to(device)
            sym = a @ a.transpose(-1, -2)
            assert torch.allclose(batched_eigvalsh(sym), torch.linalg.eigvalsh(sym), rtol=1e-5, atol=1e-4)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before  # the worker threads' own setting does not leak into the caller


def test_label_stats_without_covariances_or_factors_is_an_error() -> None:
    """A LabelStats needs the class covariances in one form: with neither, it says so at construction."""
    means = torch.zeros(2, 3, dtype=DT)
    with pytest.raises(ValueError, match="covs and factors are both None"):
        LabelStats(means, None, None, torch.ones(2, dtype=DT))
