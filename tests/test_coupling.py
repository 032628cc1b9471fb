"""Coupling layer for mismatched label sets (section 6.4): hand-checkable plans and the appended layer."""

from __future__ import annotations

import pytest
import torch

from dsflow.ot.coupling import CouplingHead, label_coupling


def test_identity_cost_gives_permutation_plan() -> None:
    cost = torch.tensor([[4.0, 0.0, 9.0], [0.0, 4.0, 9.0], [9.0, 9.0, 0.0]])  # class 0 -> 1, 1 -> 0, 2 -> 2
    plan = label_coupling(cost)
    assert torch.allclose(plan, torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64) / 3)
    head = CouplingHead(plan)
    probs = torch.tensor([[0.7, 0.2, 0.1]])  # oracle says reference class 0
    assert torch.allclose(head(probs), torch.tensor([[0.2, 0.7, 0.1]]))  # = source class 1


def test_more_source_classes_than_reference_classes() -> None:
    # three source classes, two reference classes with masses 2/3 and 1/3: classes 0 and 1 go to reference 0.
    cost = torch.tensor([[0.0, 5.0], [1.0, 5.0], [5.0, 0.0]])
    plan = label_coupling(cost, torch.tensor([1.0, 1.0, 1.0]), torch.tensor([2.0, 1.0]))
    assert torch.allclose(plan, torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.float64) / 3)
    scores = CouplingHead(plan)(torch.tensor([[0.9, 0.1]]))  # (1, 3)
    assert torch.allclose(scores, torch.tensor([[0.9, 0.9, 0.1]]))


def test_split_mass_rows_are_normalised() -> None:
    # one source class of mass 1 spread over two reference classes of mass 1/2: its row is (1/2, 1/2)
    plan = label_coupling(torch.tensor([[1.0, 2.0]]), torch.tensor([1.0]), torch.tensor([1.0, 1.0]))
    assert torch.allclose(plan, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert torch.allclose(CouplingHead(plan).weight, torch.tensor([[0.5, 0.5]]))


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="histograms"):
        label_coupling(torch.zeros(2, 2), torch.ones(3))
    with pytest.raises(ValueError, match="empty rows"):
        CouplingHead(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
