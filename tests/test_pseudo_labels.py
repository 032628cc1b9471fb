"""Unlabeled flows (section 6.3): k-means pseudo-labels, Hungarian scoring, and no true label reaching the flow."""

from __future__ import annotations

import os
from functools import partial

import lightning as L
import torch

from dsflow.data import DatasetSource, FlowDataModule, GaussianMixture, LabeledData, PseudoLabeled
from dsflow.data.pseudo import hungarian_alignment, kmeans_labels
from dsflow.flows import FeatureDriven, FlowModule, OTDDTerm

os.environ.setdefault("WANDB_MODE", "offline")


class _Relabeled(DatasetSource):
    """The same features with other labels (permuted classes, or noise)."""

    def __init__(self, base: DatasetSource, mode: str) -> None:
        self.base, self.mode = base, mode

    def load(self) -> LabeledData:
        d = self.base.load()
        if self.mode == "permuted":
            y = (d.y + 1) % d.num_classes
        elif self.mode == "noise":
            y = torch.randint(0, d.num_classes, d.y.shape, generator=torch.Generator().manual_seed(7))
        else:
            y = d.y
        return LabeledData(d.x, y, d.num_classes, d.name)


SOURCE = GaussianMixture([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], std=0.4, n_per_class=20, seed=0)
REFERENCE = GaussianMixture([[0.0, -4.0], [5.0, 5.0], [-5.0, 5.0]], std=0.4, n_per_class=20, seed=1)


def test_kmeans_recovers_separated_classes_and_hungarian_aligns() -> None:
    data = SOURCE.load()
    pseudo = kmeans_labels(data.x, 3, seed=0)
    mapping = hungarian_alignment(pseudo, data.y, 3, 3)
    assert torch.equal(mapping[pseudo], data.y)
    assert sorted(mapping.tolist()) == [0, 1, 2]


def test_hungarian_with_more_clusters_than_classes() -> None:
    pseudo = torch.tensor([0, 0, 1, 1, 2, 2])
    true = torch.tensor([1, 1, 0, 0, 0, 0])
    mapping = hungarian_alignment(pseudo, true, 3, 2)
    assert mapping[0] == 1 and mapping[1] == 0 and mapping[2] == 0  # cluster 2 unmatched: majority label


def _flow(source: DatasetSource) -> torch.Tensor:
    L.seed_everything(0, verbose=False)
    model = FlowModule([OTDDTerm(eps=0.1, lambda_y=1.0)], FeatureDriven(), partial(torch.optim.SGD, lr=0.1))
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=FlowDataModule(PseudoLabeled(source, seed=0), REFERENCE, steps_per_epoch=3))
    return model.particles.x.detach().clone()


def test_unlabeled_flow_never_sees_true_labels() -> None:
    reference = _flow(_Relabeled(SOURCE, "true"))
    assert torch.equal(reference, _flow(_Relabeled(SOURCE, "permuted")))
    assert torch.equal(reference, _flow(_Relabeled(SOURCE, "noise")))
    assert not torch.equal(reference, SOURCE.load().x)  # the particles did move


def test_scoring_labels_are_the_true_ones() -> None:
    src = PseudoLabeled(SOURCE, seed=0)
    data = src.load()
    true, c = src.scoring_labels()
    assert c == 3 and torch.equal(true, SOURCE.load().y) and data.num_classes == 3
