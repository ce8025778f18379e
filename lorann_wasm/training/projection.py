"""Global dimensionality reduction (LoRANN section 4).

The projection is onto the top eigenvectors of the uncentred second-moment
matrix ``Q^T Q`` of the training queries, so that inner products with the
queries are preserved as well as a ``global_dim``-dimensional subspace can.
The same fit on the data gives the basis of the rerank vectors (``rerank_dims``).
"""

import numpy as np

#: training queries used to estimate Q^T Q, as in the C++ lorann
PROJECTION_SAMPLE = 16384


def fit_projection(rows, dims):
    """Return a ``(d, dims)`` float32 matrix with orthonormal columns: the top
    ``dims`` eigenvectors of ``rows^T rows`` for ``rows`` (m, d).

    The build passes a seeded sample of at most :data:`PROJECTION_SAMPLE` rows.
    """
    q = rows.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(q.T @ q)
    top = eigenvectors[:, ::-1][:, :dims]
    return np.ascontiguousarray(top, dtype=np.float32)
