"""Issue 25: features learned label-free (a frozen oracle's activations, a SimCLR encoder trained on the target's own
images), feature maps side by side, and pseudo-labels fitted on every image of the target's file (fit_on: all)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dsflow.cli import flow_main
from dsflow.data import (
    ArrayFile, Augment, BalancedKMeansClusterer, Chain, ClusterPipeline, Concat, GaussianMixture, KMeansClusterer, OracleFeatures,
    PixelFeatures, PseudoLabeled, SelectByAgreement, SelfSupervisedFeatures, UMAPFeatures, hungarian_alignment,
)
from dsflow.data.pseudo.learned import ConvEncoder, augment, nt_xent
from dsflow.experiments import runs, table1
from dsflow.experiments.table1 import Mode
from dsflow.models.lenet import LeNet5
from dsflow.tasks.oracle import read_oracle, save_oracle


def _accuracy(pseudo: torch.Tensor, true: torch.Tensor, k: int) -> float:
    return float((hungarian_alignment(pseudo, true, k, k)[pseudo] == true).double().mean())


def _bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 28, 28) images of one bar each, horizontal (label 0) or vertical (1), at a random place and length."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    y = torch.arange(n) % 2
    for i in range(n):
        a, b = (int(v) for v in torch.randint(4, 24, (2,), generator=gen))
        length = int(torch.randint(8, 16, (1,), generator=gen))
        lo = max(0, min(b, 28 - length))
        if y[i] == 0:
            x[i, 0, a:a + 2, lo:lo + length] = 1.0
        else:
            x[i, 0, lo:lo + length, a:a + 2] = 1.0
    return x, y


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised LeNet-5 written as an oracle checkpoint (the features' shape and plumbing, not quality)."""
    torch.manual_seed(0)
    return str(save_oracle(LeNet5(), tmp_path_factory.mktemp("oracle") / "last.ckpt"))


def test_oracle_features_read_the_penultimate_or_a_named_layer(checkpoint: str) -> None:
    x = torch.rand(7, 1, 28, 28)
    net = LeNet5()
    net.load_state_dict(read_oracle(checkpoint)[1])
    with torch.no_grad():
        penultimate = net.classifier[:-1](net.features(x))  # (7, 84): the input of the last linear layer
        conv = net.features(x).flatten(1)  # (7, 400)
    z = OracleFeatures(checkpoint, batch_size=3)(x)
    assert z.shape == (7, 84) and z.dtype == torch.float64
    torch.testing.assert_close(z, penultimate.double())
    torch.testing.assert_close(OracleFeatures(checkpoint, layer="features")(x), conv.double())



def test_oracle_features_run_where_the_images_are(checkpoint: str, device: torch.device) -> None:
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = OracleFeatures(checkpoint)(x.to(device))
    assert z.device == device and z.shape == (5, 84)
    torch.testing.assert_close(z.cpu(), OracleFeatures(checkpoint)(x), atol=1e-3, rtol=0)  # TF32 aside

def test_oracle_features_fail_clearly(checkpoint: str) -> None:
    with pytest.raises(ValueError, match="no checkpoint"):
        OracleFeatures()(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="no layer 'nope'"):
        OracleFeatures(checkpoint, layer="nope")(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        OracleFeatures(checkpoint)(torch.rand(2, 1, 16, 16))


def test_a_default_checkpoint_reaches_nested_oracle_features_only_when_they_name_none(checkpoint: str) -> None:
    inner, own = OracleFeatures(), OracleFeatures("mine.ckpt")
    features = Chain([Concat([PixelFeatures(), inner, own]), UMAPFeatures()])
    PseudoLabeled(GaussianMixture([[0.0]]), features=features, oracle=checkpoint)
    assert inner.checkpoint == checkpoint and own.checkpoint == "mine.ckpt"
    candidate = OracleFeatures()  # and through a label-free selection's candidates
    select = SelectByAgreement([ClusterPipeline(candidate), ClusterPipeline(), ClusterPipeline()])
    PseudoLabeled(GaussianMixture([[0.0]]), method=select, oracle=checkpoint)
    assert candidate.checkpoint == checkpoint


def test_table1_passes_its_oracle_to_the_unsupervised_pseudo_labels() -> None:
    args = table1.parse(["--targets", "fmnist", "--modes", "unsupervised"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        flow_main(["fit", *runs.configs([*args.config, Mode.UNSUPERVISED.config]),
                   *table1.flow_args("fmnist", Mode.UNSUPERVISED, 0, args, "the/oracle.ckpt"), "--print_config"])
    source = yaml.safe_load(out.getvalue())["data"]["init_args"]["source"]
    assert source["class_path"] == "dsflow.data.PseudoLabeled" and source["init_args"]["oracle"] == "the/oracle.ckpt"


def test_concat_scales_each_block_to_unit_rms_norm() -> None:
    x = torch.randn(50, 4)
    big = Chain([PixelFeatures()])
    z = Concat([big, PixelFeatures()], weights=[1.0, 2.0])(1000 * x)
    assert z.shape == (50, 8)
    assert z[:, :4].pow(2).sum(1).mean().item() == pytest.approx(1.0)
    assert z[:, 4:].pow(2).sum(1).mean().item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="one weight"):
        Concat([big], weights=[1.0, 1.0])


def test_augment_is_seeded_and_keeps_images_in_range() -> None:
    x, _ = _bars(6, 0)
    a = augment(x, Augment(), torch.Generator().manual_seed(1))
    b = augment(x, Augment(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, augment(x, Augment(), torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="strengths"):
        Augment(scale=1.5)


def test_nt_xent_is_low_for_matching_views_and_high_for_shuffled_ones() -> None:
    z = torch.randn(16, 8)
    assert nt_xent(z, z + 0.01 * torch.randn(16, 8), 0.2) < nt_xent(z, z[torch.randperm(16)], 0.2) - 1.0


def test_self_supervised_features_are_seeded_and_separate_two_kinds_of_glyph() -> None:
    """Trained on bars alone (no label), the encoder's features are invariant to the views and k-means on them
    tells horizontal from vertical bars; a same-seed run gives the same features, another seed other ones."""
    x, y = _bars(128, 0)
    ssl = SelfSupervisedFeatures(steps=40, batch_size=64, width=8, seed=0)
    z = ssl(x)
    assert z.shape == (128, 32) and z.dtype == torch.float64
    torch.testing.assert_close(z.norm(dim=1), torch.ones(128, dtype=torch.float64))
    assert torch.equal(z, SelfSupervisedFeatures(steps=40, batch_size=64, width=8, seed=0)(x))
    assert not torch.equal(z, SelfSupervisedFeatures(steps=40, batch_size=64, width=8, seed=1)(x))
    assert _accuracy(KMeansClusterer()(z, 2, 0), y, 2) >= 0.9
    # view invariance: two views of one image agree more after training than with the untrained encoder
    views = [augment(x, Augment(), torch.Generator().manual_seed(s)) for s in (5, 6)]

    def agreement(encoder: torch.nn.Module) -> float:
        with torch.no_grad():
            a, b = (torch.nn.functional.normalize(encoder(v), dim=1) for v in views)
        return float((a * b).sum(1).mean() - (a @ b.T).mean())

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = ConvEncoder(8).eval()
    assert agreement(ssl.train_encoder(x)) > agreement(untrained) + 0.05


def _npz(tmp_path: Path) -> str:
    """30 images of 3 well-separated classes (10 each) in an ArrayFile .npz: class c is bright in column band c."""
    gen = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    gen.shuffle(labels)
    images = (gen.random((30, 28, 28)) * 40).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, 9 * c:9 * c + 9] += 200
    path = tmp_path / "bands.npz"
    np.savez(path, images=images, labels=labels.astype(np.int64))
    return str(path)


@pytest.mark.parametrize("clusterer", [KMeansClusterer(), BalancedKMeansClusterer()])
def test_fit_on_all_clusters_every_image_then_labels_the_flowed_subset(tmp_path: Path, clusterer) -> None:
    path = _npz(tmp_path)
    source = ArrayFile(path, n=12, seed=3, balanced=True)
    pseudo = PseudoLabeled(source, features=PixelFeatures(), clusterer=clusterer, fit_on="all")
    data = pseudo.load()
    subset = source.load()
    assert torch.equal(data.x, subset.x)  # the flowed images are the source's n-sample
    true, c = pseudo.scoring_labels()
    assert torch.equal(true, subset.y) and c == 3
    assert _accuracy(data.y, subset.y, 3) == 1.0
    assert torch.bincount(data.y, minlength=3).tolist() == [4, 4, 4]
    # the subset's clusters are the whole fit's: the same cluster ids as clustering all 30 images
    whole = ArrayFile(path).load()
    labels_all = clusterer(PixelFeatures()(whole.x), 3, 0)
    idx = [int(torch.nonzero((whole.x == img).flatten(1).all(1))[0]) for img in data.x]
    assert torch.equal(labels_all[idx], data.y)


def test_fit_on_all_needs_an_image_file_and_a_known_mode() -> None:
    with pytest.raises(ValueError, match="needs an image dataset"):
        PseudoLabeled(GaussianMixture([[0.0], [5.0]]), fit_on="all").load()
    with pytest.raises(ValueError, match="fit_on must be"):
        PseudoLabeled(GaussianMixture([[0.0]]), fit_on="everything")  # type: ignore[arg-type]


def test_fit_max_keeps_the_flowed_images_and_caps_the_fit(tmp_path: Path) -> None:
    source = ArrayFile(_npz(tmp_path), n=6, seed=1, balanced=True)
    capped = PseudoLabeled(source, features=PixelFeatures(), clusterer=BalancedKMeansClusterer(), fit_on="all", fit_max=15)
    data = capped.load()
    assert torch.equal(data.x, source.load().x) and _accuracy(data.y, source.load().y, 3) == 1.0
    from dsflow.data.pseudo import whole_split
    split = whole_split(source, 15, seed=0)
    assert split.whole.x.shape[0] == 15 and torch.equal(split.data().x, source.load().x)
    with pytest.raises(ValueError, match="below the 6 images"):
        whole_split(source, 5)
