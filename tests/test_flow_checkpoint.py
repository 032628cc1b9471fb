"""A flow's checkpoint entries (dsflow.flows.checkpoint), its data reaching it as arguments, and what callbacks read."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from dsflow.cli import flow_main
from dsflow.data import FlowDataModule, GaussianMixture
from dsflow.flows import FlowModule, OTDDTerm
from dsflow.flows.checkpoint import check_resumed_optimizer, restore_noise_state, save_noise_state
from dsflow.flows.entropy import EntropyNoise
from dsflow.flows.interface import as_flow

CONFIG = str(Path(__file__).parent / "configs" / "tiny_flow.yaml")


class _ReportsCuda(torch.Tensor):
    """Stands in, on a CPU-only machine, for a generator state loaded with ``map_location="cuda"``: it reports a
    CUDA device, and ``.to(...)`` gives a new plain tensor, as moving a GPU tensor to the CPU does."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)

    def to(self, *args, **kwargs) -> torch.Tensor:  # type: ignore[override]
        return self.as_subclass(torch.Tensor).to(*args, **kwargs)


class _RecordingGenerator:
    """Records the state handed to ``set_state`` (torch.Generator accepts only a CPU ByteTensor)."""

    def __init__(self) -> None:
        self.states: list[torch.Tensor] = []

    def set_state(self, new_state: torch.Tensor) -> None:
        self.states.append(new_state)


def _saved_noise(seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """A CPU noise generator's saved state after one draw, and its next draw (5 numbers each)."""
    noise = EntropyNoise(seed)
    noise.draw(torch.zeros(5))
    checkpoint: dict = {}
    save_noise_state(checkpoint, noise)
    return checkpoint["noise_generator"]["state"], noise.draw(torch.zeros(5))


def test_noise_restore_hands_set_state_a_cpu_byte_tensor() -> None:
    saved, _ = _saved_noise()
    on_gpu = saved.as_subclass(_ReportsCuda)
    assert on_gpu.device.type == "cuda"
    recorder = _RecordingGenerator()
    restore_noise_state(recorder, on_gpu)
    (state,) = recorder.states
    assert type(state) is torch.Tensor and state.device.type == "cpu" and state.dtype == torch.uint8
    assert torch.equal(state, saved)


def test_noise_restore_accepts_a_state_of_another_dtype() -> None:
    """torch.Generator.set_state refuses anything but a ByteTensor; the restore converts (bytes unchanged)."""
    saved, expected = _saved_noise()
    gen = torch.Generator().manual_seed(0)
    restore_noise_state(gen, saved.to(torch.int64))
    torch.testing.assert_close(torch.randn(5, generator=gen), expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match="noise_generator"):
        restore_noise_state(gen, [1, 2, 3])  # type: ignore[arg-type]


def test_noise_is_drawn_on_the_particles_device_and_resumes_there(device: torch.device) -> None:
    x = torch.zeros(4, 3, device=device)
    noise = EntropyNoise(3)
    noise.draw(x)
    saved = noise.state()
    assert saved["device"] == device.type and saved["draws"] == 1
    expected = noise.draw(x)
    assert expected.device == x.device
    resumed = EntropyNoise(3)
    resumed.load({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in saved.items()})  # map_location
    torch.testing.assert_close(resumed.draw(x), expected, rtol=0, atol=0)


def test_noise_of_an_older_checkpoint_continues_and_another_device_restarts_with_a_warning() -> None:
    gen = torch.Generator().manual_seed(5)
    torch.randn(3, generator=gen)
    old = EntropyNoise(5)
    old.load(gen.get_state())  # checkpoints before EntropyNoise held the CPU generator's bare state
    torch.testing.assert_close(old.draw(torch.zeros(3)), torch.randn(3, generator=gen), rtol=0, atol=0)
    elsewhere = EntropyNoise(5)
    elsewhere.load({"device": "cuda", "state": torch.zeros(16, dtype=torch.uint8), "draws": 4})
    with pytest.warns(RuntimeWarning, match="restarts from seed 5 \\+ 4 steps"):
        xi = elsewhere.draw(torch.zeros(3))
    torch.testing.assert_close(xi, torch.randn(3, generator=torch.Generator().manual_seed(9)), rtol=0, atol=0)
    with pytest.raises(TypeError, match="saved noise state"):
        elsewhere.load([1, 2])


# hits the sweep cap: harmless, the claim is the resumed noise stream
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_loaded_checkpoint_continues_the_noise(tmp_path: Path) -> None:
    """load_from_checkpoint (map_location given) restores the noise generator: the same draws as the saved flow."""
    dm = _datamodule()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    module = FlowModule(temperature=0.01, noise_seed=3, source=dm.source, reference=dm.reference)
    _trainer(2, callbacks=[ckpt]).fit(module, dm)
    restored = FlowModule.load_from_checkpoint(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    like = torch.zeros(4)
    torch.testing.assert_close(restored.noise.draw(like), module.noise.draw(like), rtol=0, atol=0)


def test_resumed_optimizer_is_checked_by_name_or_options() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    sgd, adam = torch.optim.SGD(params, lr=0.1), torch.optim.Adam(params)
    checkpoint = {"optimizer_states": [sgd.state_dict()], "optimizer_class": "torch.optim.sgd.SGD"}
    check_resumed_optimizer(checkpoint, torch.optim.SGD(params, lr=0.5))
    with pytest.raises(ValueError, match=r"torch.optim.sgd.SGD .*this run configures torch.optim.adam.Adam"):
        check_resumed_optimizer(checkpoint, adam)
    old = {"optimizer_states": [sgd.state_dict()]}  # written before optimizer_class was saved: compared by options
    check_resumed_optimizer(old, torch.optim.SGD(params, lr=0.5))
    with pytest.raises(ValueError, match="of another optimizer"):
        check_resumed_optimizer(old, adam)


# ---------------------------------------------------------------- data as arguments (configure_model)
def _datamodule() -> FlowDataModule:
    src = GaussianMixture([[0.0, 0.0], [0.0, 3.0]], std=0.4, n_per_class=20, seed=0)
    ref = GaussianMixture([[4.0, 0.0], [4.0, 3.0]], std=0.3, n_per_class=15, seed=1)
    return FlowDataModule(src, ref, steps_per_epoch=10)


def _trainer(steps: int, **kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", "callbacks" in kwargs)  # a ModelCheckpoint given: on
    return L.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     accelerator="cpu", **kwargs)


class _Steps(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> int:
        return i


def test_module_takes_its_data_as_arguments_not_from_the_datamodule() -> None:
    """Given source and reference, the module flows with a bare step loader (no datamodule) exactly as with one."""
    dm = _datamodule()
    with_dm = FlowModule([OTDDTerm(eps=0.05)], source=dm.source, reference=dm.reference)
    _trainer(3).fit(with_dm, dm)
    bare = FlowModule([OTDDTerm(eps=0.05)], source=dm.source, reference=dm.reference)
    _trainer(3).fit(bare, train_dataloaders=DataLoader(_Steps(), batch_size=None))
    torch.testing.assert_close(bare.particles.x, with_dm.particles.x, rtol=0, atol=0)


def test_module_without_data_is_refused() -> None:
    with pytest.raises(ValueError, match="no data; pass source and reference"):
        _trainer(1).fit(FlowModule(), _datamodule())
    with pytest.raises(ValueError, match="both source and reference"):
        FlowModule(source=_datamodule().source)


def test_flow_cli_links_the_datamodules_data_into_the_module(tmp_path: Path) -> None:
    cli = flow_main(["--config", CONFIG, "--run_dir", str(tmp_path), "--trainer.logger", "false"], run=False)
    assert not cli.model.particles.initialized  # built in configure_model, not in __init__
    cli.model.configure_model()
    torch.testing.assert_close(cli.model.particles.x.detach(), cli.datamodule.source.flat(), rtol=0, atol=0)
    torch.testing.assert_close(cli.model.reference.y, cli.datamodule.reference.y, rtol=0, atol=0)


# ---------------------------------------------------------------- what callbacks read
def test_callbacks_read_a_flow_and_name_what_another_module_lacks() -> None:
    dm = _datamodule()
    module = FlowModule(source=dm.source, reference=dm.reference)
    assert as_flow(module, "FlowRecorder") is module
    with pytest.raises(TypeError, match=r"FlowRecorder reads a flow .* LightningModule has no particles, reference"):
        as_flow(L.LightningModule(), "FlowRecorder")
