"""Symmetric 8-bit and 4-bit quantisation of the scorer matrices.

A matrix is stored as int8 codes with one float32 scale per column (or per
row), ``value ~= code * scale``; at 4 bits, codes in -7..7 are packed two to
a byte. NumPy has no fast int8 matmul, so the index dequantises to float32
once, when a cluster is loaded; the saving is in bytes on disk and over the
network.
"""

import numpy as np

from .kernels import int4_rows


def quantize_int8(x, axis):
    """Return ``(codes, scales)`` with one scale per slice along ``axis``.

    ``axis=0`` gives per-column scales of a 2-D matrix; for a stack of
    matrices (c, g, r), ``axis=1`` gives per-column scales of each matrix.
    """
    peak = np.max(np.abs(x), axis=axis, keepdims=True)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / scales), -127, 127).astype(np.int8)
    return codes, np.squeeze(scales, axis=axis)


def quantize_groups(x, levels, group):
    """``(codes, scales)`` of a 2-D ``x``: int8 codes in ``-levels..levels``, one
    float16 scale per ``group`` consecutive values of a row, (m, k / group)."""
    m, k = x.shape
    if k % group:
        raise ValueError(f"{k} columns do not split into groups of {group}")
    blocks = x.reshape(m, k // group, group)
    peak = np.max(np.abs(blocks), axis=2, keepdims=True)
    scales = np.where(peak > 0, peak / levels, 1.0).astype(np.float16)
    codes = np.clip(np.rint(blocks / scales.astype(np.float32)), -levels, levels)
    return codes.astype(np.int8).reshape(m, k), scales[:, :, 0]


def dequantize_groups(codes, scales):
    """Inverse of :func:`quantize_groups`, as float32."""
    m, k = codes.shape
    out = codes.reshape(m, scales.shape[1], -1).astype(np.float32)
    out *= scales.astype(np.float32)[:, :, None]
    return out.reshape(m, k)


def dequantize_int8(codes, scales, axis):
    """Inverse of :func:`quantize_int8`, as float32."""
    return codes.astype(np.float32) * np.expand_dims(scales, axis)


def quantize_int4(x):
    """``(packed, scales)`` of a 2-D ``x`` with one scale per row: codes in -7..7, two
    to a byte (the even column in the low nibble), (m, ceil(k / 2)) uint8."""
    peak = np.max(np.abs(x), axis=1, keepdims=True)
    scales = np.where(peak > 0, peak / 7.0, 1.0).astype(np.float32)
    codes = (np.clip(np.rint(x / scales), -7, 7).astype(np.int8) + 8).astype(np.uint8)
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.full((len(codes), 1), 8, np.uint8)], axis=1)
    return codes[:, 0::2] | (codes[:, 1::2] << 4), scales[:, 0]


def dequantize_int4(packed, scales, columns):
    """Inverse of :func:`quantize_int4`: (m, ``columns``) float32."""
    out = int4_rows(packed, scales, columns)  # Pyodide, where the page offers SIMD
    if out is not None:
        return out
    codes = np.empty((len(packed), 2 * packed.shape[1]), dtype=np.int8)
    codes[:, 0::2] = packed & 15
    codes[:, 1::2] = packed >> 4
    out = codes[:, :columns].astype(np.float32)
    out -= 8
    out *= scales[:, None]
    return out


def half_scales(scales):
    """``(half, factor)``: per-row ``scales`` as float16 relative to ``factor``, the
    power of two at or above the largest, so ``scales ~= half * factor`` within
    2**-11 of each. Multiplying the factor into the other side of a product
    (a cluster's ``A``) is exact, so only float16's rounding is new: a probed
    point then costs 2 bytes of scale, not 4 (``IndexParams.scale_bits``). Rows
    below 2**-24 of the largest get 2**-24 (float16's least positive value).
    """
    if not len(scales):
        return scales.astype(np.float16), np.float32(1)
    factor = np.float32(2.0 ** np.ceil(np.log2(float(scales.max()))))
    return np.maximum(scales / factor, np.float32(2.0 ** -24)).astype(np.float16), factor


def quantize_A(A, bits):
    """``(codes, scales)`` of the stacked ``A`` matrices (C, g, r), one scale per
    column of each (C, r): ``bits`` 8 gives int8 codes (C, g, r); ``bits`` 4 the
    rows of each ``A_j^T`` packed as :func:`quantize_int4` packs them, (C, r,
    ceil(g / 2)) uint8 (half the bytes; WordNet's prefix 4.3 -> 2.6 MB)."""
    if bits == 8:
        return quantize_int8(A, axis=1)
    c, g, r = A.shape
    packed, scales = quantize_int4(A.transpose(0, 2, 1).reshape(c * r, g))
    return packed.reshape(c, r, -1), scales.reshape(c, r)


def dequantize_A(codes, scales, bits, g):
    """Inverse of :func:`quantize_A`: (C, ``g``, r) float32."""
    if bits == 8:
        return dequantize_int8(codes, scales, axis=1)
    c, r = scales.shape
    rows = dequantize_int4(codes.reshape(c * r, -1), scales.reshape(-1), g)
    return rows.reshape(c, r, g).transpose(0, 2, 1)


def dequantize_rows(codes, scales, bits, columns):
    """A per-point matrix (``B``) as float32 from its codes: ``bits`` 8, 4 or None
    (stored as float32 already)."""
    if bits == 8:
        return dequantize_int8(codes, scales, axis=1)
    if bits == 4:
        return dequantize_int4(codes, scales, columns)
    return codes
