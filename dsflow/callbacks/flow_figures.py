"""Figures of image flows scored by an oracle (paper Fig. 3, 5, 6), drawn from plain arrays and saved as PNG files.

* :func:`image_flow_figure` (Fig. 5): the same particles, a few per class, at several steps of the flow; one
  panel per step, one row per class, labelled with the step, the oracle accuracy there and the class.
* :func:`score_curves_figure` (Fig. 6): oracle accuracy and flow objective against the step.
* :func:`trajectory_figure` (Fig. 3): the particles' paths between the two datasets in a 2-D embedding (the
  principal plane of the source and reference together), coloured by label, with the reference drawn faintly.

None of them trains, reads data or logs; the :class:`~dsflow.callbacks.OracleScorer` calls them at the end of a flow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from dsflow.callbacks.figures import plt, project_2d
from dsflow.callbacks.transfer_figures import _save

__all__ = ["image_flow_figure", "score_curves_figure", "trajectory_figure"]


def image_flow_figure(frames: list[tuple[int, Tensor]], labels: Tensor, path: str | Path,
                      accuracy: dict[int, float] | None = None, class_names: list[str] | None = None,
                      title: str = "", panel_titles: list[str] | None = None) -> Path:
    """Fig. 5: one panel per step of the same particles, images of one class per row.

    Args:
        frames: (step, x) pairs, x (k, c, h, w) in [0, 1], the same k particles in every frame.
        labels: (k,) their labels; row r shows the particles of the r-th class present, in their order.
        accuracy: oracle accuracy (%) per step, shown in the panel titles.
        class_names: row labels (default: the label values).
        panel_titles: one title per frame instead of "step t" (e.g. samples and their images under a map).
    """
    if panel_titles is not None and len(panel_titles) != len(frames):
        raise ValueError(f"image_flow_figure: {len(panel_titles)} panel titles for {len(frames)} frames")
    if not frames or any(x.ndim != 4 or x.shape != frames[0][1].shape for _, x in frames):
        raise ValueError("image_flow_figure: need one or more frames of (k, c, h, w) images of one shape")
    if labels.shape != (frames[0][1].shape[0],):
        raise ValueError(f"image_flow_figure: {tuple(labels.shape)} labels for {frames[0][1].shape[0]} images")
    y = labels.cpu().numpy()
    classes, counts = np.unique(y, return_counts=True)
    per_row = int(counts.max())
    # slot of each image in a (classes x per_row) grid; rows of smaller classes end in blank (white) cells
    slots = np.concatenate([r * per_row + np.arange(n) for r, n in enumerate(counts)])
    order = np.concatenate([np.flatnonzero(y == c) for c in classes])
    h = frames[0][1].shape[2]
    fig, axes = plt.subplots(1, len(frames), figsize=(1.2 + 0.45 * per_row * len(frames), 0.5 + 0.45 * len(classes)),
                             squeeze=False)
    for i, (ax, (step, x)) in enumerate(zip(axes[0], frames)):
        cells = x.new_ones((len(classes) * per_row, *x.shape[1:])).float().cpu()  # (C per_row, c, h, w)
        cells[torch.as_tensor(slots)] = x.detach().float().cpu()[torch.as_tensor(order)].clamp(0, 1)
        grid = make_grid(cells, nrow=per_row, padding=1, pad_value=1.0)  # (3, H, W)
        ax.imshow(grid.permute(1, 2, 0).numpy())
        acc = "" if accuracy is None or step not in accuracy else f"\n{accuracy[step]:.1f} %"
        ax.set_title(panel_titles[i] if panel_titles is not None else f"step {step}{acc}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([1 + (h + 1) * (r + 0.5) for r in range(len(classes))])
        ax.set_yticklabels([class_names[int(c)] if class_names is not None else str(c) for c in classes], fontsize=7)
        ax.tick_params(length=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def score_curves_figure(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Fig. 6: oracle accuracy (left axis) and objective (right axis, log scale) against the flow step.

    Args:
        history: records with ``step``, ``accuracy`` (%) and ``objective`` (NaN before the first step).
    """
    if not history:
        raise ValueError("score_curves_figure: empty history")
    steps = np.array([h["step"] for h in history], dtype=float)
    acc = np.array([h["accuracy"] for h in history], dtype=float)
    obj = np.array([h["objective"] for h in history], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(steps, acc, "o-", color="tab:blue", label="oracle accuracy")
    ax.set_xlabel("flow step")
    ax.set_ylabel("oracle accuracy (%)", color="tab:blue")
    ax.set_ylim(0, 100)
    ok = np.isfinite(obj) & (obj > 0)
    if ok.any():
        ax2 = ax.twinx()
        ax2.plot(steps[ok], obj[ok], "s--", color="tab:red", label="objective")
        ax2.set_yscale("log")
        ax2.set_ylabel("objective", color="tab:red")
    ax.set_title(title or "accuracy and objective along the flow", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def trajectory_figure(frames: list[tuple[int, np.ndarray]], labels: np.ndarray, reference: tuple[np.ndarray, np.ndarray],
                      path: str | Path, title: str = "") -> Path:
    """Fig. 3: the particles' paths in the principal plane of source and reference together.

    Args:
        frames: (step, x) pairs, x (k, d): the same k particles at increasing steps (first = the source).
        labels: (k,) their labels (colours).
        reference: (x_ref (m, d), y_ref (m,)), drawn faintly as crosses.
    """
    if len(frames) < 2 or any(x.shape != frames[0][1].shape or x.ndim != 2 for _, x in frames):
        raise ValueError("trajectory_figure: need at least two frames of (k, d) particles of one shape")
    basis = np.concatenate([frames[0][1], reference[0]])
    proj = project_2d([x for _, x in frames] + [reference[0]], basis)
    paths, ref = np.stack(proj[:-1]), proj[-1]  # (T, k, 2), (m, 2)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.scatter(ref[:, 0], ref[:, 1], c=[cmap(int(c) % 10) for c in reference[1]], marker="x", s=10, alpha=0.25)
    colours = [cmap(int(c) % 10) for c in labels]
    for i in range(paths.shape[1]):
        ax.plot(paths[:, i, 0], paths[:, i, 1], "-", color=colours[i], lw=0.5, alpha=0.5)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], c=colours, s=10, marker="o", edgecolors="k", linewidths=0.2,
               label=f"step {frames[0][0]}")
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], c=colours, s=18, marker="^", edgecolors="k", linewidths=0.2,
               label=f"step {frames[-1][0]}")
    ax.legend(fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "particle paths (principal plane; reference: crosses)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
