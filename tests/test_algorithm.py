"""The paper's building blocks in isolation: k-means, projection, regression, int8."""

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm.training.kmeans import kmeans, nearest_centroids
from lorann_wasm.training.projection import fit_projection
from lorann_wasm.quantization import dequantize_int8, quantize_int8
from lorann_wasm.training.regression import fit_cluster_scorer, query_gram, right_singular_vectors


@pytest.mark.parametrize("euclidean", [True, False])
def test_kmeans_no_empty_clusters_even_with_duplicates(euclidean):
    rng = np.random.default_rng(0)
    # 90% of the points are one repeated vector: many centroids start identical.
    x = np.repeat(rng.standard_normal((1, 8)), 900, axis=0)
    x = np.vstack([x, rng.standard_normal((100, 8))]).astype(np.float32)
    centroids, labels = kmeans(x, 50, euclidean=euclidean, seed=0)
    assert np.bincount(labels, minlength=50).min() >= 1
    assert centroids.shape == (50, 8) and labels.shape == (1000,)


def test_kmeans_is_seeded_and_spherical():
    x = clustered(3000, 16, seed=1)
    a = kmeans(x, 30, euclidean=False, seed=4)
    b = kmeans(x, 30, euclidean=False, seed=4)
    c = kmeans(x, 30, euclidean=False, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_allclose(np.linalg.norm(a[0], axis=1), 1, rtol=1e-5)


def test_kmeans_labels_are_nearest_centroids_and_beat_random():
    x = clustered(4000, 10, n_centers=20, seed=2)
    centroids, labels = kmeans(x, 20, euclidean=True, seed=0)
    assert np.mean(labels == nearest_centroids(x, centroids, True)[:, 0]) > 0.999
    sse = ((x - centroids[labels]) ** 2).sum()
    random_c = x[np.random.default_rng(0).choice(4000, 20, replace=False)]
    random_sse = ((x - random_c[nearest_centroids(x, random_c, True)[:, 0]]) ** 2).sum()
    assert sse < 0.7 * random_sse


@pytest.mark.parametrize("euclidean", [True, False])
def test_nearest_centroids_are_the_closest_in_order(euclidean):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9000, 12)).astype(np.float32)  # more than one chunk
    centroids = rng.standard_normal((40, 12)).astype(np.float32)
    if euclidean:
        d = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    else:
        d = -(x @ centroids.T)
    np.testing.assert_array_equal(nearest_centroids(x, centroids, euclidean, n_nearest=5),
                                  np.argsort(d, axis=1, kind="stable")[:, :5])


def test_clusters_are_numbered_along_a_chain_of_nearest_centroids(monkeypatch):
    """Centroids along a curve come out in its order, so clusters a query probes
    (near one another) lie side by side in the file; the numbering is a
    permutation, and past CHAIN_LIMIT k-means' own."""
    from lorann_wasm.training import cluster_order

    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 10, 300))
    curve = np.stack([np.cos(t), np.sin(t), t / 3], axis=1) @ rng.normal(size=(3, 16))
    shuffled = rng.permutation(300)
    order = cluster_order.chain_order(curve[shuffled].astype(np.float32))
    assert sorted(order.tolist()) == list(range(300))
    along = t[shuffled][order]
    assert np.all(np.diff(along) > 0) or np.all(np.diff(along) < 0)
    monkeypatch.setattr(cluster_order, "CHAIN_LIMIT", 299)
    assert np.array_equal(cluster_order.chain_order(curve), np.arange(300))


def test_kmeans_rejects_too_many_clusters():
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(np.ones((5, 2), np.float32), 6, euclidean=True)


def test_projection_keeps_query_energy():
    rng = np.random.default_rng(0)
    # queries live mostly in a 5-dim subspace of 40 dims
    basis = np.linalg.qr(rng.standard_normal((40, 5)))[0]
    q = (rng.standard_normal((2000, 5)) @ basis.T + 0.01 * rng.standard_normal((2000, 40)))
    p = fit_projection(q.astype(np.float32), 5)
    assert p.shape == (40, 5)
    np.testing.assert_allclose(p.T @ p, np.eye(5), atol=1e-5)
    kept = np.linalg.norm(q @ p) ** 2 / np.linalg.norm(q) ** 2
    assert kept > 0.999


def test_right_singular_vectors_match_explicit_svd():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 20)).astype(np.float32)
    q = rng.standard_normal((300, 20)).astype(np.float32)
    v = right_singular_vectors(query_gram(q), x, 8)
    _, _, vt = np.linalg.svd(q.astype(np.float64) @ x.T.astype(np.float64))
    # same subspace: projectors agree
    np.testing.assert_allclose(v @ v.T, vt[:8].T @ vt[:8], atol=1e-6)


def test_reduced_rank_scorer_is_optimal_and_exact_at_full_rank():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    q = rng.standard_normal((400, 16)).astype(np.float32)
    y = q @ x.T
    a, b = fit_cluster_scorer(x, q, 16)
    np.testing.assert_allclose(q @ a @ b, y, atol=1e-3)  # rank = dim: exact
    a, b = fit_cluster_scorer(x, q, 4)
    err = np.linalg.norm(q @ a @ b - y)
    s = np.linalg.svd(y, compute_uv=False)
    # Eckart-Young: the best rank-4 approximation's error, which RRR attains here
    assert err == pytest.approx(np.sqrt((s[4:] ** 2).sum()), rel=1e-3)


def test_small_cluster_pads_rank_and_falls_back_to_points():
    x = np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)
    a, b = fit_cluster_scorer(x, None, 6)
    assert a.shape == (10, 6) and b.shape == (6, 3)
    np.testing.assert_allclose(x @ a @ b, x @ x.T, atol=1e-4)
    assert np.all(b[3:] == 0)


def test_int8_round_trip_error_is_bounded():
    x = np.random.default_rng(6).standard_normal((7, 30, 9)).astype(np.float32)
    codes, scales = quantize_int8(x, axis=1)
    assert codes.dtype == np.int8 and scales.shape == (7, 9)
    err = np.abs(dequantize_int8(codes, scales, axis=1) - x)
    assert np.all(err <= scales[:, None, :] / 2 + 1e-7)
    zero_codes, zero_scales = quantize_int8(np.zeros((4, 3), np.float32), axis=0)
    assert np.all(zero_codes == 0) and np.all(zero_scales == 1)


def test_tuning_minimises_the_cost_it_is_given():
    """The default cost is the operation count; a site passes bytes per query, where
    a reranked point costs more than a probed one (its vector and its record)."""
    from lorann_wasm import LorannIndex

    data = clustered(4000, 32, seed=5)
    data += np.random.default_rng(3).standard_normal(data.shape).astype(np.float32) * data.std()
    picks = {}
    for name, cost in [("operations", None),
                       ("probing", lambda c, points, R, arrays: 1000 * points + R),
                       ("reranking", lambda c, points, R, arrays: points + 1000 * R)]:
        tuned = LorannIndex(data, n_clusters=40, rank=4, seed=1).build(tuning_cost=cost).params
        picks[name] = (tuned["clusters_to_search"], tuned["points_to_rerank"])
        row = next(r for r in tuned["tuning"]["table"] if r[0] == 0.95)
        assert row[1:3] == list(picks[name]) and row[3] >= 0.95
    c_probe, r_probe = picks["probing"]
    c_rerank, r_rerank = picks["reranking"]
    assert c_probe < c_rerank and r_probe > r_rerank  # each saves what costs most


def test_tuning_choice_for_targets_out_of_reach_is_the_cheapest_near_the_best():
    from lorann_wasm.training.tuning import choose
    # (c, R, recall, cost, standard error)
    results = [(8, 100, 0.90, 10.0, 0.004), (64, 500, 0.958, 60.0, 0.003),
               (128, 500, 0.965, 120.0, 0.0026), (342, 500, 0.966, 342.0, 0.0026)]
    table = {row[0]: row[1:] for row in choose(results, targets=(0.85, 0.95, 0.99))}
    assert table[0.85] == [8, 100, 0.9]  # reached: the cheapest that does
    assert table[0.95] == [64, 500, 0.958]
    # out of reach: 0.965 is within one standard error of the best 0.966; 0.958 is not
    assert table[0.99] == [128, 500, 0.965]
