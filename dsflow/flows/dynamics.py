"""Label dynamics: how the label distributions alpha_y evolve along the flow (paper section 6.1, Alg. 1-3)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dsflow.flows.particles import Particles, Reference
from dsflow.ot.costs import LabelCosts
from dsflow.ot.labels.class_layout import LayoutCache
from dsflow.ot.labels.label_distance import LabelDistance
from dsflow.ot.labels.products import SharedProducts

__all__ = ["TableInputs", "LabelDynamics", "FeatureDriven"]


@dataclass(frozen=True)
class TableInputs:
    """What one step's label tables are built with, lent by the OTDD term that uses them.

    Attributes:
        distance: the label distance.
        layouts: the term's cache of class layouts (computed once per label vector; None: computed afresh).
        products: this step's inner products, shared with the term's solver (None: the solver shares none).
    """

    distance: LabelDistance
    layouts: LayoutCache | None = None
    products: SharedProducts | None = None


class LabelDynamics(nn.Module, ABC):
    """Builds the OTDD's label tables each step and updates label state after it."""

    #: whether the source's class statistics are recomputed from the particles every step (fd-fl): then every
    #: source class needs the label distance's minimum size; joint dynamics hold their own label parameters
    source_stats_from_samples: bool = True
    #: whether after_step may change the discrete labels (multi-process flows then broadcast rank 0's)
    variable_labels: bool = False

    def setup(self, particles: Particles, reference: Reference) -> None:
        """Create any label state from the initial particles (called once the particles exist)."""
        del particles, reference

    @abstractmethod
    def label_costs(self, particles: Particles, reference: Reference, inputs: TableInputs) -> LabelCosts:
        """Label rows and tables for the current step (carrying ``inputs.products`` to the solver)."""

    def after_step(self, particles: Particles) -> None:
        """Update discrete labels after the optimizer step (jd-vl clustering); nothing by default."""
        del particles

    def scale_grads(self, particles: Particles) -> None:
        """Rescale the gradients of label parameters before the step (eq. 17's rule); nothing by default."""
        del particles

    def _reference_summary(self, reference: Reference, inputs: TableInputs) -> tuple[Any, torch.Tensor]:
        """The reference's label summary and its (Lr, Lr) table, computed once and cached."""
        cache = getattr(self, "_ref_cache", None)
        if cache is None or cache[1].device != reference.x.device:
            distance = inputs.distance
            summary = distance.summarize(reference.x, reference.y, reference.num_classes, inputs.layouts)
            cache = (summary, distance.self_table(summary, inputs.products).detach())
            self._ref_cache = cache
        return cache


class FeatureDriven(LabelDynamics):
    """fd-fl (Algorithm 1): labels fixed; class Gaussians follow the particles, not a gradient of their own.

    Each step the source class statistics are recomputed from the current features (detached) and the label
    tables refreshed; the reference's summary and its own table are computed once and cached.
    """

    @torch.no_grad()
    def label_costs(self, particles: Particles, reference: Reference, inputs: TableInputs) -> LabelCosts:
        ref_summary, rr = self._reference_summary(reference, inputs)
        distance, products = inputs.distance, inputs.products
        if particles.x is None:
            raise RuntimeError("label_costs: the particles are not initialized (init_data() first)")
        src = distance.summarize(particles.x.detach(), particles.y, particles.num_classes, inputs.layouts)
        ss = distance.self_table(src, products)
        sr = distance.table(src, ref_summary, products)
        return LabelCosts(particles.y, reference.y, ss, sr, rr, products)

