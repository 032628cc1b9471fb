"""dsflow.clustering: the one k-means wrapper and the one Hungarian matching, and both users going through them.

Users: pseudo-labels (KMeansClusterer, BalancedKMeansClusterer; hungarian_alignment for scoring) and jd-vl's
label recovery (KMeansLabelRecovery; match_labels keeping label ids stable).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

import dsflow
import dsflow.clustering as clustering
from dsflow.clustering import ClusterMatching, contingency, kmeans, match_clusters
from dsflow.data import BalancedKMeansClusterer, KMeansClusterer, hungarian_alignment
from dsflow.flows import KMeansLabelRecovery, match_labels

PACKAGE = Path(dsflow.__file__).parent


def _blobs(n: int = 60, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], dtype=torch.float64)
    return (centres[torch.arange(n) % 3] + 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64))  # (n, 2)


def test_match_clusters_recovers_a_known_permutation() -> None:
    """Case: b is a relabelling of a by the permutation perm (cluster i of a is cluster perm[i] of b), with
    clusters of sizes 5, 4, 3, 2: the matching of the (4, 4) contingency table is exactly perm."""
    perm = torch.tensor([2, 0, 3, 1])
    a = torch.repeat_interleave(torch.arange(4), torch.tensor([5, 4, 3, 2]))  # (14,)
    counts = contingency(a, perm[a], 4, 4)
    torch.testing.assert_close(counts, torch.diag(torch.tensor([5, 4, 3, 2]))[:, torch.argsort(perm)])
    m = match_clusters(counts)
    assert isinstance(m, ClusterMatching)
    assert m.rows.tolist() == [0, 1, 2, 3] and m.cols.tolist() == perm.tolist()


def test_match_clusters_maximises_the_total_and_leaves_extra_rows_unmatched() -> None:
    """Case: greedy (row 0 takes its largest, column 0) totals 5 + 1; the optimum pairs 0-1 and 1-0 for 4 + 4.
    A third row has no column left."""
    counts = torch.tensor([[5, 4], [4, 1], [3, 3]])
    m = match_clusters(counts)
    assert int(counts[m.rows, m.cols].sum()) == 8 and len(m.rows) == 2
    assert sorted(zip(m.rows.tolist(), m.cols.tolist())) == [(0, 1), (1, 0)]


def test_contingency_and_matching_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="two \\(n,\\) label vectors"):
        contingency(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 1, 1)
    with pytest.raises(ValueError, match="must lie in \\[0, 2\\)"):
        contingency(torch.tensor([0, 2]), torch.tensor([0, 0]), 2, 1)
    with pytest.raises(ValueError, match="counts must be"):
        match_clusters(torch.zeros(3))


def test_kmeans_is_sklearns_kmeans_with_the_seed_as_random_state() -> None:
    pts = _blobs().numpy()
    fit = kmeans(pts, 3, n_init=2, seed=5)
    ref = KMeans(n_clusters=3, n_init=2, random_state=5).fit(pts)
    assert fit.labels.dtype == np.int64 and np.array_equal(fit.labels, ref.labels_)
    np.testing.assert_array_equal(fit.centres, ref.cluster_centers_)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        kmeans(pts[:2], 3)
    with pytest.raises(ValueError, match="n_init"):
        kmeans(pts, 3, n_init=0)


def test_both_users_go_through_the_one_kmeans_and_the_one_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pseudo-labels and jd-vl label recovery reach sklearn's KMeans and scipy's Hungarian solver only through
    dsflow.clustering: replacing them there is seen by every user."""
    fits: list[int] = []
    solves: list[tuple[int, int]] = []
    real_solver = clustering.linear_sum_assignment

    class RecordingKMeans(KMeans):
        def fit(self, X, y=None, sample_weight=None):  # X: sklearn's name
            fits.append(self.n_clusters)
            return super().fit(X, y, sample_weight)

    def recording_solver(cost, maximize=False):
        solves.append(cost.shape)
        return real_solver(cost, maximize=maximize)

    monkeypatch.setattr(clustering, "KMeans", RecordingKMeans)
    monkeypatch.setattr(clustering, "linear_sum_assignment", recording_solver)
    z = _blobs()
    KMeansClusterer(n_init=1)(z, 3, 0)
    BalancedKMeansClusterer(n_init=1, max_iter=1)(z, 3, 0)
    labels = KMeansLabelRecovery(4, n_init=1)(z)
    assert fits == [3, 3, 4]
    truth = torch.arange(60) % 3
    match_labels(labels, truth)
    hungarian_alignment(labels, truth, 4, 3)
    assert solves == [(4, 3), (4, 3)]


def _names(path: Path) -> set[str]:
    """Every module imported and every name imported from a module in the source file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_second_kmeans_or_hungarian_and_no_upward_import() -> None:
    """Only dsflow/clustering.py imports sklearn's KMeans or scipy's linear_sum_assignment; it imports no other
    part of dsflow, and dsflow/data never imports dsflow/flows."""
    for path in PACKAGE.rglob("*.py"):
        names = _names(path)
        if path.name != "clustering.py" or path.parent != PACKAGE:
            assert not names & {"sklearn.cluster.KMeans", "scipy.optimize.linear_sum_assignment"}, path
        if path.relative_to(PACKAGE).parts[0] == "data":
            assert not any(n.startswith("dsflow.flows") for n in names), path
    assert not any(n.startswith("dsflow.") for n in _names(PACKAGE / "clustering.py"))
