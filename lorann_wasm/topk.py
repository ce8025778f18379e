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
#: natively, 42 against 57 in batch (NumPy 2.4); random rows of 1,000-3,000,
#: k = 10-31, 8-29 against 12-36 us (of 400: about even). Fashion-MNIST
#: (6, 20) batch search 54 -> 45 us per query, the same ids. Not in Pyodide
#: (NumPy 2.0), where it measured slower (142-164 against 121-132 us).
#: ``argpartition``'s picks are then sorted (400: 15 us in Pyodide, 5 natively),
#: so both platforms hand the same candidates, in the same order, to reranking.
BY_VALUE_MIN = None if WASM else 1024
#: a row of n >= SAMPLED_RATIO * k values (and at least SAMPLED_MIN; None: never)
#: with k >= 2 * SAMPLE_HITS is first cut at a threshold read off every
#: (k // SAMPLE_HITS)-th value, which about 2k values pass; only those are
#: partitioned (:func:`_by_sampled_threshold`). Real approximate scores, one
#: thread, NumPy 2.4: wordnet's 400 of ~8,500 in 26 against 62 us,
#: Fashion-MNIST's 50 of ~1,100 in 9.9 against 12.2; whole wordnet (24, 400)
#: searches 317 -> 284 us single, 213 -> 172 us per query in batch, the same
#: ids. In Pyodide (NumPy 2.0, in Node) only long rows gain: wordnet's in 66-84
#: against 104-106 us (whole searches 679 -> 632 us single, 529 -> 482 in
#: batch), Fashion-MNIST's in 22-28 against 16-18.
SAMPLED_MIN = 4096 if WASM else 1
SAMPLE_HITS = 16
SAMPLED_RATIO = 4
#: 2-D rows go through the sampled threshold this many values at a time: in
#: cache, 500 rows of 8,400 took 33-35 us a row in blocks of 8-128 rows, 40-69
#: all at once
SAMPLED_BLOCK = 1 << 18


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
    the ways below took them (the query path's ties between equal distances go
    to the earlier candidate).

    Which of several entries equal to a row's k-th smallest are taken is
    unspecified (NaN entries are never taken while k others are there).
    """
    n = values.shape[-1]
    if (SAMPLED_MIN is not None and k >= 2 * SAMPLE_HITS
            and n >= max(SAMPLED_MIN, SAMPLED_RATIO * k) and values.dtype.kind == "f"):
        picked = _by_sampled_threshold(values, k)
        if picked is not None:
            return picked
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


def _by_sampled_threshold(values, k):
    """:func:`unordered_smallest_k` of ``values`` (n,) or (b, n) through a threshold
    per row taken from a strided sample, or None where it cannot answer: a row
    with fewer than k values at or below its threshold, or ties at its k-th value.

    Every (k // SAMPLE_HITS)-th value is sampled, so about SAMPLE_HITS of the
    sample lie among a row's k smallest; its (2 k // stride)-th smallest is the
    threshold, which about 2k values pass. All values at or below a threshold
    that at least k pass include the row's k smallest, so selecting among
    them (cut at their own k-th value) is exact; whatever the sample, the
    answer is either right or None.
    """
    n = values.shape[-1]
    if values.ndim == 2 and values.size > SAMPLED_BLOCK and len(values) > 1:
        step = max(1, SAMPLED_BLOCK // n)  # (a row longer than a block: one at a time)
        parts = []
        for s in range(0, len(values), step):
            part = _by_sampled_threshold(values[s:s + step], k)
            if part is None:
                return None
            parts.append(part + s * n)
        return np.concatenate(parts)
    stride = k // SAMPLE_HITS
    sample = values[..., ::stride].copy()
    j = min(sample.shape[-1] - 1, 2 * k // stride)
    sample.partition(j, axis=-1)
    passing = values <= sample[..., j:j + 1]
    if values.ndim == 1:
        at = np.flatnonzero(passing)
        if at.size < k:
            return None
        near = values[at]
    else:
        counts = np.count_nonzero(passing, axis=1)
        if counts.min() < k:
            return None
        # the passing values of each row side by side, padded with inf
        flat = np.flatnonzero(passing)
        row = flat // n
        col = np.arange(flat.size) - np.repeat(np.add.accumulate(counts) - counts, counts)
        near = np.full((len(values), int(counts.max())), np.inf, dtype=values.dtype)
        near[row, col] = values.reshape(-1)[flat]
        at = np.full(near.shape, -1, dtype=np.intp)
        at[row, col] = flat
    kth = near.copy()
    kth.partition(k - 1, axis=-1)
    picked = at[near <= kth[..., k - 1:k]]
    return picked if picked.size == values.size // n * k else None
