"""Features learned from the target's own images, without labels: a small conv encoder trained by SimCLR.

:class:`SelfSupervisedFeatures` trains a three-block conv encoder from scratch on the images it is asked to embed,
with the contrastive NT-Xent loss (Chen et al. 2020, "A simple framework for contrastive learning of visual
representations"): two random views of each image of a batch are pulled together and pushed from the other 2B - 2
views. The views are handwriting-like distortions (:func:`augment`): a random affine map (rotation, scale, shear,
shift, the "random resized crop" of small gray glyphs), a smooth elastic wobble, thinner or thicker strokes and
pixel noise. What the encoder learns is what is left unchanged by them: which strokes, where, in what order of
shape, which is what tells one character from another in any script. The embedding of an image is the encoder's
output on the image itself (no augmentation), L2-normalised (the NT-Xent geometry).

Deterministic given ``seed`` and torch's thread count; a fixed number of steps (not a wall-clock budget), so the
same images give the same features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsflow.data.pseudo.features import ClusterFeatures
from dsflow.data.pseudo.image_features import affine_theta

__all__ = ["SelfSupervisedFeatures", "ConvEncoder", "Augment", "augment", "nt_xent"]


class ConvEncoder(nn.Module):
    """(B, 1, h, w) -> (B, 4 width): three conv(3x3)-BN-ReLU blocks (widths w, 2w, 4w), the first two max-pooled,
    then global average pooling."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i < 2 else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.dim = 4 * width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Augment:
    """Strengths of the random views (lengths in pixels at 28 x 28, scaled by h / 28).

    Attributes:
        rotation: largest rotation (degrees). scale: largest relative change of size. shear: largest shear.
        shift: largest translation (pixels). elastic: elastic wobble amplitude (pixels).
        stroke: probability of a thicker stroke (3 x 3 dilation), and of a thinner one (erosion).
        noise: standard deviation of added pixel noise.
    """

    def __init__(self, rotation: float = 15.0, scale: float = 0.2, shear: float = 0.3, shift: float = 3.0,
                 elastic: float = 1.5, stroke: float = 0.25, noise: float = 0.05) -> None:
        if min(rotation, scale, shear, shift, elastic, stroke, noise) < 0 or scale >= 1 or stroke > 0.5:
            raise ValueError(f"Augment: need strengths >= 0, scale < 1 and stroke <= 0.5, got rotation={rotation}, "
                             f"scale={scale}, shear={shear}, shift={shift}, elastic={elastic}, stroke={stroke}, noise={noise}")
        self.rotation, self.scale, self.shear, self.shift = rotation, scale, shear, shift
        self.elastic, self.stroke, self.noise = elastic, stroke, noise


def augment(x: Tensor, aug: Augment, gen: torch.Generator) -> Tensor:
    """(B, 1, h, w) random views of the images x (B, 1, h, w) in [0, 1], drawn from ``gen``."""
    b, _, h, w = x.shape
    u = lambda *shape: 2 * torch.rand(*shape, generator=gen) - 1  # noqa: E731  uniform in [-1, 1]
    angle, s, sh = u(b) * math.radians(aug.rotation), 1 + aug.scale * u(b), aug.shear * u(b)
    theta = affine_theta(angle, s, s, sh)  # (B, 2, 3): output (u, v) reads input theta @ (u, v, 1)
    theta[:, :, 2] = u(b, 2) * (2 * aug.shift / 28)  # normalised units: 2 per image width
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, h, w, 2)
    if aug.elastic > 0:  # a smooth random field: coarse 4 x 4 noise, upsampled
        field = F.interpolate(u(b, 2, 4, 4), size=(h, w), mode="bicubic", align_corners=False)  # (B, 2, h, w)
        grid = grid + (aug.elastic * 2 / 28) * field.permute(0, 2, 3, 1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, 1, h, w)
    if aug.stroke > 0:
        r = torch.rand(b, generator=gen).view(b, 1, 1, 1)
        thick, thin = F.max_pool2d(out, 3, 1, 1), -F.max_pool2d(-out, 3, 1, 1)
        out = torch.where(r < aug.stroke, thick, torch.where(r > 1 - aug.stroke, thin, out))
    if aug.noise > 0:
        out = out + aug.noise * torch.randn(out.shape, generator=gen)
    return out.clamp(0.0, 1.0)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's loss of two views z1, z2 (B, d) of B images: cross-entropy of each view's partner among 2B - 1."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, d)
    b = z1.shape[0]
    sim = z @ z.T / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(sim, partner)


class SelfSupervisedFeatures(ClusterFeatures):
    """(n, 4 width) L2-normalised embeddings of a conv encoder trained by SimCLR on the images x themselves.

    Args:
        steps: optimiser steps (batches of two views each); the training time grows linearly with it.
        batch_size: images per step (at most n).
        width: channels of the encoder's first block (then 2x, 4x: the embedding has 4 width dimensions).
        projection: output dimension of the projection head (the loss is computed there, as in SimCLR).
        temperature: NT-Xent temperature.
        lr: Adam's learning rate (cosine decay to zero over the steps).
        augment: the views' strengths (default: :class:`Augment`'s).
        seed: seeds the initial weights, the batches and the views.
    """

    def __init__(self, steps: int = 200, batch_size: int = 256, width: int = 16, projection: int = 64,
                 temperature: float = 0.2, lr: float = 3e-3, augment: Augment | None = None, seed: int = 0) -> None:
        if steps < 1 or batch_size < 2 or width < 1 or projection < 1 or temperature <= 0 or lr <= 0:
            raise ValueError(f"SelfSupervisedFeatures: need steps >= 1, batch_size >= 2, width >= 1, projection >= 1, "
                             f"temperature > 0, lr > 0, got {steps}, {batch_size}, {width}, {projection}, {temperature}, {lr}")
        self.steps, self.batch_size, self.width, self.projection = steps, batch_size, width, projection
        self.temperature, self.lr, self.seed = temperature, lr, seed
        self.augment = augment if augment is not None else Augment()

    def train_encoder(self, img: Tensor) -> ConvEncoder:
        """The encoder trained on the gray images ``img`` (n, 1, h, w), in eval mode."""
        n = img.shape[0]
        if n < 2:
            raise ValueError(f"SelfSupervisedFeatures: need at least 2 images, got {n}")
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            encoder = ConvEncoder(self.width)
            head = nn.Sequential(nn.Linear(encoder.dim, encoder.dim), nn.ReLU(), nn.Linear(encoder.dim, self.projection))
        params = [*encoder.parameters(), *head.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)
        b = min(self.batch_size, n)
        encoder.train()
        for _ in range(self.steps):
            batch = img[torch.randperm(n, generator=gen)[:b]]  # (b, 1, h, w)
            v1, v2 = augment(batch, self.augment, gen), augment(batch, self.augment, gen)
            loss = nt_xent(head(encoder(v1)), head(encoder(v2)), self.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return encoder.eval()

    def __call__(self, x: Tensor, num_clusters: int | None = None) -> Tensor:
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(f"SelfSupervisedFeatures: need (n, c, h, w) or (n, h, w) images, got shape {tuple(x.shape)}")
        img = x.float().mean(1, keepdim=True)  # (n, 1, h, w) gray
        encoder = self.train_encoder(img)
        with torch.no_grad():
            z = torch.cat([encoder(b) for b in img.split(1000)])  # (n, 4 width)
        return F.normalize(z, dim=1).double()
