"""Selection of the k smallest entries, row by row."""

import numpy as np

from .kernels import WASM

#: a row this short is sorted whole: two NumPy calls instead of five (top 10 of
#: 50 values: 2.0 us against 5.8 us natively, 3.3 against 4.8 in Pyodide; even
#: at 128 values; sorting 400 takes 11.5 against 8.1, 17.3 against 5.4)
SORT_WHOLE = 128
#: rows at least this long (and 4 * BLOCK times longer than k) are cut down to
#: the blocks of BLOCK values holding their k smallest minima before selecting:
#: brute force's rows of 116,659 distances, 35 at a time, took 16 ms with one
#: ``argpartition`` and 5 ms this way natively (exact batch search of
#: wordnet-minilm: 5.2 -> 4.5 ms per query; in Pyodide no change measurable)
BLOCK = 64
BLOCKED_MIN = 8192
#: natively, rows at least this long are cut at their k-th smallest value
#: (``partition``, a comparison, ``flatnonzero``) rather than by
#: ``argpartition``, which moves indices along with the values: on wordnet's
#: approximate scores (400 of 6,000-12,000) 42-46 against 49-50 us a row
#: natively, 42 against 57 in batch (NumPy 2.4). Not in Pyodide (NumPy 2.0),
#: where it measured slower (142-164 against 121-132 us), nor for shorter rows.
#: ``argpartition``'s picks are then sorted (400: 15 us in Pyodide, 5 natively),
#: so both platforms hand the same candidates, in the same order, to reranking.
BY_VALUE_MIN = None if WASM else 4096


def smallest_k(values, k):
    """Indices of the ``k`` smallest entries of each row, sorted ascending.

    ``values`` is 1-D or 2-D; ``k`` is clipped to the row length. Among
    equal values the lower index comes first, so the result is deterministic.
    """
    n = values.shape[-1]
    k = min(k, n)
    if values.ndim == 1:  # (methods, not np.* wrappers: each of those costs ~5 us in Pyodide)
        if n <= SORT_WHOLE or not k:
            return values.argsort(kind="stable")[:k]
        part = unordered_smallest_k(values, k) if k < n else np.arange(n)  # ascending
        return part[values[part].argsort(kind="stable")]
    rows = np.arange(values.shape[0])[:, None]
    if k < n:
        if n >= BLOCKED_MIN and n >= 4 * k * BLOCK:
            part = _by_block_minima(values, k)
        else:
            part = np.argpartition(values, k - 1, axis=1)[:, :k]
        part.sort(axis=1)
    else:
        part = np.broadcast_to(np.arange(n), values.shape).copy()
    order = np.argsort(values[rows, part], axis=1, kind="stable")
    return part[rows, order]


def unordered_smallest_k(values, k):
    """The ``k`` smallest entries of ``values``, 1-D (n,) or 2-D (b, n), with
    0 < k < n: for 1-D their indices (k,); for 2-D their flat indices into
    ``values`` (b * k,). Ascending, so the result does not depend on which of
    the two ways took them (the query path's ties between equal distances go
    to the earlier candidate).

    Which of several entries equal to a row's k-th smallest are taken is
    unspecified (NaN entries are never taken while k others are there).
    """
    n = values.shape[-1]
    if BY_VALUE_MIN is not None and n >= BY_VALUE_MIN:
        kth = values.copy()
        kth.partition(k - 1, axis=-1)
        picked = np.flatnonzero(values <= kth[..., k - 1:k])
        if picked.size == values.size // n * k:  # else ties at the k-th value
            return picked
    part = values.argpartition(k - 1, axis=-1)[..., :k]
    part.sort(axis=-1)
    if values.ndim == 1:
        return part
    return (np.arange(len(values))[:, None] * n + part).ravel()


def _by_block_minima(values, k):
    """Indices of the ``k`` smallest entries of each row of ``values`` (b, n), in no
    order, looking only at the k blocks of :data:`BLOCK` values with the smallest
    minima (and the last n % BLOCK values). The k minima of those blocks are k
    values no larger than any other block's values, so no value outside them
    is smaller than the row's k-th smallest."""
    b, n = values.shape
    whole = n - n % BLOCK
    minima = values[:, :whole].reshape(b, -1, BLOCK).min(axis=2)
    blocks = np.argpartition(minima, k - 1, axis=1)[:, :k]
    cols = (blocks[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(b, -1)
    if whole < n:
        cols = np.concatenate([cols, np.broadcast_to(np.arange(whole, n), (b, n - whole))],
                              axis=1)
    part = np.argpartition(np.take_along_axis(values, cols, axis=1), k - 1, axis=1)[:, :k]
    return np.take_along_axis(cols, part, axis=1)
