"""Storage of the vectors used for exact reranking.

Rerank vectors are kept in one of four encodings, trading bytes for accuracy:

* ``float32``            4 bytes per value, exact;
* ``float16``            2 bytes per value;
* ``int8`` per dimension 1 byte per value, ``x = offset + scale * code``
                          with one (offset, scale) pair per dimension;
* ``int8`` per vector    1 byte per value, ``x = scale * code`` with one
                          scale per vector.

"Exact" reranking means exact with respect to the stored (decoded) vectors.
All encodings answer inner products with queries without decoding whole rows
into a separate float32 copy of the data set.

With a ``basis`` (d, s) of orthonormal columns, any encoding holds the
vectors' coordinates in it, ``x @ basis``, instead of ``x``: reranking then
compares the queries' coordinates in the same basis. With the data's
top principal directions this stores fewer values per point for a small loss
of accuracy (wordnet-minilm, 384-d: exact top-10 over int8 codes of all 384
dimensions has recall 0.995; of the top 304, 0.980; of 256, 0.955; measured
by ``build_scripts/measure/bench_rerank_dims.py``).
"""

import numpy as np

from ..kernels import rowwise_dot, take_rows, times, times_transposed, vector_times
from ..params import INT8_SCALES, RERANK_DTYPES
from ..quantization import quantize_int8



class RerankVectors:
    """Encoded vectors plus what is needed to take inner products with them.

    Attributes (all arrays, read-only use): ``codes`` (n, s) in the storage
    dtype, s the dimension or the basis's width; ``offset`` and ``scale``
    (s,) for int8 per dimension;
    ``vector_scale`` (n,) for int8 per vector; ``sq_norms`` (n,) squared
    norms of the decoded vectors (with a basis: plus each vector's energy
    outside it, so Euclidean distances count it); ``basis`` (d, s) or None.

    Methods other than :meth:`in_basis` and :meth:`original` take queries
    already in the storage basis.
    """

    def __init__(self, codes, sq_norms, *, offset=None, scale=None, vector_scale=None,
                 basis=None):
        self.codes = codes
        self.sq_norms = sq_norms
        self.offset = offset
        self.scale = scale
        self.vector_scale = vector_scale
        self.basis = basis

    @classmethod
    def encode(cls, x, dtype="float32", int8_scales="dimension", dim_range=None, basis=None):
        """Encode float32 vectors ``x`` (n, d), in ``basis`` (d, s) when given.

        ``dim_range``: ``(low, high)`` per stored dimension for int8
        per-dimension scales, when ``x`` is one part of a larger set (default:
        x's own).
        """
        if basis is None:
            return cls._encode(x, dtype, int8_scales, dim_range)
        outside = _sq_norms(x)
        x = times(x, basis)
        outside -= _sq_norms(x)
        encoded = cls._encode(x, dtype, int8_scales, dim_range)
        encoded.sq_norms += np.maximum(outside, 0.0)
        encoded.basis = basis
        return encoded

    @classmethod
    def _encode(cls, x, dtype, int8_scales, dim_range):
        if dtype == "float32":
            codes = np.ascontiguousarray(x, dtype=np.float32)
            return cls(codes, _sq_norms(codes))
        if dtype == "float16":
            peak = float(np.abs(x).max()) if x.size else 0.0
            if peak > 65504:
                raise ValueError(
                    f"rerank_dtype='float16' cannot hold values up to {peak:.3g} "
                    "(float16 max is 65504); use 'float32' or 'int8'"
                )
            codes = x.astype(np.float16)
            return cls(codes, _sq_norms(codes.astype(np.float32)))
        if dtype != "int8":
            raise ValueError(f"unknown rerank_dtype {dtype!r}; expected one of {RERANK_DTYPES}")
        if int8_scales == "dimension":
            offset, scale = dimension_scales(*((x.min(axis=0), x.max(axis=0))
                                               if dim_range is None else dim_range))
            codes = np.clip(np.rint((x - offset) / scale), -127, 127).astype(np.int8)
            decoded = codes.astype(np.float32) * scale + offset
            return cls(codes, _sq_norms(decoded), offset=offset, scale=scale)
        if int8_scales == "vector":
            codes, vscale = quantize_int8(x, axis=1)
            decoded = codes.astype(np.float32) * vscale[:, None]
            return cls(codes, _sq_norms(decoded), vector_scale=vscale)
        raise ValueError(f"unknown int8 scales {int8_scales!r}; expected one of {INT8_SCALES}")

    def subset(self, rows):
        """The vectors of ``rows`` (an index array) side by side, as stored."""
        return RerankVectors(take_rows(self.codes, rows), self.sq_norms[rows],
                             offset=self.offset, scale=self.scale,
                             vector_scale=None if self.vector_scale is None
                             else self.vector_scale[rows], basis=self.basis)

    def in_basis(self, queries):
        """Queries (d,) or (b, d) as the stored vectors hold them: their coordinates
        in the basis, if there is one."""
        if self.basis is None:
            return queries
        return (vector_times if queries.ndim == 1 else times)(queries, self.basis)

    def original(self, rows):
        """Decoded vectors of ``rows`` back in the data's own dimensions (with a
        basis, their projection onto it)."""
        out = self.decode(rows)
        return out if self.basis is None else times_transposed(out, self.basis)

    def decode(self, rows=slice(None)):
        """Decoded float32 vectors of ``rows`` (any index shape), as a new array."""
        # (a gather is a new array: scaling it in place leaves the codes alone)
        out = take_rows(self.codes, rows).astype(np.float32, copy=False)
        if self.scale is not None:
            out *= self.scale
            out += self.offset
        elif self.vector_scale is not None:
            out *= self.vector_scale[rows][..., None]
        return out

    def _query_terms(self, q):
        """Fold per-dimension scales into the queries: ``<q, x> = <q', code> + c``."""
        if self.scale is None:
            return q, None
        return q * self.scale, q @ self.offset

    def inner_products(self, rows, q):
        """Inner products of queries with selected rows.

        One query: ``q`` (d,), ``rows`` (R,) -> (R,). A batch: ``q`` (b, d),
        ``rows`` (b, R) -> (b, R).
        """
        qs, const = self._query_terms(q)
        gathered = take_rows(self.codes, rows)
        if gathered.dtype != np.float32:
            gathered = gathered.astype(np.float32)
        ip = rowwise_dot(gathered, qs)
        if self.vector_scale is not None:
            ip *= self.vector_scale[rows]
        if const is not None:
            ip += const if q.ndim == 1 else const[:, None]
        return ip

    def inner_products_all(self, q, start=0, stop=None):
        """``q @ x[start:stop].T`` for queries ``q`` (b, d)."""
        qs, const = self._query_terms(q)
        block = self.codes[start:stop]
        if block.dtype != np.float32:
            block = block.astype(np.float32)
        ip = times_transposed(qs, block)
        if self.vector_scale is not None:
            ip *= self.vector_scale[start:stop]
        if const is not None:
            ip += const[:, None]
        return ip


def dimension_scales(low, high):
    """``(offset, scale)`` of int8 per-dimension codes for values in ``[low, high]``."""
    offset = ((low + high) / 2).astype(np.float32)
    scale = np.where(high > low, (high - low) / 254.0, 1.0).astype(np.float32)
    return offset, scale


def _sq_norms(x):
    return np.einsum("ij,ij->i", x, x).astype(np.float32)
