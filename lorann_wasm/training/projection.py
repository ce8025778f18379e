"""Global dimensionality reduction (LoRANN section 4).

The projection is onto the top eigenvectors of the uncentred second-moment
matrix ``Q^T Q`` of the training queries, so that inner products with the
queries are preserved as well as a ``global_dim``-dimensional subspace can.
"""

import numpy as np

#: training queries used to estimate Q^T Q, as in the C++ lorann
PROJECTION_SAMPLE = 16384


def fit_projection(queries, global_dim):
    """Return a ``(dim, global_dim)`` float32 matrix with orthonormal columns.

    The build passes a seeded sample of at most :data:`PROJECTION_SAMPLE` queries.
    """
    q = queries.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(q.T @ q)
    top = eigenvectors[:, ::-1][:, :global_dim]
    return np.ascontiguousarray(top, dtype=np.float32)
