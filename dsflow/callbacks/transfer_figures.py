"""Figures of the flow map and the transfer experiments (paper Fig. 3e, 4, 6, 9, 11), saved as PNG files.

Each function takes plain arrays or lists of result records, draws one matplotlib figure and writes it
atomically; none of them trains or reads data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor
from torchvision.utils import make_grid

from dsflow.callbacks.figures import plt
from dsflow.io import atomic_write

__all__ = ["flow_map_figure", "transfer_figure", "adaptation_figure", "repurpose_figure"]


def _save(fig, path: str | Path) -> Path:
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def flow_map_figure(x0: Tensor, xt: Tensor, hx0: Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Fig. 9: three image grids side by side, x0, xT and h(x0), each (n, c, h, w) of the same particles."""
    if not x0.shape == xt.shape == hx0.shape or x0.ndim != 4:
        raise ValueError(f"flow_map_figure: need three (n, c, h, w) tensors of one shape, got {tuple(x0.shape)}, {tuple(xt.shape)}, {tuple(hx0.shape)}")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, imgs, title in zip(axes, (x0, xt, hx0), ("initial x0", "flowed xT", "learned map h(x0)")):
        grid = make_grid(imgs.detach().float().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)  # (3, H, W)
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def transfer_figure(rows: list[dict], path: str | Path, title: str = "", hatched: tuple[str, ...] = ()) -> Path:
    """Fig. 3e / 10: accuracy (mean and std over seeds) of each setting, one group of bars per k.

    Args:
        rows: records with keys ``k``, ``setting``, ``mean``, ``std`` (accuracy in %).
        hatched: settings drawn hatched (e.g. the step-matched controls, which are not the paper's).
    """
    if not rows:
        raise ValueError("transfer_figure: no result rows")
    ks = sorted({r["k"] for r in rows})
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    width = 0.8 / len(settings)
    fig, ax = plt.subplots(figsize=(2.4 + 1.8 * len(ks) * len(settings) / 4, 4.2))
    for j, s in enumerate(settings):
        means = [next((r["mean"] for r in rows if r["k"] == k and r["setting"] == s), np.nan) for k in ks]
        stds = [next((r["std"] for r in rows if r["k"] == k and r["setting"] == s), np.nan) for k in ks]
        ax.bar(np.arange(len(ks)) + (j - (len(settings) - 1) / 2) * width, means, width, yerr=stds, label=s, capsize=2,
               hatch="//" if s in hatched else None, edgecolor="white" if s in hatched else None)
    ax.set_xticks(range(len(ks)), [f"{k}-shot" for k in ks])
    ax.set_ylabel("target test accuracy (%)")
    lo = np.nanmin([r["mean"] - r["std"] for r in rows])
    ax.set_ylim(max(0.0, lo - 5), 100)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def adaptation_figure(points: list[dict], path: str | Path) -> Path:
    """Fig. 4: data adaptation (flow trajectories) against model adaptation (fine-tuning), one point per task.

    Args:
        points: records with keys ``label`` (e.g. "U->M 100"), ``finetune`` and ``flow`` (accuracy in %), and
            optionally ``control`` (the step-matched control's accuracy, drawn as a cross above the same x).
    """
    if not points:
        raise ValueError("adaptation_figure: no points")
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    xs, ys = [p["finetune"] for p in points], [p["flow"] for p in points]
    ax.scatter(xs, ys, label="+ z1..T (data adaptation)")
    controls = [p for p in points if "control" in p]
    if controls:
        ax.scatter([p["finetune"] for p in controls], [p["control"] for p in controls], marker="x", color="k",
                   label="target repeated, steps of + z1..T")
        ys = ys + [p["control"] for p in controls]
    for p in points:
        ax.annotate(p["label"], (p["finetune"], p["flow"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo, hi = min(xs + ys) - 2, min(100.0, max(xs + ys) + 2)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("model adaptation: fine-tuning (%)")
    ax.set_ylabel("data adaptation (%)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def repurpose_figure(curves: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """Fig. 6 / 11: objective and oracle accuracy against step, and accuracy against objective; one line per run.

    Args:
        curves: run label -> records with keys ``step``, ``objective`` (NaN before the first step), ``accuracy`` (%).
    """
    if not curves or not all(curves.values()):
        raise ValueError("repurpose_figure: no curves, or an empty history")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for label, history in curves.items():
        step = np.array([h["step"] for h in history], dtype=float)
        obj = np.array([h["objective"] for h in history], dtype=float)
        acc = np.array([h["accuracy"] for h in history], dtype=float)
        ok = np.isfinite(obj)
        axes[0].plot(step[ok], obj[ok], ".-", label=label)
        axes[1].plot(step, acc, ".-", label=label)
        axes[2].plot(obj[ok], acc[ok], ".-", label=label)
    axes[0].set(xlabel="flow step", ylabel="objective", title="objective")
    axes[1].set(xlabel="flow step", ylabel="oracle accuracy (%)", title="accuracy")
    axes[2].set(xlabel="objective", ylabel="oracle accuracy (%)", title="accuracy vs objective")
    axes[2].invert_xaxis()
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
