"""Pseudo-label methods (features, clusterers, ensembles, label-free selection) on data with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from dsflow.data import (
    AgglomerativeClusterer, Chain, ClusterPipeline, ConsensusClusterer, DeskewFeatures, GaussianMixture,
    GaussianMixtureClusterer, GradientHistogramFeatures, KMeansClusterer, OverClusterMerge, PixelFeatures, PseudoLabeled,
    SelectByAgreement, SelectByStability, SpectralClusterer, SpectralFeatures, UMAPFeatures, hungarian_alignment,
)
from dsflow.data.distorted import Distorted
from dsflow.data.pseudo import class_neighbors


def _accuracy(pseudo: torch.Tensor, true: torch.Tensor, k: int) -> float:
    return float((hungarian_alignment(pseudo, true, k, k)[pseudo] == true).double().mean())


def _rings(n: int = 240, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two concentric circles (radii 1 and 4, noise 0.1): k-means cuts them, graph methods must not."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    r = 1.0 + 3.0 * y.double()
    x = torch.stack([r * torch.cos(t), r * torch.sin(t)], 1) + 0.1 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return x, y  # (n, 2), (n,)


def _blobs(k: int = 4, d: int = 20, per: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    means = 4.0 * torch.randn(k, d, generator=gen, dtype=torch.float64)
    y = torch.arange(k).repeat_interleave(per)
    return means[y] + 0.3 * torch.randn(k * per, d, generator=gen, dtype=torch.float64), y


@pytest.mark.parametrize("clusterer", [
    SpectralClusterer(), AgglomerativeClusterer(linkage="single"), OverClusterMerge(factor=4),
], ids=["spectral", "agglomerative", "over-cluster-merge"])
def test_graph_clusterers_recover_concentric_rings_that_kmeans_cuts(clusterer) -> None:
    x, y = _rings()
    assert _accuracy(KMeansClusterer()(x, 2), y, 2) < 0.75
    labels = clusterer(x, 2, seed=0)
    assert labels.dtype == torch.int64 and _accuracy(labels, y, 2) == 1.0


def test_spectral_features_unfold_rings_for_kmeans() -> None:
    x, y = _rings()
    z = SpectralFeatures(neighbors=10)(x, 2)  # (n, 2), unit rows
    assert z.shape == (240, 2) and torch.allclose(z.norm(dim=1), torch.ones(240, dtype=torch.float64))
    assert _accuracy(KMeansClusterer()(z, 2), y, 2) == 1.0


@pytest.mark.parametrize("clusterer", [GaussianMixtureClusterer(), ConsensusClusterer(runs=5)], ids=["gmm", "consensus"])
def test_mixture_and_consensus_recover_separated_blobs(clusterer) -> None:
    x, y = _blobs()
    labels = clusterer(x, 4, seed=0)
    assert _accuracy(labels, y, 4) == 1.0
    assert torch.equal(torch.bincount(labels), torch.full((4,), 50))


def test_umap_features_keep_separated_blobs_apart() -> None:
    x, y = _blobs(k=3, per=40)
    z = UMAPFeatures(components=2, pca_components=10)(x, 3)
    assert z.shape == (120, 2) and z.dtype == torch.float64
    assert _accuracy(KMeansClusterer()(z, 3), y, 3) == 1.0


def test_gradient_histograms_put_a_horizontal_edge_in_the_vertical_gradient_bin() -> None:
    img = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    img[..., 14:, :] = 1.0  # a horizontal edge: the gradient points down, theta = pi / 2
    h = GradientHistogramFeatures(cells=4, bins=9)(img)  # (1, 9 * 16)
    assert h.shape == (1, 144) and torch.allclose(h.norm(dim=1), torch.ones(1, dtype=torch.float64))
    per_bin = (h.reshape(9, 16) ** 2).sum(1)  # (9,) share of the histogram mass per orientation
    assert per_bin[4] == pytest.approx(1.0)  # pi / 2 is the centre of bin 4 of 9 over [0, pi)
    turned = GradientHistogramFeatures(cells=4, bins=9)(img.transpose(-1, -2))  # a vertical edge: theta = 0
    assert (turned.reshape(9, 16) ** 2).sum(1)[[0, 8]].sum() == pytest.approx(1.0)  # 0 lies between bins 8 and 0


def test_deskew_makes_a_slanted_stroke_upright_and_centred() -> None:
    img = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    for r in range(4, 24):
        img[0, 0, r, 8 + (r - 4) // 2: 10 + (r - 4) // 2] = 1.0  # a stroke leaning by half a column per row
    def moments(a: torch.Tensor) -> tuple[float, float, float]:
        m = a[0, 0]
        v, u = torch.meshgrid(torch.arange(28.0, dtype=torch.float64), torch.arange(28.0, dtype=torch.float64), indexing="ij")
        u0, v0 = (m * u).sum() / m.sum(), (m * v).sum() / m.sum()
        return float(u0), float(v0), float((m * (u - u0) * (v - v0)).sum() / (m * (v - v0) ** 2).sum())
    assert moments(img)[2] == pytest.approx(0.5, abs=0.05)
    u0, v0, slant = moments(DeskewFeatures(blur=0.0)(img))
    assert abs(slant) < 0.05 and u0 == pytest.approx(13.5, abs=0.5) and v0 == pytest.approx(13.5, abs=0.5)


def test_stability_prefers_the_graph_method_on_rings() -> None:
    """k-means cuts the rings along a line whose direction depends on the sample: unstable. Spectral is not."""
    x, y = _rings(n=200)
    kmeans = ClusterPipeline(PixelFeatures(), KMeansClusterer(n_init=1))
    spectral = ClusterPipeline(PixelFeatures(), SpectralClusterer(neighbors=8))
    select = SelectByStability([kmeans, spectral], runs=3)
    labels = select(x, 2, seed=0)
    assert select.last.chosen == 1 and select.last.scores[1] > 0.99 > select.last.scores[0]
    assert _accuracy(labels, y, 2) == 1.0


def test_agreement_picks_a_clustering_the_others_confirm() -> None:
    x, y = _rings(n=200)
    cands = [ClusterPipeline(clusterer=KMeansClusterer()), ClusterPipeline(clusterer=SpectralClusterer(neighbors=8)),
             ClusterPipeline(clusterer=AgglomerativeClusterer(linkage="single", neighbors=8))]
    select = SelectByAgreement(cands)
    assert _accuracy(select(x, 2), y, 2) == 1.0 and select.last.chosen in (1, 2)


def test_pseudo_labeled_takes_a_method_and_parses_from_yaml() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--data", type=PseudoLabeled)
    cfg = parser.parse_object({"data": {"class_path": "dsflow.data.PseudoLabeled", "init_args": {
        "source": {"class_path": "dsflow.data.GaussianMixture",
                   "init_args": {"means": [[-4.0, 0.0], [4.0, 0.0]], "std": 0.3, "n_per_class": 20}},
        "features": {"class_path": "dsflow.data.Chain", "init_args": {"steps": [{"class_path": "dsflow.data.PixelFeatures"}]}},
        "clusterer": {"class_path": "dsflow.data.SpectralClusterer", "init_args": {"neighbors": 8}}}}})
    src = parser.instantiate_classes(cfg).data
    data = src.load()
    assert isinstance(src.clusterer, SpectralClusterer) and _accuracy(data.y, src.scoring_labels()[0], 2) == 1.0


def test_distorted_keeps_labels_and_is_seeded() -> None:
    class _Images(GaussianMixture):
        def load(self):
            d = super().load()
            return type(d)(d.x.reshape(-1, 1, 4, 4).abs().clamp(0, 1), d.y, d.num_classes, d.name)
    src = _Images((torch.randn(2, 16, generator=torch.Generator().manual_seed(0))).tolist(), n_per_class=5)
    a, b = Distorted(src, seed=3).load(), Distorted(src, seed=3).load()
    assert torch.equal(a.x, b.x) and torch.equal(a.y, src.load().y) and not torch.equal(a.x, src.load().x)
    assert a.x.shape == (10, 1, 4, 4) and float(a.x.min()) >= 0.0 and float(a.x.max()) <= 1.0


def test_neighbors_follow_class_size_and_bad_arguments_fail() -> None:
    assert class_neighbors(2000, 10) == 14 and class_neighbors(5000, 10) == 22 and class_neighbors(2000, 10, fixed=7) == 7
    x, _ = _blobs(k=2, per=5)
    cases = [
        (lambda: class_neighbors(10, 2, fixed=10), "neighbors"),
        (lambda: GradientHistogramFeatures(cells=0), "cells"),
        (lambda: GradientHistogramFeatures()(torch.zeros(2, 5)), "images"),
        (lambda: DeskewFeatures(blur=-1), "blur"),
        (lambda: UMAPFeatures(neighbor_scale=0), "neighbor_scale"),
        (lambda: SpectralFeatures(components=0), "components"),
        (lambda: SpectralClusterer(neighbor_scale=-1), "neighbor_scale"),
        (lambda: KMeansClusterer()(x, 11), "k <= n"),
        (lambda: KMeansClusterer(n_init=0), "n_init"),
        (lambda: GaussianMixtureClusterer(n_init=0), "n_init"),
        (lambda: OverClusterMerge(factor=0), "factor"),
        (lambda: ConsensusClusterer(subsample=0), "subsample"),
        (lambda: Chain([]), "steps"),
        (lambda: SelectByStability([], runs=3), "candidates"),
        (lambda: SelectByStability([ClusterPipeline()], runs=1), "runs"),
        (lambda: SelectByAgreement([ClusterPipeline(), ClusterPipeline()]), "at least 3"),
        (lambda: PseudoLabeled(GaussianMixture([[0.0]]), features=PixelFeatures(), method=ClusterPipeline()), "either"),
        (lambda: Distorted(GaussianMixture([[0.0]]), scale=1.0), "scale"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


def test_recommended_yaml_of_the_docs_instantiates() -> None:
    """The snippet of docs/pseudo_labels.md parses into the chain it describes (nothing is loaded)."""
    import re
    from pathlib import Path

    import yaml
    from jsonargparse import ArgumentParser

    from dsflow.data import ByStrokeWidth, Chain, Concat, GlyphEncoderFeatures, KMNIST

    doc = (Path(__file__).parents[1] / "docs/pseudo_labels.md").read_text()
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.S).group(1))
    parser = ArgumentParser()
    parser.add_argument("--source", type=PseudoLabeled)
    src = parser.instantiate_classes(parser.parse_object(snippet)).source
    assert isinstance(src.source, KMNIST) and isinstance(src.features, ByStrokeWidth) and isinstance(src.clusterer, KMeansClusterer)
    thin, thick = src.features.thin, src.features.thick
    assert isinstance(thin, Chain) and isinstance(thick, Chain)
    assert [type(s) for s in thick.steps] == [DeskewFeatures, GradientHistogramFeatures, UMAPFeatures]
    assert [type(s) for s in thin.steps] == [Concat, UMAPFeatures]
    hog, glyphs = thin.steps[0].parts
    assert isinstance(hog, Chain) and isinstance(glyphs, GlyphEncoderFeatures)
    assert [(type(s), getattr(s, "cells", None)) for s in hog.steps] == [(DeskewFeatures, None), (GradientHistogramFeatures, 7)]


def test_balanced_kmeans_gives_equal_clusters_of_least_cost() -> None:
    """Equal cluster sizes, the least total squared distance among balanced assignments (brute force on 8 points),
    and separated equal blobs recovered exactly."""
    import itertools

    import numpy as np

    from dsflow.data import BalancedKMeansClusterer, hungarian_alignment
    from dsflow.data.pseudo import balanced_assignment

    gen = torch.Generator().manual_seed(0)
    big, small = torch.randn(60, 2, generator=gen) * 0.3, torch.randn(20, 2, generator=gen) * 0.3 + 6.0
    labels = BalancedKMeansClusterer(n_init=2)(torch.cat([big, small]).double(), 4, seed=0)
    assert torch.bincount(labels).tolist() == [20, 20, 20, 20]  # the big blob is cut into three
    pts, centres = np.random.default_rng(1).normal(size=(8, 2)), np.array([[0.0, 0.0], [1.0, 1.0]])
    cost = lambda lab: sum(((pts[i] - centres[c]) ** 2).sum() for i, c in enumerate(lab))  # noqa: E731
    best = min((lab for lab in itertools.product([0, 1], repeat=8) if sum(lab) == 4), key=cost)
    got = balanced_assignment(pts, centres)
    assert np.bincount(got).tolist() == [4, 4] and abs(cost(got) - cost(best)) < 1e-12
    y = torch.arange(90) % 3
    blobs = torch.randn(90, 2, generator=gen).double() * 0.2 + 5.0 * torch.eye(3)[y, :2].double()
    pred = BalancedKMeansClusterer()(blobs, 3)
    assert torch.equal(hungarian_alignment(pred, y, 3, 3)[pred], y)
    with pytest.raises(ValueError, match="need n_init >= 1 and max_iter >= 1, got 0, 30"):
        BalancedKMeansClusterer(n_init=0)
