"""The distortions of the synthetic glyphs (:mod:`dsflow.data.glyphs`): per-image affine maps, elastic fields,
stroke widths, broken strokes and specks (:class:`GlyphDistortion`, drawn by :func:`draw_warps`, applied by
:func:`warp_glyphs`), and MNIST's normalisation of the result (:func:`mnist_placement`).

Prototypes live on a ``CANVAS`` x ``CANVAS`` canvas with the glyph fitted in a ``BOX`` x ``BOX`` box; distortion sizes
are given in pixels of MNIST's 20 x 20 digit box and scaled to the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dsflow.data.distorted import random_affine
from dsflow.data.pseudo.image_features import gaussian_blur

__all__ = ["CANVAS", "BOX", "GlyphDistortion", "WarpDraws", "draw_warps", "warp_glyphs", "mnist_placement"]

CANVAS, BOX = 64, 40  # prototype canvas and the box its glyph fits in (pixels)


@dataclass(frozen=True)
class GlyphDistortion:
    """Per-image random variation (uniform in the ranges; pixels are those of the 20 x 20 digit box).

    The default is the print profile of the first eight script sets; :meth:`handwriting` is the hard one.

    Attributes:
        rotation: largest rotation (degrees).
        shear: largest horizontal shear.
        scale: largest relative change of each axis' scale.
        elastic: elastic displacement spread (pixels), field smoothed over ``smooth`` pixels.
        smooth: smoothing scale of the elastic field (pixels).
        stroke: range of the threshold level after a blur of ``pen`` pixels (low: thick strokes, high: thin).
        pen: blur (pixels) of the stroke-width step.
        relative: threshold levels are fractions of each image's peak blurred ink (thin fonts keep their ink).
        local: largest displacement (pixels) of one part of the glyph: a Gaussian bump of the warp of radius
            ``local_radius`` pixels at a random place (0: none).
        local_radius: radius (pixels) of that part.
        holes: most gaps cut into the strokes per image (each present with probability 1/2, a disc of radius
            ``hole_radius`` pixels centred on an ink pixel drawn by ink mass): broken strokes.
        hole_radius: radius of a gap (pixels).
        blobs: most specks of ink added per image (each present with probability 1/2, radius ``blob_radius``
            pixels, uniform in the glyph's box).
        blob_radius: radius of a speck (pixels).
    """

    rotation: float = 15.0
    shear: float = 0.3
    scale: float = 0.15
    elastic: float = 1.0
    smooth: float = 3.0
    stroke: tuple[float, float] = (0.15, 0.5)
    pen: float = 0.8
    relative: bool = False
    local: float = 0.0
    local_radius: float = 4.0
    holes: int = 0
    hole_radius: float = 1.0
    blobs: int = 0
    blob_radius: float = 0.7

    def __post_init__(self) -> None:
        lo, hi = self.stroke
        if min(self.rotation, self.shear, self.elastic, self.smooth, self.pen, self.local, self.holes, self.blobs) < 0 \
                or min(self.local_radius, self.hole_radius, self.blob_radius) <= 0 or not 0 <= self.scale < 1 \
                or not 0.05 < lo <= hi < 1:
            raise ValueError(f"GlyphDistortion: need rotation, shear, elastic, smooth, pen, local, holes, blobs >= 0, "
                             f"radii > 0, 0 <= scale < 1 and 0.05 < stroke[0] <= stroke[1] < 1, got {self}")

    @classmethod
    def handwriting(cls) -> GlyphDistortion:
        """The hard profile (the ``-hw`` sets): NO shear (deskewing gets no built-in help), a strong smooth elastic
        field (another hand's proportions), one part of the glyph pulled further, stroke width over a wide range,
        more rotation and uneven aspect, broken strokes and stray specks."""
        return cls(rotation=15.0, shear=0.0, scale=0.2, elastic=1.5, smooth=6.0, stroke=(0.1, 0.75), pen=1.0,
                   relative=True, local=2.5, local_radius=4.0, holes=2, hole_radius=1.0, blobs=2, blob_radius=0.7)


class WarpDraws(NamedTuple):
    """The random draws of :func:`warp_glyphs`, per image (uniform draws in [-1, 1] unless said).

    Attributes:
        theta: (n, 2, 3) affine maps (rotation @ shear, rows scaled), normalised grid units.
        noise: (n, 2, 16, 16) uniform noise, smoothed into the elastic field.
        level: (n,) stroke threshold levels.
        local: (n, 4) centre (x, y) and displacement (x, y) of the local warp.
        holes: (n, H, 2) per gap: its ink quantile in [0, 1] and whether it is cut (1.0 or 0.0).
        blobs: (n, B, 3) per speck: centre (x, y) and whether it is drawn (1.0 or 0.0).
    """

    theta: Tensor
    noise: Tensor
    level: Tensor
    local: Tensor
    holes: Tensor
    blobs: Tensor

    def part(self, start: int, stop: int) -> WarpDraws:
        """The draws of images ``start:stop``."""
        return WarpDraws(*(t[start:stop] for t in self))


def draw_warps(n: int, d: GlyphDistortion, gen: torch.Generator) -> WarpDraws:
    """Random warps of ``n`` images (all drawn at once: a chunked rendering gives the same images)."""
    theta = random_affine(n, d.rotation, d.scale, d.shear, gen)  # (n, 2, 3)
    u = lambda *shape: 2 * torch.rand(*shape, generator=gen) - 1  # noqa: E731  uniform in [-1, 1]
    level = d.stroke[0] + (d.stroke[1] - d.stroke[0]) * torch.rand(n, generator=gen)
    noise = u(n, 2, CANVAS // 4, CANVAS // 4)  # the print profile's draws end here (its images are unchanged)
    local = u(n, 4)
    holes = torch.stack([torch.rand(n, d.holes, generator=gen), (torch.rand(n, d.holes, generator=gen) < 0.5).float()], -1)
    blobs = torch.cat([u(n, d.blobs, 2), (torch.rand(n, d.blobs, 1, generator=gen) < 0.5).float()], -1)
    return WarpDraws(theta, noise, level, local, holes, blobs)


def _discs(centres: Tensor, on: Tensor, radius: float, h: int, w: int) -> Tensor:
    """(n, 1, h, w) union of soft discs: centres (n, K, 2) in normalised (x, y), on (n, K), radius in grid units."""
    ys = (2 * torch.arange(h, dtype=centres.dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=centres.dtype) + 1) / w - 1
    dx = xs.view(1, 1, 1, w) - centres[..., 0, None, None]  # (n, K, 1, w)
    dy = ys.view(1, 1, h, 1) - centres[..., 1, None, None]  # (n, K, h, 1)
    disc = ((radius - (dx ** 2 + dy ** 2).sqrt()) * (h / 2) + 0.5).clamp(0, 1) * on[..., None, None]  # (n, K, h, w)
    return disc.amax(1, keepdim=True) if disc.shape[1] else torch.zeros(centres.shape[0], 1, h, w)


def warp_glyphs(x: Tensor, draws: WarpDraws, d: GlyphDistortion) -> Tensor:
    """(n, 1, 64, 64) glyphs, each with its affine map, elastic wobble and stroke width (:class:`GlyphDistortion`);
    with the handwriting profile's parts also a local warp, gaps and specks."""
    n, _, h, w = x.shape
    k = BOX / 20  # canvas pixels per pixel of the 20 x 20 digit box
    px = k * 2 / h  # one digit-box pixel in normalised grid units
    grid = F.affine_grid(draws.theta, [n, 1, h, w], align_corners=False)  # (n, h, w, 2)
    coarse = gaussian_blur(draws.noise.reshape(2 * n, 1, h // 4, w // 4), d.smooth * k / 4)  # smooth, 4x coarser
    field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).reshape(n, 2, h, w)
    field = field - field.mean((2, 3), keepdim=True)  # a wobble, not a shift
    field = field / field.flatten(1).std(1).clamp_min(1e-8).view(n, 1, 1, 1)  # unit spread per image
    grid = grid + d.elastic * px * field.permute(0, 2, 3, 1)  # (n, h, w, 2)
    if d.local > 0:  # one part of the glyph pulled: a Gaussian bump of displacement at a random place
        centre, shift = 0.5 * draws.local[:, None, None, :2], d.local * px * draws.local[:, None, None, 2:]
        base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, h, w], align_corners=False)  # (n, h, w, 2)
        bump = torch.exp(-((base - centre) ** 2).sum(-1, keepdim=True) / (2 * (d.local_radius * px) ** 2))
        grid = grid + shift * bump
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    soft = gaussian_blur(out, d.pen * k)  # (n, 1, h, w)
    level = draws.level.view(n, 1, 1, 1) * (soft.flatten(1).amax(1).view(n, 1, 1, 1) if d.relative else 1.0)
    out = ((soft - level) / 0.1 + 0.5).clamp(0.0, 1.0)  # (n, 1, h, w): 0 off the ink
    if d.holes > 0:  # gaps centred on ink pixels drawn by ink mass (quantiles of the cumulative ink)
        cdf = out.flatten(1).cumsum(1)
        cdf = cdf / cdf[:, -1:].clamp_min(1e-8)
        idx = torch.searchsorted(cdf.contiguous(), draws.holes[..., 0].contiguous()).clamp_max(h * w - 1)  # (n, H)
        centres = torch.stack([(2 * (idx % w) + 1) / w - 1, (2 * (idx // w) + 1) / h - 1], -1).to(out.dtype)
        out = out * (1 - _discs(centres, draws.holes[..., 1], d.hole_radius * px, h, w))
    if d.blobs > 0:  # specks of ink within the glyph's box
        out = torch.maximum(out, _discs(draws.blobs[..., :2] * (BOX / h), draws.blobs[..., 2], d.blob_radius * px, h, w))
    return out


def mnist_placement(x: Tensor, size: int = 28, box: int = 20, supersample: int = 4) -> Tensor:
    """(n, 1, size, size): each image's ink box scaled to fit ``box`` x ``box`` (aspect kept), its centre of mass
    at the image centre (MNIST's normalisation), area-averaged from a ``supersample``-times finer grid; max 1."""
    n, _, h, w = x.shape
    ink = x[:, 0] * (x[:, 0] > 0.05)  # (n, h, w)
    rows, cols = ink.amax(2) > 0, ink.amax(1) > 0  # (n, h), (n, w)
    if not bool(rows.any(1).all()):
        raise ValueError("mnist_placement: an image has no ink")
    idx_h, idx_w = torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype)
    extent = lambda m, idx: (torch.where(m, idx, -1.0).amax(1) - torch.where(m, idx, 1e9).amin(1) + 1)  # noqa: E731
    scale = torch.maximum(extent(rows, idx_h), extent(cols, idx_w)) / box  # source pixels per output pixel, (n,)
    mass = ink.sum((1, 2))
    cy, cx = (ink.sum(2) * idx_h).sum(1) / mass, (ink.sum(1) * idx_w).sum(1) / mass  # centre of mass, (n,)
    fine = size * supersample
    centre = (size - 1) / 2  # pixel-centre coordinates: the middle of the image
    out_px = (torch.arange(fine, dtype=x.dtype) + 0.5) / supersample - 0.5  # output pixel coordinate of each sample
    src_x = cx[:, None] + scale[:, None] * (out_px - centre)  # (n, fine) source pixel coordinates
    src_y = cy[:, None] + scale[:, None] * (out_px - centre)
    gx, gy = (2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1  # normalised, align_corners=False
    grid = torch.stack([gx[:, None, :].expand(n, fine, fine), gy[:, :, None].expand(n, fine, fine)], -1)
    out = F.avg_pool2d(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), supersample)
    return out / out.flatten(1).amax(1).clamp_min(1e-8).view(n, 1, 1, 1)  # (n, 1, size, size)
