"""FlowModule: the objective decreases, labels and shapes persist, checkpoints restore and continue the flow."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from dsflow.data import FlowDataModule, GaussianMixture
from dsflow.flows import FlowModule, OTDDTerm
from dsflow.ot import GeomlossSolver


def _datamodule() -> FlowDataModule:
    src = GaussianMixture([[0.0, 0.0], [0.0, 3.0]], std=0.4, n_per_class=40, seed=0)
    ref = GaussianMixture([[4.0, 0.0], [4.0, 3.0]], std=[0.3, 0.6], n_per_class=30, seed=1)
    return FlowDataModule(src, ref, steps_per_epoch=10)


def _flow(dm: FlowDataModule, **kwargs) -> FlowModule:
    """A FlowModule given the datamodule's data, as flow.py links them."""
    return FlowModule(**kwargs, source=dm.source, reference=dm.reference)


def _trainer(tmp_path: Path, steps: int, device: torch.device = torch.device("cpu"), **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, accelerator=device.type, devices=1, **kwargs,
    )


# hits the sweep cap: harmless, a short flow at the default cap still descends
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_objective_decreases_and_labels_persist(tmp_path: Path, device: torch.device) -> None:
    dm = _datamodule()
    module = FlowModule(terms=[OTDDTerm(eps=0.01)])
    module.init_data(dm.source, dm.reference)
    module.to(device)
    start = module.compute_objective().total.item()
    x0, y0 = module.particles.x.detach().cpu().clone(), module.particles.y.cpu().clone()
    _trainer(tmp_path, 30, device, enable_checkpointing=False).fit(module, dm)
    end = module.compute_objective().total.item()  # Lightning's teardown left the module on the CPU
    assert end < 0.1 * start
    assert module.particles.x.shape == x0.shape
    assert torch.equal(module.particles.y.cpu(), y0)
    assert not torch.equal(module.particles.x.detach().cpu(), x0)


def test_step_is_scaled_by_n(tmp_path: Path, device: torch.device) -> None:
    """One SGD step moves each particle by tau * n * grad (eq. 17), independent of n."""
    dm = _datamodule()
    module = FlowModule(terms=[OTDDTerm(solver=GeomlossSolver())])  # stateless: the same gradient twice
    module.init_data(dm.source, dm.reference)
    module.to(device)
    x0 = module.particles.x.detach().clone()
    module.compute_objective().total.backward()
    expected = (x0 - 0.1 * module.particles.n * module.particles.x.grad).cpu()
    module.particles.x.grad = None
    _trainer(tmp_path, 1, device, enable_checkpointing=False).fit(module, dm)  # ends with the module on the CPU
    torch.testing.assert_close(module.particles.x.detach().cpu(), expected, rtol=1e-4, atol=1e-5)


# hits the sweep cap: harmless, the claim is a bit-for-bit resume
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_checkpoint_round_trip_and_resume(tmp_path: Path, device: torch.device) -> None:
    dm = _datamodule()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=5)
    module = _flow(dm)
    _trainer(tmp_path, 10, device, callbacks=[ckpt]).fit(module, dm)
    path = tmp_path / "ckpt" / "last.ckpt"
    restored = FlowModule.load_from_checkpoint(path, map_location=device, weights_only=False)  # on the device;
    assert torch.equal(restored.particles.x.cpu(), module.particles.x.cpu())  # the fitted module is on the CPU
    assert torch.equal(restored.particles.y.cpu(), module.particles.y.cpu())
    assert restored.particles.feature_shape == (2,)
    solver_state = torch.load(path, weights_only=True)["state_dict"]["objective.terms.0._extra_state"]["solver"]
    assert {"g", "p", "moved", "n", "m", "settings"} <= set(solver_state)  # the warm start, as plain values

    dm = _datamodule()
    resumed = _flow(dm)
    trainer = _trainer(tmp_path, 20, device, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "c2")])
    trainer.fit(resumed, dm, ckpt_path=path)
    assert trainer.global_step == 20
    dm = _datamodule()
    straight = _flow(dm)
    _trainer(tmp_path, 20, device, enable_checkpointing=False).fit(straight, dm)
    torch.testing.assert_close(resumed.particles.x, straight.particles.x)


def test_mismatched_feature_shapes_are_rejected() -> None:
    src = GaussianMixture([[0.0, 0.0]], n_per_class=5).load()
    ref = GaussianMixture([[0.0, 0.0, 0.0]], n_per_class=5).load()
    with pytest.raises(ValueError, match=r"feature shape \(2,\).*\(3,\)"):
        FlowModule().init_data(src, ref)


def test_lightning_and_plain_flow_steps_are_the_same_step(tmp_path: Path) -> None:
    """Lightning's training step is FlowModule.flow_step: three steps either way give the same particles, entropy
    noise (sized by the optimizer's step) included."""
    dm = _datamodule()
    fitted = _flow(dm, terms=[OTDDTerm(eps=0.05)], temperature=0.01)
    _trainer(tmp_path, 3, enable_checkpointing=False).fit(fitted, dm)
    plain = FlowModule(terms=[OTDDTerm(eps=0.05)], temperature=0.01)
    plain.init_data(dm.source, dm.reference)
    opt = plain.configure_optimizers()
    losses = [plain.flow_step(opt).total.item() for _ in range(3)]
    torch.testing.assert_close(plain.particles.x, fitted.particles.x, rtol=0, atol=0)
    assert losses[-1] < losses[0]


# hits the sweep cap: harmless, the claim is the divergence check
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_plain_flow_step_stops_a_diverging_flow() -> None:
    dm = _datamodule()
    module = FlowModule(terms=[OTDDTerm(eps=0.05)])
    module.init_data(dm.source, dm.reference)
    opt = torch.optim.SGD([module.particles.x], lr=1e30)
    with pytest.raises(FloatingPointError, match=r"diverged at step 0"):
        for _ in range(5):
            module.flow_step(opt)


# hits the sweep cap: harmless, the claim is the resumed step
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_checkpoint_of_an_automatically_optimized_flow_resumes_at_its_step(tmp_path: Path) -> None:
    """Checkpoints written before the module optimized manually count steps as automatic optimizer steps."""
    dm = _datamodule()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, 4, callbacks=[ckpt]).fit(_flow(dm), dm)
    state = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=False)
    loop = state["loops"]["fit_loop"]
    manual = loop["epoch_loop.manual_optimization.optim_step_progress"]
    automatic = loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]
    automatic.update(manual)  # as an automatically optimized module wrote it
    loop["epoch_loop.manual_optimization.optim_step_progress"] = {
        k: {kk: 0 for kk in v} if isinstance(v, dict) else v for k, v in manual.items()}
    torch.save(state, tmp_path / "old.ckpt")
    dm = _datamodule()
    resumed = _flow(dm)
    trainer = _trainer(tmp_path, 8, enable_checkpointing=False)
    trainer.fit(resumed, dm, ckpt_path=tmp_path / "old.ckpt")
    assert trainer.global_step == 8
    dm = _datamodule()
    straight = _flow(dm)
    _trainer(tmp_path, 8, enable_checkpointing=False).fit(straight, dm)
    torch.testing.assert_close(resumed.particles.x, straight.particles.x, rtol=0, atol=0)


class _PrecisionProbe(OTDDTerm):
    """The OTDD, recording the float32 matmul precision its products run at."""

    seen: list[str] = []

    def value(self, state):  # type: ignore[override]
        type(self).seen.append(torch.get_float32_matmul_precision())
        return super().value(state)


@pytest.mark.parametrize("precision", ["highest", "high"])
def test_flow_steps_run_at_the_flows_matmul_precision(precision: str) -> None:
    """A process at "high" (what Lightning advises on GPUs: TF32 products) does not round the flow's cost
    products: the flow sets its own precision around each step and puts the process's back."""
    dm = _datamodule()
    module = _flow(dm, terms=[_PrecisionProbe(eps=0.05)], matmul_precision=precision)
    module.configure_model()
    opt = torch.optim.SGD([module.particles.x], lr=0.1)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium" if precision == "highest" else "highest")
        _PrecisionProbe.seen.clear()
        module.flow_step(opt)
        module.compute_objective(keep_state=True)
        assert _PrecisionProbe.seen == [precision, precision]
        assert torch.get_float32_matmul_precision() == ("medium" if precision == "highest" else "highest")
    finally:
        torch.set_float32_matmul_precision(before)


def test_an_evaluation_between_steps_leaves_the_next_step_unchanged() -> None:
    """compute_objective(keep_state=True) (the run's final objective, before last.ckpt is written) leaves the
    solvers' warm starts as they were: the flow continues as if it had not been evaluated."""
    runs = []
    for evaluate in (False, True):
        dm = _datamodule()
        module = _flow(dm, terms=[OTDDTerm(eps=0.05)])
        module.configure_model()
        opt = torch.optim.SGD([module.particles.x], lr=0.1)
        module.flow_step(opt)
        if evaluate:
            here = module.particles.x.detach().clone()
            module.particles.x.data.add_(0.3)  # evaluated elsewhere: the warm start would move there
            module.compute_objective(keep_state=True)
            module.particles.x.data.copy_(here)
        module.flow_step(opt)
        runs.append(module.particles.x.detach().clone())
    assert torch.equal(runs[0], runs[1])
