"""Every query path against one plain reference of LoRANN's query algorithm.

The reference below is written for reading, not speed: float32, one query
and one cluster at a time, straight from the paper (reduce, probe the
nearest clusters, score their points with (q A_j) B_j (plus q . c_j: the
scorers are fit to the points minus their centroid), rerank the best
exactly). It reads the trained model from the index's tensors, so it checks
the query side: single queries, batches and lazily loaded indexes.
"""

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.lazy import FileReader, LazyIndex


def reference_search(index, query, k, clusters_to_search, points_to_rerank):
    t, p = index._tensors, index.params
    dequant = lambda codes, scales: codes.astype(np.float32) * scales[:, None, :] \
        if codes.ndim == 3 else codes.astype(np.float32) * scales[:, None]
    A = dequant(t["A"], t["A_scales"]) if p["quantization_bits"] == 8 else t["A"]
    B = dequant(t["B"], t["B_scales"]) if p["quantization_bits"] == 8 else t["B"]
    vectors = t["vectors"].astype(np.float32)
    if p["rerank_dtype"] == "int8" and p["int8_scales"] == "dimension":
        vectors = vectors * t["vectors_dim_scale"] + t["vectors_dim_offset"]
    elif p["rerank_dtype"] == "int8":
        vectors = vectors * t["vectors_row_scale"][:, None]
    q = np.asarray(query, np.float32)
    if p["distance"] == "cosine":
        q = q / np.linalg.norm(q)
    reduced = q @ t["projection"] if "projection" in t else q
    centroids = t["centroids"]
    if p["distance"] == "l2":
        to_centroid = ((centroids - reduced) ** 2).sum(axis=1)
    else:
        to_centroid = -(centroids @ reduced)
    probed = np.argsort(to_centroid, kind="stable")[:clusters_to_search]

    candidates, scores = [], []
    for j in probed:
        lo, hi = t["cluster_offsets"][j], t["cluster_offsets"][j + 1]
        inner = (reduced @ A[j]) @ B[lo:hi].T  # approximate <q, x> for the cluster's points
        if p.get("residual_scorers"):  # fit to x - c_j: <q, c_j> comes back exactly
            inner = inner + reduced @ centroids[j]
        score = t["sq_norms"][lo:hi] - 2 * inner if p["distance"] == "l2" else -inner
        candidates.extend(range(lo, hi))
        scores.extend(score)
    best = np.array(candidates)[np.argsort(scores, kind="stable")[:max(k, points_to_rerank)]]

    x = vectors[best]
    exact = ((x - q) ** 2).sum(axis=1) if p["distance"] == "l2" else -(x @ q)
    return t["ids"][best[np.argsort(exact, kind="stable")[:k]]]


CASES = [
    dict(distance="l2"),
    dict(distance="ip", rerank_dtype="int8"),
    dict(distance="cosine", rerank_dtype="float16", quantization_bits=None, global_dim=24),
    dict(distance="l2", rerank_dtype="int8", int8_scales="vector", global_dim=32),
]


def _data(name):
    if name == "fashion-mnist":  # real images, 784 dims reduced to 128
        from build_scripts.datasets import fashion_mnist
        train, test = fashion_mnist()
        return train[:6000], test[:80]
    both = clustered(6080, 48, seed=int(name.split("-")[1]))
    return both[:6000], both[6000:]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("name", ["mixture-5", "mixture-6", "fashion-mnist"])
def test_single_batch_and_lazy_match_the_reference(tmp_path, kw, name):
    data, queries = _data(name)
    if name == "fashion-mnist":
        kw = {k: v for k, v in kw.items() if k != "global_dim"}
    LorannIndex(data, rank=12, seed=1, **kw).build(target_recall=None).save(tmp_path / "i.lorann")
    index = LorannIndex.load(tmp_path / "i.lorann")
    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"), cache_bytes=1 << 18)
    c, r, k = 6, 40, 10
    want = np.array([reference_search(index, q, k, c, r) for q in queries])
    single = np.array([index.search(q, k, clusters_to_search=c, points_to_rerank=r)
                       for q in queries])
    batch = index.search(queries, k, clusters_to_search=c, points_to_rerank=r)
    lazy_batch = lazy.search(queries, k, clusters_to_search=c, points_to_rerank=r)
    lazy_single = np.array([lazy.search(q, k, clusters_to_search=c, points_to_rerank=r)
                            for q in queries])
    for got in (single, batch, lazy_batch, lazy_single):
        # float rounding may swap near-ties at the rerank cut: allow a rare difference
        same = np.mean([np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(got, want)])
        assert same >= 0.98, same
        overlap = np.mean([np.intersect1d(a, b).size / k for a, b in zip(got, want)])
        assert overlap >= 0.99, overlap
    assert np.array_equal(single, lazy_single) and np.array_equal(batch, lazy_batch)
