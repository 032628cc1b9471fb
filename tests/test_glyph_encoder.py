"""The frozen glyph encoder (GlyphEncoderFeatures): the shipped weights, its input checks, that its features tell
characters apart on real digits, and that its kanji corpus shares no character with a development set."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflow.data import MNIST, GlyphEncoderFeatures
from dsflow.data.glyph_corpus import CJK_FIRST, CJK_LAST, EXCLUDED, candidates
from dsflow.data.glyph_scripts import SCRIPTS
from dsflow.data.pseudo.glyph_encoder import DEFAULT_WEIGHTS, GlyphEncoder, load_encoder
from dsflow.experiments.train_glyph_encoder import Corpus, random_affine_batch, train
from tests.real_data import require_data

MANIFEST = DEFAULT_WEIGHTS.with_suffix(".json")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """500 MNIST test digits (n, 1, 28, 28) in [0, 1] and their labels, through the project's loader."""
    require_data("MNIST/raw/t10k-images-idx3-ubyte")
    data = MNIST(split="test", n=500).load()
    return data.x, data.y


def test_shipped_weights_give_deterministic_unit_norm_features() -> None:
    x = torch.rand(9, 1, 28, 28)
    z = GlyphEncoderFeatures()(x)
    assert z.shape == (9, 128) and z.dtype == torch.float64
    torch.testing.assert_close(z.norm(dim=1), torch.ones(9, dtype=torch.float64))
    torch.testing.assert_close(GlyphEncoderFeatures(batch_size=4)(x[:, 0]), z)  # (n, 28, 28) and batching
    info = json.loads(MANIFEST.read_text())
    assert info["weights_sha256"] == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    assert not any(p.requires_grad for p in GlyphEncoderFeatures().net.parameters())


def test_wrong_shapes_and_missing_weights_are_named(tmp_path: Path) -> None:
    feats = GlyphEncoderFeatures()
    for shape in [(4, 3, 28, 28), (4, 1, 32, 32), (4, 784)]:
        with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
            feats(torch.rand(*shape))
    with pytest.raises(FileNotFoundError, match="nothing.pt.*train_glyph_encoder"):
        GlyphEncoderFeatures(checkpoint=tmp_path / "nothing.pt")(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size"):
        GlyphEncoderFeatures(batch_size=0)


def test_another_checkpoint_is_read(tmp_path: Path) -> None:
    torch.manual_seed(1)
    path = tmp_path / "other.pt"
    torch.save(GlyphEncoder(width=8).state_dict(), path)
    assert load_encoder(path).features[0].out_channels == 8
    x = torch.rand(3, 1, 28, 28)
    assert not torch.allclose(GlyphEncoderFeatures(checkpoint=path)(x), GlyphEncoderFeatures()(x))


def test_moved_copies_of_a_digit_stay_nearer_than_other_digits(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A digit moved by a small affine map (rotation 8 deg, scale 10 %, shift 1 px) has itself as nearest (cosine)
    of the 500 originals for 90 % of digits (the shipped weights: 97.6 %; a random encoder of the same shape: 73 %)."""
    x, _ = digits
    moved = random_affine_batch(x, torch.Generator().manual_seed(0), rotation=8.0, scale=0.1, shift=1.0)
    feats = GlyphEncoderFeatures()
    sim = feats(moved) @ feats(x).T  # (n, n): moved i against original j
    assert float((sim.argmax(1) == torch.arange(len(x))).double().mean()) > 0.9


def test_features_put_digits_of_a_class_together(digits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    """Leave-one-out 1-nearest-neighbour accuracy on MNIST digits (classes the corpus never had): the trained encoder
    well above a random one of the same shape (what the features carry was learned; 96.6 % against 87.0 %)."""
    x, y = digits

    def one_nn(feats: GlyphEncoderFeatures) -> float:
        z = feats(x)
        sim = (z @ z.T).fill_diagonal_(-2.0)
        return float((y[sim.argmax(1)] == y).double().mean())

    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    random = GlyphEncoder()
    random.eval()
    torch.save(random.state_dict(), path)
    trained, untrained = one_nn(GlyphEncoderFeatures()), one_nn(GlyphEncoderFeatures(checkpoint=path))
    assert trained > 0.92 and trained > untrained + 0.05, (trained, untrained)


def test_corpus_rule_excludes_every_development_character() -> None:
    pool = set(candidates())
    assert all(CJK_FIRST <= ord(ch) <= CJK_LAST for ch in pool)
    for name, spec in SCRIPTS.items():
        assert not pool & set(spec.chars), name
    assert not pool & EXCLUDED and {"八", "力", "夕", "波", "於"} <= EXCLUDED  # kana sources and look-alikes
    chars = json.loads(MANIFEST.read_text())["chars"]  # the shipped encoder's classes
    assert len(chars) == len(set(chars)) >= 100 and set(chars) <= pool


def test_training_is_seeded() -> None:
    """Two runs of the training loop with the same seed give the same weights (a tiny random corpus, one epoch)."""
    gen = np.random.default_rng(0)
    x = (gen.random((24, 28, 28)) * 255).astype(np.uint8)
    y = np.arange(24) % 3
    corpus = Corpus("丁七丈", x, y, x[:6], y[:6])
    args = argparse.Namespace(seed=0, epochs=1, batch_size=8, lr=1e-3)
    (a, scores), (b, _) = train(corpus, args), train(corpus, args)
    assert len(scores) == 1 and 0 <= scores[0].held_out_accuracy <= 100
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.slow
def test_corpus_rule_gives_the_shipped_characters() -> None:
    """With the corpus fonts installed, the written rule picks exactly the shipped encoder's classes."""
    from dsflow.data.glyph_corpus import corpus_chars
    from dsflow.data.glyphs import MissingFontError

    chars = json.loads(MANIFEST.read_text())["chars"]
    try:
        assert corpus_chars(len(chars)) == chars
    except MissingFontError as err:
        pytest.skip(f"corpus fonts not installed: {err.missing}")


def test_features_on_the_images_device_match_the_cpu_ones(device: torch.device) -> None:
    """The encoder runs where the images are; on a GPU it gives the CPU's embeddings (TF32 convolutions aside)."""
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cpu = GlyphEncoderFeatures()(x)
    here = GlyphEncoderFeatures()(x.to(device))
    assert here.device == device and here.shape == (64, 128)
    torch.testing.assert_close(here.cpu(), cpu, atol=5e-3, rtol=0)
