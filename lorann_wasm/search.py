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

from .kernels import rowwise_dot, times_transposed
from .topk import smallest_k

#: queries handled per block by batch search, bounding its padded buffers
BATCH_BLOCK = 256
#: rows of B per block in the blocked layout (see SearchArrays)
BLOCK = 32


class ProbeArrays:
    """What a query needs before it touches any point: the index file's prefix.

    The projection, the (pre-scaled) centroids, the cluster offsets and the
    per-cluster ``A`` matrices; enough to reduce queries, pick the clusters
    to probe and compute ``q A_j``.
    """

    def __init__(self, *, projection, centroids, offsets, A, euclidean):
        factor = -2.0 if euclidean else -1.0
        # Operands are kept transposed (reduction axis last, contiguous): see kernels.
        self.projection_t = None if projection is None else np.ascontiguousarray(projection.T)
        self.centroids_scaled = np.ascontiguousarray(factor * centroids)
        self.centroid_bias = (
            np.einsum("ij,ij->i", centroids, centroids) if euclidean else None
        )
        # Pointer-sized: on wasm32, repeat/bincount refuse int64 counts.
        self.offsets = offsets.astype(np.intp)
        self.sizes = np.diff(self.offsets)
        self.A_t = np.ascontiguousarray((factor * A).transpose(0, 2, 1))  # (C, r, g)
        self.euclidean = euclidean

    @property
    def n_clusters(self):
        return self.sizes.shape[0]

    def reduce(self, queries):
        """Queries in the globally reduced space."""
        return queries if self.projection_t is None else times_transposed(queries, self.projection_t)

    def probe(self, reduced, clusters_to_search):
        """The ``clusters_to_search`` best clusters: (c,) for one query (g,), (b, c) for (b, g)."""
        dist = times_transposed(reduced, self.centroids_scaled)
        if self.centroid_bias is not None:
            dist += self.centroid_bias
        return smallest_k(dist, clusters_to_search)


def cluster_blocks(Bt, bias):
    """One cluster's rows of ``B`` (n_j, r) and their ``bias`` (n_j,) cut into blocks.

    Returns ``(B_blocks, bias_blocks)``, (nb, BLOCK, r) and (nb, BLOCK),
    padded with zero rows whose bias is +inf; the same values
    :class:`SearchArrays` holds for the cluster.
    """
    n, r = Bt.shape
    nb = -(-n // BLOCK)
    B_blocks = np.zeros((nb * BLOCK, r), dtype=np.float32)
    B_blocks[:n] = Bt
    bias_blocks = np.full(nb * BLOCK, np.inf, dtype=np.float32)
    bias_blocks[:n] = bias
    return B_blocks.reshape(nb, BLOCK, r), bias_blocks.reshape(nb, BLOCK)


class SearchArrays(ProbeArrays):
    """The float32 arrays the query path needs, derived once from the stored tensors.

    Each cluster's rows of ``B`` are cut into blocks of :data:`BLOCK` rows
    (the last one zero-padded) in ``B_blocks`` (blocks, BLOCK, r), so that
    scoring the probed clusters of one query is one block gather and one
    batched matrix product, with no per-point repeat of ``q A_j``.
    ``bias_blocks`` holds what is added to ``(q A_j) B_j``: ``||x||^2`` for
    Euclidean, 0 for inner product, +inf for padding rows; ``pos_blocks`` the
    row (position) of each block entry, -1 for padding.
    """

    def __init__(self, *, projection, centroids, offsets, A, Bt, sq_norms, euclidean):
        super().__init__(projection=projection, centroids=centroids, offsets=offsets, A=A,
                         euclidean=euclidean)
        self._make_blocks(Bt, sq_norms if euclidean else None)

    def _make_blocks(self, Bt, sq_norms):
        self.n_blocks = -(-self.sizes // BLOCK)
        self.block_start = np.zeros(len(self.sizes) + 1, dtype=np.intp)
        np.cumsum(self.n_blocks, out=self.block_start[1:])
        total = int(self.block_start[-1])
        cluster = np.repeat(np.arange(len(self.sizes)), self.n_blocks)
        first_row = self.offsets[cluster] + (np.arange(total) - self.block_start[cluster]) * BLOCK
        pos = first_row[:, None] + np.arange(BLOCK)
        valid = pos < self.offsets[cluster + 1][:, None]
        self.pos_blocks = np.where(valid, pos, -1)
        safe = np.where(valid, pos, 0)
        self.B_blocks = Bt[safe]
        self.B_blocks[~valid] = 0
        bias = sq_norms[safe] if sq_norms is not None else np.zeros(valid.shape, np.float32)
        self.bias_blocks = np.where(valid, bias, np.inf).astype(np.float32)
        #: rows per cluster including block padding: the width batch search lays out
        self.padded_sizes = self.n_blocks * BLOCK

    def cluster_B(self, j):
        """Cluster j's ``B_j`` transposed, (n_j, r): a view into the blocks."""
        lo, hi = self.block_start[j], self.block_start[j + 1]
        return self.B_blocks[lo:hi].reshape(-1, self.B_blocks.shape[2])[:self.sizes[j]]


def candidates_single(arrays, reduced, probes, points_to_rerank):
    """Positions of the best approximate candidates of one query, (R,).

    One block gather and one batched product over all probed clusters; no
    per-cluster Python loop.
    """
    t = rowwise_dot(arrays.A_t[probes], reduced)  # (c, r): q A_j of each probed cluster
    nb = arrays.n_blocks[probes]
    blocks = np.arange(int(nb.sum())) + np.repeat(arrays.block_start[probes] - (np.cumsum(nb) - nb), nb)
    approx = rowwise_dot(arrays.B_blocks[blocks], np.repeat(t, nb, axis=0))
    approx += arrays.bias_blocks[blocks]
    approx = approx.ravel()
    pos = arrays.pos_blocks[blocks].ravel()
    if points_to_rerank < approx.size:
        pos = pos[np.argpartition(approx, points_to_rerank - 1)[:points_to_rerank]]
    return pos[pos >= 0]


def candidates_batch(arrays, reduced, probes, points_to_rerank, ranked=False):
    """Positions of the best approximate candidates of each query, (b, R), -1 padded.

    Queries are grouped by cluster, so each probed cluster costs one pair of
    matrix products for all the queries that probe it. With ``ranked`` the
    candidates are sorted by approximate distance, best first.
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
    inside = within < arrays.padded_sizes[cluster]
    entry = arrays.block_start[cluster] * BLOCK + np.where(inside, within, 0)
    pos = np.where(inside, arrays.pos_blocks.ravel()[entry], -1)
    return pos.reshape(keep.shape)
