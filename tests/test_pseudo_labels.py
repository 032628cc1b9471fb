"""Unlabeled flows (section 6.3): k-means pseudo-labels, Hungarian scoring, and no true label reaching the flow."""

from __future__ import annotations

import os
from functools import partial

import lightning as L
import pytest
import torch

from dsflow.data import (
    ClusterFeatures, Clusterer, DatasetSource, FlowDataModule, GaussianMixture, LabeledData, OverClusterMerge, PCAFeatures,
    PixelFeatures, PseudoLabeled, FashionMNIST, SpectralClusterer, TSNEFeatures,
)
from tests.real_data import require_data
from dsflow.data.pseudo import KMeansClusterer, hungarian_alignment
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
    pseudo = KMeansClusterer()(PixelFeatures()(data.x), 3, seed=0)
    mapping = hungarian_alignment(pseudo, data.y, 3, 3)
    assert torch.equal(mapping[pseudo], data.y)
    assert sorted(mapping.tolist()) == [0, 1, 2]


def test_hungarian_with_more_clusters_than_classes() -> None:
    pseudo = torch.tensor([0, 0, 1, 1, 2, 2])
    true = torch.tensor([1, 1, 0, 0, 0, 0])
    mapping = hungarian_alignment(pseudo, true, 3, 2)
    assert mapping[0] == 1 and mapping[1] == 0 and mapping[2] == 0  # cluster 2 unmatched: majority label


def _flow(source: DatasetSource, features: ClusterFeatures | None = None, clusterer: Clusterer | None = None) -> torch.Tensor:
    L.seed_everything(0, verbose=False)
    pseudo = PseudoLabeled(source, seed=0, features=features, clusterer=clusterer)
    dm = FlowDataModule(pseudo, REFERENCE, steps_per_epoch=3)
    model = FlowModule([OTDDTerm(eps=0.1, lambda_y=1.0)], FeatureDriven(), partial(torch.optim.SGD, lr=0.1),
                       source=dm.source, reference=dm.reference)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    return model.particles.x.detach().clone()


@pytest.mark.parametrize("features, clusterer", [
    (None, None), (PCAFeatures(components=2), None), (TSNEFeatures(perplexity=10), None), (None, SpectralClusterer()),
    (None, OverClusterMerge(factor=2)),
], ids=["pixels", "pca", "tsne", "spectral", "merge"])
# hits the sweep cap: harmless, the claim is which labels the flow reads
@pytest.mark.filterwarnings("ignore::dsflow.ot.SinkhornCapWarning")
def test_unlabeled_flow_never_sees_true_labels(features: ClusterFeatures | None, clusterer: Clusterer | None) -> None:
    reference = _flow(_Relabeled(SOURCE, "true"), features, clusterer)
    assert torch.equal(reference, _flow(_Relabeled(SOURCE, "permuted"), features, clusterer))
    assert torch.equal(reference, _flow(_Relabeled(SOURCE, "noise"), features, clusterer))
    assert not torch.equal(reference, SOURCE.load().x)  # the particles did move


def _accuracy(pseudo: torch.Tensor, true: torch.Tensor, k: int) -> float:
    return float((hungarian_alignment(pseudo, true, k, k)[pseudo] == true).double().mean())


def test_pca_features_shapes_whitening_and_sphere() -> None:
    x = torch.randn(200, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 5, 48).reshape(3, 4, 4)
    z = PCAFeatures(components=5, normalize=False)(x)  # (200, 5)
    assert z.shape == (200, 5) and z.dtype == torch.float64
    assert torch.allclose(z.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(z.var(0), torch.ones(5, dtype=torch.float64), atol=1e-10)  # whitened: unit variance per component
    assert torch.allclose(PCAFeatures(components=5)(x).norm(dim=1), torch.ones(200, dtype=torch.float64))
    assert torch.equal(PixelFeatures()(x), x.reshape(200, -1).double())
    with pytest.raises(ValueError, match="components"):
        PCAFeatures(components=49)(x)
    with pytest.raises(ValueError, match="components"):
        PCAFeatures(components=0)


@pytest.mark.parametrize("features", [PCAFeatures(components=6), TSNEFeatures(perplexity=15, pca_components=10)],
                         ids=["pca", "tsne"])
def test_features_recover_separated_clusters_in_high_dimension(features: ClusterFeatures) -> None:
    gen = torch.Generator().manual_seed(1)
    means = (torch.randn(5, 50, generator=gen) * 3).tolist()  # 5 clusters in 50-d, well apart
    source = GaussianMixture(means, std=0.5, n_per_class=40, seed=2)
    pseudo = PseudoLabeled(source, features=features)
    data = pseudo.load()
    assert data.num_classes == 5 and _accuracy(data.y, pseudo.scoring_labels()[0], 5) == 1.0
    assert torch.equal(data.x, source.load().x)  # the flow gets the original features; only labels are new


def test_tsne_features_beat_pixels_on_fashion_mnist() -> None:
    """On 1,000 Fashion-MNIST test images, k-means on t-SNE agrees with the classes far more than on pixels."""
    require_data("FashionMNIST/raw")
    data = FashionMNIST(split="test", n=1000, seed=0, balanced=True).load()
    pixels = _accuracy(KMeansClusterer()(PixelFeatures()(data.x), 10), data.y, 10)
    x = data.x[:, 0, :10, :10]  # (n, 10, 10): a cheap check of the argument errors below
    z = TSNEFeatures()(data.x)
    assert z.shape == (1000, 2) and z.dtype == torch.float64
    assert _accuracy(KMeansClusterer()(z, 10), data.y, 10) > pixels + 0.05
    with pytest.raises(ValueError, match="perplexity"):
        TSNEFeatures(perplexity=100)(x[:50])
    with pytest.raises(ValueError, match="components"):
        TSNEFeatures(components=4)


def test_whitening_finds_clusters_hidden_under_a_high_variance_direction() -> None:
    """Two tight clusters apart along x1 (+-1); x0 is a wide unimodal nuisance (uniform, half-width 10).

    k-means on the raw features splits along x0 (the larger variance); on whitened components it splits along x1.
    """
    gen = torch.Generator().manual_seed(3)
    n = 400
    true = torch.arange(n) % 2
    x = torch.stack([20 * torch.rand(n, generator=gen) - 10, 2.0 * true - 1 + 0.05 * torch.randn(n, generator=gen)], 1)
    raw = KMeansClusterer()(PixelFeatures()(x), 2, seed=0)
    white = KMeansClusterer()(PCAFeatures(components=2, normalize=False)(x), 2, seed=0)
    assert _accuracy(raw, true, 2) < 0.75 and _accuracy(white, true, 2) == 1.0


def test_scoring_labels_are_the_true_ones() -> None:
    src = PseudoLabeled(SOURCE, seed=0)
    data = src.load()
    true, c = src.scoring_labels()
    assert c == 3 and torch.equal(true, SOURCE.load().y) and data.num_classes == 3
