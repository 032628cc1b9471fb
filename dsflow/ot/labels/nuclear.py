"""Nuclear norms and PSD square roots for the Bures cross terms: eigensolvers or matrix products only.

The Bures cross term tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) is a nuclear norm, |A^T B|_* for factors
cov = A A^T (:mod:`dsflow.ot.labels.bures`), or |S_b S_a|_* for the square roots S = cov^{1/2}, since
(S_b S_a)^T (S_b S_a) = S_a cov_b S_a. :class:`EigenNuclearNorms` takes them from eigenvalues (one LAPACK or
cusolver call per matrix: fastest on a CPU, a host-synchronised loop on CUDA); :class:`NewtonSchulzNuclearNorms`
from batched GEMMs only (no host read, differentiable). A label distance picks one in YAML, or by the device of
its data (:func:`default_nuclear_norms`).

Newton–Schulz for the polar factor (Higham, *Functions of Matrices*, SIAM 2008, ch. 8). Let P = U diag(sigma) V^T,
scaled by its Frobenius norm F so that every sigma_i / F lies in [0, 1]. The odd cubic step

.. math::
    X_{k+1} = \\tfrac{\\alpha_k}{2} X_k (3 I - \\alpha_k^2 X_k^T X_k), \\qquad X_0 = P / F,

keeps the singular vectors and maps each singular value x by g(alpha x), g(y) = y (3 - y^2) / 2. g rises on
[0, 1] to g(1) = 1 and falls to g(sqrt 3) = 0. With alpha = 1 (the classic iteration) small values grow by only
1.5x a step. Chen and Chow [1] scale the step: if every value lies in [l, 1], alpha^2 = 3 / (1 + l + l^2) solves
g(alpha l) = g(alpha), so [l, 1] maps into [l', 1] with l' = g(alpha l) (about 2.6 l for small l: half the steps).
The schedule of alpha_k is computed on the host from a *floor* l_0 alone (:func:`ns_schedule`), until
1 - l_k < eps of the dtype; alpha_k is capped at its value for l = 1e-3 (alpha < 1.7312), so that values above 1
by rounding (up to 5e-4) cannot cross sqrt 3 and flip sign. Every step maps [0, 1] into [0, 1] and 0 to 0.

Error bound. After the schedule, X = U diag(q) V^T with q_i = f(sigma_i / F) in [0, 1] (f the composed steps):
q_i >= 1 - eps where sigma_i >= l_0 F, and f increasing on [0, l_0] with f(0) = 0. The estimate tr(X^T P) =
sum_i q_i sigma_i is never above |P|_*, and

.. math::
    |P|_* - tr(X^T P) = \\sum_i (1 - q_i) \\sigma_i \\le eps |P|_* + \\sum_{\\sigma_i < l_0 F} \\sigma_i
                      \\le (eps + m\\, l_0) |P|_*,

m the number of singular values below l_0 F (F <= |P|_*): an unconverged value contributes less than itself.
Exact zeros (rank-deficient P) contribute nothing; rounding makes them O(u F), which grow like any small value
(by about 1 / l_0) but stay out of the trace to first order (their singular vectors are P's null spaces).

Gradient. d|P|_* = tr(Q^T dP) with Q = U V^T over the nonzero singular values, so the backward pass returns X
itself (:class:`_NuclearNorm`), not a backpropagation through the steps. Where cross_term_svd zeroes the gradient
of singular values below _RANK_RTOL sigma_max (a hard cut), X weights them by q_i = f(sigma_i / F): 1 above
l_0 F, falling smoothly to 0 at 0 (null spaces get no gradient, up to the rounding noise above).

Square roots. The coupled Newton–Schulz iteration (Higham 2008, ch. 6: Y_{k+1} = Y_k T_k, Z_{k+1} = T_k Z_k,
T_k = (alpha_k / 2)(3 I - alpha_k^2 Z_k Y_k), Y_0 = C / c, Z_0 = I, c = |C|_F) is the polar iteration above in
disguise: on an eigenvalue lambda of C / c, z_k = h_k, y_k = lambda h_k and x_k = sqrt(lambda) h_k follows the
polar steps from x_0 = sqrt(lambda). But Z_k -> (C / c)^{-1/2} grows without bound on the null space of a singular
C (h_k(0) = prod 1.5 alpha_k ~ 1 / l_0), and its rounding swamps Y (NaN in float32 on 784-d image covariances).
We carry the bounded W_k = Z_k Y_k (eigenvalues x_k^2 in [0, 1]) instead:

.. math::
    T_k = \\tfrac{\\alpha_k}{2}(3 I - \\alpha_k^2 W_k), \\quad Y_{k+1} = Y_k T_k, \\quad W_{k+1} = T_k W_k T_k,
    \\qquad Y_0 = W_0 = C / c,

three GEMMs a step, all polynomials in C (first C is replaced by its PSD part |C| = sign(C) C, the sign being its
polar factor by the iteration above: lambda f(lambda) >= 0 for every eigenvalue lambda, so the slightly negative
eigenvalues of rounded covariances, e.g. float32 ones used in float64, cannot make the iteration diverge). Y_k -> (C / c)^{1/2}, each root sqrt(lambda) f(sqrt(lambda)) in
[0, sqrt(lambda)]: zero eigenvalues give 0, roots of eigenvalues below l_0^2 c are under-estimated by at most
themselves. W has no self-correction for negative rounding noise (-u on the null space grows like a small
eigenvalue, by about 1 / l_0^2, and diverges once it reaches 1), so square roots take a larger floor
(ROOT_FLOORS: 1e-5 float64, 3e-3 float32). The cross term |S_b S_a|_* hardly feels the roots of small eigenvalues
(their directions are null directions of the product to first order): on 400-d covariances of 100 samples it is
within 2e-12 (float64) and 3e-6 (float32) of |A_b^T A_a|_* by SVD, where the eigen path is within 3e-8 and 7e-4
(the square roots of rounding noise). Autograd differentiates through these steps (polynomials).

[1] J. Chen and E. Chow, "A stable scaling of Newton-Schulz for improving the sign function computation of a
    Hermitian matrix", Argonne preprint ANL/MCS-P5059-0114, 2014.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from dsflow.ot.labels.bures import cross_term_eig, cross_term_pairs_eig, cross_term_svd, nuclear_norms

__all__ = [
    "NuclearNorms", "EigenNuclearNorms", "NewtonSchulzNuclearNorms", "default_nuclear_norms", "ns_schedule",
    "polar_newton_schulz", "newton_schulz_nuclear_norms", "sqrtm_newton_schulz",
]

#: the floor l_0 of each dtype (singular values below l_0 |P|_F are not converged): low enough that they hold a
#: negligible part of a nuclear norm, high enough that rounding noise (u |P|_F) grows to at most ~1e-2 (float32)
DEFAULT_FLOORS = {torch.float64: 1e-8, torch.float32: 1e-5}
#: the floor of square roots (roots of eigenvalues below l_0^2 |C|_F are not converged): rounding noise on the null
#: space of a singular C grows by about 1 / l_0^2 and must stay far below 1 (module docstring)
ROOT_FLOORS = {torch.float64: 1e-5, torch.float32: 3e-3}

_ALPHA_CAP_AT = 1e-3  # the scale alpha_k is never larger than for l = 1e-3 (a 5e-4 margin above 1, see above)


@lru_cache(maxsize=None)
def ns_schedule(floor: float, eps: float) -> tuple[float, ...]:
    """The scales alpha_k of the Newton–Schulz steps that bring every value of [floor, 1] to [1 - eps, 1]."""
    if not 0 < floor < 1 or not 0 < eps < 1:
        raise ValueError(f"ns_schedule: need 0 < floor < 1 and 0 < eps < 1, got {floor}, {eps}")
    alphas, low = [], floor
    while 1 - low > eps:
        lo_cap = max(low, _ALPHA_CAP_AT)
        alpha = math.sqrt(3 / (1 + lo_cap + lo_cap * lo_cap))
        low = 0.5 * alpha * low * (3 - alpha * alpha * low * low)  # the new lower bound g(alpha l)
        alphas.append(alpha)
    return tuple(alphas)


def _schedule(dtype: torch.dtype, floor: float | None, defaults: dict[torch.dtype, float]) -> tuple[float, ...]:
    if dtype not in defaults:
        raise ValueError(f"Newton-Schulz: float32 or float64 matrices only, got {dtype}")
    return ns_schedule(defaults[dtype] if floor is None else floor, torch.finfo(dtype).eps)


def polar_newton_schulz(mats: Tensor, floor: float | None = None) -> Tensor:
    """(P, r, s) X ~ U diag(q) V^T, the polar factors of mats (P, r, s) = U diag(sigma) V^T by scaled Newton–Schulz,
    q_i = 1 (to eps) where sigma_i >= floor |mats_p|_F (module docstring); floor None: DEFAULT_FLOORS of the dtype.

    Each step is two batched GEMMs, on the smaller Gram matrix: X^T X (s, s) when r >= s, else X X^T (r, r).
    """
    if mats.ndim != 3:
        raise ValueError(f"polar_newton_schulz: expected a batch (P, r, s) of matrices, got {tuple(mats.shape)}")
    wide = mats.shape[1] < mats.shape[2]
    x = mats.transpose(1, 2) if wide else mats  # (P, r', s'), r' >= s'
    fro = x.square().sum((1, 2), keepdim=True).sqrt().clamp_min(torch.finfo(x.dtype).tiny)  # (P, 1, 1)
    x = x / fro
    for alpha in _schedule(mats.dtype, floor, DEFAULT_FLOORS):
        gram = x.transpose(1, 2) @ x  # (P, s', s')
        x = torch.baddbmm(x, x, gram, beta=1.5 * alpha, alpha=-0.5 * alpha**3)  # alpha x (3 - alpha^2 X^T X) / 2
    return x.transpose(1, 2) if wide else x


class _NuclearNorm(torch.autograd.Function):
    """|P|_* = tr(X^T P) per matrix, with the gradient X (module docstring: no backpropagation through the steps)."""

    @staticmethod
    def forward(ctx: Any, mats: Tensor, floor: float | None) -> Tensor:
        polar = polar_newton_schulz(mats, floor)  # (P, r, s)
        ctx.save_for_backward(polar)
        return (polar * mats).sum((1, 2))  # (P,)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (polar,) = ctx.saved_tensors
        return grad[:, None, None] * polar, None


def newton_schulz_nuclear_norms(mats: Tensor, floor: float | None = None) -> Tensor:
    """(P,) nuclear norms |mats_p|_* of (P, r, s) matrices from their Newton–Schulz polar factors; differentiable
    (gradient: the polar factor). Relative error at most eps + m floor, m the singular values below floor |P|_F."""
    norms: Tensor = _NuclearNorm.apply(mats, floor)
    return norms


def sqrtm_newton_schulz(covs: Tensor, floor: float | None = None) -> Tensor:
    """(C, d, d) square roots of PSD matrices covs (C, d, d) by the scaled Newton–Schulz iteration in bounded form
    (module docstring; three batched GEMMs a step, after a polar iteration for the PSD part); roots of eigenvalues below floor^2 |cov|_F come out smaller
    than themselves, zero eigenvalues give 0; floor None: ROOT_FLOORS of the dtype. Differentiable (autograd
    through the steps)."""
    if covs.ndim != 3 or covs.shape[1] != covs.shape[2]:
        raise ValueError(f"sqrtm_newton_schulz: expected square matrices (C, d, d), got {tuple(covs.shape)}")
    scale = covs.square().sum((1, 2), keepdim=True).sqrt().clamp_min(torch.finfo(covs.dtype).tiny)  # (C, 1, 1)
    eye = torch.eye(covs.shape[1], dtype=covs.dtype, device=covs.device)
    covs = 0.5 * (covs + covs.transpose(1, 2))  # symmetric gradients, as eigh's
    sign = polar_newton_schulz(covs)  # (C, d, d) sign(C), the polar factor of a symmetric matrix
    psd = sign @ covs  # |C|: eigenvalues lambda f(lambda) >= 0, = |lambda| above the floor
    y = w = 0.5 * (psd + psd.transpose(1, 2)) / scale
    for alpha in _schedule(covs.dtype, floor, ROOT_FLOORS):
        t = torch.add(eye * (1.5 * alpha), w, alpha=-0.5 * alpha**3)  # (C, d, d) alpha (3 I - alpha^2 W) / 2
        y, w = y @ t, t @ w @ t
    return 0.5 * (y + y.transpose(1, 2)) * scale.sqrt()  # symmetric up to rounding: made exactly so


class NuclearNorms(ABC):
    """How the Bures cross terms (nuclear norms) are computed; :mod:`dsflow.ot.labels.bures` calls these four."""

    @abstractmethod
    def norms(self, prods: Tensor) -> Tensor:
        """(P,) nuclear norms of (P, r, s) matrices (the fast tables, no autograd needed)."""

    @abstractmethod
    def factor_cross(self, factors_a: Tensor, factors_b: Tensor) -> Tensor:
        """(Ca, Cb) |A_a^T B_b|_* of factors (Ca, d, ra) and (Cb, d, rb); differentiable."""

    @abstractmethod
    def cov_cross(self, covs_a: Tensor, covs_b: Tensor) -> Tensor:
        """(Ca, Cb) tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2}) of PSD (Ca, d, d) and (Cb, d, d); differentiable."""

    @abstractmethod
    def cov_pair_cross(self, covs_a: Tensor, covs_b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
        """(P,) the cross terms of the pairs (ia[p], ib[p]) (the fast tables, no autograd needed)."""


class EigenNuclearNorms(NuclearNorms):
    """From eigenvalues and singular values (torch.linalg; the CPU batch split across threads): dsflow's CPU path,
    :mod:`dsflow.ot.labels.bures`'s own functions, same numbers."""

    def norms(self, prods: Tensor) -> Tensor:
        return nuclear_norms(prods)

    def factor_cross(self, factors_a: Tensor, factors_b: Tensor) -> Tensor:
        return cross_term_svd(factors_a, factors_b)

    def cov_cross(self, covs_a: Tensor, covs_b: Tensor) -> Tensor:
        return cross_term_eig(covs_a, covs_b)

    def cov_pair_cross(self, covs_a: Tensor, covs_b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
        return cross_term_pairs_eig(covs_a, covs_b, ia, ib)

    def __repr__(self) -> str:
        return "EigenNuclearNorms()"


class NewtonSchulzNuclearNorms(NuclearNorms):
    """From batched matrix products only (scaled Newton–Schulz, module docstring): no host synchronisation, for
    GPUs. Relative error at most eps + m floor per nuclear norm (m: singular values below floor |P|_F).

    Args:
        floor: singular values below floor |P|_F are not converged; it sets the number of steps
            (:func:`ns_schedule`; 1e-8: 24 steps in float64, 1e-5: 16 in float32). None: DEFAULT_FLOORS of the dtype.
        root_floor: the same for the square roots of full covariances (eigenvalues below root_floor^2 |C|_F);
            None: ROOT_FLOORS of the dtype (1e-5: 17 steps in float64, 3e-3: 10 in float32).
    """

    def __init__(self, floor: float | None = None, root_floor: float | None = None) -> None:
        for name, value in (("floor", floor), ("root_floor", root_floor)):
            if value is not None and not 0 < value < 0.1:
                raise ValueError(f"NewtonSchulzNuclearNorms: need 0 < {name} < 0.1, got {value}")
        self.floor = floor
        self.root_floor = root_floor

    def norms(self, prods: Tensor) -> Tensor:
        return newton_schulz_nuclear_norms(prods, self.floor)

    def factor_cross(self, factors_a: Tensor, factors_b: Tensor) -> Tensor:
        prods = torch.einsum("adi,bdj->abij", factors_a, factors_b)  # (Ca, Cb, ra, rb)
        ca, cb, ra, rb = prods.shape
        return self.norms(prods.reshape(ca * cb, ra, rb)).view(ca, cb)

    def cov_cross(self, covs_a: Tensor, covs_b: Tensor) -> Tensor:
        ca, cb = covs_a.shape[0], covs_b.shape[0]
        ia, ib = torch.cartesian_prod(torch.arange(ca, device=covs_a.device),
                                      torch.arange(cb, device=covs_a.device)).T  # (2, Ca Cb) row-major
        return self.cov_pair_cross(covs_a, covs_b, ia, ib).view(ca, cb)

    def cov_pair_cross(self, covs_a: Tensor, covs_b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
        roots_a = sqrtm_newton_schulz(covs_a, self.root_floor)  # (Ca, d, d)
        roots_b = sqrtm_newton_schulz(covs_b, self.root_floor)  # (Cb, d, d)
        return self.norms(roots_b[ib] @ roots_a[ia])  # |S_b S_a|_*, (P,)

    def __repr__(self) -> str:
        return f"NewtonSchulzNuclearNorms(floor={self.floor}, root_floor={self.root_floor})"


def default_nuclear_norms(device: torch.device) -> NuclearNorms:
    """Eigensolvers on a CPU (LAPACK with the thread pool is fastest there), Newton–Schulz products elsewhere."""
    return EigenNuclearNorms() if device.type == "cpu" else NewtonSchulzNuclearNorms()
