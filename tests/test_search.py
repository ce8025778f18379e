"""Search behaviour on seeded synthetic data, for every metric."""

import numpy as np
import pytest

from conftest import clustered, recall
from lorann_wasm import ExactIndex, LorannIndex

METRICS = ("ip", "cosine", "l2")


@pytest.mark.parametrize("distance", METRICS)
def test_recall_against_exact(built, truth, synthetic, distance):
    _, queries = synthetic
    found = built[distance].search(queries, 10, target_recall=0.97)
    assert recall(found, truth[distance]) >= 0.95
    # More clusters and more reranking can only help.
    wide = built[distance].search(queries, 10, clusters_to_search=30, points_to_rerank=600)
    assert recall(wide, truth[distance]) >= 0.99


@pytest.mark.parametrize("distance", METRICS)
def test_single_and_batch_agree(built, synthetic, distance):
    _, queries = synthetic
    index = built[distance]
    batch_ids, batch_d = index.search(queries, 10, return_distances=True)
    for q, ids, d in zip(queries, batch_ids, batch_d):
        one_ids, one_d = index.search(q, 10, return_distances=True)
        np.testing.assert_allclose(one_d, d, rtol=1e-5, atol=1e-4)
    single = np.array([index.search(q, 10) for q in queries])
    assert np.mean(np.all(single == batch_ids, axis=1)) >= 0.99


def test_batches_split_into_blocks_give_the_same_results(built, synthetic, monkeypatch):
    from lorann_wasm.query import candidates
    _, queries = synthetic
    index = built["l2"]
    whole = index.search(queries, 10, points_to_rerank=30, return_distances=True)
    # blocks of a few queries each, every one with its own width (padding differs)
    monkeypatch.setattr(candidates, "BATCH_VALUES", 3 * int(index._store.arrays.sizes.max()))
    split = index.search(queries, 10, points_to_rerank=30, return_distances=True)
    np.testing.assert_array_equal(split[0], whole[0])
    np.testing.assert_array_equal(split[1], whole[1])


def test_batch_scores_on_a_coarse_grain_give_the_same_results(built, synthetic, monkeypatch):
    """As on 32-bit wasm, where the window view of a block must stay under 2 GB
    nominal: clusters then start at multiples of a grain, with padding between."""
    from lorann_wasm.query import candidates
    _, queries = synthetic
    index = built["ip"]
    whole = index.search(queries, 10, points_to_rerank=30, return_distances=True)
    grains, real = [], candidates.as_strided

    def as_strided(x, shape, strides):
        grains.append(strides[0] // x.itemsize)
        return real(x, shape=shape, strides=strides)

    monkeypatch.setattr(candidates, "as_strided", as_strided)
    # room for 8 rows of the longest cluster per query: a grain of about width / 8
    longest = int(index._store.arrays.sizes.max())
    monkeypatch.setattr(candidates, "WINDOW_BYTES", 8 * len(queries) * longest * 4)
    coarse = index.search(queries, 10, points_to_rerank=30, return_distances=True)
    assert grains and min(grains) > 1
    np.testing.assert_array_equal(coarse[0], whole[0])
    np.testing.assert_array_equal(coarse[1], whole[1])


@pytest.mark.parametrize("distance", METRICS)
def test_return_shapes_and_types(built, synthetic, distance):
    _, queries = synthetic
    index = built[distance]
    ids = index.search(queries[0], k=7)
    assert ids.shape == (7,) and ids.dtype == np.int64
    ids, d = index.search(queries[:5], k=7, return_distances=True)
    assert ids.shape == (5, 7) and d.shape == (5, 7) and d.dtype == np.float32
    assert np.all(np.diff(d, axis=1) >= 0), "distances must be sorted best first"
    e_ids, e_d = ExactIndex(np.zeros((3, 48)) + 1, distance="l2").search(queries[:2], 3,
                                                                          return_distances=True)
    assert e_ids.shape == (2, 3) and e_d.shape == (2, 3)


@pytest.mark.parametrize("distance", METRICS)
def test_distances_mean_what_the_docs_say(built, synthetic, distance):
    data, queries = synthetic
    ids, d = built[distance].search(queries[:20], 5, return_distances=True)
    x, q = data[ids].astype(np.float64), queries[:20, None, :].astype(np.float64)
    if distance == "ip":
        want = -np.sum(q * x, axis=2)
    elif distance == "l2":
        want = np.sum((q - x) ** 2, axis=2)
    else:
        cos = np.sum(q * x, axis=2) / np.linalg.norm(q, axis=2) / np.linalg.norm(x, axis=2)
        want = 1 - cos
    np.testing.assert_allclose(d, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("distance", METRICS)
def test_exact_search_matches_exact_index(built, truth, synthetic, distance):
    _, queries = synthetic
    ids = built[distance].exact_search(queries, 10)
    assert np.mean(ids == truth[distance]) >= 0.999  # float ties may reorder
    assert built[distance].exact_search(queries[0], 10).shape == (10,)


def test_exact_index_is_exact(synthetic):
    data, queries = synthetic
    for distance in METRICS:
        ids, d = ExactIndex(data, distance=distance).search(queries[:10], 4, return_distances=True)
        if distance == "l2":
            full = ((queries[:10, None, :].astype(np.float64) - data[None]) ** 2).sum(-1)
        else:
            x = data / np.linalg.norm(data, axis=1, keepdims=True) if distance == "cosine" else data
            qq = queries[:10] / np.linalg.norm(queries[:10], axis=1, keepdims=True) \
                if distance == "cosine" else queries[:10]
            full = -(qq.astype(np.float64) @ x.T.astype(np.float64))
        want = np.argsort(full, axis=1, kind="stable")[:, :4]
        assert np.mean(ids == want) >= 0.97


@pytest.mark.parametrize("distance", METRICS)
def test_quantized_and_float_scorers_agree(synthetic, truth, distance):
    data, queries = synthetic
    common = dict(distance=distance, rank=16, seed=1)
    q8 = LorannIndex(data, quantization_bits=8, **common).build()
    f32 = LorannIndex(data, quantization_bits=None, **common).build()
    assert q8._tensors["A"].dtype == np.int8 and f32._tensors["A"].dtype == np.float32
    a = q8.search(queries, 10, points_to_rerank=100)
    b = f32.search(queries, 10, points_to_rerank=100)
    assert np.mean([np.intersect1d(x, y).size / 10 for x, y in zip(a, b)]) >= 0.99
    assert abs(recall(a, truth[distance]) - recall(b, truth[distance])) <= 0.01
    # The approximate inner products themselves: int8 error is ~1% of their spread.
    qa, fa = q8._store.arrays, f32._store.arrays
    qr, fr = q8._prefix.reduce(queries), f32._prefix.reduce(queries)
    for j in range(0, qa.n_clusters, 7):  # (A_t's last row is the centroid's term)
        s8 = (qr @ qa.A_t[j][:16].T) @ qa.cluster_B(j).T
        s32 = (fr @ fa.A_t[j][:16].T) @ fa.cluster_B(j).T
        assert np.abs(s8 - s32).mean() <= 0.02 * s32.std()


@pytest.mark.parametrize("rerank_dtype, scales, min_recall", [
    ("float16", None, 0.95), ("int8", "dimension", 0.93), ("int8", "vector", 0.93)])
@pytest.mark.parametrize("distance", METRICS)
def test_compact_rerank_vectors(synthetic, truth, distance, rerank_dtype, scales, min_recall):
    data, queries = synthetic
    kw = {"int8_scales": scales} if scales else {}
    index = LorannIndex(data, distance=distance, rank=16, seed=1, rerank_dtype=rerank_dtype,
                        **kw).build()
    assert index._tensors["vectors"].dtype == np.dtype(rerank_dtype)
    assert recall(index.search(queries, 10, target_recall=0.98), truth[distance]) >= min_recall
    full_size = LorannIndex(data, distance=distance, rank=16, seed=1).build().to_bytes()
    assert len(index.to_bytes()) < 0.75 * len(full_size)


def test_global_reduction_and_training_queries():
    data = clustered(4000, 300, seed=3)
    queries = clustered(300, 300, seed=3)[:100] + 0.1
    truth = ExactIndex(data, distance="ip").search(queries, 10)
    index = LorannIndex(data, distance="ip", seed=2)
    assert index.params["global_dim"] == 128  # the documented rule for 200 <= d <= 1000
    index.build(training_queries=clustered(2000, 300, seed=4))
    assert index._tensors["projection"].shape == (300, 128)
    assert recall(index.search(queries, 10, target_recall=0.98), truth) >= 0.95


def test_deterministic_for_a_seed(synthetic):
    data, _ = synthetic
    a = LorannIndex(data, rank=16, seed=5).build().to_bytes()
    b = LorannIndex(data, rank=16, seed=5).build().to_bytes()
    c = LorannIndex(data, rank=16, seed=6).build().to_bytes()
    assert a == b and a != c


def test_tiny_index_pads_missing_neighbours():
    data = clustered(40, 8, seed=1)
    index = LorannIndex(data, n_clusters=8, rank=4, distance="l2").build()
    # one cluster probed holds fewer than k points: the tail is padded.
    ids, d = index.search(data[0], k=30, clusters_to_search=1, points_to_rerank=1,
                          return_distances=True)
    valid = ids >= 0
    assert ids.shape == (30,) and valid.sum() < 30
    assert np.all(np.isinf(d[~valid])) and np.all(np.isfinite(d[valid]))
    assert ids[0] == 0 and d[0] == pytest.approx(0, abs=1e-4)
    full = index.search(data[:3], k=40, clusters_to_search=8, points_to_rerank=40)
    assert np.all(np.sort(full, axis=1) == np.arange(40))


def test_one_cluster_and_k_equals_n():
    data = clustered(50, 8, seed=2)
    index = LorannIndex(data, n_clusters=1, rank=8, distance="cosine").build()
    ids = index.search(data[:4], k=50)
    assert np.all(np.sort(ids, axis=1) == np.arange(50))
    assert list(index.search(data[5], k=1)) == [5]


def test_default_parameters_rule():
    index = LorannIndex(clustered(10000, 32), rank=16)
    p = index.params
    assert p["n_clusters"] == 100 and p["global_dim"] == 32
    assert p["clusters_to_search"] == 8 and p["points_to_rerank"] == 100


@pytest.mark.parametrize("distance", METRICS)
def test_reranking_every_probed_point_is_exact_search_of_those_clusters(built, synthetic,
                                                                        distance):
    # points_to_rerank at least the probed points: no approximate scores (IVF-Flat);
    # probing every cluster, that is exact search, single and batch alike
    _, queries = synthetic
    index = built[distance]
    everything = dict(clusters_to_search=index.params["n_clusters"], points_to_rerank=index.n)
    want_ids, want_d = index.exact_search(queries[:20], 10, return_distances=True)
    batch_ids, batch_d = index.search(queries[:20], 10, return_distances=True, **everything)
    np.testing.assert_allclose(batch_d, want_d, rtol=1e-5, atol=1e-5)
    for q, ids, d in zip(queries[:20], batch_ids, batch_d):
        one_ids, one_d = index.search(q, 10, return_distances=True, **everything)
        np.testing.assert_allclose(one_d, d, rtol=1e-5, atol=1e-5)
        assert np.array_equal(np.sort(one_ids), np.sort(ids))
    # one probed cluster: exactly its own nearest points
    probe = index._prefix.probe(index._prefix.reduce(queries[0]), 1)
    lo, hi = index._store.arrays.spans[int(probe[0])]
    members = index._store.arrays.ids[lo:hi]
    ids, d = index.search(queries[0], 5, clusters_to_search=1, points_to_rerank=index.n,
                          return_distances=True)
    exact = ExactIndex(index.get_vectors(members), distance=distance)
    rows, exact_d = exact.search(queries[0], 5, return_distances=True)
    np.testing.assert_allclose(d, exact_d, rtol=1e-5, atol=1e-5)
    assert set(ids) == set(members[rows])


@pytest.mark.parametrize("distance", METRICS)
def test_rerank_dims_equal_to_the_dimension_only_rotate(synthetic, distance):
    data, queries = synthetic
    kw = dict(distance=distance, rank=16, seed=1)
    plain = LorannIndex(data, **kw).build(target_recall=None)
    rotated = LorannIndex(data, rerank_dims=data.shape[1], **kw).build(target_recall=None)
    assert rotated._tensors["vectors_basis"].shape == (48, 48)
    setting = dict(clusters_to_search=8, points_to_rerank=60, return_distances=True)
    a, ad = plain.search(queries, 10, **setting)
    b, bd = rotated.search(queries, 10, **setting)
    assert np.mean(a == b) >= 0.99  # only float32 rounding differs: near-ties may swap
    assert np.allclose(ad, bd, rtol=1e-4, atol=1e-4)
    assert np.allclose(rotated.get_vectors(a[0]), plain.get_vectors(a[0]), atol=1e-5)


@pytest.mark.parametrize("distance", METRICS)
def test_rerank_dims_store_the_principal_directions(distance):
    rng = np.random.default_rng(4)
    both = (rng.standard_normal((4100, 12)) @ rng.standard_normal((12, 48))
            + 0.01 * rng.standard_normal((4100, 48))).astype(np.float32)
    data, queries = both[:4000], both[4000:]
    kw = dict(distance=distance, rank=8, seed=1, rerank_dtype="int8")
    index = LorannIndex(data, rerank_dims=12, **kw).build(target_recall=None)
    truth = ExactIndex(data, distance=distance).search(queries, 10)
    every_point = dict(clusters_to_search=index.params["n_clusters"], points_to_rerank=4000)
    assert recall(index.search(queries, 10, **every_point), truth) >= 0.97
    # the 12 stored values per point hold the data: what comes back is close to it
    ids = np.arange(0, 4000, 37)
    expect = data[ids] if distance != "cosine" else (
        data[ids] / np.linalg.norm(data[ids], axis=1, keepdims=True))
    assert np.abs(index.get_vectors(ids) - expect).max() <= 0.05 * np.abs(expect).max()
    full = LorannIndex(data, **kw).build(target_recall=None)
    assert len(full.to_bytes()) - len(index.to_bytes()) >= 0.9 * 4000 * (48 - 12)


def test_tuning_with_rerank_dims_measures_recall_against_the_data():
    # isotropic data: 8 of 32 directions cannot rank neighbours well, and the tuned
    # estimate must say so (measured against the stored vectors it would be ~1)
    rng = np.random.default_rng(9)
    both = rng.standard_normal((3200, 32)).astype(np.float32)
    data, queries = both[:3000], both[3000:]
    index = LorannIndex(data, rerank_dims=8, rank=8, seed=1).build()
    p = index.params
    estimate = next(row[3] for row in p["tuning"]["table"] if row[0] == 0.95)
    found = index.search(queries, 10)
    actual = recall(found, ExactIndex(data, distance="ip").search(queries, 10))
    assert estimate < 0.8 and abs(estimate - actual) <= 0.1, (estimate, actual)


def test_rerank_dims_euclidean_distances_count_the_energy_outside_the_basis():
    rng = np.random.default_rng(4)
    both = (rng.standard_normal((4100, 12)) @ rng.standard_normal((12, 48))
            + 0.3 * rng.standard_normal((4100, 48))).astype(np.float32)
    data, queries = both[:4000], both[4000:]
    index = LorannIndex(data, distance="l2", rank=8, seed=1, rerank_dims=12).build(
        target_recall=None)
    ids, dists = index.search(queries, 10, clusters_to_search=index.params["n_clusters"],
                              points_to_rerank=4000, return_distances=True)
    diff = data[ids] - queries[:, None]
    true = (diff ** 2).sum(-1)
    within = ((diff @ index._tensors["vectors_basis"]) ** 2).sum(-1)  # the basis alone
    error = np.abs(dists - true).mean()
    assert error <= 0.01 * true.mean() and error <= 0.3 * np.abs(within - true).mean()
    exact_ids, exact_d = index.exact_search(queries, 10, return_distances=True)
    assert np.mean(exact_ids == ids) >= 0.95 and np.allclose(exact_d, dists, rtol=1e-3, atol=1e-3)


def test_residual_scorers_keep_int8_scores_of_offset_data(monkeypatch):
    """Data whose points share a large offset (every value positive, as in images):
    scorers fit to the points themselves spend their int8 codes on the shared part,
    scorers fit to the points minus their centroid (every build since format
    version 3) do not. Both files load and answer; the residual one ranks far better."""
    from lorann_wasm.params import IndexParams
    data = (np.abs(clustered(6000, 64, seed=5)) * 3 + 40).astype(np.float32)
    queries, data = data[:200], data[200:]
    truth = ExactIndex(data, distance="l2").search(queries, 10)
    made = {}
    for residual in (True, False):
        with monkeypatch.context() as m:
            plain = IndexParams.for_data.__func__
            m.setattr(IndexParams, "for_data", classmethod(
                lambda cls, *a, **k: plain(cls, *a, **k).replace(residual_scorers=residual)))
            index = LorannIndex(data, distance="l2", rank=16, global_dim=48).build(
                target_recall=None)
        again = LorannIndex.from_bytes(index.to_bytes())
        ids = again.search(queries, 10, clusters_to_search=6, points_to_rerank=20)
        assert np.array_equal(ids, index.search(queries, 10, clusters_to_search=6,
                                                points_to_rerank=20))
        made[residual] = recall(ids, truth)
        assert again.params.get("residual_scorers", False) is residual
    assert made[True] >= made[False] + 0.3
