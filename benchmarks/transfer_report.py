"""The transfer runner's settings and what each is compared as, and its report: tables (one per pair, a line per
setting, a column per k), the landing table and the figures (Fig. 3e / 10 bars, Fig. 4), from the runs of
``benchmarks/transfer.py`` or from finished sweeps' ``results.json`` (``--combine``).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import common
from dsflow.callbacks.transfer_figures import adaptation_figure, transfer_figure

REPEATED_T = "target repeated (z1..T steps)"
#: setting -> what it is compared as (the table's "comparison" column)
COMPARISON = {
    "target only": "baseline",
    "+ z0": "equal epochs (paper)",
    "+ zT": "equal epochs (paper)",
    "+ z1..T": "equal epochs (paper)",
    "+ h(z0)": "equal epochs (paper)",
    "fine-tune": "model adaptation, same labeled data (paper Fig. 4)",
    "target repeated": "control: the steps of + zT",
    REPEATED_T: "control: the steps of + z1..T",
}
SETTINGS = tuple(COMPARISON)


def summarise(results: list[dict], settings: list[str]) -> list[dict]:
    """One row per (pair, k, setting): mean and std (over seeds) of the accuracy."""
    rows = []
    for pair in dict.fromkeys(r["pair"] for r in results):
        for k in sorted({r["k"] for r in results if r["pair"] == pair}):
            runs = [r for r in results if r["pair"] == pair and r["k"] == k]
            for setting in (s for s in SETTINGS if s in settings):
                accs = [r["acc"][setting] for r in runs]
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                rows.append({"pair": pair, "k": k, "setting": setting, "comparison": COMPARISON[setting],
                             "mean": statistics.fmean(accs), "std": std, "seeds": len(accs)})
    return rows


def pivot_table(rows: list[dict]) -> str:
    """One pair's rows as a Markdown table: a line per setting (with its comparison), a column per k."""
    ks = sorted({r["k"] for r in rows})
    cell = {(r["setting"], r["k"]): f"{r['mean']:.2f} ± {r['std']:.2f}" for r in rows}
    body = [[s, COMPARISON[s], *[cell.get((s, k), "-") for k in ks]] for s in dict.fromkeys(r["setting"] for r in rows)]
    return common.markdown_table(["setting", "comparison", *[f"{k}-shot" for k in ks]], body)


def landing_rows(results: list[dict]) -> list[list]:
    """Per pair and k, means over seeds of where z0 and zT sit relative to the k-shot target."""
    rows = []
    for pk in dict.fromkeys((r["pair"], r["k"]) for r in results if "landing" in r):
        runs = [r for r in results if (r["pair"], r["k"]) == pk and "landing" in r]
        mean = lambda which, key: statistics.fmean(r[which][key] for r in runs)  # noqa: E731
        off = mean("landing", "off_class")  # NaN where particles take the label of where they land
        rows.append([*pk, f"{mean('landing_z0', 'nearest'):.2f} -> {mean('landing', 'nearest'):.2f}",
                     f"{mean('landing', 'spacing'):.2f}", f"{mean('landing', 'covered'):.2f}",
                     "- (labels from landing)" if math.isnan(off) else f"{mean('landing_z0', 'off_class'):.3f} -> {off:.3f}"])
    return rows


def figures(rows: list[dict], out: Path) -> None:
    for pair in dict.fromkeys(r["pair"] for r in rows):
        transfer_figure([r for r in rows if r["pair"] == pair], out / f"transfer_{pair.replace('->', '_')}.png",
                        title=f"{pair}: target test accuracy, mean and std over seeds (hatched: step-matched controls)",
                        hatched=tuple(s for s, c in COMPARISON.items() if c.startswith("control")))
    mean = {(r["pair"], r["k"], r["setting"]): r["mean"] for r in rows}
    points = []
    for pair, k in dict.fromkeys((r["pair"], r["k"]) for r in rows):
        if (pair, k, "fine-tune") in mean and (pair, k, "+ z1..T") in mean:
            point = {"label": f"{pair} {k}", "finetune": mean[pair, k, "fine-tune"], "flow": mean[pair, k, "+ z1..T"]}
            if (pair, k, REPEATED_T) in mean:
                point["control"] = mean[pair, k, REPEATED_T]
            points.append(point)
    if points:
        adaptation_figure(points, out / "adaptation.png")


def report(rows: list[dict], results: list[dict]) -> None:
    """Print the accuracy table of each pair, the landing table and the flow maps' errors."""
    for pair in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == pair]
        seeds = "/".join(str(n) for n in sorted({r["seeds"] for r in mine}))
        print(f"\n{pair}: target test accuracy (%), mean ± std over {seeds} seeds\n{pivot_table(mine)}")
    landing = landing_rows(results)
    if landing:
        print(common.markdown_table(["pair", "k", "distance to nearest target: z0 -> zT", "target spacing",
                                     "target covered by zT", "off-class: z0 -> zT"], landing))
    for pair in dict.fromkeys(r["pair"] for r in results):
        mse = [(r["map_mse"], r["map_identity_mse"]) for r in results if r["pair"] == pair and "map_mse" in r]
        if mse:
            print(f"{pair} flow map, held-out MSE of xT per pixel: h(x0) {statistics.fmean(m for m, _ in mse):.5f}, "
                  f"x0 itself {statistics.fmean(i for _, i in mse):.5f} (mean over {len(mse)} flows)")


def combine(folders: list[str], out: Path) -> list[dict]:
    """Tables and figures of finished sweeps together (their ``results.json``), written to ``out``."""
    rows, results = [], []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"--combine: no results.json in {folder} (run the sweep there first)")
        done = json.loads(path.read_text())
        rows, results = rows + done["rows"], results + done["runs"]
    figures(rows, out)
    common.write_results(out, {"combined": folders, "runs": results, "rows": rows})
    report(rows, results)
    return rows
