"""One training pipeline: in memory and out of core write the same bytes, on any data."""

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.training.out_of_core import build_file


def _both(data, tmp_path, **kw):
    LorannIndex(data, **kw).build(target_recall=None).save(tmp_path / "memory.lorann")
    build_file(data, tmp_path / "file.lorann", **kw)
    return (tmp_path / "memory.lorann").read_bytes(), (tmp_path / "file.lorann").read_bytes()


@pytest.mark.parametrize("kw", [
    dict(distance="l2", rank=8),
    dict(distance="ip", rerank_dtype="int8", global_dim=24, rank=8),
    dict(distance="cosine", rerank_dtype="float16", quantization_bits=None, rank=8),
    dict(distance="l2", rerank_dtype="int8", int8_scales="vector", train_size=1, rank=4),
    dict(distance="l2", rerank_dims=30, rank=8),
    dict(distance="ip", rerank_dtype="int8", rerank_dims=30, global_dim=24, rank=8),
])
def test_byte_identical_on_ordinary_data(tmp_path, kw):
    memory, file = _both(clustered(5000, 40, seed=8), tmp_path, seed=3, **kw)
    assert memory == file


def _degenerate():
    rng = np.random.default_rng(12)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    return {
        # 4,000 rows made of 40 distinct vectors, 60 clusters
        "40 distinct, 60 clusters": (np.repeat(base, 100, axis=0), dict(n_clusters=60, rank=4)),
        # 2,000 rows made of 10 distinct vectors, 20 clusters (issue's reproduction)
        "10 distinct, 20 clusters": (np.repeat(base[:10], 200, axis=0),
                                     dict(n_clusters=20, rank=4)),
        # every row the same
        "all duplicates": (np.repeat(base[:1], 500, axis=0), dict(n_clusters=8, rank=4)),
        # as many clusters as points
        "one point per cluster": (base, dict(n_clusters=40, rank=4)),
    }


@pytest.mark.parametrize("name", list(_degenerate()))
@pytest.mark.parametrize("distance", ["l2", "ip", "cosine"])
def test_byte_identical_and_searchable_on_degenerate_data(tmp_path, name, distance):
    data, kw = _degenerate()[name]
    memory, file = _both(data, tmp_path, distance=distance, rerank_dtype="int8", **kw)
    assert memory == file
    index = LorannIndex.from_bytes(file)
    sizes = np.diff(index._tensors["cluster_offsets"])
    k = min(5, len(data))
    everything = dict(clusters_to_search=index.params["n_clusters"], points_to_rerank=len(data))
    batch = index.search(data[:30], k, **everything)
    single = np.array([index.search(q, k, **everything) for q in data[:30]])
    assert np.array_equal(batch, single)
    assert (batch >= 0).all()  # every cluster probed: k real ids, no -1 before them
    if name.startswith("10 distinct"):
        assert (sizes == 0).any()  # the case leaves clusters empty; they are fine
    # a default search with empty clusters among the probed ones pads only the tail
    ids = index.search(data[:30], k)
    assert all((row[:np.count_nonzero(row >= 0)] >= 0).all() for row in ids)
