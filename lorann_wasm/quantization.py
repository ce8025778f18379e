"""Symmetric 8-bit quantisation of the scorer matrices.

A matrix is stored as int8 codes with one float32 scale per column (or per
row), ``value ~= code * scale``. NumPy has no fast int8 matmul, so the index
dequantises to float32 once, at load time; the saving is in bytes on disk and
over the network.
"""

import numpy as np


def quantize_int8(x, axis):
    """Return ``(codes, scales)`` with one scale per slice along ``axis``.

    ``axis=0`` gives per-column scales of a 2-D matrix; for a stack of
    matrices (c, g, r), ``axis=1`` gives per-column scales of each matrix.
    """
    peak = np.max(np.abs(x), axis=axis, keepdims=True)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / scales), -127, 127).astype(np.int8)
    return codes, np.squeeze(scales, axis=axis)


def dequantize_int8(codes, scales, axis):
    """Inverse of :func:`quantize_int8`, as float32."""
    return codes.astype(np.float32) * np.expand_dims(scales, axis)
