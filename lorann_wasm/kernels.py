"""The query path's hot primitives, in each platform's fastest form: its matrix-product
shapes and its gather of whole rows.

Natively NumPy hands matmul to BLAS. Pyodide's NumPy has no BLAS, and there
``einsum`` over a contiguous reduction axis measured 1.2-4x faster than
``matmul`` (the projection of a 784-d query: 56 us vs 285 us). Both forms
compute the same sums; only the order of additions, hence the last float32
bits, may differ between platforms. Where the page offers them, Pyodide's
float32 ``a @ b.T`` and its decoding of 4-bit rows run in WebAssembly SIMD
kernels (web/products.js).
"""

import functools
import sys

import numpy as np

WASM = sys.platform == "emscripten"
#: ``np.einsum`` without its Python-level wrapper (argument parsing and the
#: ``optimize`` path, ~10 us a call in Pyodide: 24 probed clusters took
#: 1,344 us per query with ``np.einsum``, 1,085 us with this), where NumPy
#: has it; both compute the same sums
einsum = getattr(getattr(getattr(np, "_core", None), "_multiarray_umath", None), "c_einsum",
                 np.einsum)
#: einsum's iterator spans every (row, column, k) triple and overflows a
#: 32-bit index past 2**31; stay well below it
EINSUM_SPAN = 1 << 28

#: Pyodide: ``c = a @ b.T`` with WebAssembly SIMD, ``(a, b, c, m, n, k)`` by
#: address in Pyodide's memory, where the page offered it (web/products.js):
#: 5.5x einsum on the encoder's products (8 word pieces times 1536 x 384, in
#: Node: 0.30 against 1.70 ms, 31 against 5.7 GFLOP/s). A WordNet query's
#: embedding took 12 ms with it, 27 without (Node, 20 queries' median).
#: And 4-bit rows to float32, ``(packed, scales, out, m, w)`` (see
#: :func:`int4_rows`): 8,000 rows of 48, as a WordNet query's probed points,
#: 0.45 against 3.5 ms with NumPy (Node).
simd_times_transposed = simd_int4_rows = None
if WASM:
    try:
        from lorann_products import int4_rows as simd_int4_rows
        from lorann_products import times_transposed as simd_times_transposed
    except ImportError:  # a runtime without WebAssembly SIMD, or not offered by the page
        pass
#: multiply-adds below which einsum is as fast (a call into JavaScript costs ~10 us)
SIMD_MIN = 1 << 15


def _address(array):
    return array.__array_interface__["data"][0]


def _simd_times_transposed(a, b):
    """``a @ b.T`` by :data:`simd_times_transposed`, or None where it does not apply."""
    k, n = b.shape[1], b.shape[0]
    if (simd_times_transposed is None or a.dtype != np.float32 or b.dtype != np.float32
            or k % 4 or a.size * n < SIMD_MIN or not b.flags.c_contiguous):
        return None
    rows = np.ascontiguousarray(a.reshape(-1, k))
    out = np.empty((rows.shape[0], n), dtype=np.float32)
    simd_times_transposed(_address(rows), _address(b), _address(out), rows.shape[0], n, k)
    return out.reshape(a.shape[:-1] + (n,))


def int4_rows(packed, scales, columns):
    """:func:`.quantization.dequantize_int4` by :data:`simd_int4_rows`: (m,
    ``columns``) float32 from packed (m, w) uint8 and scales (m,), or None where
    it does not apply (no kernel, odd columns, w not a multiple of 8)."""
    m, w = packed.shape
    if (simd_int4_rows is None or columns != 2 * w or w % 8 or not m
            or packed.dtype != np.uint8 or not packed.flags.c_contiguous
            or scales.dtype not in (np.float32, np.float16)):  # (exactly float32 values)
        return None
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    out = np.empty((m, columns), dtype=np.float32)
    simd_int4_rows(_address(packed), _address(scales), _address(out), m, w)
    return out


def times_transposed(a, b):
    """``a @ b.T`` for ``a`` (..., k) and a C-contiguous ``b`` (n, k): shape (..., n)."""
    if not WASM:
        if a.ndim > 2:  # one GEMM, not one BLAS call per leading index
            return (a.reshape(-1, a.shape[-1]) @ b.T).reshape(a.shape[:-1] + (b.shape[0],))
        return a @ b.T
    out = _simd_times_transposed(a, b)
    if out is not None:
        return out
    k, n = b.shape[1], b.shape[0]
    if a.size * n < EINSUM_SPAN:
        return einsum("...k,nk->...n", a, b)
    rows = a.reshape(-1, k)
    out = np.empty((rows.shape[0], n), dtype=np.result_type(a, b))
    cols = max(1, EINSUM_SPAN // k)
    step = max(1, EINSUM_SPAN // (min(n, cols) * k))
    for i in range(0, rows.shape[0], step):
        for j in range(0, n, cols):
            out[i:i + step, j:j + cols] = einsum("ik,nk->in", rows[i:i + step], b[j:j + cols])
    return out.reshape(a.shape[:-1] + (n,))


def times(a, b):
    """``a @ b`` for ``a`` (m, k) and a C-contiguous ``b`` (k, n): shape (m, n).

    (Pyodide: einsum, 1.6x faster than matmul at m = 64, k = 33, n = 341.)"""
    if WASM and a.size * b.shape[1] < EINSUM_SPAN:
        return einsum("mk,kn->mn", a, b)
    return a @ b


#: ``vector_times(v, m)``: ``v @ m`` for ``v`` (k,) and a C-contiguous ``m`` (k, n),
#: shape (n,); bound once, not wrapped, since the query path calls it once per
#: probed cluster. Measured scoring 24 wordnet clusters per query (k = 33,
#: n ~ 341, data not in cache): natively ``np.dot`` 160 us, einsum 225 us; in
#: Pyodide einsum 470 us, ``np.dot`` 914 us (it walks ``m`` column by column),
#: rows of ``m`` times ``v`` (the other orientation) 481 us. (einsum's span
#: limit is no concern here: a cluster would need 8M points to reach it.)
vector_times = functools.partial(einsum, "k,kn->n") if WASM else np.dot


def rowwise_dot(m, v):
    """Batched matrix-vector products: ``m`` (..., n, k) times ``v`` (..., k) -> (..., n)."""
    if WASM and m.size < EINSUM_SPAN:
        return einsum("...nk,...k->...n", m, v)
    if v.ndim == 1:  # one vector for every matrix: matmul takes it as is
        return np.matmul(m, v)
    return np.matmul(m, v[..., None])[..., 0]


def take_rows(array, rows):
    """``array[rows]``, for ``rows`` of any shape (index arrays, masks, slices, lists).

    Index arrays of the platform's ``intp`` go through ``take``, which copies
    each row whole: gathering 400 random rows of 384 int8 values measured
    54 us with ``take`` against 113 us by fancy indexing natively (59-85
    against 115-135 us in Pyodide), and float32 rows with their product 132
    against 175 us natively (as fast either way in Pyodide; one thread).
    Anything else is indexed as usual: ``take`` refuses int64 indices on
    32-bit wasm, where fancy indexing converts them."""
    if getattr(rows, "dtype", None) == np.intp:
        return array.take(rows, axis=0)
    return array[rows]
