"""The query path's kernels: both forms of its products agree (including the chunked
wasm form), its row gathers and top-k selection are exact, and its stages can be timed."""

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex, kernels, topk


@pytest.fixture
def wasm(monkeypatch):
    monkeypatch.setattr(kernels, "WASM", True)


def test_times_transposed_forms_agree(wasm, monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 50)).astype(np.float32), rng.standard_normal((41, 50)).astype(np.float32)
    np.testing.assert_allclose(kernels.times_transposed(a, b), a @ b.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kernels.times_transposed(a[0], b), a[0] @ b.T, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(kernels, "EINSUM_SPAN", 500)  # force the chunked path
    np.testing.assert_allclose(kernels.times_transposed(a, b), a @ b.T, rtol=1e-5, atol=1e-5)
    m, v = rng.standard_normal((6, 9, 50)).astype(np.float32), rng.standard_normal((6, 50)).astype(np.float32)
    np.testing.assert_allclose(kernels.rowwise_dot(m, v), np.einsum("bnk,bk->bn", m, v), rtol=1e-5, atol=1e-5)


def test_search_in_wasm_form_matches_native(monkeypatch):
    data = clustered(5000, 96, seed=13)
    queries = clustered(5100, 96, seed=13)[5000:]
    index = LorannIndex(data, rank=16, distance="l2", global_dim=48).build(target_recall=None)
    native = (index.search(queries, 10), [index.search(q, 10) for q in queries],
              index.exact_search(queries, 10))
    monkeypatch.setattr(kernels, "WASM", True)
    wasm = (index.search(queries, 10), [index.search(q, 10) for q in queries],
            index.exact_search(queries, 10))
    assert np.mean(np.all(native[0] == wasm[0], axis=1)) >= 0.99
    assert np.mean([np.array_equal(x, y) for x, y in zip(native[1], wasm[1])]) >= 0.99
    assert np.mean(np.all(native[2] == wasm[2], axis=1)) >= 0.99


@pytest.mark.parametrize("rows", [
    np.array([4, 0, 4, 9], dtype=np.intp),
    np.array([[1, 2], [8, -1]], dtype=np.intp),  # any shape; negative counts from the end
    np.array([3, 1], dtype=np.int32),
    np.array([3, 1], dtype=np.int64),
    np.arange(10) % 3 == 0,  # a mask
    slice(2, 7),
    [5, 6],
])
def test_take_rows_is_indexing(rows):
    array = np.arange(40, dtype=np.int8).reshape(10, 4)
    out = kernels.take_rows(array, rows)
    np.testing.assert_array_equal(out, array[rows])
    assert out.dtype == array.dtype


def test_take_rows_refuses_rows_out_of_range():
    with pytest.raises(IndexError):
        kernels.take_rows(np.zeros((5, 3), np.float32), np.array([1, 5], dtype=np.intp))


@pytest.mark.parametrize("kind", ["normal", "ties", "mostly_inf", "smallest_last"])
def test_smallest_k_of_long_rows(kind):
    """Long rows go through block minima (topk._by_block_minima), a long 1-D row
    through unordered_smallest_k: the result is still the k smallest of each
    row, ascending, equal values by index."""
    rng = np.random.default_rng(len(kind))
    n = topk.BLOCKED_MIN + 4321  # a partial last block
    values = {"normal": lambda: rng.standard_normal((5, n)),
              "ties": lambda: rng.integers(0, 40, (5, n)),
              "mostly_inf": lambda: np.where(rng.random((5, n)) < 0.95, np.inf,
                                             rng.standard_normal((5, n))),
              "smallest_last": lambda: -np.sort(rng.standard_normal((5, n)))}[kind]()
    values = values.astype(np.float32)
    for k in (1, 10, 37):
        assert n >= 4 * k * topk.BLOCK  # (the blocked path is taken)
        got = topk.smallest_k(values, k)
        picked = np.take_along_axis(values, got, axis=1)
        np.testing.assert_array_equal(picked, np.sort(values, axis=1)[:, :k])
        later = picked[:, 1:] > picked[:, :-1]
        tied_in_order = (picked[:, 1:] == picked[:, :-1]) & (got[:, 1:] > got[:, :-1])
        assert np.all(later | tied_in_order)
        for row, want in zip(values, got):  # one row at a time (natively by value)
            one = topk.smallest_k(row, k)
            np.testing.assert_array_equal(row[one], row[want])
            assert np.all((row[one][1:] > row[one][:-1]) | (one[1:] > one[:-1]))


@pytest.mark.parametrize("kind", ["normal", "ties", "mostly_inf", "nan", "sample_smallest"])
@pytest.mark.parametrize("n", [1999, 4095, 4219])
@pytest.mark.parametrize("by_value_min,sampled_min", [(1024, 1), (4096, None), (None, 4096)],
                         ids=["native", "native-unsampled", "pyodide"])
def test_unordered_smallest_k_takes_the_k_smallest(kind, n, by_value_min, sampled_min,
                                                   monkeypatch):
    """Short rows (and all in Pyodide) by argpartition, long ones cut at the k-th
    value, first at a sampled threshold where k and n allow (``sample_smallest`` puts the
    smallest values where the sample looks, so the threshold lets fewer than k
    through and the other ways answer): either way exactly k entries per row,
    ascending, holding the row's k smallest values; 2-D rows give flat indices,
    row after row."""
    monkeypatch.setattr(topk, "BY_VALUE_MIN", by_value_min)
    monkeypatch.setattr(topk, "SAMPLED_MIN", sampled_min)
    monkeypatch.setattr(topk, "SAMPLED_BLOCK", 2 * n)  # 2-D rows in blocks of two
    rng = np.random.default_rng(n)

    def sample_smallest():
        v = rng.standard_normal((4, n))
        v[:, ::3] -= 100  # the stride sampled for k = 50
        return v

    values = {"normal": lambda: rng.standard_normal((4, n)),
              "ties": lambda: rng.integers(0, 40, (4, n)),
              "mostly_inf": lambda: np.where(rng.random((4, n)) < 0.99, np.inf,
                                             rng.standard_normal((4, n))),
              "nan": lambda: np.where(rng.random((4, n)) < 0.3, np.nan,
                                      rng.standard_normal((4, n))),
              "sample_smallest": sample_smallest}[kind]()
    values = values.astype(np.float32)
    if sampled_min:  # which rows the sampled threshold answers itself
        answered = topk._by_sampled_threshold(values, 50) is not None
        assert answered == (kind in ("normal", "nan"))
    for k in (1, 50, 400):
        flat = topk.unordered_smallest_k(values, k)
        assert flat.shape == (4 * k,) and np.all(np.diff(flat) > 0)
        rows, cols = np.divmod(flat, n)
        np.testing.assert_array_equal(rows, np.repeat(np.arange(4), k))
        for row, got in zip(values, cols.reshape(4, k)):
            assert len(set(got.tolist())) == k
            np.testing.assert_array_equal(np.sort(row[got]), np.sort(row)[:k])
            one = topk.unordered_smallest_k(row, k)
            assert np.all(np.diff(one) > 0)
            np.testing.assert_array_equal(np.sort(row[one]), np.sort(row)[:k])


def test_stage_profile_times_every_stage_on_real_inputs():
    from lorann_wasm.bench.stages import stage_times
    data = clustered(3000, 64, seed=21)
    index = LorannIndex(data, rank=8, global_dim=32).build(target_recall=None)
    queries = data[:6]
    rows = stage_times(index, queries, clusters=3, rerank=40, passes=1)
    names = [name for name, _, _ in rows]
    assert names[0] == "validation" and names[-1] == "whole search" and "rerank" in names
    assert all(us > 0 for _, us, _ in rows)
    probes = [index._prefix.probe(index._prefix.reduce(q), 3, ordered=False) for q in queries]
    points = np.mean([index._store.arrays.sizes[p].sum() for p in probes])
    # rank 8, the centroid's term and the bias: 10 multiply-adds per probed point
    assert dict((n, m) for n, _, m in rows)["approximate scores"] == pytest.approx(points * 10)


def test_unordered_smallest_k_of_integer_rows(monkeypatch):
    """Integer rows (no inf to pad with) take the other ways, natively too."""
    monkeypatch.setattr(topk, "SAMPLED_BLOCK", 4000)
    values = np.random.default_rng(3).permutation(4 * 5000).reshape(4, 5000)
    flat = topk.unordered_smallest_k(values, 100)
    rows, cols = np.divmod(flat, 5000)
    for i in range(4):
        np.testing.assert_array_equal(np.sort(values[i, cols[rows == i]]), np.sort(values[i])[:100])


@pytest.mark.parametrize("distance", ["l2", "ip", "cosine"])
def test_the_benchmarks_floor_answers_as_the_engine(distance):
    # the floor calls the engine's own stage functions without the engine around
    # them; it is a floor of the same computation only while the ids agree
    from lorann_wasm.bench.algorithms import LorannWasmFloor
    data = clustered(3000, 64, seed=22)
    floor = LorannWasmFloor(rank=8, global_dim=32, rerank_dtype="int8")
    floor.fit(data[100:], distance)
    queries = data[:40]
    every = floor.index.params["n_clusters"]  # and every point reranked: IVF-Flat
    for c, r in ((3, 40), (5, 5), (every, 3000)):
        setting = {"clusters_to_search": c, "points_to_rerank": r}
        engine = floor.index.search(queries, 10, clusters_to_search=c, points_to_rerank=r)
        np.testing.assert_array_equal(floor.batch_query(queries, 10, **setting), engine)
        single = np.array([floor.query(q, 10, **setting) for q in queries])
        np.testing.assert_array_equal(single, engine)


def test_rows_longer_than_a_selection_block(monkeypatch):
    """A query scoring more points than the sampled selection's block (262,144) once
    recursed forever: a default build of 400,000 points crashed in tuning. Any row
    length works: a lone long row, a batch of them, a search and a tuned build."""
    rng = np.random.default_rng(4)
    for shape in ((1, topk.SAMPLED_BLOCK + 5), (3, topk.SAMPLED_BLOCK // 2 + 7)):
        values = rng.standard_normal(shape).astype(np.float32)
        picked = topk.unordered_smallest_k(values, 64)
        want = np.sort(np.argpartition(values, 63, axis=1)[:, :64], axis=1)
        assert np.array_equal(np.sort(picked.reshape(shape[0], 64) % shape[1], axis=1), want)
    monkeypatch.setattr(topk, "SAMPLED_BLOCK", 4096)  # rows of ~6,000 scores: past it
    data = clustered(8000, 24, seed=9)
    index = LorannIndex(data, n_clusters=16, rank=8, seed=1).build()  # tunes: long rows
    queries = data[:5] + 0.01
    found = index.search(queries, 10, clusters_to_search=16, points_to_rerank=8000)
    assert np.array_equal(found, index.exact_search(queries, 10))


def _memory(address, shape, dtype=np.float32):
    """The array of ``shape`` at ``address``: what a WebAssembly kernel reads and writes."""
    import ctypes
    return np.ctypeslib.as_array(
        ctypes.cast(address, ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype))), shape)


def test_times_transposed_hands_float32_products_to_the_simd_kernel(wasm, monkeypatch):
    """In Pyodide, float32 products with a row length divisible by 4 and enough
    multiply-adds go to the WebAssembly kernel (web/products.js) by address:
    here a stand-in reading the same memory. Anything else stays with einsum."""
    calls = []

    def kernel(a, b, c, m, n, k):
        calls.append((m, n, k))
        _memory(c, (m, n))[:] = _memory(a, (m, k)) @ _memory(b, (n, k)).T

    monkeypatch.setattr(kernels, "simd_times_transposed", kernel)
    rng = np.random.default_rng(1)
    b = rng.standard_normal((300, 384)).astype(np.float32)
    x = rng.standard_normal((2, 5, 384)).astype(np.float32)
    cases = [(x, 10), (x[0], 5), (x[0, 0], 1), (x[:, ::2], 6),  # 3-D, 2-D, 1-D, strided rows
             (x[..., :381], None), (x.astype(np.float64), None),  # k % 4, float64
             (x[0, :1, :100], None)]  # 100 x 300 multiply-adds: fewer than SIMD_MIN
    for a, rows in cases:
        calls.clear()
        bb = b[:, :a.shape[-1]] if a.shape[-1] != 384 else b
        bb = np.ascontiguousarray(bb, dtype=a.dtype)
        out = kernels.times_transposed(a, bb)
        assert out.shape == a.shape[:-1] + (300,)
        np.testing.assert_allclose(out, a @ bb.T, rtol=1e-4, atol=1e-4)
        assert calls == ([(rows, 300, 384)] if rows else []), (a.shape, a.dtype, calls)


def test_int4_rows_go_to_the_simd_kernel_where_it_applies(wasm, monkeypatch):
    """In Pyodide, 4-bit rows whose packed width is a multiple of 8 bytes (and
    even columns) are decoded by the WebAssembly kernel, by address: here a
    stand-in reading the same memory, which must give NumPy's own decoding."""
    from lorann_wasm.quantization import dequantize_int4, quantize_int4
    calls = []

    def kernel(packed, scales, out, m, w):
        calls.append((m, w))
        p = _memory(packed, (m, w), np.uint8)
        codes = np.stack([p & 15, p >> 4], axis=2).reshape(m, 2 * w).astype(np.float32) - 8
        _memory(out, (m, 2 * w))[:] = codes * _memory(scales, (m,))[:, None]

    rng = np.random.default_rng(2)
    for columns, scale_type, used in [(48, np.float32, True), (64, np.float16, True),
                                      (47, np.float32, False), (40, np.float32, False),
                                      (48, np.float64, False)]:
        packed, scales = quantize_int4(rng.standard_normal((30, columns)).astype(np.float32))
        scales = scales.astype(scale_type)
        monkeypatch.setattr(kernels, "simd_int4_rows", None)
        want = dequantize_int4(packed, scales, columns)
        monkeypatch.setattr(kernels, "simd_int4_rows", kernel)
        calls.clear()
        got = dequantize_int4(packed, scales, columns)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float32 and got.shape == (30, columns)
        assert calls == ([(30, columns // 2)] if used else []), (columns, scale_type, calls)
