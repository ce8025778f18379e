"""Bad input gets a ValueError/TypeError whose message names the problem."""

import numpy as np
import pytest

from lorann_wasm import ExactIndex, LorannIndex, NotBuiltError

DATA = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def index():
    return LorannIndex(DATA, n_clusters=8, rank=8).build()


@pytest.mark.parametrize("bad, match", [
    (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (-np.inf, "NaN or infinite")])
def test_nonfinite_data(bad, match):
    data = DATA.copy()
    data[3, 4] = bad
    with pytest.raises(ValueError, match=match):
        LorannIndex(data)
    with pytest.raises(ValueError, match=match):
        ExactIndex(data)


def test_nonfinite_query(index):
    q = DATA[0].copy()
    q[1] = np.nan
    with pytest.raises(ValueError, match="q contains 1 NaN"):
        index.search(q)
    with pytest.raises(ValueError, match="NaN"):
        index.exact_search(np.stack([DATA[0], q]))


def test_overflowing_values_are_reported_as_inf():
    data = DATA.astype(np.float64)
    data[0, 0] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="after conversion to float32"):
        LorannIndex(data)


@pytest.mark.parametrize("q, match", [
    (np.zeros(15, np.float32), "dimension 15 but the index has dimension 16"),
    (np.zeros((3, 17), np.float32), "dimension 17"),
    (np.zeros((2, 2, 16), np.float32), "1-D vector or a 2-D matrix"),
    (np.zeros((0, 16), np.float32), "empty"),
    (np.array(["a"] * 16), "numeric"),
    (np.zeros(16, np.complex64), "numeric"),
])
def test_bad_query_shape_or_type(index, q, match):
    with pytest.raises((ValueError, TypeError), match=match):
        index.search(q)


@pytest.mark.parametrize("k, exc, match", [
    (0, ValueError, "k must be >= 1"), (-3, ValueError, "k must be >= 1"),
    (201, ValueError, "larger than the number of indexed points"),
    (2.5, TypeError, "integer"), (True, TypeError, "integer")])
def test_bad_k(index, k, exc, match):
    with pytest.raises(exc, match=match):
        index.search(DATA[0], k=k)
    with pytest.raises(exc, match=match):
        ExactIndex(DATA).search(DATA[0], k=k)


def test_empty_data():
    with pytest.raises(ValueError, match="data is empty"):
        LorannIndex(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="data is empty"):
        ExactIndex(np.zeros((5, 0), np.float32))


def test_data_must_be_2d():
    with pytest.raises(ValueError, match="2-D matrix"):
        LorannIndex(DATA[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"n_clusters": 201}, "n_clusters=201 is larger than the number of points"),
    ({"n_clusters": 0}, "n_clusters must be >= 1"),
    ({"rank": 17, "global_dim": 16}, "rank=17 is larger"),
    ({"rank": 12, "global_dim": 8}, "rank=12 is larger"),
    ({"global_dim": 17}, "global_dim=17 is larger than the data dimension"),
    ({"distance": "euclid"}, "unknown distance 'euclid'"),
    ({"quantization_bits": 6}, "quantization_bits must be 8, 4 or None"),
    ({"rerank_dtype": "bfloat16"}, "unknown rerank_dtype"),
    ({"rerank_dtype": "int8", "int8_scales": "block"}, "unknown int8_scales"),
    ({"train_size": 0}, "train_size must be >= 1"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"rerank_dims": 0}, "rerank_dims must be >= 1"),
    ({"rerank_dims": 17}, "rerank_dims must be <= 16"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LorannIndex(DATA, **{"rank": 8, **kwargs})


def test_rerank_dims_must_be_an_integer():
    with pytest.raises(TypeError, match="rerank_dims must be an integer"):
        LorannIndex(DATA, rank=8, rerank_dims=8.0)
    assert LorannIndex(DATA, rank=8, rerank_dims=np.int64(8)).params["rerank_dims"] == 8


def test_default_rank_larger_than_dimension_is_refused():
    with pytest.raises(ValueError, match="rank=32 is larger"):
        LorannIndex(DATA)


def test_float16_overflow_is_refused():
    with pytest.raises(ValueError, match="float16"):
        LorannIndex(DATA * 1e5, rerank_dtype="float16", rank=8).build()


def test_bad_search_parameters(index):
    with pytest.raises(ValueError, match="clusters_to_search must be <= 8"):
        index.search(DATA[0], clusters_to_search=9)
    with pytest.raises(ValueError, match="clusters_to_search must be >= 1"):
        index.search(DATA[0], clusters_to_search=0)
    with pytest.raises(ValueError, match="points_to_rerank must be >= 1"):
        index.search(DATA[0], points_to_rerank=0)


def test_cosine_zero_vectors():
    data = DATA.copy()
    data[7] = 0
    with pytest.raises(ValueError, match="1 zero vector.*row 7"):
        LorannIndex(data, distance="cosine", rank=8)
    idx = LorannIndex(DATA, distance="cosine", n_clusters=4, rank=8).build()
    with pytest.raises(ValueError, match="zero vector"):
        idx.search(np.zeros(16, np.float32))


def test_training_queries_validated():
    idx = LorannIndex(DATA, n_clusters=4, rank=8)
    with pytest.raises(ValueError, match="training_queries have dimension 8"):
        idx.build(training_queries=np.ones((50, 8), np.float32))
    with pytest.raises(ValueError, match="training_queries contains"):
        idx.build(training_queries=np.full((50, 16), np.nan, np.float32))


def test_not_built():
    idx = LorannIndex(DATA, n_clusters=4, rank=8)
    for call in (lambda: idx.search(DATA[0]), idx.to_bytes, lambda: idx.save("/tmp/never")):
        with pytest.raises(NotBuiltError, match="call build"):
            call()


def test_from_bytes_type():
    with pytest.raises(TypeError, match="bytes"):
        LorannIndex.from_bytes("not bytes")
