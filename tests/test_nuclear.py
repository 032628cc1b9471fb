"""Newton–Schulz nuclear norms and square roots (dsflow.ot.labels.nuclear) against SVD / eigen references."""

from __future__ import annotations

import math

import pytest
import torch
from jsonargparse import ArgumentParser

from dsflow.ot.labels.bures import bures_pair_table, bures_wasserstein_table, sqrtm_psd
from dsflow.ot.labels.label_distance import GaussianLabelDistance, LabelDistance
from dsflow.ot.labels.nuclear import (
    EigenNuclearNorms, NewtonSchulzNuclearNorms, default_nuclear_norms, newton_schulz_nuclear_norms, ns_schedule,
    polar_newton_schulz, sqrtm_newton_schulz,
)
from dsflow.ot.labels.stats import class_stats

DTYPES = [torch.float64, torch.float32]
IDS = ["float64", "float32"]


def _low_rank(batch: int, rows: int, cols: int, rank: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, rows, cols) float64 matrices of the given rank."""
    left = torch.randn(batch, rows, rank, generator=gen, dtype=torch.float64)
    return left @ torch.randn(batch, rank, cols, generator=gen, dtype=torch.float64)


def _image_like(n: int, d: int, gen: torch.Generator, shift: float = 0.0) -> torch.Tensor:
    """(n, d) float64 samples with a decaying spectrum (1 / k) and a quarter of constant pixels, as images have."""
    basis = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0]
    scales = torch.arange(1, d + 1, dtype=torch.float64).reciprocal()
    x = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scales) @ basis.T + shift
    x[:, : d // 4] = 0.5  # constant border pixels: singular covariances
    return x


def _rel(value: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((value.double().cpu() - ref.double().cpu()).abs() / ref.double().cpu().abs()).max())


def test_schedule_reaches_one_and_stays_below_sqrt3() -> None:
    for floor, eps in [(1e-8, 2.2e-16), (1e-5, 1.2e-7), (3e-3, 1.2e-7)]:
        alphas = ns_schedule(floor, eps)
        low = floor
        for alpha in alphas:
            assert 1 <= alpha < 1.7312 < math.sqrt(3)  # capped: values up to 1 + 5e-4 cannot cross sqrt 3
            low = 0.5 * alpha * low * (3 - alpha**2 * low**2)
        assert 1 - low <= eps
    assert len(ns_schedule(1e-8, 2.2e-16)) < 0.5 * math.log(1e8) / math.log(1.5) + 10  # about half the classic steps
    with pytest.raises(ValueError, match="floor"):
        ns_schedule(0.0, 1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize(("rows", "cols", "rank"), [(200, 200, 200), (200, 200, 150), (300, 200, 120), (150, 260, 150)])
def test_nuclear_norms_equal_svd(rows: int, cols: int, rank: int, dtype: torch.dtype) -> None:
    """Random, rank-deficient, tall and wide matrices: within 1e-5 of the float64 SVD of the same matrices."""
    gen = torch.Generator().manual_seed(rows + cols + rank)
    mats = _low_rank(3, rows, cols, rank, gen).to(dtype)
    ref = torch.linalg.svdvals(mats.double()).sum(-1)
    assert _rel(newton_schulz_nuclear_norms(mats), ref) < 1e-5
    assert _rel(NewtonSchulzNuclearNorms().norms(mats), ref) < 1e-5


def test_polar_factor_is_orthogonal_on_the_range_and_zero_on_the_null_space() -> None:
    gen = torch.Generator().manual_seed(1)
    mats = _low_rank(2, 40, 30, 20, gen)
    u, s, vh = torch.linalg.svd(mats, full_matrices=False)
    expected = u[..., :20] @ vh[..., :20, :]  # U V^T over the nonzero singular values
    torch.testing.assert_close(polar_newton_schulz(mats), expected, rtol=0, atol=1e-7)


def test_gradient_is_the_polar_factor_as_svd_gives() -> None:
    gen = torch.Generator().manual_seed(2)
    small = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(newton_schulz_nuclear_norms, (small,))
    wide = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(newton_schulz_nuclear_norms, (wide,))
    for mats in (torch.randn(3, 30, 20, generator=gen, dtype=torch.float64), _low_rank(3, 30, 30, 12, gen)):
        mats.requires_grad_(True)
        (ns,) = torch.autograd.grad(newton_schulz_nuclear_norms(mats).sum(), mats)
        sv = torch.linalg.svdvals(mats)
        keep = sv > 1e-6 * sv.amax(-1, keepdim=True).detach()  # cross_term_svd's rule: the null space gets none
        (ref,) = torch.autograd.grad((sv * keep).sum(), mats)
        torch.testing.assert_close(ns, ref, rtol=0, atol=1e-7)


def test_factor_cross_gradient_equals_svd_path() -> None:
    """The differentiable table path (bures_wasserstein_table) gives cross_term_svd's values and gradients."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 12, generator=gen, dtype=torch.float64, requires_grad=True)  # classes of 10 in 12-d: factors
    y = torch.arange(30) % 3
    ref = class_stats(torch.randn(16, 12, generator=gen, dtype=torch.float64), torch.arange(16) % 2, 2)
    grads = []
    for nuclear in (None, NewtonSchulzNuclearNorms()):
        table = bures_wasserstein_table(class_stats(x, y, 3), ref, nuclear)
        grads.append((table, *torch.autograd.grad(table.sum(), x)))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-4)], ids=IDS)
def test_image_covariance_cross_term(dtype: torch.dtype, tol: float) -> None:
    """784-d covariances of 200 samples (rank 199, a quarter of constant pixels): the square roots square back to
    the covariances and |S_b S_a|_* is close to |A_b^T A_a|_* by a float64 SVD of the sample factors, ten times
    closer than the eigen path. (float32: rounding the covariances themselves moves the cross term by 2e-5.)"""
    gen = torch.Generator().manual_seed(4)
    x = torch.cat([_image_like(200, 784, gen), _image_like(200, 784, gen, shift=0.3)]).to(dtype)
    stats = class_stats(x, torch.arange(400) // 200, 2)
    covs = stats.full_covs()  # (2, 784, 784)
    assert stats.factors is not None
    factors = stats.factors.double()
    ref = torch.linalg.svdvals(factors[1].T @ factors[0]).sum()[None]
    roots = sqrtm_newton_schulz(covs)
    assert float(((roots @ roots - covs).norm(dim=(1, 2)) / covs.norm(dim=(1, 2))).max()) < 1e-3
    ia, ib = torch.tensor([0]), torch.tensor([1])
    error = _rel(NewtonSchulzNuclearNorms().cov_pair_cross(covs, covs, ia, ib), ref)
    assert error < tol and error < 0.1 * _rel(EigenNuclearNorms().cov_pair_cross(covs, covs, ia, ib), ref)
    if dtype == torch.float32:  # float32 covariances in float64: eigenvalues down to -2e-8 |C|, still converges
        wide = covs.double()
        assert _rel(NewtonSchulzNuclearNorms().cov_pair_cross(wide, wide, ia, ib), ref) < tol


def test_square_root_gradient_equals_eigen_path() -> None:
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(2, 6, 6, generator=gen, dtype=torch.float64)
    covs_a = (a @ a.mT / 6 + 0.1 * torch.eye(6, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(3, 6, 6, generator=gen, dtype=torch.float64)
    covs_b = b @ b.mT / 6 + 0.1 * torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(sqrtm_newton_schulz(covs_a), sqrtm_psd(covs_a), rtol=1e-10, atol=1e-12)
    values = [nuclear.cov_cross(covs_a, covs_b) for nuclear in (EigenNuclearNorms(), NewtonSchulzNuclearNorms())]
    torch.testing.assert_close(values[1], values[0], rtol=1e-10, atol=1e-12)
    grads = [torch.autograd.grad(v.sum(), covs_a)[0] for v in values]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_label_table_equals_eigen_path(dtype: torch.dtype) -> None:
    """MNIST-like data (784-d, 10 classes of 200): the Bures tables agree to 1e-4 between classes, self and cross."""
    gen = torch.Generator().manual_seed(6)
    x = _image_like(2000, 784, gen)
    x = (x + 0.3 * torch.randn(10, 784, generator=gen, dtype=torch.float64).repeat_interleave(200, 0)).to(dtype)
    y = torch.arange(2000) // 200
    eigen, ns = GaussianLabelDistance(EigenNuclearNorms()), GaussianLabelDistance(NewtonSchulzNuclearNorms())
    a = eigen.summarize(x, y, 10)
    b = eigen.summarize(x[::5].flip(0), y[::5].flip(0), 10)  # 40 a class
    off = ~torch.eye(10, dtype=torch.bool)
    assert _rel(ns.self_table(a)[off], eigen.self_table(a)[off]) < 1e-4
    assert _rel(ns.table(a, b)[off], eigen.table(a, b)[off]) < 1e-4
    # the diagonal of a against b (a class and half its samples) cancels to 1e-3 of the traces: there both stay
    # within 1e-5 of the largest entry of the float64 table of the same data, Newton–Schulz the closer one
    exact = eigen.table(*(eigen.summarize(s.samples.x.double(), s.samples.y, 10) for s in (a, b)))
    errors = [float((t.table(a, b).double() - exact).abs().max() / exact.max()) for t in (ns, eigen)]
    assert errors[0] < 1e-5 and errors[0] <= errors[1] + 1e-9


def test_cpu_default_is_the_eigen_path_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(120, 30, generator=gen)
    y = torch.arange(120) % 4
    assert isinstance(default_nuclear_norms(torch.device("cpu")), EigenNuclearNorms)
    assert isinstance(default_nuclear_norms(torch.device("cuda")), NewtonSchulzNuclearNorms)
    a, b = class_stats(x, y, 4), class_stats(x[:60] * 2, y[:60], 4, keep_covs=True)
    for ours, before in [
        (GaussianLabelDistance().self_table(a), bures_pair_table(a)),
        (GaussianLabelDistance().table(a, b), bures_pair_table(a, b)),
        (GaussianLabelDistance(EigenNuclearNorms()).table(b, b), bures_pair_table(b, b)),
        (GaussianLabelDistance().table(a.detach(), a), bures_wasserstein_table(a, a)),
    ]:
        assert torch.equal(ours, before)


def test_yaml_picks_the_method() -> None:
    parser = ArgumentParser()
    parser.add_argument("--label_distance", type=LabelDistance)
    cfg = parser.parse_string("""
label_distance:
  class_path: dsflow.ot.GaussianLabelDistance
  init_args:
    nuclear:
      class_path: dsflow.ot.NewtonSchulzNuclearNorms
      init_args: {floor: 1.0e-6}
""")
    distance = parser.instantiate_classes(cfg).label_distance
    assert isinstance(distance.nuclear, NewtonSchulzNuclearNorms) and distance.nuclear.floor == 1e-6
    with pytest.raises(ValueError, match="floor"):
        NewtonSchulzNuclearNorms(floor=0.5)


def test_products_only_on_device(device: torch.device) -> None:
    """Nuclear norms, square roots and a Bures table by products on ``device`` (on CUDA: without a host sync),
    equal to the float64 eigen references."""
    gen = torch.Generator().manual_seed(8)
    mats = _low_rank(4, 60, 50, 30, gen)
    x = _image_like(90, 48, gen)
    y = torch.arange(90) % 3
    stats = class_stats(x, y, 3, keep_covs=True)  # 30 samples in 48-d: singular full covariances
    ref_norms = torch.linalg.svdvals(mats).sum(-1)
    ref_table = bures_pair_table(class_stats(x, y, 3))  # factor form, float64 eigen
    ia, ib = torch.triu_indices(3, 3, 1)
    nuclear = NewtonSchulzNuclearNorms()
    mats_d, covs_d, ia_d, ib_d = mats.to(device), stats.covs.to(device), ia.to(device), ib.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    try:
        norms = nuclear.norms(mats_d)
        cross = nuclear.cov_pair_cross(covs_d, covs_d, ia_d, ib_d)
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert norms.device.type == device.type and cross.device.type == device.type
    assert _rel(norms, ref_norms) < 1e-9
    factors = class_stats(x, y, 3).factors
    assert factors is not None
    ref_cross = torch.linalg.svdvals(factors[ib].mT @ factors[ia]).sum(-1)
    assert _rel(cross, ref_cross) < 1e-9
    table = GaussianLabelDistance().self_table(class_stats(x.to(device), y.to(device), 3))  # the device's default
    assert _rel(table[0, 1:], ref_table[0, 1:]) < 1e-8
