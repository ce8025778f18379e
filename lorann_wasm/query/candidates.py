"""The approximate stage of a LoRANN query: probe clusters, score their points.

Works on the :class:`.Prefix` (probing) and a :class:`.ClusterArrays` view of
the probed clusters' points. Point "positions" are
row numbers in cluster order (the order of every per-point array); they are
mapped to user ids only at the very end.

Scores are distances (smaller is better). The query is scaled by -1 (inner
product) or -2 (Euclidean) ahead of time by folding the factor into the
centroids and the ``A`` matrices, so a query's approximate distances are
``(q A_j) B_j`` (plus ``||x||^2`` for Euclidean).
"""

import numpy as np

from ..kernels import rowwise_dot, times_transposed

#: queries handled per block by batch search, bounding its padded buffers
BATCH_BLOCK = 256


def candidates_single(arrays, reduced, probes, points_to_rerank, keep=None):
    """Positions of the best approximate candidates of one query, (R,).

    One block gather and one batched product over all probed clusters; no
    per-cluster Python loop. With ``keep`` (a boolean per position) only
    positions it marks are candidates.
    """
    t = rowwise_dot(arrays.A_t[probes], reduced)  # (c, r): q A_j of each probed cluster
    nb = arrays.n_blocks[probes]
    blocks = np.arange(int(nb.sum())) + np.repeat(arrays.block_start[probes] - (np.cumsum(nb) - nb), nb)
    approx = rowwise_dot(arrays.B_blocks[blocks], np.repeat(t, nb, axis=0))
    approx += arrays.bias_blocks[blocks]
    approx = approx.ravel()
    pos = arrays.pos_blocks[blocks].ravel()
    if keep is not None:
        approx[~keep[pos]] = np.inf  # (padding's -1 reads the last flag: its bias is inf anyway)
    if points_to_rerank < approx.size:
        best = np.argpartition(approx, points_to_rerank - 1)[:points_to_rerank]
        pos, approx = pos[best], approx[best]
    return pos[(pos >= 0) & (approx < np.inf)]


def candidates_batch(arrays, reduced, probes, points_to_rerank, with_scores=False):
    """Positions of the best approximate candidates of each query, (b, R), -1 padded.

    Queries are grouped by cluster, so each probed cluster costs one pair of
    matrix products for all the queries that probe it. With ``with_scores``
    the candidates' approximate distances (inf on padding) come too, as
    ``(positions, scores)``.
    """
    b, c = probes.shape
    sizes = arrays.padded_sizes[probes]
    col_start = np.cumsum(sizes, axis=1) - sizes
    width = max(1, int(sizes.sum(axis=1).max()))
    # Each query owns one row of a flat (b * width) buffer; its probed clusters
    # lie back to back in it. Flat 1-D indexing is several times cheaper than
    # 2-D fancy assignment, and positions are recovered only for the winners.
    flat_start = (np.arange(b)[:, None] * width + col_start).ravel()
    approx = np.full(b * width, np.inf, dtype=np.float32)
    flat = probes.ravel()
    pair_order = np.argsort(flat, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(flat, minlength=arrays.n_clusters))))
    r = arrays.A_t.shape[1]
    for j in np.unique(flat):
        pairs = pair_order[bounds[j]:bounds[j + 1]]
        lo, hi = arrays.block_start[j], arrays.block_start[j + 1]
        scores = times_transposed(times_transposed(reduced[pairs // c], arrays.A_t[j]),
                                  arrays.B_blocks[lo:hi].reshape(-1, r))
        scores += arrays.bias_blocks[lo:hi].ravel()
        approx[(flat_start[pairs][:, None] + np.arange(scores.shape[1])).ravel()] = scores.ravel()
    approx = approx.reshape(b, width)
    if points_to_rerank < width:
        keep = np.argpartition(approx, points_to_rerank - 1, axis=1)[:, :points_to_rerank]
    else:
        keep = np.broadcast_to(np.arange(width), (b, width))
    where = (np.arange(b)[:, None] * width + keep).ravel()
    slot = np.searchsorted(flat_start, where, side="right") - 1
    within = where - flat_start[slot]
    cluster = flat[slot]
    inside = within < arrays.padded_sizes[cluster]
    # (an empty cluster's block_start may be one past the last block: index 0 instead)
    entry = np.where(inside, arrays.block_start[cluster] * arrays.block + within, 0)
    pos = np.where(inside, arrays.pos_blocks.ravel()[entry], -1).reshape(keep.shape)
    if with_scores:
        return pos, np.where(pos >= 0, approx.ravel()[where].reshape(keep.shape), np.inf)
    return pos


def candidates_filtered(arrays, reduced, probes, positions, which, points_to_rerank):
    """The best ``points_to_rerank`` of the passing ``positions`` of one query by
    approximate score, in no particular order: (R,).

    Unlike :func:`candidates_single` only the passing points are scored: their
    rows of ``B`` are gathered one by one (``which`` indexes ``probes``, the
    cluster of each position), so a filter passing 1 % of a cluster costs 1 %
    of its scoring. Where most points pass, :func:`candidates_single` with
    ``keep`` is cheaper: it scores whole blocks.
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
    cluster = probes[which]
    within = positions - arrays.offsets[cluster]
    entry = (arrays.block_start[cluster] + within // arrays.block) * arrays.block \
        + within % arrays.block
    r = arrays.A_t.shape[1]
    approx = np.einsum("ij,ij->i", arrays.B_blocks.reshape(-1, r)[entry], t[which])
    approx += arrays.bias_blocks.ravel()[entry]
    return positions[np.argpartition(approx, points_to_rerank - 1)[:points_to_rerank]]
