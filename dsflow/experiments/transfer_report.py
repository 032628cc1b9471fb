"""The transfer runner's report: tables (one per pair, a line per setting, a column per k), the landing table and
the figures (Fig. 3e / 10 bars, Fig. 4), from the runs of :mod:`dsflow.experiments.transfer` or from finished
sweeps' ``results.json`` (``--combine``).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Iterable

from dsflow.experiments import common
from dsflow.experiments.transfer_settings import Setting, SummaryRow, TaskRecord

__all__ = ["summarise", "pivot_table", "landing_rows", "figures", "report", "combine"]


def summarise(results: list[TaskRecord], settings: Iterable[Setting]) -> list[SummaryRow]:
    """One row per (pair, k, setting): mean and std (over seeds) of the accuracy."""
    rows, asked = [], set(settings)
    for pair in dict.fromkeys(r.pair for r in results):
        for k in sorted({r.k for r in results if r.pair == pair}):
            runs = [r for r in results if r.pair == pair and r.k == k]
            for setting in (s for s in Setting if s in asked):
                accs = [r.acc[setting] for r in runs]
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                rows.append(SummaryRow(pair, k, setting, statistics.fmean(accs), std, len(accs)))
    return rows


def pivot_table(rows: list[SummaryRow]) -> str:
    """One pair's rows as a Markdown table: a line per setting (with its comparison), a column per k."""
    ks = sorted({r.k for r in rows})
    cell = {(r.setting, r.k): f"{r.mean:.2f} ± {r.std:.2f}" for r in rows}
    body = [[s.label, s.comparison, *[cell.get((s, k), "-") for k in ks]] for s in dict.fromkeys(r.setting for r in rows)]
    return common.markdown_table(["setting", "comparison", *[f"{k}-shot" for k in ks]], body)


def landing_rows(results: list[TaskRecord]) -> list[list]:
    """Per pair and k, means over seeds of where z0 and zT sit relative to the k-shot target."""
    rows = []
    for pk in dict.fromkeys((r.pair, r.k) for r in results if r.landing is not None):
        runs = [r for r in results if (r.pair, r.k) == pk and r.landing is not None]
        zt = lambda key, runs=runs: statistics.fmean(r.landing[key] for r in runs)  # noqa: E731
        z0 = lambda key, runs=runs: statistics.fmean(r.landing_z0[key] for r in runs)  # noqa: E731
        off = zt("off_class")  # NaN where particles take the label of where they land
        rows.append([*pk, f"{z0('nearest'):.2f} -> {zt('nearest'):.2f}", f"{zt('spacing'):.2f}", f"{zt('covered'):.2f}",
                     "- (labels from landing)" if math.isnan(off) else f"{z0('off_class'):.3f} -> {off:.3f}"])
    return rows


def figures(rows: list[SummaryRow], out: Path) -> None:
    """``transfer_<pair>.png`` (Fig. 3e / 10) per pair, and ``adaptation.png`` (Fig. 4) where fine-tuning and
    + z1..T both ran."""
    from dsflow.callbacks.transfer_figures import adaptation_figure, transfer_figure

    for pair in dict.fromkeys(r.pair for r in rows):
        transfer_figure([r.to_json() for r in rows if r.pair == pair], out / f"transfer_{pair.replace('->', '_')}.png",
                        title=f"{pair}: target test accuracy, mean and std over seeds (hatched: step-matched controls)",
                        hatched=tuple(s.label for s in Setting if s.control))
    mean = {(r.pair, r.k, r.setting): r.mean for r in rows}
    points = []
    for pair, k in dict.fromkeys((r.pair, r.k) for r in rows):
        if (pair, k, Setting.FINETUNE) in mean and (pair, k, Setting.TRAJECTORY) in mean:
            point = {"label": f"{pair} {k}", "finetune": mean[pair, k, Setting.FINETUNE],
                     "flow": mean[pair, k, Setting.TRAJECTORY]}
            if (pair, k, Setting.REPEATED_T) in mean:
                point["control"] = mean[pair, k, Setting.REPEATED_T]
            points.append(point)
    if points:
        adaptation_figure(points, out / "adaptation.png")


def report(rows: list[SummaryRow], results: list[TaskRecord]) -> None:
    """Print the accuracy table of each pair, the landing table and the flow maps' errors."""
    for pair in dict.fromkeys(r.pair for r in rows):
        mine = [r for r in rows if r.pair == pair]
        seeds = "/".join(str(n) for n in sorted({r.seeds for r in mine}))
        print(f"\n{pair}: target test accuracy (%), mean ± std over {seeds} seeds\n{pivot_table(mine)}")
    landing = landing_rows(results)
    if landing:
        print(common.markdown_table(["pair", "k", "distance to nearest target: z0 -> zT", "target spacing",
                                     "target covered by zT", "off-class: z0 -> zT"], landing))
    for pair in dict.fromkeys(r.pair for r in results):
        mse = [(r.map_mse, r.map_identity_mse) for r in results if r.pair == pair and r.map_mse is not None
               and r.map_identity_mse is not None]
        if mse:
            print(f"{pair} flow map, held-out MSE of xT per pixel: h(x0) {statistics.fmean(m for m, _ in mse):.5f}, "
                  f"x0 itself {statistics.fmean(i for _, i in mse):.5f} (mean over {len(mse)} flows)")


def combine(folders: list[str], out: Path) -> list[SummaryRow]:
    """Tables and figures of finished sweeps together (their ``results.json``), written to ``out``."""
    rows: list[dict] = []
    results: list[dict] = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"--combine: no results.json in {folder} (run the sweep there first)")
        done = json.loads(path.read_text())
        rows, results = rows + done["rows"], results + done["runs"]
    summary, records = [SummaryRow.from_json(r) for r in rows], [TaskRecord.from_json(r) for r in results]
    figures(summary, out)
    common.write_results(out, {"combined": folders, "runs": results, "rows": rows})
    report(summary, records)
    return summary
