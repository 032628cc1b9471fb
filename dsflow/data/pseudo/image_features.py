"""Image feature maps robust to the nuisances of handwriting: slant, stroke position and stroke width.

* :class:`DeskewFeatures`: moment deskewing (shear so that the second moment cov(x, y) vanishes, centre the ink's
  centroid) and a Gaussian blur. Returns images, for another map (:class:`GradientHistogramFeatures`, PCA, UMAP).
* :class:`GradientHistogramFeatures`: histograms of gradient orientation over a grid of cells (HOG, Dalal & Triggs
  2005): edges' directions pooled in cells, so a stroke moved by a pixel or two, or drawn thicker, changes the
  features little, while its direction (what tells a hook from a loop) is kept.

Both work on (n, c, h, w) images of any size (channels are averaged to gray); lengths in pixels are given at
28 x 28 and scaled by h / 28.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsflow.data.pseudo.features import ClusterFeatures

__all__ = ["DeskewFeatures", "GradientHistogramFeatures", "affine_theta", "gaussian_blur"]


def _gray(x: Tensor) -> Tensor:
    """(n, 1, h, w) float64 gray images of (n, c, h, w) or (n, h, w) features."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"image features need (n, c, h, w) or (n, h, w) images, got shape {tuple(x.shape)}")
    return x.double().mean(1, keepdim=True)  # (n, 1, h, w)


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """(n, 1, h, w) images blurred by a separable Gaussian of standard deviation ``sigma`` pixels (0: unchanged)."""
    if sigma <= 0:
        return img
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=img.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()  # (2r + 1,)
    out = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))  # (n, 1, h, w)


def affine_theta(angle: Tensor, sx: Tensor, sy: Tensor, shear: Tensor) -> Tensor:
    """(n, 2, 3) affine maps for ``F.affine_grid`` (no translation): the rotation by ``angle`` (radians) after the
    horizontal ``shear``, the first row scaled by ``sx``, the second by ``sy`` (each (n,))."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(angle.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = sx * cos, sx * (shear * cos - sin)  # rotation @ shear, rows scaled
    theta[:, 1, 0], theta[:, 1, 1] = sy * sin, sy * (shear * sin + cos)
    return theta


class DeskewFeatures(ClusterFeatures):
    """Deskewed, centred and blurred gray images (n, 1, h, w).

    With ink mass m(u, v) >= 0 (u column, v row), centroid (u0, v0), the shear u -> u + a (v - v0) with
    a = cov(u, v) / var(v) makes the ink's covariance diagonal (the classical deskewing of digit recognisers).

    Args:
        blur: Gaussian blur (pixels at 28 x 28) after deskewing: tolerates stroke offsets of about this size.
        max_shear: |a| is clipped to this (a nearly horizontal glyph has var(v) ~ 0 and an unbounded shear).
    """

    def __init__(self, blur: float = 1.0, max_shear: float = 1.0) -> None:
        if blur < 0 or max_shear < 0:
            raise ValueError(f"DeskewFeatures: need blur >= 0 and max_shear >= 0, got {blur}, {max_shear}")
        self.blur, self.max_shear = blur, max_shear

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        img = _gray(x)  # (n, 1, h, w)
        n, _, h, w = img.shape
        m = img.clamp_min(0).flatten(1)  # (n, h * w) ink mass
        mass = m.sum(1).clamp_min(1e-12)  # (n,)
        v, u = torch.meshgrid((2 * torch.arange(h, dtype=img.dtype) + 1) / h - 1,
                              (2 * torch.arange(w, dtype=img.dtype) + 1) / w - 1, indexing="ij")  # (h, w) each
        u, v = u.flatten(), v.flatten()  # (h * w,) normalised coordinates, as affine_grid uses them
        u0, v0 = (m * u).sum(1) / mass, (m * v).sum(1) / mass  # (n,)
        du, dv = u - u0[:, None], v - v0[:, None]  # (n, h * w)
        a = ((m * du * dv).sum(1) / (m * dv**2).sum(1).clamp_min(1e-12)).clamp(-self.max_shear, self.max_shear)  # (n,)
        theta = torch.zeros(n, 2, 3, dtype=img.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 1], theta[:, 0, 2], theta[:, 1, 2] = a, u0, v0  # output (u, v) reads input (u + a v + u0, v + v0)
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)  # (n, h, w, 2)
        out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (n, 1, h, w)
        return gaussian_blur(out, self.blur * h / 28)


class GradientHistogramFeatures(ClusterFeatures):
    """Histograms of unsigned gradient orientation on a ``cells`` x ``cells`` grid, power-normalised (n, cells^2 bins).

    Each pixel votes its gradient magnitude |g| into the two orientation bins nearest to its angle
    theta = atan2(g_v, g_u) mod pi (linear interpolation); votes are averaged over each cell; the histogram of an
    image is L1-normalised and square-rooted (Hellinger map: Euclidean distances then compare histograms).

    Args:
        cells: cells per side (4 on 28 x 28: 7-pixel cells, about a stroke's length).
        bins: orientation bins over [0, pi) (9: 20 degrees each, Dalal & Triggs' choice).
        blur: Gaussian pre-smoothing (pixels at 28 x 28) before the finite differences.
    """

    def __init__(self, cells: int = 4, bins: int = 9, blur: float = 0.8) -> None:
        if cells < 1 or bins < 2 or blur < 0:
            raise ValueError(f"GradientHistogramFeatures: need cells >= 1, bins >= 2, blur >= 0, got {cells}, {bins}, {blur}")
        self.cells, self.bins, self.blur = cells, bins, blur

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        img = _gray(x)
        h = img.shape[-2]
        if h < self.cells:
            raise ValueError(f"GradientHistogramFeatures: {self.cells} cells per side on images of height {h}")
        img = F.pad(gaussian_blur(img, self.blur * h / 28), (1, 1, 1, 1), mode="replicate")
        gu = (img[..., 1:-1, 2:] - img[..., 1:-1, :-2]) / 2  # (n, 1, h, w) central differences
        gv = (img[..., 2:, 1:-1] - img[..., :-2, 1:-1]) / 2
        mag = torch.sqrt(gu**2 + gv**2)
        pos = torch.remainder(torch.atan2(gv, gu), math.pi) / math.pi * self.bins - 0.5  # bin centres at integers
        lo = torch.floor(pos)
        frac = pos - lo
        lo = torch.remainder(lo, self.bins).long()
        votes = torch.zeros(img.shape[0], self.bins, *mag.shape[-2:], dtype=img.dtype)  # (n, bins, h, w)
        votes.scatter_add_(1, lo, mag * (1 - frac))
        votes.scatter_add_(1, torch.remainder(lo + 1, self.bins), mag * frac)
        hist = F.adaptive_avg_pool2d(votes, self.cells).flatten(1)  # (n, bins * cells^2)
        hist = hist / hist.sum(1, keepdim=True).clamp_min(1e-12)
        return hist.sqrt()
