"""Recall on real data: a Fashion-MNIST subset (Debian dataset-fashion-mnist)."""

import numpy as np
import pytest

from build_scripts.datasets import fashion_mnist
from conftest import recall
from lorann_wasm import ExactIndex, LorannIndex


@pytest.fixture(scope="module")
def fmnist():
    train, test = fashion_mnist()
    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    return train[:20000], test[:300]


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_fashion_mnist_recall(fmnist, distance):
    data, queries = fmnist
    truth = ExactIndex(data, distance=distance).search(queries, 10)
    index = LorannIndex(data, distance=distance, seed=0).build()
    assert recall(index.search(queries, 10), truth) >= 0.95
    ids = np.array([index.search(q, 10) for q in queries[:50]])
    assert recall(ids, truth[:50]) >= 0.95


def test_fashion_mnist_int8_file_is_small_and_accurate(fmnist):
    data, queries = fmnist
    truth = ExactIndex(data, distance="l2").search(queries, 10)
    index = LorannIndex(data, distance="l2", rerank_dtype="int8", seed=0).build()
    size = len(index.to_bytes())
    assert size < 0.30 * data.nbytes
    assert recall(index.search(queries, 10), truth) >= 0.95
