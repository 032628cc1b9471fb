"""Figures of flows: particles coloured by label, reference in grey (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["scatter_panels", "project_2d"]


def project_2d(points: list[np.ndarray], basis_from: np.ndarray) -> list[np.ndarray]:
    """Project (n, d) arrays onto the top two principal axes of ``basis_from`` (identity when d <= 3)."""
    d = basis_from.shape[1]
    if d <= 3:
        return points
    centre = basis_from.mean(0)
    _, _, vt = np.linalg.svd(basis_from - centre, full_matrices=False)
    return [(p - centre) @ vt[:2].T for p in points]


def scatter_panels(
    panels: list[tuple[str, np.ndarray, np.ndarray]],
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> Figure:
    """One scatter per panel (title, x (n, d), y (n,)), the reference (x', y') drawn faintly in each.

    2-D data is drawn as is, 3-D data in 3-D axes, higher dimensions on the reference's two principal axes. All
    panels share the same axis limits, so positions compare across panels.
    """
    basis = reference[0] if reference is not None else panels[0][1]
    proj = project_2d([p[1] for p in panels] + ([reference[0]] if reference is not None else []), basis)
    dim3 = proj[0].shape[1] == 3
    every = np.concatenate([p[:, : 3 if dim3 else 2] for p in proj])
    lo, hi = every.min(0), every.max(0)
    pad = 0.05 * (hi - lo).max() + 1e-9
    fig = plt.figure(figsize=(4 * len(panels), 4))
    cmap = plt.get_cmap("tab10")
    for k, (name, _, y) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d" if dim3 else None)
        # mypy fears that *coords reach s= and c= (ignored below): they are x, y (and z) only
        if reference is not None:
            r = proj[-1]
            ax.scatter(*r.T[: 3 if dim3 else 2], c=[cmap(int(c) % 10) for c in reference[1]], marker="x", s=8, alpha=0.25)  # type: ignore[misc]
        ax.scatter(*proj[k].T[: 3 if dim3 else 2], c=[cmap(int(c) % 10) for c in y], s=8, edgecolors="k", linewidths=0.2)  # type: ignore[misc]
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        if dim3:
            ax.set_zlim(lo[2] - pad, hi[2] + pad)  # type: ignore[attr-defined]
            ax.set_box_aspect(tuple(hi - lo + 2 * pad))  # type: ignore[arg-type]  # true proportions
            ax.view_init(elev=25, azim=-60)  # type: ignore[attr-defined]
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
