"""Transfer-learning pieces and runner: class correspondence, the runner's data sets, plots, tiny end-to-end runs on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsflow.callbacks.transfer_figures import adaptation_figure, repurpose_figure, transfer_figure
from dsflow.data import MNIST, DatasetSource, LabeledData, Subset, TensorFiles, save_tensors
from tests.real_data import require_data
from dsflow.ot.labels.label_distance import DiagonalGaussianLabelDistance
from dsflow.tasks import load_oracle
from dsflow.tasks.transfer import accuracy, class_map, landing_labels, landing_report
from dsflow.experiments import transfer, transfer_schedule
from dsflow.experiments.transfer_settings import Setting, SummaryRow


def test_class_map_recovers_a_relabelling() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10  # (C, d) well-separated classes
    y = torch.arange(40) % 4
    x = centres[y] + 0.1 * torch.randn(40, 4, generator=gen)
    perm = torch.tensor([2, 0, 3, 1])  # source class c is target class perm[c]
    x_ref = centres[y] + 0.1 * torch.randn(40, 4, generator=gen)
    got = class_map(x, y, 4, x_ref, perm[y], 4, DiagonalGaussianLabelDistance())
    assert got.tolist() == perm.tolist()


def test_landing_labels_read_the_nearest_target() -> None:
    x_ref = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).reshape(3, 1, 1, 2)
    y_ref = torch.tensor([4, 7, 1])
    x = torch.tensor([[9.5, 0.2], [0.1, 0.1], [0.3, 9.0], [10.2, -0.1]]).reshape(4, 1, 1, 2)
    assert landing_labels(x, x_ref, y_ref, batch_size=3).tolist() == [7, 4, 1, 7]


def test_landing_report_measures_distances_coverage_and_classes() -> None:
    x_ref = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # spacings 3, 3, 4 (its nearest other sample)
    y_ref = torch.tensor([0, 1, 2])
    x = torch.tensor([[0.0, 1.0], [3.0, 0.5], [0.5, 0.0], [2.5, 0.0]])  # nearest: 0, 1, 0, 1 at 1, 0.5, 0.5, 0.5
    got = landing_report(x, torch.tensor([0, 1, 1, 1]), x_ref, y_ref)
    assert got["nearest"] == pytest.approx(2.5 / 4) and got["spacing"] == pytest.approx(10 / 3)
    assert got["covered"] == pytest.approx(2 / 3)  # target sample 2 is nobody's nearest
    assert got["off_class"] == pytest.approx(1 / 4)  # the third particle (label 1) sits on a sample of class 0
    assert torch.isnan(torch.tensor(landing_report(x, None, x_ref, y_ref)["off_class"]))
    with pytest.raises(ValueError, match="at least 2 target samples"):
        landing_report(x, None, x_ref[:1], y_ref[:1])


def test_tensor_files_concatenate_in_order_and_subsets_split_a_pool(tmp_path: Path) -> None:
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 4
    a = save_tensors(tmp_path / "a.npz", LabeledData(x[:12], y[:12], 5))
    b = save_tensors(tmp_path / "b.npz", LabeledData(x[12:], y[12:], 5))
    files = TensorFiles([str(a), str(b), str(a)], test_path=str(b))
    data = files.load()
    assert torch.equal(data.x, torch.cat([x, x[:12]])) and torch.equal(data.y, torch.cat([y, y[:12]]))
    assert files.num_classes == 5 and files.image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="different shapes"):
        TensorFiles([str(a), str(save_tensors(tmp_path / "c.npz", LabeledData(torch.rand(2, 3), y[:2], 4)))]).load()

    class Pool(DatasetSource):
        def load(self) -> LabeledData:
            return LabeledData(x, y, 4, "pool")

    part, rest = Subset(Pool(), 8, seed=3).load(), Subset(Pool(), 8, seed=3, rest=True).load()
    assert part.x.shape[0] == 8 and rest.x.shape[0] == 12 and torch.bincount(part.y).tolist() == [2, 2, 2, 2]
    both = torch.cat([part.x, rest.x]).reshape(20, -1)
    assert torch.unique(both, dim=0).shape[0] == 20  # disjoint and covering
    assert torch.equal(Subset(Pool(), 8, seed=3).complement().load().x, rest.x)


def test_plots_write_files(tmp_path: Path) -> None:
    rows = [{"k": k, "setting": s, "mean": 80.0 + i, "std": 1.0} for k in (5, 100) for i, s in enumerate(("target only", "+ zT"))]
    assert transfer_figure(rows, tmp_path / "t.png").stat().st_size > 1000
    assert adaptation_figure([{"label": "U->M 100", "finetune": 90.0, "flow": 92.0}], tmp_path / "a.png").is_file()
    hist = [{"step": 0, "objective": float("nan"), "accuracy": 50.0}, {"step": 5, "objective": 3.0, "accuracy": 70.0}]
    assert repurpose_figure({"a": hist, "b": hist}, tmp_path / "r.png").is_file()
    with pytest.raises(ValueError, match="no result rows"):
        transfer_figure([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty history"):
        repurpose_figure({"a": []}, tmp_path / "x.png")


def _ran(tmp_path: Path, out: Path, *argv: str) -> list[SummaryRow]:
    require_data("usps_h5/train.npz", "MNIST/raw")
    return transfer.main([*argv, "--out", str(out), "--threads", "1"])


TINY = ["--pairs", "usps:mnist", "--shots", "5", "--n-test", "300", "--map-restarts", "2",
        "--flow-args", "trainer.max_steps=6", "recorder.every_n_steps=3", "data.init_args.source.init_args.n=100",
        "data.init_args.source.init_args.source.init_args.n=150",
        "--lenet-args", "trainer.max_epochs=1", "--finetune-args", "trainer.max_epochs=1", "--map-args", "trainer.max_epochs=1"]


# hits the sweep cap: harmless, tiny flows at the default cap; the claim is the runner
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_transfer_runner_flows_towards_the_target_and_scores_on_its_test_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tr"
    rows = _ran(tmp_path, out, *TINY, "--seeds", "0")
    assert [r.setting for r in rows] == list(Setting) and all(r.seeds == 1 and r.pair == "usps->mnist" for r in rows)
    assert json.loads((out / "results.json").read_text())["rows"] == [r.to_json() for r in rows]
    printed = capsys.readouterr().out
    assert "| + z1..T | equal epochs (paper) | " in printed and "held-out MSE of xT" in printed
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    task = out / "usps-mnist-k5-s0"
    # the flow moved the particles closer to the target: its objective (the OTDD to the 50 target digits) fell
    summary = json.loads((task / "flow/summary.json").read_text())
    assert summary["steps"] == 6 and summary["final_objective"] < 0.5 * summary["initial_objective"], summary  # measured 637 -> 107
    target = TensorFiles([str(task / "sets/target.npz")]).load()
    z0, zt = (TensorFiles([str(task / f"sets/{z}.npz")]).load() for z in ("z0", "zT"))
    assert target.x.shape[0] == 50 and torch.bincount(target.y).tolist() == [5] * 10  # 5-shot, class-balanced
    assert zt.x.shape[0] == z0.x.shape[0] == 100 and torch.equal(zt.y, z0.y)  # digits keep their USPS labels
    near = lambda z: torch.cdist(z.flat(), target.flat()).min(1).values.mean()  # noqa: E731
    assert near(zt) < near(z0)
    states = sorted(f.name for f in (task / "sets").glob("z*.npz"))
    assert states == ["z0.npz", "z3.npz", "z6.npz", "zT.npz"]  # z1..T: the states at steps 3 and 6 (= T)
    # each accuracy is the reported LeNet-5's on the stated test split: 300 class-balanced MNIST test digits
    assert run["test"] == {"name": "mnist/test", "samples": 300}
    test = MNIST(split="test", n=300, seed=0, balanced=True, size=28, channels=1).load()
    net = load_oracle(task / "lenet/plus_zT/checkpoints/last.ckpt").net
    assert accuracy(net, test.x, test.y) == run["acc"]["+ zT"]
    assert "map_mse" in run and (task / "flow_map/fig9.png").is_file() and (out / "adaptation.png").is_file()
    assert 0 < run["landing"]["nearest"] < run["landing_z0"]["nearest"] and 0 < run["landing"]["covered"] <= 1
    assert "| fine-tune | model adaptation, same labeled data (paper Fig. 4) | " in printed
    both = transfer.main(["--combine", str(out), str(out), "--out", str(tmp_path / "both")])  # two sweeps' results together
    assert len(both) == 2 * len(rows) and (tmp_path / "both/transfer_usps_mnist.png").is_file()
    assert (tmp_path / "both/adaptation.png").is_file() and "off-class: z0 -> zT" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no results.json in"):
        transfer.main(["--combine", str(tmp_path), "--out", str(tmp_path / "none")])
    assert "usps->mnist: target test accuracy (%), mean ± std over 1 seeds\n| setting | comparison | 5-shot |" in printed
    assert "| usps->mnist | 5 | " in printed.split("off-class: z0 -> zT")[1]  # the landing table
    # the controls repeat the 50 targets to as many samples as target + zT (100 more) and target + z1..T (z3, z6: 200 more)
    assert (task / "lenet/target_repeated/config.yaml").read_text().count("target.npz") == 3
    assert (task / "lenet/target_repeated_z1-T_steps/config.yaml").read_text().count("target.npz") == 5
    assert (out / "sources/usps-s0/lenet/checkpoints/last.ckpt").is_file()  # fine-tuning's source model
    from PIL import Image

    grid = Image.open(task / "figures/flow_grid.png")  # 3 panels (steps 0, 3, 6) of 10 rows of 4 digits
    assert grid.size[0] > grid.size[1] > 200 and Image.open(task / "figures/trajectories.png").size[0] > 300


def test_control_settings_need_no_flow_and_average_over_seeds(tmp_path: Path) -> None:
    out = tmp_path / "control"
    rows = _ran(tmp_path, out, *TINY, "--seeds", "0", "1", "--settings", "target only", "target repeated")
    assert [(r.setting, r.seeds) for r in rows] == [(Setting.TARGET_ONLY, 2), (Setting.REPEATED, 2)]
    runs = json.loads((out / "results.json").read_text())["runs"]
    for r in runs:
        assert "flow_seconds" not in r  # no flow ran
    accs = [r["acc"]["target only"] for r in runs]
    assert rows[0].mean == pytest.approx(sum(accs) / 2)
    config = (out / "usps-mnist-k5-s1/lenet/target_repeated/config.yaml").read_text()
    assert config.count("target.npz") == 3  # target + 100 flowed samples: the 50 targets three times
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        transfer.main(["--pairs", "svhn:mnist", "--out", str(out)])


# hits the sweep cap: harmless, the claim is reuse of finished work
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_a_rerun_reuses_finished_work_and_source_models_serve_every_k(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    first = _ran(tmp_path, out, *TINY, "--seeds", "0", "--settings", "target only", "+ zT")
    task = out / "usps-mnist-k5-s0"
    flow_made = (task / "flow/summary.json").stat().st_mtime_ns
    tiny = [a if a != "5" else "2" for a in TINY]  # k = 2 and 5: one source model for both
    rows = _ran(tmp_path, out, *tiny[:4], "5", *tiny[4:], "--seeds", "0", "--settings", "target only", "+ zT", "fine-tune")
    assert (task / "flow/summary.json").stat().st_mtime_ns == flow_made  # the k = 5 flow was not run again
    again = {(r.k, r.setting): r.mean for r in rows}
    assert [again[(5, r.setting)] for r in first] == [r.mean for r in first]  # its accuracies reused
    assert {r.k for r in rows} == {2, 5} and (2, Setting.FINETUNE) in again
    assert [p.name for p in (out / "sources").iterdir()] == ["usps-s0"]
    source_made = (out / "sources/usps-s0/lenet/checkpoints/last.ckpt").stat().st_mtime_ns
    changed = _ran(tmp_path, out, *TINY, "--seeds", "0", "--settings", "fine-tune", "--lenet-args", "trainer.max_epochs=2")
    assert (out / "sources/usps-s0/lenet/checkpoints/last.ckpt").stat().st_mtime_ns != source_made  # options changed
    assert json.loads((task / "task.json").read_text())["key"]["lenet_args"] == ["trainer.max_epochs=2"]
    assert changed[0].setting is Setting.FINETUNE


# hits the sweep cap: harmless, tiny flows at the default cap; the claim is the runner
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_mnist_to_usps_flows_onto_usps_and_scores_on_its_test_split(tmp_path: Path) -> None:
    out = tmp_path / "m2u"
    _ran(tmp_path, out, *[a if a != "usps:mnist" else "mnist:usps" for a in TINY], "--seeds", "0",
         "--settings", "target only", "+ zT")
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["test"] == {"name": "usps/test", "samples": 300} and run["pair"] == "mnist->usps"
    target = TensorFiles([str(out / "mnist-usps-k5-s0/sets/target.npz")]).load()
    assert torch.bincount(target.y).tolist() == [5] * 10  # k-shot: class-balanced, from USPS's training split


def test_the_paper_protocol_is_a_yaml_file_and_command_line_options_win(tmp_path: Path) -> None:
    args = transfer.parse(["--protocol", "configs/transfer/paper.yaml", "--pairs", "usps:mnist"])
    assert args.shots == [5, 10, 100] and args.seeds == [0, 1, 2] and args.map_restarts == 10
    assert args.pairs == ["usps:mnist"] and args.settings == [s.label for s in Setting]
    bad = tmp_path / "bad.yaml"
    bad.write_text("shots: [5]\nepochs: 20\n")
    with pytest.raises(ValueError, match=r"unknown options \['epochs'\]"):
        transfer.parse(["--protocol", str(bad)])
    bad.write_text("settings: [target alone]\n")
    with pytest.raises(ValueError, match=r"unknown settings \['target alone'\]"):
        transfer.parse(["--protocol", str(bad)])
    with pytest.raises(FileNotFoundError, match="no file nowhere.yaml"):
        transfer.parse(["--protocol", "nowhere.yaml"])
    with pytest.raises(ValueError, match="k must be >= 2"):
        transfer.parse(["--shots", "1"])


# hits the sweep cap: harmless, the claim is the report
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_schedule_study_reports_the_objective_curve_and_where_particles_land(tmp_path: Path) -> None:
    require_data("usps_h5/train.npz", "MNIST/raw")
    runs = transfer_schedule.main(["--shots", "2", "--steps", "4", "--report", "2", "--threads", "1",
                                                  "--out", str(tmp_path)])
    assert [r.label_distance for r in runs] == ["diagonal", "full"]
    for r in runs:
        assert r.steps == [0, 1, 2, 3] and r.objective[-1] < r.objective[0]
        fall = (r.objective[0] - r.objective[2]) / (r.objective[0] - r.objective[-1])
        assert r.fraction_of_fall == {2: pytest.approx(fall)}
        assert r.landing["nearest"] < r.start["nearest"]
    assert (tmp_path / "objective.png").is_file()
