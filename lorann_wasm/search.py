"""The approximate stage of a LoRANN query: probe clusters, score their points.

Works on a :class:`SearchArrays` view of an index. Point "positions" are
row numbers in cluster order (the order of every per-point array); they are
mapped to user ids only at the very end.

Scores are distances (smaller is better). The query is scaled by -1 (inner
product) or -2 (Euclidean) ahead of time by folding the factor into the
centroids and the ``A`` matrices, so a query's approximate distances are
``(q A_j) B_j`` (plus ``||x||^2`` for Euclidean).
"""

import numpy as np

from .topk import smallest_k

#: queries handled per block by batch search, bounding its padded buffers
BATCH_BLOCK = 256


class SearchArrays:
    """The float32 arrays the query path needs, derived once from the stored tensors."""

    def __init__(self, *, projection, centroids, offsets, A, Bt, sq_norms, euclidean):
        factor = -2.0 if euclidean else -1.0
        self.projection = projection
        self.centroids_t = np.ascontiguousarray(factor * centroids.T)
        self.centroid_bias = (
            np.einsum("ij,ij->i", centroids, centroids) if euclidean else None
        )
        # Pointer-sized: on wasm32, repeat/bincount refuse int64 counts.
        self.offsets = offsets.astype(np.intp)
        self.sizes = np.diff(self.offsets)
        self.A = factor * A
        self.Bt = Bt
        self.sq_norms = sq_norms
        self.euclidean = euclidean

    @property
    def n_clusters(self):
        return self.sizes.shape[0]

    def reduce(self, queries):
        """Queries in the globally reduced space."""
        return queries if self.projection is None else queries @ self.projection

    def probe(self, reduced, clusters_to_search):
        """The ``clusters_to_search`` best clusters: (c,) for one query (g,), (b, c) for (b, g)."""
        dist = reduced @ self.centroids_t
        if self.centroid_bias is not None:
            dist += self.centroid_bias
        return smallest_k(dist, clusters_to_search)


def candidates_single(arrays, reduced, probes, points_to_rerank):
    """Positions of the best approximate candidates of one query, (R,).

    One gather over all probed clusters, no per-cluster Python loop.
    """
    starts = arrays.offsets[probes]
    sizes = arrays.sizes[probes]
    total = int(sizes.sum())
    t = np.matmul(reduced, arrays.A[probes])  # (c, r)
    seg_start = np.cumsum(sizes) - sizes
    pos = np.arange(total) + np.repeat(starts - seg_start, sizes)
    approx = np.einsum("ij,ij->i", arrays.Bt[pos], np.repeat(t, sizes, axis=0))
    if arrays.euclidean:
        approx += arrays.sq_norms[pos]
    if points_to_rerank < total:
        pos = pos[np.argpartition(approx, points_to_rerank - 1)[:points_to_rerank]]
    return pos


def candidates_batch(arrays, reduced, probes, points_to_rerank, ranked=False):
    """Positions of the best approximate candidates of each query, (b, R), -1 padded.

    Queries are grouped by cluster, so each probed cluster costs one pair of
    matrix products for all the queries that probe it. With ``ranked`` the
    candidates are sorted by approximate distance, best first.
    """
    b, c = probes.shape
    sizes = arrays.sizes[probes]
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
    for j in np.unique(flat):
        pairs = pair_order[bounds[j]:bounds[j + 1]]
        lo, hi = arrays.offsets[j], arrays.offsets[j + 1]
        scores = (reduced[pairs // c] @ arrays.A[j]) @ arrays.Bt[lo:hi].T
        if arrays.euclidean:
            scores += arrays.sq_norms[lo:hi]
        approx[(flat_start[pairs][:, None] + np.arange(hi - lo)).ravel()] = scores.ravel()
    approx = approx.reshape(b, width)
    if ranked:
        keep = smallest_k(approx, points_to_rerank)
    elif points_to_rerank < width:
        keep = np.argpartition(approx, points_to_rerank - 1, axis=1)[:, :points_to_rerank]
    else:
        keep = np.broadcast_to(np.arange(width), (b, width))
    where = (np.arange(b)[:, None] * width + keep).ravel()
    slot = np.searchsorted(flat_start, where, side="right") - 1
    within = where - flat_start[slot]
    cluster = flat[slot]
    pos = np.where(within < arrays.sizes[cluster], arrays.offsets[cluster] + within, -1)
    return pos.reshape(keep.shape)
