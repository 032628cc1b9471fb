"""Label dynamics: how the label distributions alpha_y evolve along the flow (paper section 6.1, Alg. 1-3)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from dsflow.flows.particles import Particles, Reference
from dsflow.ot.label_distance import LabelDistance
from dsflow.ot.otdd import LabelCosts

__all__ = ["LabelDynamics", "FeatureDriven"]


class LabelDynamics(nn.Module, ABC):
    """Builds the OTDD's label tables each step and updates label state after it."""

    def setup(self, particles: Particles, reference: Reference) -> None:
        """Create any label state from the initial particles (called once the particles exist)."""
        del particles, reference

    @abstractmethod
    def label_costs(self, particles: Particles, reference: Reference, distance: LabelDistance) -> LabelCosts:
        """Label rows and tables for the current step."""

    def after_step(self, particles: Particles) -> None:
        """Update discrete labels after the optimizer step (jd-vl clustering); nothing by default."""
        del particles

    def scale_grads(self, particles: Particles) -> None:
        """Rescale the gradients of label parameters before the step (eq. 17's rule); nothing by default."""
        del particles

    def _reference_summary(self, reference: Reference, distance: LabelDistance) -> tuple[Any, torch.Tensor]:
        """The reference's label summary and its (Lr, Lr) table, computed once and cached."""
        cache = getattr(self, "_ref_cache", None)
        if cache is None or cache[1].device != reference.x.device:
            summary = distance.summarize(reference.x, reference.y, reference.num_classes)
            cache = (summary, distance.table(summary, summary).detach())
            self._ref_cache = cache
        return cache


class FeatureDriven(LabelDynamics):
    """fd-fl (Algorithm 1): labels fixed; class Gaussians follow the particles, not a gradient of their own.

    Each step the source class statistics are recomputed from the current features (detached) and the label
    tables refreshed; the reference's summary and its own table are computed once and cached.
    """

    @torch.no_grad()
    def label_costs(self, particles: Particles, reference: Reference, distance: LabelDistance) -> LabelCosts:
        ref_summary, rr = self._reference_summary(reference, distance)
        src = distance.summarize(particles.x.detach(), particles.y, particles.num_classes)
        ss = distance.table(src, src)
        sr = distance.table(src, ref_summary)
        return LabelCosts(particles.y, reference.y, ss, sr, rr)

