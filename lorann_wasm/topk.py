"""Selection of the k smallest entries, row by row."""

import numpy as np


def smallest_k(values, k):
    """Indices of the ``k`` smallest entries of each row, sorted ascending.

    ``values`` is 1-D or 2-D; ``k`` is clipped to the row length. Ties are
    broken by position so the result is deterministic.
    """
    n = values.shape[-1]
    k = min(k, n)
    if k < n:
        part = np.argpartition(values, k - 1, axis=-1)[..., :k]
        part.sort(axis=-1)
    else:
        part = np.broadcast_to(np.arange(n), values.shape).copy()
    picked = np.take_along_axis(values, part, axis=-1)
    order = np.argsort(picked, axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)
