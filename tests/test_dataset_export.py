"""DatasetExport: image flows write their particles as a dataset (flowed.npz, grid, snapshots, image folder), and
an unlabeled flow's export carries the reference class each cluster was coupled to (a case with a known answer)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from dsflow.callbacks import DatasetExport, OracleScorer
from dsflow.data import ArrayFile, FlowDataModule, PseudoLabeled, TensorSource, hungarian_alignment
from dsflow.flows import FeatureDriven, FlowModule, OTDDTerm
from dsflow.tasks.oracle import Oracle

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PERM = torch.tensor([2, 0, 1])  # reference class j looks like source class PERM[j]: no fixed point


def _patches(classes: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    """(n, 1, 8, 8) images: a bright 4 x 4 quadrant (quadrant k for class k) on a dark background, a little noise."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(classes.numel(), 1, 8, 8, generator=gen)
    for i, k in enumerate(classes.tolist()):
        r, c = divmod(k, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += level
    return x.clamp(0, 1)


class _NearestCentre(OracleScorer):
    """An OracleScorer whose oracle predicts the nearest reference class centre (no checkpoint)."""

    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__(checkpoint="unused", every_n_steps=0, coupling=True, images_per_class=0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(centres.shape[1], centres.shape[0]))
        with torch.no_grad():  # logits 2 <x, mu_c> - |mu_c|^2
            net[1].weight.copy_(2 * centres)
            net[1].bias.copy_(-(centres**2).sum(1))
        self.fixed = Oracle(net.eval(), (1, 8, 8), centres.shape[0], "nearest-centre")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.oracle = self.fixed


def _fit(tmp_path: Path, source, reference, callbacks: list, steps: int = 3) -> FlowModule:
    dm = FlowDataModule(source, reference, steps_per_epoch=steps)
    model = FlowModule([OTDDTerm(eps=1.0)], FeatureDriven(), partial(torch.optim.SGD, lr=0.1), source=dm.source,
                       reference=dm.reference)
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=callbacks,
                        default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    return model


def test_unlabeled_export_carries_the_coupled_reference_class(tmp_path: Path) -> None:
    """Source class c is reference class PERM^-1[c] in disguise: whatever names the clusters get, the exported
    labels (coupled, the default) are PERM^-1[true], the oracle agrees, and the pseudo-labels are the classes
    renamed; the true labels are nowhere in the file."""
    true = torch.arange(36) % 3
    y_ref = torch.arange(30) % 3
    x_ref = _patches(PERM[y_ref], 0.9, seed=1)
    source = PseudoLabeled(TensorSource(_patches(true, 0.8, seed=0), num_classes=3), seed=0)
    centres = torch.stack([x_ref[y_ref == j].flatten(1).mean(0) for j in range(3)])  # (3, 64)
    export = DatasetExport(steps=[0, 2])
    _fit(tmp_path, source, TensorSource(x_ref, y_ref), [export, _NearestCentre(centres)])

    expected = torch.argsort(PERM)[true]  # the reference class each particle's class was disguised as
    with np.load(tmp_path / "flowed.npz") as f:
        assert set(f.files) == {"images", "labels", "pseudo_labels", "coupled_labels", "oracle_labels"}
        assert f["images"].dtype == np.uint8 and f["images"].shape == (36, 8, 8)
        assert f["labels"].dtype == np.int64
        assert np.array_equal(f["labels"], expected.numpy()) and np.array_equal(f["coupled_labels"], f["labels"])
        assert np.array_equal(f["oracle_labels"], expected.numpy())
        pseudo = torch.from_numpy(f["pseudo_labels"])
    aligned = hungarian_alignment(pseudo, true, 3, 3)
    assert torch.equal(aligned[pseudo], true) and not torch.equal(pseudo, expected)  # clusters: renamed classes
    data = ArrayFile(str(tmp_path / "flowed.npz")).load()  # dsflow reads it back
    assert torch.equal(data.y, expected) and data.x.shape == (36, 1, 8, 8)
    records = json.loads((tmp_path / "export.json").read_text())["exports"]
    assert [(r["file"], r["step"]) for r in records] == [("flowed_step000000.npz", 0), ("flowed_step000002.npz", 2),
                                                         ("flowed.npz", 3)]
    assert records[-1]["labels"] == "coupled_labels" and records[-1]["count"] == 36
    for stem in ("flowed", "flowed_step000000", "flowed_step000002"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
    with np.load(tmp_path / "flowed_step000000.npz") as f:  # the start: the source images themselves
        start = torch.from_numpy(f["images"]).float() / 255
    assert (start - source.load().x[:, 0]).abs().max() <= 0.5 / 255 + 1e-6


def test_label_choices_and_supervised_default(tmp_path: Path) -> None:
    """A labeled flow exports its own labels by default; ``coupled`` gives the reference classes; ``oracle`` needs
    an oracle."""
    y = torch.arange(24) % 3
    y_ref = torch.arange(24) % 3
    source, reference = TensorSource(_patches(y, 0.8, seed=0), y), TensorSource(_patches(PERM[y_ref], 0.9, 1), y_ref)
    export = DatasetExport(figure_per_label=0)
    model = _fit(tmp_path / "a", source, reference, [export], steps=1)
    assert export.distance is model.objective.label_distance  # the coupling of the flow's own label distance
    with np.load(tmp_path / "a" / "flowed.npz") as f:
        assert np.array_equal(f["labels"], y.numpy()) and np.array_equal(f["flow_labels"], y.numpy())
        assert np.array_equal(f["coupled_labels"], torch.argsort(PERM)[y].numpy())
        assert "oracle_labels" not in f.files
    assert not (tmp_path / "a" / "flowed.png").exists()
    assert export.last_labels is not None and export.last_labels.pick("coupled")[0] == "coupled_labels"
    _fit(tmp_path / "b", source, reference, [DatasetExport(labels="coupled")], steps=1)
    with np.load(tmp_path / "b" / "flowed.npz") as f:
        assert np.array_equal(f["labels"], torch.argsort(PERM)[y].numpy())
    with pytest.raises(ValueError, match="labels 'oracle' need an OracleScorer"):
        _fit(tmp_path / "c", source, reference, [DatasetExport(labels="oracle")], steps=1)
    with pytest.raises(ValueError, match="labels must be one of"):
        DatasetExport(labels="truth")  # type: ignore[arg-type]


def test_non_image_particles_are_refused(tmp_path: Path) -> None:
    x = torch.randn(20, 2)
    y = torch.arange(20) % 2
    with pytest.raises(ValueError, match=r"exports images .* shape \(2,\); leave it out"):
        _fit(tmp_path, TensorSource(x, y), TensorSource(x + 1, y), [DatasetExport()], steps=1)


def _npz(path: Path, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = (rng.random((n, 8, 8)) * 40 + labels[:, None, None] * 200).clip(0, 255).astype(np.uint8)
    np.savez(path, images=images, labels=labels.astype(np.int64))
    return str(path)


def _flow_cli(tmp_path: Path, *args: str) -> Path:
    from dsflow.cli import flow_main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
data:
  init_args:
    source: {{class_path: dsflow.data.ArrayFile, init_args: {{path: {_npz(tmp_path / 's.npz', 20, 0)}}}}}
    reference: {{class_path: dsflow.data.ArrayFile, init_args: {{path: {_npz(tmp_path / 'r.npz', 20, 1)}}}}}
trainer: {{max_steps: 2, logger: false, enable_progress_bar: false, accelerator: cpu}}
""")
    run = tmp_path / "run"
    flow_main(["fit", "--config", str(CONFIGS / "flow/images.yaml"), "--config", str(cfg), "--run_dir", str(run), *args])
    return run


@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")  # the claim is the export
def test_image_flows_export_by_default_with_clipping_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _flow_cli(tmp_path, "--export.init_args.steps", "[1]", "--export.init_args.image_folder", "true",
                    "--model.init_args.optimizer", "torch.optim.SGD", "--model.init_args.optimizer.init_args.lr", "2.0")
    # (a long step: pixels overshoot [0, 1])
    with np.load(run / "flowed.npz") as f:
        images, labels = f["images"], f["labels"]
    assert images.dtype == np.uint8 and images.shape == (20, 8, 8)
    assert labels.dtype == np.int64 and labels.shape == (20,) and np.array_equal(labels, np.arange(20) % 2)
    x = np.load(run / "final.npz")["x"]  # the float particles the export was made from
    record = json.loads((run / "export.json").read_text())["exports"][-1]
    clipped = float(((x < 0) | (x > 1)).mean())
    assert clipped > 0 and record["clipped"] == pytest.approx(clipped)
    outside = np.clip(-x, 0, None) + np.clip(x - 1, 0, None)
    assert record["clipped_visibly"] == pytest.approx(float((outside > 0.5 / 255).mean()))
    assert record["max_outside"] == pytest.approx(float(outside.max()))
    assert np.array_equal(images, np.round(np.clip(x[:, 0], 0, 1) * 255).astype(np.uint8))
    assert (run / "flowed_step000001.npz").is_file() and (run / "flowed_step000001" / "train").is_dir()
    folder = ArrayFile(str(run / "flowed.npz")).load()
    from dsflow.data import ImageFolder

    back = ImageFolder(str(run / "flowed"), split="train", channels=1).load()  # PIL reads gray PNGs as RGB
    assert back.x.shape == folder.x.shape and sorted(back.y.tolist()) == sorted(folder.y.tolist())
    out = capsys.readouterr().out
    assert f"exported 20 images to {run / 'flowed.npz'} and {run / 'flowed'} (labels: flow_labels; {100 * clipped:.2f} % of pixel values clipped" in out


@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")  # the claim is the export
def test_export_can_be_turned_off_and_2d_flows_do_not_export(tmp_path: Path) -> None:
    run = _flow_cli(tmp_path, "--export", "null")
    assert (run / "final.npz").is_file() and not (run / "flowed.npz").exists() and not (run / "export.json").exists()
    from dsflow.cli import flow_main

    run2 = tmp_path / "run2d"
    flow_main(["fit", "--config", str(CONFIGS / "flow/base.yaml"), "--config", str(CONFIGS / "flow/gaussians_2d.yaml"),
               "--trainer.max_steps", "1", "--trainer.logger", "false", "--run_dir", str(run2)])
    assert (run2 / "final.npz").is_file() and not (run2 / "flowed.npz").exists()
