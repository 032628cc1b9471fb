"""Bures-Wasserstein distances between class Gaussians, all pairs at once (paper section 3.3).

For alpha = N(mu_a, cov_a) and beta = N(mu_b, cov_b),

.. math::
    W_2^2(\\alpha, \\beta) = |\\mu_a - \\mu_b|^2 + tr(cov_a) + tr(cov_b) - 2\\, tr\\big((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}\\big).

The cross term has two exact forms:

* eigen form: tr((S_a cov_b S_a)^{1/2}) = sum of square roots of the eigenvalues of S_a cov_b S_a, S_a = cov_a^{1/2};
* small-SVD form: if cov_a = A A^T and cov_b = B B^T (A (d, r_a), B (d, r_b), for instance centred samples), the
  eigenvalues of cov_a^{1/2} cov_b cov_a^{1/2} are the squared singular values of A^T B, so the cross term is the
  nuclear norm |A^T B|_* : an (r_a, r_b) SVD instead of a (d, d) eigendecomposition when classes are small.
  It never takes a square root of a (possibly singular) matrix, so it stays finite on image classes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dsflow.ot.labels.products import SharedProducts, inner_products
from dsflow.ot.labels.stats import LabelStats

if TYPE_CHECKING:
    from dsflow.ot.labels.nuclear import NuclearNorms

__all__ = [
    "batched_eigvalsh", "bures_pair_table", "bures_wasserstein_table", "cross_term_eig", "cross_term_gram",
    "cross_term_pairs_eig", "cross_term_products", "cross_term_svd", "nuclear_norms", "sqrtm_psd",
]

# A process resource, not state of any computation: worker threads for the batched CPU eigensolver
# (batched_eigvalsh), made once per process and thread count. Results never depend on it.
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)

# Singular values below this fraction of the largest one get no gradient: the nuclear norm is not differentiable
# at rank-deficient points, and the spurious subgradient of the null space would bend the flow.
_RANK_RTOL = 1e-6


def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads that each run torch with one intra-op thread (made once per process and thread count)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), workers):  # a forked child must not reuse its parent's threads
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)))
    return _POOL[2]


def batched_eigvalsh(mats: Tensor) -> Tensor:
    """(..., k) eigenvalues of a batch of symmetric matrices (..., k, k), as torch.linalg.eigvalsh.

    On a CPU, LAPACK solves small eigenproblems one after another and barely uses a second core (a 200 x 200
    tridiagonalisation is memory-bound); the batch is split across torch's thread count instead, each thread
    single-threaded (bit-identical results, about 1.6x faster on 2 cores).
    """
    workers = torch.get_num_threads()
    if mats.device.type != "cpu" or workers < 2 or mats.ndim < 3 or mats[..., 0, 0].numel() < 2:
        evals: Tensor = torch.linalg.eigvalsh(mats)  # (..., k)
        return evals
    flat = mats.reshape(-1, *mats.shape[-2:])
    chunks = flat.chunk(min(workers, flat.shape[0]))
    parts: list[Tensor] = list(_pool(workers).map(torch.linalg.eigvalsh, chunks))
    out: Tensor = torch.cat(parts).reshape(mats.shape[:-1])
    return out


def sqrtm_psd(covs: Tensor) -> Tensor:
    """(..., d, d) symmetric square roots of PSD matrices by eigendecomposition (negative eigenvalues clipped)."""
    evals, evecs = torch.linalg.eigh(covs)
    root = evals.clamp_min(0).sqrt()
    out: Tensor = (evecs * root[..., None, :]) @ evecs.transpose(-1, -2)  # (..., d, d)
    return out


def _safe_sqrt(v: Tensor) -> Tensor:
    """sqrt with a finite gradient at 0 (the gradient of clipped entries is zero)."""
    tiny = torch.finfo(v.dtype).tiny
    pos = v > tiny
    return torch.where(pos, v.clamp_min(tiny).sqrt(), torch.zeros_like(v))


def cross_term_eig(covs_a: Tensor, covs_b: Tensor) -> Tensor:
    """(Ca, Cb) tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) for all pairs, by eigendecompositions.

    Args:
        covs_a: (Ca, d, d) PSD matrices.
        covs_b: (Cb, d, d) PSD matrices.
    """
    roots = sqrtm_psd(covs_a)  # (Ca, d, d)
    inner = roots[:, None] @ covs_b[None] @ roots[:, None]  # (Ca, Cb, d, d)
    inner = 0.5 * (inner + inner.transpose(-1, -2))
    return _safe_sqrt(torch.linalg.eigvalsh(inner)).sum(-1)


def cross_term_svd(factors_a: Tensor, factors_b: Tensor) -> Tensor:
    """(Ca, Cb) nuclear norms |A_a^T B_b|_*, the Bures cross term for cov_a = A A^T, cov_b = B B^T.

    Args:
        factors_a: (Ca, d, ra) factors (zero columns allowed).
        factors_b: (Cb, d, rb) factors.
    """
    prods = torch.einsum("adi,bdj->abij", factors_a, factors_b)  # (Ca, Cb, ra, rb)
    sv: Tensor = torch.linalg.svdvals(prods)  # (Ca, Cb, min(ra, rb))
    keep = sv > _RANK_RTOL * sv.amax(-1, keepdim=True).detach()
    return (sv * keep).sum(-1)


def _trace(stats: LabelStats) -> Tensor:
    if stats.factors is not None:
        return stats.factors.pow(2).sum((-1, -2))
    return torch.diagonal(stats.full_covs(), dim1=-2, dim2=-1).sum(-1)  # the stored covs: factors are None


def bures_wasserstein_table(a: LabelStats, b: LabelStats, nuclear: NuclearNorms | None = None) -> Tensor:
    """(Ca, Cb) squared Bures-Wasserstein distances W_2^2(N(mu_a, cov_a), N(mu_b, cov_b)) for all class pairs.

    Uses the small-SVD form when both sides carry sample factors narrower than d, the eigen form otherwise.
    Differentiable in the means, covariances and factors (hence in the samples they came from). ``nuclear``: how
    the cross terms are computed (:mod:`dsflow.ot.labels.nuclear`; None: the eigen forms here).
    """
    if a.dim != b.dim:
        raise ValueError(f"bures_wasserstein_table: feature dimensions differ, {a.dim} vs {b.dim}")
    mean_term = (a.means[:, None, :] - b.means[None, :, :]).pow(2).sum(-1)  # (Ca, Cb)
    if a.factors is not None and b.factors is not None:
        cross = cross_term_svd(a.factors, b.factors) if nuclear is None else nuclear.factor_cross(a.factors, b.factors)
    else:
        cross = (cross_term_eig if nuclear is None else nuclear.cov_cross)(a.full_covs(), b.full_covs())
    return (mean_term + _trace(a)[:, None] + _trace(b)[None, :] - 2 * cross).clamp_min(0)


# ---------------------------------------------------------------------------------------------------------------
# Fast tables for statistics that need no gradient (fd-fl refreshes them every step under no_grad).


def cross_term_gram(factors_a: Tensor, factors_b: Tensor, ia: Tensor, ib: Tensor, all_pairs: bool = False,
                    nuclear: NuclearNorms | None = None) -> Tensor:
    """(P,) nuclear norms |A_ia[p]^T B_ib[p]|_* of class pairs, from the eigenvalues of the smaller Gram matrix.

    |A^T B|_* = sum_k sqrt(lambda_k(M)), M = (A^T B)(A^T B)^T: one batched GEMM and a symmetric eigenvalue
    problem of size min(ra, rb) per pair, several times cheaper than an SVD of A^T B. Not for autograd
    (sqrt has no bounded derivative at the zero eigenvalues of rank-deficient classes).

    Args:
        factors_a: (Ca, d, ra) factors of the first side's classes.
        factors_b: (Cb, d, rb) factors of the second side's classes.
        ia, ib: (P,) the class of each side in pair p.
        all_pairs: (ia, ib) is every pair, in row-major order (the blocks are then taken without a gather).
        nuclear: how the nuclear norms are computed (:mod:`dsflow.ot.labels.nuclear`; None: :func:`nuclear_norms`).
    """
    (ca, d, ra), (cb, _, rb) = factors_a.shape, factors_b.shape
    if 2 * ia.shape[0] <= ca * cb:  # few pairs (a symmetric table's upper triangle): only their blocks
        prods = torch.bmm(factors_a[ia].transpose(1, 2), factors_b[ib])  # (P, ra, rb)
    else:
        flat_a = factors_a.transpose(1, 2).reshape(ca * ra, d)  # (Ca ra, d)
        flat_b = factors_b.transpose(1, 2).reshape(cb * rb, d)  # (Cb rb, d)
        prods = _pairs((flat_a @ flat_b.T).view(ca, ra, cb, rb), ia, ib, all_pairs)  # one GEMM, then the blocks
    return nuclear_norms(prods) if nuclear is None else nuclear.norms(prods)


def cross_term_products(a: LabelStats, b: LabelStats, ia: Tensor, ib: Tensor, all_pairs: bool = False,
                        products: SharedProducts | None = None, nuclear: NuclearNorms | None = None) -> Tensor:
    """(P,) the cross terms of :func:`cross_term_gram`, with the factors' products A_a^T B_b taken from the
    inner products of the samples themselves (one GEMM, put into ``products`` for the outer cost to reuse;
    :mod:`dsflow.ot.labels.products`), centred by rank-one corrections: (x_i - mu_a) . (y_j - mu_b) =
    x_i . y_j - x_i . mu_b - mu_a . y_j + mu_a . mu_b, all about the Gram's centre.

    Needs ``samples`` on both summaries (as :func:`~dsflow.ot.labels.stats.class_stats` records them).
    """
    if a.samples is None or b.samples is None:
        raise ValueError("cross_term_products: both summaries need the samples they were taken from")
    (xa, _, lay_a), (xb, _, lay_b) = a.samples, b.samples
    ca, cb = a.num_classes, b.num_classes
    gram = products.gram(xa, xb) if products is not None else inner_products(xa, xb)
    idx_a, mask_a = lay_a.index, lay_a.mask  # (Ca, ra)
    idx_b, mask_b = lay_b.index, lay_b.mask  # (Cb, rb)
    (ra, rb), c = (idx_a.shape[1], idx_b.shape[1]), gram.centre
    mu_a, mu_b = a.means - c, b.means - c  # (Ca, d), (Cb, d)
    x_mu = (xa - c) @ mu_b.T  # (n, Cb)
    mu_y = mu_a @ (xb - c).T  # (Ca, m)
    blocks = gram.prod.index_select(0, idx_a.flatten()).index_select(1, idx_b.flatten()).view(ca, ra, cb, rb)
    blocks.sub_(x_mu[idx_a][..., None]).sub_(mu_y[:, idx_b][:, None]).add_((mu_a @ mu_b.T)[:, None, :, None])
    scale_a = mask_a * (a.counts - 1).clamp_min(1).rsqrt()[:, None]  # (Ca, ra): 1 / sqrt(n_c - 1), 0 on padding
    scale_b = mask_b * (b.counts - 1).clamp_min(1).rsqrt()[:, None]
    blocks.mul_(scale_a[:, :, None, None]).mul_(scale_b[None, None])
    prods = _pairs(blocks, ia, ib, all_pairs)  # (P, ra, rb)
    return nuclear_norms(prods) if nuclear is None else nuclear.norms(prods)


def _pairs(blocks: Tensor, ia: Tensor, ib: Tensor, all_pairs: bool) -> Tensor:
    """(P, ra, rb) blocks (ia[p], ib[p]) of a (Ca, ra, Cb, rb) array (one contiguous copy, and a row gather
    unless ``all_pairs``)."""
    ca, ra, cb, rb = blocks.shape
    flat = blocks.permute(0, 2, 1, 3).reshape(ca * cb, ra, rb)
    return flat if all_pairs else flat[ia * cb + ib]


def nuclear_norms(prods: Tensor) -> Tensor:
    """(P,) nuclear norms of (P, ra, rb) matrices from the eigenvalues of their smaller Gram matrices."""
    gram = prods @ prods.transpose(1, 2) if prods.shape[1] <= prods.shape[2] else prods.transpose(1, 2) @ prods
    return batched_eigvalsh(gram).clamp_min(0).sqrt().sum(-1)  # (P,)


def cross_term_pairs_eig(covs_a: Tensor, covs_b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
    """(P,) tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) of the pairs (ia[p], ib[p]) of PSD covs_a (Ca, d, d) and
    covs_b (Cb, d, d), by eigendecompositions (one square root per class of a)."""
    roots = sqrtm_psd(covs_a)  # (Ca, d, d), one eigendecomposition per class
    inner = roots[ia] @ covs_b[ib] @ roots[ia]  # (P, d, d)
    inner = 0.5 * (inner + inner.transpose(-1, -2))
    return batched_eigvalsh(inner).clamp_min(0).sqrt().sum(-1)


def _pair_cross(a: LabelStats, b: LabelStats, ia: Tensor, ib: Tensor, all_pairs: bool,
                products: SharedProducts | None, nuclear: NuclearNorms | None) -> Tensor:
    """(P,) Bures cross terms tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) of the class pairs (ia[p], ib[p])."""
    if a.factors is not None and b.factors is not None:
        if (products is not None and a.samples is not None and b.samples is not None
                and products.admits(a.samples.x.shape[0], b.samples.x.shape[0])):
            return cross_term_products(a, b, ia, ib, all_pairs, products, nuclear)
        return cross_term_gram(a.factors, b.factors, ia, ib, all_pairs, nuclear)
    return (cross_term_pairs_eig if nuclear is None else nuclear.cov_pair_cross)(a.full_covs(), b.full_covs(), ia, ib)


@torch.no_grad()
def bures_pair_table(a: LabelStats, b: LabelStats | None = None, products: SharedProducts | None = None,
                     nuclear: NuclearNorms | None = None) -> Tensor:
    """(Ca, Cb) squared Bures-Wasserstein table, as :func:`bures_wasserstein_table` but batched over the pairs
    that need computing, without autograd: with ``b=None`` the table of ``a`` with itself, whose diagonal is 0
    and lower triangle mirrors the upper (C (C - 1) / 2 pairs instead of C^2).

    With ``products`` (a solver's :class:`~dsflow.ot.labels.products.SharedProducts`), sample factors take their cross
    terms from the samples' inner products, which the bundle keeps for the outer cost (when it admits their size);
    otherwise from the factors themselves. ``nuclear``: how the cross terms are computed (:mod:`dsflow.ot.labels.nuclear`;
    None: the eigen forms here).
    """
    symmetric = b is None
    b = a if b is None else b
    if a.dim != b.dim:
        raise ValueError(f"bures_pair_table: feature dimensions differ, {a.dim} vs {b.dim}")
    ca, cb = a.num_classes, b.num_classes
    if symmetric:
        ia, ib = torch.triu_indices(ca, ca, offset=1, device=a.means.device)  # (2, P) upper triangle
    else:
        ia, ib = torch.cartesian_prod(torch.arange(ca, device=a.means.device),
                                      torch.arange(cb, device=a.means.device)).T  # (2, Ca Cb)
    mean_term = (a.means[ia] - b.means[ib]).pow(2).sum(-1)  # (P,)
    values = mean_term + _trace(a)[ia] + _trace(b)[ib] - 2 * _pair_cross(a, b, ia, ib, not symmetric, products, nuclear)
    table = a.means.new_zeros(ca, cb).index_put_((ia, ib), values.clamp_min(0))
    return table + table.T if symmetric else table
