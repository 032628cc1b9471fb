"""Checks of a flow that fail loudly: its data before the first step, its divergence after each step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from dsflow.data.base import LabeledData
from dsflow.ot import LabelDistance

__all__ = ["DIVERGED", "check_flow_data", "check_class_sizes", "check_finite", "divergence_at"]

#: what a diverged flow's error advises
DIVERGED = (
    "Lower the step size or raise the entropic regularisation; checkpoints and trajectory snapshots written "
    "before this step are intact"
)


def check_flow_data(source: LabeledData, reference: LabeledData, distance: LabelDistance | None,
                    source_classes: bool) -> None:
    """Source and reference of one flow: the same feature shape, and (when the objective has a label
    ``distance``) classes of its ``min_class_size`` in the reference and, if ``source_classes`` (fd-fl: source
    statistics from the samples), in the source."""
    if source.feature_shape != reference.feature_shape:
        raise ValueError(
            f"FlowModule: source '{source.name}' has feature shape {source.feature_shape} but reference "
            f"'{reference.name}' has {reference.feature_shape}; resize one of them (e.g. the dataset's "
            f"`size`/`channels` options) so that both match"
        )
    if distance is not None:
        check_class_sizes(reference, distance.min_class_size)
        if source_classes:
            check_class_sizes(source, distance.min_class_size)


def check_class_sizes(data: LabeledData, min_size: int) -> None:
    """Every class present in ``data`` needs ``min_size`` samples (2 for a covariance)."""
    counts = torch.bincount(data.y, minlength=data.num_classes)
    small = torch.nonzero((counts > 0) & (counts < min_size)).flatten().tolist()
    if small:
        raise ValueError(
            f"{data.name}: classes {small} have {counts[small].tolist()} sample(s) but the label distance needs at "
            f"least {min_size} per class (a covariance is undefined for one sample): drop those classes, add "
            f"samples, or use dsflow.ot.ExactLabelDistance"
        )


def check_finite(objective: Tensor, x: Tensor, step: int) -> None:
    """Stop with the step number when the objective (scalar) or the particles x (n, d) stop being finite (one
    host sync)."""
    if bool(torch.isfinite(objective) & torch.isfinite(x).all()):
        return
    what = f"the objective became {objective.item()}" if not torch.isfinite(objective) else (
        f"{int((~torch.isfinite(x)).sum())} particle coordinates became NaN/inf"
    )
    raise FloatingPointError(f"FlowModule: flow diverged at step {step}: {what}. {DIVERGED}")


@contextmanager
def divergence_at(step: int) -> Iterator[None]:
    """Re-raise a ``FloatingPointError`` of the block (e.g. a solver's non-finite potentials) with the step number
    and what to do."""
    try:
        yield
    except FloatingPointError as err:
        raise FloatingPointError(f"FlowModule: flow diverged at step {step}: {err}. {DIVERGED}") from err
