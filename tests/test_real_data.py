"""Recall on real data: a Fashion-MNIST subset (Debian dataset-fashion-mnist)."""

import numpy as np
import pytest

from lorann_wasm.bench.datasets import fashion_mnist
from conftest import recall
from lorann_wasm import ExactIndex, LorannIndex


@pytest.fixture(scope="module")
def fmnist():
    train, test = fashion_mnist()
    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    return train[:20000], test[:500]


@pytest.fixture(scope="module", params=["l2", "cosine"])
def tuned(request, fmnist):
    data, queries = fmnist
    truth = ExactIndex(data, distance=request.param).search(queries, 10)
    return LorannIndex(data, distance=request.param, seed=0).build(), queries, truth


def test_tuned_targets_hold_on_held_out_queries(tuned):
    index, queries, truth = tuned
    tuning = index.params["tuning"]
    assert tuning["leave_one_out"] and tuning["queries"] == 500
    for target in (0.9, 0.95, 0.98):
        got = recall(index.search(queries, 10, target_recall=target), truth)
        assert got >= target - 0.02, (target, got)
    # the default preset is the 0.95 entry
    p = index.params
    assert (p["clusters_to_search"], p["points_to_rerank"]) == tuple(
        next(row[1:3] for row in tuning["table"] if row[0] == 0.95))
    assert recall(index.search(queries, 10), truth) >= 0.93


def test_recall_at_least_095_with_documented_parameters(tuned):
    index, queries, truth = tuned
    assert recall(index.search(queries, 10, target_recall=0.97), truth) >= 0.95
    ids = np.array([index.search(q, 10, target_recall=0.97) for q in queries[:100]])
    assert recall(ids, truth[:100]) >= 0.95


def test_tuning_table_is_monotone_and_survives_save(tuned, tmp_path):
    index, queries, _ = tuned
    table = index.params["tuning"]["table"]
    targets = [row[0] for row in table]
    assert targets == sorted(targets)
    assert all(row[3] >= row[0] for row in table[:-1])  # reached, except possibly the last
    index.save(tmp_path / "t.lorann")
    back = LorannIndex.load(tmp_path / "t.lorann")
    assert back.params["tuning"] == index.params["tuning"]
    assert np.array_equal(back.search(queries[:20], 10, target_recall=0.9),
                          index.search(queries[:20], 10, target_recall=0.9))


def test_target_recall_errors(tuned):
    index, queries, _ = tuned
    with pytest.raises(ValueError, match="not both"):
        index.search(queries[0], 10, target_recall=0.9, clusters_to_search=3)
    untuned = LorannIndex(queries, rank=16, seed=0).build(target_recall=None)
    assert "tuning" not in untuned.params
    with pytest.raises(ValueError, match="no tuning table"):
        untuned.search(queries[0], 10, target_recall=0.9)
    with pytest.raises(ValueError, match="target_recall must be in"):
        LorannIndex(queries, rank=16).build(target_recall=1.5)


def test_fashion_mnist_int8_file_is_small_and_accurate(fmnist):
    data, queries = fmnist
    truth = ExactIndex(data, distance="l2").search(queries, 10)
    index = LorannIndex(data, distance="l2", rerank_dtype="int8", seed=0).build()
    size = len(index.to_bytes())
    assert size < 0.30 * data.nbytes
    assert recall(index.search(queries, 10, target_recall=0.97), truth) >= 0.95


def test_low_dimensional_benchmark_set_keeps_the_most_variance(fmnist):
    from lorann_wasm.bench.datasets import principal_components
    data, queries = fmnist
    low, low_q = principal_components(data, queries, 50)
    assert low.shape == (20000, 50) and low_q.shape == (500, 50) and low.dtype == np.float32
    spread = low.var(axis=0)
    assert np.all(np.diff(spread) <= 1e-3 * spread[0])  # components by decreasing variance
    total = ((data - data.mean(axis=0)) ** 2).sum(axis=1).mean()
    assert 0.8 * total < spread.sum() < total  # 50 of 784 directions keep most of it
    # neighbours there are mostly the neighbours in the full space
    near = ExactIndex(data, distance="l2").search(queries[:50], 10)
    near_low = ExactIndex(low, distance="l2").search(low_q[:50], 10)
    assert recall(near_low, near) >= 0.5
