"""The flow map h: autoencoder shapes, the pairs DataModule, restart selection, train.py config, Fig. 9."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from dsflow.callbacks.transfer_figures import flow_map_figure
from dsflow.data.flow_pairs import FlowPairs
from dsflow.io import save_npz
from dsflow.models import FlowMapAutoencoder
from dsflow.tasks import fit_flow_map, fit_restarts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _flow_run(path: Path, n: int = 40, size: int = 8) -> Path:
    """A run directory with final.npz: xT = 1 - x0 (a map an autoencoder can learn)."""
    rng = np.random.default_rng(0)
    x0 = rng.random((n, 1, size, size), dtype=np.float32)
    save_npz(path / "final.npz", x0=x0, y0=np.arange(n) % 2, x=1.0 - x0, y=np.arange(n) % 2)
    return path


@pytest.mark.parametrize("c, s", [(1, 28), (1, 16), (3, 32), (1, 15)])
def test_autoencoder_maps_images_to_their_own_shape(c: int, s: int) -> None:
    net = FlowMapAutoencoder(c, s, channels=(4, 8), hidden=(32, 16, 16, 8, 8))
    x = torch.rand(3, c, s, s)
    assert net(x).shape == x.shape and net.encode(x).shape == (3, 8)
    assert net(x.reshape(3, -1)).shape == (3, c * s * s)  # flat particles too
    convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.encoder if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 2 and len(linears) == 5  # appendix C: 2 conv + 5 fully connected, decoder mirrored
    assert [m.out_features for m in net.decoder if isinstance(m, torch.nn.Linear)] [:4] == [8, 16, 16, 32]


def test_autoencoder_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="5 hidden"):
        FlowMapAutoencoder(hidden=(8, 8))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        FlowMapAutoencoder(1, 28)(torch.rand(2, 1, 16, 16))


def test_pairs_split_and_errors(tmp_path: Path) -> None:
    pairs = FlowPairs(str(_flow_run(tmp_path)), val_fraction=0.25)
    pairs.setup()
    assert len(pairs.train_set) == 30 and len(pairs.val_set) == 10 and pairs.image_shape == (1, 8, 8)
    with pytest.raises(FileNotFoundError, match="array file not found: .*final.npz"):
        FlowPairs(str(tmp_path / "nope")).setup()
    with pytest.raises(ValueError, match="val_fraction"):
        FlowPairs(str(tmp_path), val_fraction=1.0)


class _Scaled(L.LightningModule):
    """Predicts a * x with a fixed, randomly drawn a (no training: lr 0); held-out MSE depends on the seed only."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.rand(()) * 2)

    def _mse(self, batch):
        x0, xt = batch
        return torch.nn.functional.mse_loss(self.a * x0, xt)

    def training_step(self, batch, batch_idx):
        return self._mse(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", self._mse(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_restarts_keep_the_best_held_out(tmp_path: Path) -> None:
    pairs = FlowPairs(str(_flow_run(tmp_path)), val_fraction=0.25)
    result = fit_restarts(_Scaled, pairs, restarts=4, max_epochs=1, seed=3, out_dir=tmp_path / "fm")
    assert len(set(result.scores)) == 4 and result.best_index == int(np.argmin(result.scores))
    again = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    assert again.validate(result.module, datamodule=pairs, verbose=False)[0]["val/mse"] == pytest.approx(min(result.scores))
    saved = torch.load(result.checkpoint, weights_only=True)["state_dict"]["a"]
    assert torch.equal(saved, result.module.a.detach())
    with pytest.raises(ValueError, match="no 'val/acc'"):
        fit_restarts(_Scaled, pairs, restarts=1, max_epochs=1, monitor="val/acc")


def test_fit_flow_map_beats_identity_and_draws_fig9(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pairs = FlowPairs(str(_flow_run(tmp_path, n=64)), val_fraction=0.25, batch_size=16)
    fit = fit_flow_map(pairs, restarts=2, max_epochs=15, lr=3e-3, net_kwargs={"channels": (4, 8), "hidden": (64, 32, 32, 32, 32)})
    assert len(fit.restart_mse) == 2 and fit.best_mse == min(fit.restart_mse)
    assert fit.best_mse < fit.identity_mse  # xT = 1 - x0 is far from x0
    x0, xt = pairs.val_set.tensors
    path = flow_map_figure(x0[:8], xt[:8], fit.module.push(x0[:8]), tmp_path / "fig9.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="one shape"):
        flow_map_figure(x0[:8], xt[:4], x0[:8], tmp_path / "bad.png")


def test_train_cli_fits_the_flow_map_config(tmp_path: Path) -> None:
    """The image shape is linked from the pairs: the same config fits 28 x 28 and 8 x 8 flows."""
    from dsflow.cli import train_main

    for size in (28, 8):
        run = _flow_run(tmp_path / f"flow{size}", size=size)
        cli = train_main(["fit", "--config", str(CONFIGS / "train/flow_map.yaml"), "--data.init_args.run_dir", str(run),
                          "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.accelerator", "cpu",
                          "--run_dir", str(tmp_path / f"fm{size}")])
        assert cli.model.net.input_shape == (1, size, size)
        ckpt = torch.load(tmp_path / f"fm{size}/checkpoints/best.ckpt", weights_only=False)
        assert "val/mse" in str(ckpt["callbacks"])


def test_flow_map_benchmark_restarts_through_the_cli_equal_fit_flow_map(tmp_path: Path) -> None:
    """benchmarks/flow_map.py fits each restart with train.py (configs/train/flow_map.yaml): the same held-out
    errors, restart for restart, as fit_flow_map with the same settings in Python."""
    from dsflow.experiments import flow_map

    torch.set_num_threads(1)
    run = _flow_run(tmp_path / "flow", n=40, size=28)
    result = flow_map.main(["--run", str(run), "--restarts", "2", "--seed", "3", "--images", "4",
                                           "--out", str(tmp_path / "fm"), "--", "--trainer.max_epochs", "1"])
    assert len(result.restart_mse) == 2 and result.best_mse == min(result.restart_mse)
    assert Path(result.best_checkpoint).is_file() and (tmp_path / "fm/fig9.png").is_file()
    fit = fit_flow_map(FlowPairs(str(run), seed=3), restarts=2, max_epochs=1, seed=3)
    assert result.restart_mse == pytest.approx(fit.restart_mse, rel=1e-6)
    assert result.identity_mse == pytest.approx(fit.identity_mse, rel=1e-6)
