"""The per-point arrays a query reads, laid out for scoring: :class:`ClusterArrays`.

Each cluster's rows of ``B`` are cut into blocks of up to :data:`BLOCK` rows
(the last one zero-padded), so that scoring the probed clusters of one query is
one block gather and one batched matrix product, with no per-point repeat of
``q A_j``. The same layout serves a whole resident index and a view of just
the clusters a lazily loaded index has fetched.
"""

import numpy as np

#: rows of B per block, at most
BLOCK = 32


def block_rows(n, n_clusters):
    """Rows per block for an index of n points in ``n_clusters`` clusters.

    :data:`BLOCK`, or for small clusters the power of two at or above the
    mean cluster size: padding then stays below about twice the points
    (with 32-row blocks, one point per cluster would take 32 times its B).
    """
    rows = 1
    while rows < BLOCK and rows < n / n_clusters:
        rows *= 2
    return rows


class ClusterArrays:
    """Clusters' points in the form the query path reads.

    ``offsets`` (C+1,) delimit the clusters' rows (positions) in ``B_rows``
    (n, r) float32 (each cluster's ``B_j`` transposed), ``bias`` (n,) (what
    is added to ``(q A_j) B_j``: ``||x||^2`` for Euclidean, else 0),
    ``vectors`` (the rerank vectors, :class:`.RerankVectors`) and ``ids``.
    ``A_t`` (C, r, g) holds the clusters' (pre-scaled, transposed) ``A_j``.

    ``block`` is the rows per block (:func:`block_rows`).
    Derived: ``B_blocks`` (blocks, block, r), ``bias_blocks`` (+inf on
    padding rows) and ``pos_blocks`` (the position of each block entry, -1
    on padding); ``n_blocks`` and ``block_start`` per cluster.
    """

    def __init__(self, *, A_t, offsets, B_rows, bias, vectors, ids, block):
        self.A_t, self.vectors, self.ids, self.block = A_t, vectors, ids, block
        self.offsets = offsets.astype(np.intp)  # on wasm32, repeat/bincount refuse int64
        self.sizes = np.diff(self.offsets)
        self.n_blocks = -(-self.sizes // block)
        self.block_start = np.zeros(len(self.sizes) + 1, dtype=np.intp)
        np.cumsum(self.n_blocks, out=self.block_start[1:])
        total = int(self.block_start[-1])
        cluster = np.repeat(np.arange(len(self.sizes)), self.n_blocks)
        first_row = self.offsets[cluster] + (np.arange(total) - self.block_start[cluster]) * block
        pos = first_row[:, None] + np.arange(block)
        valid = pos < self.offsets[cluster + 1][:, None]
        self.pos_blocks = np.where(valid, pos, -1)
        safe = np.where(valid, pos, 0)
        if B_rows.shape[0]:
            self.B_blocks = B_rows[safe]
            self.B_blocks[~valid] = 0
            self.bias_blocks = np.where(valid, bias[safe], np.inf).astype(np.float32)
        else:  # every cluster empty
            self.B_blocks = np.zeros((0, block, B_rows.shape[1]), np.float32)
            self.bias_blocks = np.zeros((0, block), np.float32)
        #: rows per cluster including block padding: the width batch search lays out
        self.padded_sizes = self.n_blocks * block

    @property
    def n_clusters(self):
        return self.sizes.shape[0]

    def cluster_B(self, j):
        """Cluster j's ``B_j`` transposed, (n_j, r): a view into the blocks."""
        lo, hi = self.block_start[j], self.block_start[j + 1]
        return self.B_blocks[lo:hi].reshape(-1, self.B_blocks.shape[2])[:self.sizes[j]]
