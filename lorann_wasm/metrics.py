"""Distance metrics.

Every distance returned by this package is "smaller is better":

* ``"ip"``:     ``-<q, x>`` (the negated inner product),
* ``"cosine"``: ``1 - cos(q, x)`` (in ``[0, 2]``),
* ``"l2"``:     ``||q - x||^2`` (the squared Euclidean distance).

Internally cosine is inner product on unit-normalised vectors, so the core
only distinguishes inner-product geometry from Euclidean geometry.
"""

import numpy as np

DISTANCES = ("ip", "cosine", "l2")


def check_distance(distance):
    """Return the metric name, or raise ``ValueError`` naming the valid ones."""
    if not isinstance(distance, str) or distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    return distance


def is_euclidean(distance):
    return distance == "l2"


def check_nonzero_rows(x, name):
    """The rows' norms (float64); zero rows are an error (cosine is undefined for them)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(
            f"{name} has {zero.size} zero vector(s) (first at row {int(zero[0])}); "
            "cosine distance is undefined for them"
        )
    return norms


def normalize_rows(x, name):
    """Unit-normalise the rows of ``x`` for cosine; zero rows are an error."""
    return (x / check_nonzero_rows(x, name)[:, None]).astype(np.float32)


def prepare(x, distance, name):
    """Map vectors into the space the index works in (normalised for cosine)."""
    return normalize_rows(x, name) if distance == "cosine" else x


def from_inner_products(ip, distance, x_sq_norms=None, q_sq_norms=None):
    """Turn inner products ``<q, x>`` into this package's distances (in place).

    Euclidean needs the squared norms of the points and the queries.
    """
    if distance == "ip":
        np.negative(ip, out=ip)
    elif distance == "cosine":
        np.subtract(1.0, ip, out=ip)
    else:
        ip *= -2.0
        ip += x_sq_norms
        ip += q_sq_norms
        np.maximum(ip, 0.0, out=ip)
    return ip
