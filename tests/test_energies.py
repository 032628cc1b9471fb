"""Energies: gradients against finite differences (float64) and the outcome each one is meant to produce."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")

import pytest
import torch
from tests.flow_helpers import flow_steps, make_flow, single_thread, two_blobs
from sklearn.svm import LinearSVC

from dsflow.data.base import LabeledData
from dsflow.flows import (
    AffineTerm,
    BallTerm,
    ClassAffineTerm,
    ClassRepulsionTerm,
    ClassSpreadTerm,
    CollapseTerm,
    FlowState,
    InteractionTerm,
    MarginTerm,
    NormTerm,
    Objective,
    OTDDTerm,
)
from dsflow.ot.energies import energy_functions as E
from dsflow.ot.energies import ExponentialKernel, GaussianKernel, InverseMultiquadricKernel, NegativeSquaredDistance

D = torch.float64
pytestmark = pytest.mark.usefixtures("single_thread")
assert single_thread  # imported for pytest to find


def _state(x: torch.Tensor, y: torch.Tensor) -> FlowState:
    return FlowState(x, y, int(y.max()) + 1, x.detach(), y, int(y.max()) + 1)


def _points(n: int = 6, d: int = 3, seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(n, d, generator=gen, dtype=D)).to(device).requires_grad_(True)
    y = (torch.arange(n) % 2).to(device)
    return x, y


TERMS = {
    "norm": lambda d: NormTerm(weight=0.7),
    "affine": lambda d: AffineTerm(a=[[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]], b=[0.3, -1.0]),
    "class_affine": lambda d: ClassAffineTerm(
        a=[[[1.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]]], b=[[0.5], [-0.5]], weight=2.0
    ),
    "margin": lambda d: MarginTerm(w=[1.0, -1.0, 0.5], b=0.2, positive=1, negative=0, margin=30.0),
    "ball": lambda d: BallTerm(centre=[0.1, 0.2, -0.3], radius=0.05),
    "collapse": lambda d: CollapseTerm(dims=[0, 2], target=[1.0, -1.0]),
    "class_repulsion": lambda d: ClassRepulsionTerm(scale=1.5),
    "class_spread": lambda d: ClassSpreadTerm(weight=0.3),
    "gaussian_all": lambda d: InteractionTerm(GaussianKernel(2.0), "all"),
    "imq_same": lambda d: InteractionTerm(InverseMultiquadricKernel(1.0), "same"),
    "exp_all": lambda d: InteractionTerm(ExponentialKernel(1.0), "all"),
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_energy_gradient_matches_finite_differences(name: str, device: torch.device) -> None:
    """Every term's gradient in x equals central finite differences (points are away from the kinks)."""
    x, y = _points(device=device)
    term = TERMS[name](3).to(device)
    assert torch.autograd.gradcheck(lambda x: term.weight * term.value(_state(x, y)), (x,), eps=1e-6, atol=1e-6)


def test_interaction_is_half_mean_over_pairs(device: torch.device) -> None:
    """W(rho) = 1/(2 n^2) sum_{i,j} W(x_i - x_j) over the selected pairs, checked against a double loop."""
    x, y = _points(5, device=device)
    x = x.detach()
    value = ClassRepulsionTerm().value(_state(x, y))
    loop = sum(
        torch.exp(-(x[i] - x[j]).norm()) for i in range(5) for j in range(5) if y[i] != y[j]
    ) / (2 * 25)
    torch.testing.assert_close(value, loop)


def test_potentials_closed_forms(device: torch.device) -> None:
    def t(values: list) -> torch.Tensor:
        return torch.tensor(values, dtype=D, device=device)

    x = t([[3.0, 4.0], [0.0, 0.0]])
    y = torch.tensor([1, 0], device=device)
    torch.testing.assert_close(E.norm_potential(x), t([5.0, 0.0]))
    torch.testing.assert_close(E.ball_potential(x, t([0.0, 0.0]), 1.0), t([4.0, 0.0]))
    torch.testing.assert_close(E.collapse_potential(x, [1], t([0.0])), t([8.0, 0.0]))
    hinge = E.hinge_potential(x, y, t([1.0, 0.0]), 0.0, positive=1, negative=0, margin=1.0)
    torch.testing.assert_close(hinge, t([0.0, 1.0]))  # class 1 past the margin, class 0 on the plane


def test_norm_gradient_is_finite_at_origin(device: torch.device) -> None:
    x = torch.zeros(3, 2, dtype=D, device=device, requires_grad=True)
    NormTerm().value(_state(x, torch.zeros(3, dtype=torch.long, device=device))).backward()
    assert torch.isfinite(x.grad).all()


def test_objective_reports_each_term(device: torch.device) -> None:
    x, y = _points(device=device)
    terms = [BallTerm(centre=[0, 0, 0], radius=0.1), ClassRepulsionTerm(), NormTerm(weight=2.0)]
    loss = Objective(terms).to(device)(_state(x, y))
    assert set(loss.parts) == {"ball", "class_repulsion", "norm"}
    torch.testing.assert_close(loss.total, sum(loss.parts.values()))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: AffineTerm(a=[[1.0, 2.0]], b=[1.0, 2.0]), r"AffineTerm: need a \(k, d\) and b \(k,\)"),
        (lambda: ClassAffineTerm(a=[[1.0, 2.0]], b=[1.0]), r"ClassAffineTerm: need a \(C, k, d\)"),
        (lambda: MarginTerm(w=[1.0, 0.0], positive=1, negative=1), "two different classes"),
        (lambda: BallTerm(centre=[0.0, 0.0], radius=-1.0), "radius must be >= 0"),
        (lambda: CollapseTerm(dims=[]), "dims must list at least one"),
        (lambda: InteractionTerm(GaussianKernel(), pairs="others"), "pairs must be 'all'"),  # type: ignore[arg-type]
        (lambda: GaussianKernel(bandwidth=0.0), "bandwidth must be positive"),
    ],
)
def test_bad_settings_raise(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_mismatch_raises(device: torch.device) -> None:
    x, y = _points(4, 3, device=device)
    with pytest.raises(ValueError, match="centre"):
        BallTerm(centre=[0.0, 0.0]).value(_state(x, y))
    with pytest.raises(ValueError, match="labels"):
        ClassAffineTerm(a=[[[1.0, 0.0, 0.0]]], b=[[0.0]]).value(_state(x, y))  # label 1 has no map


def test_ball_constraint_ends_inside_the_ball(device: torch.device) -> None:
    data = two_blobs(40, gap=6.0, seed=1)
    centre, radius, step, weight = torch.tensor([5.0, -3.0], dtype=D, device=device), 1.0, 0.1, 2.0
    flow = make_flow([BallTerm(centre=centre.tolist(), radius=radius, weight=weight)], data, data, device=device)
    flow_steps(flow, 80, lr=step)
    dist = (flow.particles.x.detach() - centre).norm(dim=1)
    # a particle outside moves lr * weight = 0.2 towards the centre per step and stops once inside
    assert float(dist.max()) <= radius + 1e-9
    assert float(dist.max()) > radius - step * weight  # it stops at the boundary, not at the centre


def test_margin_makes_classes_linearly_separable(device: torch.device) -> None:
    data = two_blobs(50, gap=0.5, seed=2)  # heavily overlapping
    svm = LinearSVC(C=1e4, max_iter=100000)
    before = svm.fit(data.x.numpy(), data.y.numpy()).score(data.x.numpy(), data.y.numpy())
    assert before < 0.9
    flow = make_flow([MarginTerm(w=[1.0, 1.0], b=0.0, positive=1, negative=0, margin=0.5)], data, data, device=device)
    flow_steps(flow, 60, lr=0.1)
    x = flow.particles.x.detach().cpu().numpy()
    assert svm.fit(x, data.y.numpy()).score(x, data.y.numpy()) == 1.0


# hits the sweep cap: harmless, a short flow at the default cap, as the configs run it
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_margin_with_otdd_separates_while_matching_reference(device: torch.device) -> None:
    source = two_blobs(30, gap=0.0, seed=3)
    far = two_blobs(30, gap=4.0, seed=4)
    reference = LabeledData(far.x + torch.tensor([3.0, 0.0], dtype=D), far.y, 2, "reference")
    terms = [OTDDTerm(eps=0.05, scaling=0.8), MarginTerm(w=[1.0, 0.0], b=3.0, margin=0.5, weight=5.0)]
    flow = make_flow(terms, source, reference, device=device)
    flow_steps(flow, 40, lr=0.1)
    x = flow.particles.x.detach().cpu().numpy()
    assert LinearSVC(C=1e4, max_iter=100000).fit(x, source.y.numpy()).score(x, source.y.numpy()) == 1.0


def _min_between(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.cdist(x[y == 0], x[y == 1]).min())


def test_class_repulsion_raises_smallest_interclass_distance(device: torch.device) -> None:
    data = two_blobs(30, gap=0.5, seed=5)
    flow = make_flow([ClassRepulsionTerm(weight=5.0)], data, data, device=device)
    before = _min_between(data.x, data.y)
    flow_steps(flow, 30, lr=0.1)
    after = _min_between(flow.particles.x.detach().cpu(), data.y)
    assert after > before + 0.1


def test_class_spread_moves_class_means_apart(device: torch.device) -> None:
    data = two_blobs(20, gap=1.0, seed=6)
    flow = make_flow([ClassSpreadTerm(weight=0.5)], data, data, device=device)
    gap0 = float((data.x[data.y == 1].mean(0) - data.x[data.y == 0].mean(0)).norm())
    flow_steps(flow, 10, lr=0.1)
    x = flow.particles.x.detach().cpu()
    assert float((x[data.y == 1].mean(0) - x[data.y == 0].mean(0)).norm()) > 1.5 * gap0


def test_collapse_flattens_chosen_dimension(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(7)
    data = LabeledData(torch.randn(30, 3, generator=gen, dtype=D), torch.arange(30) % 3, 3)
    flow = make_flow([CollapseTerm(dims=[1], target=[2.0])], data, data, device=device)
    flow_steps(flow, 80, lr=0.1)  # x_1 - 2 shrinks by 0.9 each step
    x = flow.particles.x.detach().cpu()
    torch.testing.assert_close(x[:, 1], torch.full((30,), 2.0, dtype=D), atol=0.02, rtol=0)
    torch.testing.assert_close(x[:, [0, 2]], data.x[:, [0, 2]])  # other coordinates untouched


def test_negative_squared_distance_kernel(device: torch.device) -> None:
    sq = torch.tensor([[0.0, 4.0], [4.0, 0.0]], dtype=D, device=device)
    torch.testing.assert_close(NegativeSquaredDistance()(sq), -sq)
    torch.testing.assert_close(ExponentialKernel(2.0)(sq), torch.exp(-sq.sqrt() / 2))


def test_pairwise_distances_high_dimension_form_agrees(device: torch.device) -> None:
    x, _ = _points(7, 80, device=device)
    exact = E.pairwise_sq_distances(x, max_diff_dim=1000)
    expanded = E.pairwise_sq_distances(x, max_diff_dim=10)
    torch.testing.assert_close(expanded, exact)
    assert torch.equal(torch.diagonal(expanded), torch.zeros(7, dtype=D, device=device))
    x = x.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ExponentialKernel(3.0)(E.pairwise_sq_distances(x, 10)).sum(), (x,), eps=1e-6, atol=1e-6)
