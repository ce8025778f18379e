"""The per-point arrays a query reads, laid out for scoring: :class:`ClusterArrays`.

Each cluster's scorer is one contiguous float32 matrix ``(r + 1, n_j)``: the
rows of ``B_j`` transposed, plus a last row holding what is added to a
point's score (``||x||^2`` for Euclidean, else 0). With residual scorers a
row of ones comes before that last row, ``(r + 2, n_j)``, taking the
cluster's centroid term (the last entry of ``q A_j``, see :class:`.Prefix`)
to every point. A query scores cluster j
with one vector-matrix product ``[q A_j, 1] @ scorer_j``, reading the cluster
where it lies: no gather copies the probed points first. Measured on the
wordnet benchmark (342 clusters of 341 points, r = 32, 32 probed, one
thread): 500 us per query with the earlier 32-row blocks (gathered, then a
batched product) against 290 us this way. This orientation measured 1.1x
faster than points as rows natively and as fast in Pyodide (see
:mod:`..kernels`).
The same layout serves a whole resident index (views into one buffer) and
a view of just the clusters a lazily loaded index has fetched (their own
arrays, not joined).
"""

import numpy as np

from ..kernels import take_rows
from .vectors import RerankVectors


def scorer_matrix(B_rows, bias, residual=False, out=None):
    """One cluster's scorer ``(r + 1, n_j)`` from its rows of ``B`` (n_j, r) and bias
    (n_j,), with ``residual`` ``(r + 2, n_j)`` (a row of ones before the bias),
    written into ``out`` if given."""
    r = B_rows.shape[1]
    if out is None:
        out = np.empty((r + 1 + residual, B_rows.shape[0]), dtype=np.float32)
    out[:r] = B_rows.T
    if residual:
        out[r] = 1.0
    out[-1] = bias
    return out


def spans(offsets):
    """Each cluster's positions as Python ints ``(first, end)``, from ``offsets`` (C+1,)."""
    return list(zip(offsets[:-1].tolist(), offsets[1:].tolist()))


class ClusterArrays:
    """Clusters' points in the form the query path reads.

    ``offsets`` (C+1,) delimit the clusters' rows (positions: row numbers in
    cluster order, the order of every per-point array); ``ids`` holds their
    ids and ``A_t`` (C, r, g) the clusters' (pre-scaled, transposed) ``A_j``.
    ``scorers`` lists each cluster's scorer matrix (:func:`scorer_matrix`).
    ``vectors`` are the rerank vectors (:class:`.RerankVectors`) of every
    row, or None when :meth:`rerank_view` gathers them from ``clusters``
    (a lazily loaded index's cached clusters, each with ``codes``,
    ``sq_norms`` and ``row_scale``).

    ``attributes`` maps the attribute tensors (``attr.NAME``) to their rows,
    or is None when :meth:`attribute` joins them from ``clusters``.
    """

    def __init__(self, *, A_t, offsets, ids, scorers, vectors=None, clusters=None,
                 vector_coding=None, attributes=None, scorer_buffer=None, residual=False):
        self.A_t, self.ids, self.scorers = A_t, ids, scorers
        #: the scorers have a row of ones for the centroid term (and A_t a row more)
        self.residual = residual
        self.attributes = attributes
        self.vectors, self.clusters, self.vector_coding = vectors, clusters, vector_coding
        self.offsets = offsets.astype(np.intp)  # on wasm32, repeat/bincount refuse int64
        self.sizes = np.diff(self.offsets)
        self._buffer = scorer_buffer
        #: each cluster's positions as Python ints ``(first, end)``
        self.spans = spans(self.offsets)
        #: every position, in order (the query path takes slices of it)
        self.positions = np.arange(self.offsets[-1], dtype=np.intp)

    @classmethod
    def from_rows(cls, *, offsets, B_rows, bias, residual=False, **kwargs):
        """Arrays over clusters given by ``B_rows`` (n, r), each cluster's rows of
        ``B_j`` transposed, and ``bias`` (n,), in cluster order; the scorers are
        views into one buffer."""
        rows = B_rows.shape[1] + 1 + residual
        offsets = np.asarray(offsets, dtype=np.intp)
        flat = np.empty(rows * B_rows.shape[0], dtype=np.float32)
        scorers = [scorer_matrix(B_rows[lo:hi], bias[lo:hi], residual,
                                 out=flat[rows * lo:rows * hi].reshape(rows, hi - lo))
                   for lo, hi in spans(offsets)]
        return cls(offsets=offsets, scorers=scorers, scorer_buffer=flat, residual=residual,
                   **kwargs)

    @property
    def n_clusters(self):
        return self.sizes.shape[0]

    def scorer_columns(self, positions, cluster):
        """The scorer columns of ``positions`` (of clusters ``cluster``) as rows,
        (len, r + 1): for scoring scattered points (one gather)."""
        if self._buffer is None:  # a view's clusters, joined once
            self._buffer = (np.concatenate([s.ravel() for s in self.scorers]) if self.scorers
                            else np.zeros(0, np.float32))
        rows = self.A_t.shape[1] + 1
        start = rows * self.offsets[cluster] + (positions - self.offsets[cluster])
        return self._buffer[start[:, None] + np.arange(rows) * self.sizes[cluster][:, None]]

    def attribute(self, name):
        """The rows of attribute tensor ``name`` (``attr.NAME``) for every position."""
        if self.attributes is None:
            self.attributes = {}
        if name not in self.attributes:
            self.attributes[name] = np.concatenate([c.attributes[name] for c in self.clusters])
        return self.attributes[name]

    def cluster_B(self, j):
        """Cluster j's ``B_j`` transposed, (n_j, r): a view into its scorer."""
        return self.scorers[j][:self.A_t.shape[1] - self.residual].T

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
            codes[at], sq_norms[at] = take_rows(cluster.codes, row[at]), cluster.sq_norms[row[at]]
            if row_scale is not None:
                row_scale[at] = cluster.row_scale[row[at]]
        vectors = RerankVectors(codes, sq_norms, vector_scale=row_scale,
                                **(self.vector_coding or {}))
        rows = np.full(flat.shape, -1, dtype=np.intp)
        rows[valid] = inverse
        return vectors, rows.reshape(positions.shape), unique
