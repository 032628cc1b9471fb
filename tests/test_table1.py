"""benchmarks/table1.py: the documented command (docs/table1.md) resolves to the documented settings; a tiny supervised USPS
flow on real data raises the oracle's accuracy."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from dsflow.cli import flow_main
from dsflow.experiments import runs, table1
from dsflow.experiments.table1 import Mode
from tests.real_data import require_data

ROOT = Path(__file__).resolve().parents[1]


def _documented_command() -> list[str]:
    """The arguments of the 'whole table' command of docs/table1.md."""
    text = (ROOT / "docs" / "table1.md").read_text()
    block = text[text.index("# the whole table"):]
    line = next(li for li in block.splitlines() if "benchmarks/table1.py" in li)
    return shlex.split(line.split("benchmarks/table1.py", 1)[1])


def _resolved(args: list[str]) -> dict:
    """The configuration flow.py resolves from ``args`` (--print_config), as a dict."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        flow_main(["fit", *args, "--print_config"])
    return yaml.safe_load(out.getvalue())


def _resolved_runs(argv: list[str]) -> dict[tuple[str, str], dict]:
    args = table1.parse(argv)
    return {(t, m): _resolved([*runs.configs([*args.config, Mode(m).config]),
                               *table1.flow_args(t, Mode(m), seed, args, "oracle.ckpt")])
            for t in args.targets for m in args.modes for seed in args.seeds}


def test_documented_command_runs_the_documented_settings() -> None:
    """docs/table1.md: n = 2,000 class-balanced target and MNIST test samples, fd-fl, SGD step 0.1, 30 steps
    scored every 10, OTDD eps = 1, lambda_x = 1, lambda_y = 20, full-covariance Gaussian label distances,
    WarmSinkhorn(max_iter=500, marginal_tol=1e-3); unsupervised: PseudoLabeled, balanced k-means on UMAP of gradient histograms of
    deskewed images (docs/table1.md, "Protocol")."""
    argv = _documented_command()
    targets = ("usps=usps_h5/train.npz", "fmnist", "cifar=cifar10_jpeg/test.npz", "mnist-train")
    assert argv == ["--targets", *targets]  # defaults only: the table's settings are the runner's defaults
    resolved = _resolved_runs(argv)
    assert sorted(resolved) == sorted((t, m) for t in targets for m in ("supervised", "unsupervised"))
    for (target, mode), cfg in resolved.items():
        model = cfg["model"]["init_args"]
        assert cfg["trainer"]["max_steps"] == 30
        assert model["dynamics"] in (None, {"class_path": "dsflow.flows.FeatureDriven"})
        assert model["optimizer"] is None or model["optimizer"]["init_args"]["lr"] == 0.1  # None: FlowModule's SGD(lr=0.1)
        (term,) = model["terms"]
        otdd = term["init_args"]
        assert term["class_path"] == "dsflow.flows.OTDDTerm" and otdd["weight"] == 1.0
        assert (otdd["eps"], otdd["lambda_x"], otdd["lambda_y"]) == (1.0, 1.0, 20.0)
        assert otdd["label_distance"] is None or otdd["label_distance"]["init_args"] == {"diagonal": False}  # None: full
        assert otdd["solver"]["class_path"] == "dsflow.ot.WarmSinkhorn" and otdd["solver"]["init_args"]["max_iter"] == 500
        assert otdd["solver"]["init_args"]["marginal_tol"] == 1e-3  # docs/speed.md: same scores, fewer sweeps
        (scorer,) = cfg["trainer"]["callbacks"]
        assert scorer["class_path"] == "dsflow.callbacks.OracleScorer" and scorer["init_args"]["every_n_steps"] == 10
        # usps and mnist-train keep MNIST's digit labels: scored without the coupling layer when supervised
        digits = target.startswith("usps=") or target == "mnist-train"
        assert scorer["init_args"]["coupling"] is (mode == "unsupervised" or not digits)
        data = cfg["data"]["init_args"]
        reference = data["reference"]
        assert reference["class_path"] == "dsflow.data.MNIST"
        assert (reference["init_args"]["split"], reference["init_args"]["n"], reference["init_args"]["balanced"]) == ("test", 2000, True)
        source = data["source"]
        if mode == "unsupervised":
            assert source["class_path"] == "dsflow.data.PseudoLabeled"
            features = source["init_args"]["features"]
            assert features["class_path"] == "dsflow.data.ByStrokeWidth"  # per target: strokes or shapes
            branches = {b: features["init_args"][b] for b in ("thin", "thick")}
            steps = {b: [s["class_path"] for s in f["init_args"]["steps"]] for b, f in branches.items()}
            assert steps == {"thin": ["dsflow.data.Concat", "dsflow.data.UMAPFeatures"],
                             "thick": ["dsflow.data.DeskewFeatures", "dsflow.data.GradientHistogramFeatures",
                                       "dsflow.data.UMAPFeatures"]}
            assert branches["thick"]["init_args"]["steps"][1]["init_args"]["cells"] == 4  # 7-pixel cells
            parts = branches["thin"]["init_args"]["steps"][0]["init_args"]["parts"]
            assert [p["class_path"] for p in parts] == ["dsflow.data.Chain", "dsflow.data.GlyphEncoderFeatures"]
            assert parts[0]["init_args"]["steps"][1]["init_args"]["cells"] == 7  # 4-pixel cells
            assert features["init_args"]["max_deep_ink"] == 0.1
            assert source["init_args"]["clusterer"]["class_path"] == "dsflow.data.BalancedKMeansClusterer"
            source = source["init_args"]["source"]
        expected = {"fmnist": "dsflow.data.FashionMNIST", "mnist-train": "dsflow.data.MNIST"}.get(target, "dsflow.data.ArrayFile")
        assert source["class_path"] == expected
        assert source["init_args"]["split"] == ("test" if target == "fmnist" else "train")  # .npz: their only split
        assert (source["init_args"]["n"], source["init_args"]["balanced"], source["init_args"]["size"]) == (2000, True, 28)
        assert source["init_args"]["seed"] != reference["init_args"]["seed"]  # other samples than the reference's


def test_oracle_config_is_the_documented_oracle() -> None:
    """docs/table1.md: LeNet-5, 20 epochs on all 60,000 MNIST training digits, Adam 1e-3, weight decay 1e-6."""
    from dsflow.cli import train_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        train_main(["fit", *runs.configs(table1.ORACLE), "--print_config"])
    cfg = yaml.safe_load(out.getvalue())
    assert cfg["trainer"]["max_epochs"] == 20
    model = cfg["model"]["init_args"]
    assert model["net"]["class_path"] == "dsflow.models.LeNet5"
    assert model["optimizer"]["class_path"] == "torch.optim.Adam"
    assert (model["optimizer"]["init_args"]["lr"], model["optimizer"]["init_args"]["weight_decay"]) == (1e-3, 1e-6)
    data = cfg["data"]
    assert data["class_path"] == "dsflow.data.MNIST"
    assert (data["init_args"]["train_split"], data["init_args"]["n"], data["init_args"]["val_fraction"]) == ("train", None, 0.0)


def test_tiny_supervised_usps_flow_raises_the_oracle_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    require_data("MNIST/raw/train-images-idx3-ubyte", "usps.t.bz2")
    oracle = tmp_path / "oracle"  # the table's oracle config, 1 epoch on 6,000 digits (77 % on MNIST test)
    runs.run_train(table1.ORACLE, ["--data.init_args.n", "6000", "--trainer.max_epochs", "1"], oracle)
    rows = table1.main(["--targets", "usps", "--modes", "supervised", "--n", "200", "--threads", "1",
                        "--oracle", str(oracle / "checkpoints/last.ckpt"), "--out", str(tmp_path / "runs"),
                        "--", "--trainer.max_steps", "10", "--trainer.callbacks.init_args.every_n_steps", "5"])
    (row,) = rows
    supervised = row.result(Mode.SUPERVISED)
    assert row.target == "usps" and row.steps == 10 and row.result(Mode.UNSUPERVISED) is None
    assert [h["step"] for h in row.runs[Mode.SUPERVISED].history] == [0, 5, 10]
    assert supervised > row.before + 15, row  # measured: 45.0 -> 76.0 (the flow moves USPS onto MNIST digits)
    printed = capsys.readouterr().out
    assert re.search(r"oracle: .* MNIST test accuracy \d+\.\d\d %", printed)
    assert f"| usps | {row.before:.1f} | {supervised:.1f} | - | - | 10 |" in printed  # no clusters: supervised
    (saved,) = json.loads((tmp_path / "runs/results.json").read_text())["rows"]
    assert list(saved) == ["target", "seed", "before", "supervised", "unsupervised", "seconds", "supervised_before",
                           "supervised_history", "supervised_export", "supervised_export_agreement",
                           "steps"]  # the rows as the runner has always written them, and the export
    assert (saved["supervised"], saved["unsupervised"], saved["steps"]) == (supervised, None, 10)
    # a supervised export keeps the flow's own (true) labels
    assert saved["supervised_export"] == str(tmp_path / "runs/usps-supervised/flowed.npz")
    assert saved["supervised_export_agreement"] == 100.0
    assert f"export: {saved['supervised_export']}, labels agree with the true labels 100.0 %" in printed


def test_unsupervised_export_labels_agree_as_often_as_the_clusters(tmp_path: Path) -> None:
    """An unsupervised row's export carries the reference class each (balanced) cluster was coupled to: a
    relabelling of the clusters, so its Hungarian-aligned agreement with the true labels is the clusters' own."""
    require_data("MNIST/raw/train-images-idx3-ubyte", "usps.t.bz2")
    oracle = tmp_path / "oracle"  # barely trained (1 epoch, 2,000 digits): the claim is about the labels
    runs.run_train(table1.ORACLE, ["--data.init_args.n", "2000", "--trainer.max_epochs", "1"], oracle)
    (row,) = table1.main(["--targets", "usps", "--modes", "unsupervised", "--n", "200", "--threads", "1",
                          "--oracle", str(oracle / "checkpoints/last.ckpt"), "--out", str(tmp_path / "runs"), "--",
                          "--data.init_args.source.init_args.features", "dsflow.data.PixelFeatures",
                          "--trainer.max_steps", "3", "--trainer.callbacks.init_args.every_n_steps", "0"])
    run = row.runs[Mode.UNSUPERVISED]
    assert run.export == str(tmp_path / "runs/usps-unsupervised/flowed.npz") and run.clusters is not None
    assert run.agreement == pytest.approx(run.clusters) and 10.0 < run.agreement < 100.0
    saved = json.loads((tmp_path / "runs/results.json").read_text())["rows"][0]
    assert saved["unsupervised_export_agreement"] == run.agreement


def test_unknown_target_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown target 'svhn'"):
        table1.target_overrides("svhn", Mode.SUPERVISED, [])


def test_the_runner_reports_the_per_target_feature_choice() -> None:
    """What ByStrokeWidth read and chose reaches the row (printed and in results.json); other features give None."""
    from types import SimpleNamespace

    from dsflow.data import ByStrokeWidth, MNIST, PixelFeatures, PseudoLabeled

    switch = ByStrokeWidth(thin=PixelFeatures(), thick=PixelFeatures())
    source = MNIST(split="test", n=20, seed=0, size=28, channels=1)
    data = SimpleNamespace(source_spec=PseudoLabeled(source, features=switch))
    assert table1.feature_choice(data) is None  # nothing chosen yet
    switch(torch.zeros(4, 1, 28, 28).index_fill_(3, torch.tensor([10, 11]), 1.0))  # a 2-px vertical bar: thin
    assert table1.feature_choice(data) == "thin-stroke features (median deep ink 0.000 <= 0.1)"
    assert table1.feature_choice(SimpleNamespace(source_spec=PseudoLabeled(source))) is None
