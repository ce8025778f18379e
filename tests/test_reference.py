"""Every fast path against the plain statement of the algorithm, lorann_wasm/reference.py.

The reference search reads the model the fast build made (its file tensors,
dequantised and decoded: :func:`reference.model_of`), so these tests check
the query side: single queries, batches, lazily loaded indexes (single and
batch), the browser's bridge, and filtered search on both paths. The
regression is checked against the reference's plain SVD, and the reference
build end to end.
"""

import json

import numpy as np
import pytest

from conftest import clustered, recall
from lorann_wasm import ExactIndex, LorannIndex, reference
from lorann_wasm.bridge import Session
from lorann_wasm.lazy import FileReader, LazyIndex

CASES = [
    dict(distance="l2"),
    dict(distance="ip", rerank_dtype="int8"),
    dict(distance="cosine", rerank_dtype="float16", quantization_bits=None, global_dim=24),
    dict(distance="l2", rerank_dtype="int8", int8_scales="vector", global_dim=32),
    dict(distance="ip", rerank_dtype="int8", quantization_bits=4),
]
C, R, K = 6, 40, 10


def _data(name):
    if name == "fashion-mnist":  # real images, 784 dims reduced to 128
        from lorann_wasm.bench.datasets import fashion_mnist
        train, test = fashion_mnist()
        return train[:6000], test[:80]
    both = clustered(6080, 48, seed=int(name.split("-")[1]))
    return both[:6000], both[6000:]


def _bridge(path, queries):
    raw = open(path, "rb").read()
    session = Session()
    session.load_lazy(FileReader(str(path)))
    need = json.loads(session.plan(queries.astype(np.float32).tobytes(), len(queries), K,
                                   C, R))
    while need["ranges"]:
        need = json.loads(session.supply(b"".join(raw[a:b] for a, b in need["ranges"])))
    return session.finish()[0].reshape(len(queries), K)


PATHS = {
    "single": lambda index, lazy, path, q: np.array(
        [index.search(x, K, clusters_to_search=C, points_to_rerank=R) for x in q]),
    "batch": lambda index, lazy, path, q: index.search(q, K, clusters_to_search=C,
                                                        points_to_rerank=R),
    "lazy single": lambda index, lazy, path, q: np.array(
        [lazy.search(x, K, clusters_to_search=C, points_to_rerank=R) for x in q]),
    "lazy batch": lambda index, lazy, path, q: lazy.search(q, K, clusters_to_search=C,
                                                           points_to_rerank=R),
    "bridge": lambda index, lazy, path, q: _bridge(path, q),
}


@pytest.fixture(scope="module", params=[(n, i) for n in ("mixture-5", "mixture-6",
                                                         "fashion-mnist")
                                        for i in range(len(CASES))],
                ids=lambda p: f"{p[0]}-{p[1]}")
def built(request, tmp_path_factory):
    name, case = request.param
    data, queries = _data(name)
    kw = dict(CASES[case])
    if name == "fashion-mnist":
        kw.pop("global_dim", None)
    path = tmp_path_factory.mktemp("ref") / "i.lorann"
    LorannIndex(data, rank=12, seed=1, **kw).build(target_recall=None).save(path)
    index = LorannIndex.load(path)
    model = reference.model_of(index)
    want = np.array([reference.search(model, q, K, C, R) for q in queries])
    return index, LazyIndex(FileReader(path), cache_bytes=1 << 18), path, queries, want


@pytest.mark.parametrize("way", sorted(PATHS))
def test_every_query_path_matches_the_reference(built, way):
    index, lazy, path, queries, want = built
    got = PATHS[way](index, lazy, path, queries)
    # float rounding may swap near-ties at the rerank cut: allow a rare difference
    same = np.mean([np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(got, want)])
    assert same >= 0.98, same
    overlap = np.mean([np.intersect1d(a, b).size / K for a, b in zip(got, want)])
    assert overlap >= 0.99, overlap


@pytest.mark.parametrize("filter_path", ["filtered", "exact"])
def test_filtered_search_on_both_paths_matches_the_reference(filter_path):
    """Every cluster and every point: the reference's filter semantics (the k nearest
    of the passing points), on either path, resident and lazy."""
    data, queries = _data("mixture-5")
    rng = np.random.default_rng(3)
    colour = np.array(["red", "blue", "green"])[rng.integers(0, 3, len(data))]
    index = LorannIndex(data, attributes={"colour": colour}, rank=12, seed=1,
                        distance="l2").build(target_recall=None)
    model = reference.model_of(index)
    n_clusters = index.params["n_clusters"]
    for where, passes in [({"colour": "red"}, colour == "red"),
                          ({"colour": {"ne": "green"}}, colour != "green")]:
        want = np.array([reference.search(model, q, K, n_clusters, len(data), passes)
                         for q in queries[:20]])
        got = index.search(queries[:20], K, where=where, filter_path=filter_path,
                           clusters_to_search=n_clusters, points_to_rerank=len(data))
        assert np.array_equal(got, want)


def test_the_regression_is_the_plain_reduced_rank_regression():
    """training/regression.py's fit (through the Gram matrix, never forming the scores)
    gives the same approximate scores as the reference's SVD of them."""
    from lorann_wasm.training.regression import fit_cluster_scorer_gram, query_gram
    rng = np.random.default_rng(0)
    points = rng.standard_normal((150, 40))
    queries = points[rng.choice(150, 400)] + rng.standard_normal((400, 40)) * 0.3
    center = points.mean(axis=0)
    for rank in (4, 16, 40):
        a, b = reference.fit_scorer(points, queries, rank, center)
        fa, fb = fit_cluster_scorer_gram(points, query_gram(queries), len(queries), rank, center)
        np.testing.assert_allclose(queries @ fa @ fb, queries @ a @ b, rtol=1e-3, atol=1e-3)


def test_the_reference_build_is_a_working_index():
    """The plain build, searched plainly, finds the neighbours (and the fast index
    built with the same parameters is no worse)."""
    data, queries = _data("mixture-6")
    data, queries = data[:3000], queries[:40]
    truth = ExactIndex(data, distance="l2").search(queries, K)
    model = reference.build(data, n_clusters=30, g=24, rank=8, distance="l2")
    plain = np.array([reference.search(model, q, K, 8, 100) for q in queries])
    fast = LorannIndex(data, n_clusters=30, global_dim=24, rank=8, distance="l2").build(
        target_recall=None).search(queries, K, clusters_to_search=8, points_to_rerank=100)
    assert recall(plain, truth) >= 0.9 and recall(fast, truth) >= recall(plain, truth) - 0.05
