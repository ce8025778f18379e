"""The per-point arrays a query reads, laid out for scoring: :class:`ClusterArrays`.

Each cluster's rows of ``B`` are cut into blocks of up to :data:`BLOCK` rows
(the last one zero-padded), so that scoring the probed clusters of one query is
one block gather and one batched matrix product, with no per-point repeat of
``q A_j``. The same layout serves a whole resident index and a view of just
the clusters a lazily loaded index has fetched.
"""

import numpy as np

from .vectors import RerankVectors

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

    ``offsets`` (C+1,) delimit the clusters' rows (positions); ``ids`` holds
    their ids and ``A_t`` (C, r, g) the clusters' (pre-scaled, transposed)
    ``A_j``. The rows of ``B`` come either as ``B_rows`` (n, r) float32
    (each cluster's ``B_j`` transposed) with ``bias`` (n,) (what is added to
    ``(q A_j) B_j``: ``||x||^2`` for Euclidean, else 0), or already blocked
    as ``B_blocks`` / ``bias_blocks`` (one cluster's blocks after another's).
    ``vectors`` are the rerank vectors (:class:`.RerankVectors`) of every
    row, or None when :meth:`rerank_view` gathers them from ``clusters``
    (a lazily loaded index's cached clusters, each with ``codes``,
    ``sq_norms`` and ``row_scale``).

    ``attributes`` maps the attribute tensors (``attr.NAME``) to their rows,
    or is None when :meth:`attribute` joins them from ``clusters``.

    ``block`` is the rows per block (:func:`block_rows`). Derived:
    ``B_blocks`` (blocks, block, r), ``bias_blocks`` (+inf on padding rows)
    and ``pos_blocks`` (the position of each block entry, -1 on padding);
    ``n_blocks`` and ``block_start`` per cluster.
    """

    def __init__(self, *, A_t, offsets, ids, block, B_rows=None, bias=None, B_blocks=None,
                 bias_blocks=None, vectors=None, clusters=None, dim_scales=(None, None),
                 attributes=None):
        self.A_t, self.ids, self.block = A_t, ids, block
        self.attributes = attributes
        self.vectors, self.clusters, self.dim_scales = vectors, clusters, dim_scales
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
        if B_blocks is not None:
            self.B_blocks, self.bias_blocks = B_blocks, bias_blocks
        elif B_rows.shape[0]:
            safe = np.where(valid, pos, 0)
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

    def attribute(self, name):
        """The rows of attribute tensor ``name`` (``attr.NAME``) for every position."""
        if self.attributes is None:
            self.attributes = {}
        if name not in self.attributes:
            self.attributes[name] = np.concatenate([c.attributes[name] for c in self.clusters])
        return self.attributes[name]

    def cluster_B(self, j):
        """Cluster j's ``B_j`` transposed, (n_j, r): a view into the blocks."""
        lo, hi = self.block_start[j], self.block_start[j + 1]
        return self.B_blocks[lo:hi].reshape(-1, self.B_blocks.shape[2])[:self.sizes[j]]

    def rerank_view(self, positions):
        """Rerank vectors for candidate ``positions`` (any shape, -1 for none):
        ``(vectors, rows, positions_of_rows)``. ``rows`` index ``vectors`` as
        ``positions`` index this view; ``positions_of_rows`` maps them back
        (None: they are the positions). Gathered vectors hold exactly the
        candidates' stored values, so reranking gives identical results."""
        if self.vectors is not None:
            return self.vectors, positions, None
        flat = positions.reshape(-1)
        valid = flat >= 0
        unique, inverse = np.unique(flat[valid], return_inverse=True)
        owner = np.searchsorted(self.offsets, unique, side="right") - 1
        row = unique - self.offsets[owner]
        first = self.clusters[0]
        codes = np.empty((len(unique),) + first.codes.shape[1:], dtype=first.codes.dtype)
        sq_norms = np.empty(len(unique), dtype=np.float32)
        row_scale = None if first.row_scale is None else np.empty(len(unique), np.float32)
        for i in np.unique(owner):
            at = np.flatnonzero(owner == i)
            cluster = self.clusters[i]
            codes[at], sq_norms[at] = cluster.codes[row[at]], cluster.sq_norms[row[at]]
            if row_scale is not None:
                row_scale[at] = cluster.row_scale[row[at]]
        offset, scale = self.dim_scales
        vectors = RerankVectors(codes, sq_norms, offset=offset, scale=scale,
                                vector_scale=row_scale)
        rows = np.full(flat.shape, -1, dtype=np.intp)
        rows[valid] = inverse
        return vectors, rows.reshape(positions.shape), unique
