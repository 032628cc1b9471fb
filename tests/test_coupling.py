"""Coupling layer for mismatched label sets (section 6.4): hand-checkable plans and the appended layer."""

from __future__ import annotations

import pytest
import torch

from dsflow.ot.labels.coupling import CouplingHead, label_coupling


def test_identity_cost_gives_permutation_plan(device: torch.device) -> None:
    cost = torch.tensor([[4.0, 0.0, 9.0], [0.0, 4.0, 9.0], [9.0, 9.0, 0.0]], device=device)  # 0 -> 1, 1 -> 0, 2 -> 2
    plan = label_coupling(cost)  # on the CPU (POT's network simplex)
    assert torch.allclose(plan, torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64) / 3)
    head = CouplingHead(plan).to(device)
    probs = torch.tensor([[0.7, 0.2, 0.1]], device=device)  # oracle says reference class 0
    assert torch.allclose(head(probs), torch.tensor([[0.2, 0.7, 0.1]], device=device))  # = source class 1


def test_more_source_classes_than_reference_classes(device: torch.device) -> None:
    # three source classes, two reference classes with masses 2/3 and 1/3: classes 0 and 1 go to reference 0.
    cost = torch.tensor([[0.0, 5.0], [1.0, 5.0], [5.0, 0.0]], device=device)
    plan = label_coupling(cost, torch.tensor([1.0, 1.0, 1.0], device=device), torch.tensor([2.0, 1.0], device=device))
    assert torch.allclose(plan, torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.float64) / 3)
    scores = CouplingHead(plan).to(device)(torch.tensor([[0.9, 0.1]], device=device))  # (1, 3)
    assert torch.allclose(scores, torch.tensor([[0.9, 0.9, 0.1]], device=device))


def test_split_mass_rows_are_normalised(device: torch.device) -> None:
    # one source class of mass 1 spread over two reference classes of mass 1/2: its row is (1/2, 1/2)
    t = lambda v: torch.tensor(v, device=device)  # noqa: E731
    plan = label_coupling(t([[1.0, 2.0]]), t([1.0]), t([1.0, 1.0]))
    assert torch.allclose(plan, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert torch.allclose(CouplingHead(plan).to(device).weight, t([[0.5, 0.5]]))


def test_invalid_inputs_raise(device: torch.device) -> None:
    with pytest.raises(ValueError, match="histograms"):
        label_coupling(torch.zeros(2, 2, device=device), torch.ones(3, device=device))
    with pytest.raises(ValueError, match="empty rows"):
        CouplingHead(torch.tensor([[0.0, 0.0], [1.0, 0.0]], device=device))
