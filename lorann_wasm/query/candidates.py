"""The approximate stage of a LoRANN query: probe clusters, score their points.

Works on the :class:`.Prefix` (probing) and a :class:`.ClusterArrays` view of
the probed clusters' points. Point "positions" are row numbers in cluster
order (the order of every per-point array); they are mapped to user ids only
at the very end.

Scores are distances (smaller is better). The query is scaled by -1 (inner
product) or -2 (Euclidean) ahead of time by folding the factor into the
centroids and the ``A`` matrices, so a query's approximate distances are
``[q A_j, 1] @ scorer_j``: ``(q A_j) B_j`` plus ``||x||^2`` for Euclidean.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..kernels import einsum, rowwise_dot, times, times_transposed, vector_times
from ..topk import unordered_smallest_k

#: approximate scores held at once by batch search (queries x their probed
#: points), bounding its buffers to 16 MB. Blocks of as many queries as fit:
#: Fashion-MNIST at 4 probed clusters has ~4 queries per cluster in a block of
#: 256, and measured 100 us per query that way against 78 us in blocks of 4,096
#: (one call per cluster per block).
BATCH_VALUES = 1 << 22


#: the largest nominal size, in bytes, of batch search's window view (NumPy's
#: limit is the platform's index range; see :func:`candidates_batch`)
WINDOW_BYTES = np.iinfo(np.intp).max // 2

_ones = np.ones((256, 1), dtype=np.float32)


def with_one(t):
    """``t`` (m, r) with a last column of ones: (m, r + 1), the scorers' bias row's factor.

    One ``concatenate`` with a kept column of ones: in Pyodide a NumPy function
    with a Python-level wrapper costs far more than its work on small arrays
    (``np.ones((24, 33))`` 21 us, ``np.cumsum`` of 24 values 22 us)."""
    global _ones
    if len(t) > len(_ones):
        _ones = np.ones((len(t), 1), dtype=np.float32)
    return np.concatenate((t, _ones[:len(t)]), axis=1)


def candidates_single(arrays, reduced, probes, points_to_rerank, keep=None):
    """Positions of the best approximate candidates of one query, (R,), in no order.

    One product for ``q A_j`` of every probed cluster, then one vector-matrix
    product per probed cluster over its scorer where it lies (a loop over
    clusters, not points; see :mod:`.clusters` for why). With ``keep`` (a
    boolean per position) only positions it marks are candidates.
    """
    if not len(probes):
        return np.zeros(0, dtype=np.intp)
    order, spans = probes.tolist(), arrays.spans
    sizes = arrays.sizes[probes]
    if keep is None and points_to_rerank >= np.add.reduce(sizes):
        # every probed point is reranked: nothing to score (IVF-Flat)
        return np.concatenate([arrays.positions[slice(*spans[j])] for j in order])
    t = with_one(rowwise_dot(arrays.A_t[probes], reduced))  # (c, r + 1)
    scorers = arrays.scorers
    approx = np.concatenate([vector_times(row, scorers[j]) for row, j in zip(t, order)])
    if keep is not None:
        approx[~np.concatenate([keep[slice(*spans[j])] for j in order])] = np.inf
    if points_to_rerank < approx.size:
        best = unordered_smallest_k(approx, points_to_rerank)
        if keep is not None:
            best = best[approx[best] < np.inf]
    else:
        best = np.arange(approx.size) if keep is None else np.flatnonzero(approx < np.inf)
    return positions_of(arrays, probes, sizes, best)


def positions_of(arrays, probes, sizes, picked):
    """Positions of ``picked``, indices into the probed clusters' points (``sizes``
    of them each) laid back to back in ``probes``' order. (Seven calls on small
    arrays: half the time of concatenating the probed clusters' positions to
    index them, natively.)"""
    ends = np.add.accumulate(sizes)  # (a ufunc method: np.cumsum is slow in Pyodide)
    slot = ends.searchsorted(picked, "right")
    return picked + (arrays.offsets[probes] - (ends - sizes))[slot]


def candidates_blocked(arrays, reduced, probes, points_to_rerank, with_scores=False):
    """:func:`candidates_batch` of any number of queries, in blocks of bounded size:
    positions (b, R) -1 padded, and with ``with_scores`` their scores (inf padded)."""
    widest = int(arrays.sizes[probes].sum(axis=1).max()) if probes.size else 1
    step = max(1, BATCH_VALUES // max(1, widest))
    parts = [candidates_batch(arrays, reduced[s:s + step], probes[s:s + step],
                              points_to_rerank, with_scores)
             for s in range(0, len(probes), step)]
    if len(parts) == 1:
        return parts[0]
    if not with_scores:
        parts = [(p, None) for p in parts]
    width = max(p.shape[1] for p, _ in parts)
    positions = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1)
                                for p, _ in parts])
    if not with_scores:
        return positions
    return positions, np.concatenate([np.pad(v, ((0, 0), (0, width - v.shape[1])),
                                             constant_values=np.inf) for _, v in parts])


def candidates_batch(arrays, reduced, probes, points_to_rerank, with_scores=False):
    """Positions of the best approximate candidates of each query, (b, R), -1 padded.

    Queries are grouped by cluster, so each probed cluster costs one pair of
    matrix products for all the queries that probe it. With ``with_scores``
    the candidates' approximate distances (inf on padding) come too, as
    ``(positions, scores)``.
    """
    b, c = probes.shape
    sizes = arrays.sizes[probes]
    longest = max(1, int(sizes.max()))
    # Each query owns one row of a flat (b * width) buffer; its probed clusters
    # lie back to back in it, each starting at a multiple of ``grain`` (see
    # below), and positions are recovered only for the winners.
    grain = 1
    while True:
        padded = -(-sizes // grain) * grain
        width = max(grain, int(padded.sum(axis=1).max()))
        if (b * width // grain) * longest * 4 <= WINDOW_BYTES or grain >= width:
            break
        grain *= 2
    col_start = np.cumsum(padded, axis=1) - padded
    flat_start = (np.arange(b)[:, None] * width + col_start).ravel()
    buffer = np.full(b * width + longest, np.inf, dtype=np.float32)
    approx = buffer[:b * width]
    # Row s of ``runs`` is the run of ``longest`` values from flat index
    # s * grain, so a cluster's scores land with one row assignment per query
    # (each a plain copy): 4x cheaper than scattering through a flat index
    # array (measured 26 vs 102 us for 70 queries x 341 points). The rows
    # overlap in memory, but the runs written never do. NumPy limits the
    # view's nominal size, the rows times ``longest``, to its index range:
    # on 32-bit wasm a grain of several values keeps it under.
    runs = as_strided(buffer, shape=(b * width // grain, longest),
                      strides=(grain * buffer.itemsize, buffer.itemsize))
    flat = probes.ravel()
    pair_order = np.argsort(flat, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(flat, minlength=arrays.n_clusters))))
    for j in np.unique(flat).tolist():
        pairs = pair_order[bounds[j]:bounds[j + 1]]
        scorer = arrays.scorers[j]
        if not scorer.shape[1]:
            continue
        t = with_one(times_transposed(reduced[pairs // c], arrays.A_t[j]))
        scores = times(t, scorer)
        runs[flat_start[pairs] // grain, :scorer.shape[1]] = scores
    approx = approx.reshape(b, width)
    if points_to_rerank < width:
        where = unordered_smallest_k(approx, points_to_rerank)  # flat indices
    else:
        where = np.arange(b * width)
    shape = (b, min(points_to_rerank, width))
    slot = np.searchsorted(flat_start, where, side="right") - 1
    within = where - flat_start[slot]
    cluster = flat[slot]
    inside = within < arrays.sizes[cluster]
    pos = np.where(inside, arrays.offsets[cluster] + within, -1).reshape(shape)
    if with_scores:
        return pos, np.where(pos >= 0, approx.ravel()[where].reshape(shape), np.inf)
    return pos


def candidates_filtered(arrays, reduced, probes, positions, which, points_to_rerank):
    """The best ``points_to_rerank`` of the passing ``positions`` of one query by
    approximate score, in no particular order: (R,).

    Unlike :func:`candidates_single` only the passing points are scored: their
    scorer columns are gathered one by one (``which`` indexes ``probes``, the
    cluster of each position), so a filter passing 1 % of a cluster costs 1 %
    of its scoring. Where most points pass, :func:`candidates_single` with
    ``keep`` is cheaper: it scores whole clusters.
    """
    if points_to_rerank >= len(positions):
        return positions
    # Gathering c matrices A_j and their products cost about 1.4 us each (32 x 128,
    # one thread), one product with all of them 133 us for 245 clusters: beyond
    # about C/2 probes, take all.
    if 2 * len(probes) > arrays.n_clusters:
        t = rowwise_dot(arrays.A_t.reshape(-1, arrays.A_t.shape[2]), reduced)
        t = t.reshape(arrays.n_clusters, -1)[probes]
    else:
        t = rowwise_dot(arrays.A_t[probes], reduced)  # (c, r): q A_j of each probed cluster
    columns = arrays.scorer_columns(positions, probes[which])  # (len, r + 1)
    approx = einsum("ij,ij->i", columns, with_one(t)[which])
    return positions[unordered_smallest_k(approx, points_to_rerank)]
