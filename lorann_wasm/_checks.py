"""Input validation shared by every public entry point.

Each helper either returns a clean float32 array or raises ``TypeError`` /
``ValueError`` with a message that names the argument and the problem.
"""

import numbers

import numpy as np

from .kernels import einsum
from .metrics import normalize_rows, prepare


def as_matrix(x, name, *, allow_1d=False):
    """Return ``x`` as a C-contiguous float32 array of finite values.

    A 2-D array is returned as is; with ``allow_1d`` a 1-D array is accepted
    too (a single vector). Raises ``TypeError`` for non-numeric input and
    ``ValueError`` for wrong rank, empty input or NaN/inf.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    ndims = (1, 2) if allow_1d else (2,)
    if arr.ndim not in ndims:
        want = "a 1-D vector or a 2-D matrix" if allow_1d else "a 2-D matrix"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    with np.errstate(over="ignore"):  # overflow to inf is reported below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s) (after conversion to float32)"
        )
    return arr


#: squared norms above this overflow float32 distance arithmetic:
#: ||x||^2 + 2|<q, x>| + ||q||^2 stays below 4 times the larger squared norm
MAX_SQ_NORM = float(np.finfo(np.float32).max) / 4


def check_magnitudes(x, name, first_row=0):
    """Refuse rows of ``x`` (2-D, finite float32) whose distances would overflow float32.

    ``first_row`` numbers the rows in the message (None: they are a sample)."""
    sq = np.einsum("ij,ij->i", x, x)  # (einsum overflows to inf without a warning)
    if not (sq <= MAX_SQ_NORM).all():
        bad = int(np.flatnonzero(~(sq <= MAX_SQ_NORM))[0])
        row = "a row" if first_row is None else f"row {first_row + bad}"
        raise ValueError(
            f"{name} {row} is too large: its squared norm overflows float32 arithmetic "
            f"(norms must stay below {MAX_SQ_NORM ** 0.5:.1e}); scale the vectors down")


def as_queries(q, dim, name="q"):
    """Validate queries against an index of dimension ``dim``.

    Returns ``(matrix, single)`` where ``matrix`` is (b, dim) float32 and
    ``single`` says whether the caller passed one 1-D vector.
    """
    arr = as_matrix(q, name, allow_1d=True)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.shape[1] != dim:
        raise ValueError(
            f"{name} has dimension {arr.shape[1]} but the index has dimension {dim}"
        )
    return arr, single


def as_prepared_queries(q, dim, distance, name="q"):
    """:func:`as_queries`, mapped into the index's space (normalised for cosine) and
    refused if their distances would overflow float32: ``(matrix, single)``."""
    if (type(q) is np.ndarray and q.dtype == np.float32 and q.ndim == 1
            and q.shape[0] == dim and q.flags.c_contiguous):
        # The common case in one product: a finite square norm proves every value
        # finite, and bounds the distances (NaN and inf fail the test; the full
        # checks below then say which). (einsum: overflow gives inf, no warning.)
        if float(einsum("i,i->", q, q)) <= MAX_SQ_NORM:
            return (normalize_rows(q[None], name) if distance == "cosine" else q[None]), True
    arr, single = as_queries(q, dim, name)
    arr = prepare(arr, distance, name)
    check_magnitudes(arr, name)
    return arr, single


def as_int(value, name, *, low=None, high=None):
    """Return ``value`` as a Python int within ``[low, high]``."""
    if type(value) is int:  # the common case; skips the slow ABC check below
        pass
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_k(k, n):
    """Validate the number of neighbours requested from ``n`` indexed points."""
    if type(k) is not int:  # the common case skips as_int's checks
        k = as_int(k, "k")
    if not 1 <= k <= n:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        raise ValueError(f"k={k} is larger than the number of indexed points ({n})")
    return k
