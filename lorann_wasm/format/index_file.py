"""The lorann_wasm index file: which tensors a safetensors file holds, and checks.

Layout (offsets increase down the list). A small *prefix* holds everything a
query needs before it touches any point: the cluster offsets, the centroids,
the global projection and the per-cluster ``A`` matrices. Then come the
*per-point* arrays, every one sorted by cluster so that one cluster's rows
are one contiguous byte range in each; ``cluster_offsets[j]:cluster_offsets[j+1]``
are cluster j's rows. ``cluster_crc32`` holds a CRC-32 per cluster over those
ranges (taken in file order), so a reader that fetches single clusters can
verify them.

Prefix:     cluster_offsets (C+1,) i64 | centroids (C, g) f32 |
            projection (d, g) f32 [if g < d] | A (C, g, r) f32 or i8, or
            (C, r, ceil(g/2)) u8 [a_bits 4] (A_j transposed) |
            A_scales (C, r) f32 [8- or 4-bit] | vectors_basis (d, s) f32 [rerank_dims] |
            vectors_dim_offset, vectors_dim_scale (s,) f32 [int8 per dimension] |
            cluster_crc32 (C,) u32
Per point:  ids (n,) i64 [unless positional_ids] |
            B (n, r) f32 or i8, or (n, ceil(r/2)) u8 [4-bit] (B_j transposed) |
            B_scales (n,) f32, f16 with scale_bits 16 [8- or 4-bit] |
            sq_norms (n,) f32 [stores_norms] |
            vectors (n, s) f32, f16 or i8 | vectors_row_scale (n,) f32 [int8 per vector]
The checks (row_checksums, attribute_checksums), the attributes and their
summaries: docs/format.md.

``s`` is the number of values stored per rerank vector: the dimension d, or
with ``rerank_dims`` the vectors' coordinates in the orthonormal
``vectors_basis`` (their top principal directions). A 4-bit ``B`` packs
codes -7..7 two to a byte (:func:`..quantization.quantize_int4`).
Without ``ids`` a point's id is its position in cluster order; without
``sq_norms`` (inner product and cosine indexes) nothing reads them. Files
whose attributes have checksums of their own (every build with attributes
since) are format version 8; files
with a 4-bit ``A`` (every build with 4-bit scorers since) version
7; files with 16-bit ``B_scales`` (every other quantised build) version 6; files
with 16-bit ``vector_checks`` version 5; files that leave either out, or
have a 4-bit ``B``, version 4; files whose scorers are fit to the points
minus their centroid (``residual_scorers``) version 3; older files with a
basis version 2, without one version 1.

Within each part tensors are ordered by decreasing item size, so each is
naturally aligned; a ``_padding`` u8 tensor realigns the per-point part.

Two checksums are stored in the metadata: ``checksum`` covers the header and
the whole data section (see :mod:`.safetensors_io`); ``prefix_checksum`` covers
the header and the prefix only, so a reader that fetches the prefix and then
single clusters (:mod:`.lazy`) verifies every byte it uses.
"""

import zlib

import numpy as np

from .._checks import MAX_SQ_NORM
from ..kernels import times_transposed
from ..filtering.columns import check_columns, is_point_tensor, tensor_specs
from ..params import IndexParams
from . import safetensors_io
from .safetensors_io import as_bytes, crc32_chain

FORMAT_NAME = "lorann_wasm"
#: the newest version this code reads; it writes the oldest that holds the index
FORMAT_VERSION = 8
ALIGN = 64

PER_POINT = ("ids", "B", "B_scales", "sq_norms", "vector_checks", "vectors", "vectors_row_scale")
#: the per-point tensors reranking alone reads; the rest is a cluster's scorer part
RERANK_PARTS = ("vectors", "vectors_row_scale")
PREFIX_CHECKSUM_KEY = "prefix_checksum"
SCALES = ("A_scales", "B_scales", "vectors_dim_scale", "vectors_row_scale")
#: the largest value a stored float may have: a vector of it has a squared norm of
#: about MAX_SQ_NORM, the most that float32 distance arithmetic takes
MAX_ABS = MAX_SQ_NORM ** 0.5
#: how far the basis's ``B^T B`` may be from the identity (float32 rounding)
BASIS_TOLERANCE = 1e-3


def expected_tensors(p):
    """Name -> (dtype, shape) of every tensor an index with :class:`.IndexParams` ``p`` has."""
    n, d, c, g, r, s = p.n, p.dim, p.n_clusters, p.global_dim, p.rank, p.stored_dims
    q8 = p.quantization_bits in (8, 4)  # B int8 or packed int4; A int8 or (a_bits 4) packed
    vdtype = {"float32": "<f4", "float16": "<f2", "int8": "i1"}[p.rerank_dtype]
    spec = {
        "cluster_offsets": ("<i8", (c + 1,)),
        "centroids": ("<f4", (c, g)),
        "A": (("u1", (c, r, -(-g // 2))) if p.a_bits == 4 else ("i1" if q8 else "<f4", (c, g, r))),
        "cluster_crc32": ("<u4", (c,)),
        "B": (("u1", (n, -(-r // 2))) if p.quantization_bits == 4
              else ("i1" if q8 else "<f4", (n, r))),
        "vectors": (vdtype, (n, s)),
    }
    if not p.positional_ids:
        spec["ids"] = ("<i8", (n,))
    if p.stores_norms:
        spec["sq_norms"] = ("<f4", (n,))
    if g < d:
        spec["projection"] = ("<f4", (d, g))
    if p.rerank_dims is not None:
        spec["vectors_basis"] = ("<f4", (d, s))
    if q8:
        spec["A_scales"] = ("<f4", (c, r))
        spec["B_scales"] = ("<f2" if p.scale_bits == 16 else "<f4", (n,))
    if p.int8_scales == "dimension":
        spec["vectors_dim_offset"] = ("<f4", (s,))
        spec["vectors_dim_scale"] = ("<f4", (s,))
    elif p.int8_scales == "vector":
        spec["vectors_row_scale"] = ("<f4", (n,))
    if p.row_checksums:
        spec["vector_checks"] = ("<u2" if p.check_bits == 16 else "<u4", (n,))
        spec["cluster_scorer_crc32"] = ("<u4", (c,))
    if p.attributes:
        spec.update(tensor_specs(p.attributes, n, c))
    if p.attribute_checksums:
        spec["cluster_attribute_crc32"] = ("<u4", (c,))
    return {k: (np.dtype(dt), shape) for k, (dt, shape) in spec.items()}


def is_per_point(name):
    """Whether tensor ``name`` holds one row per point (sorted by cluster)."""
    return name in PER_POINT or is_point_tensor(name)


def _ordered(specs):
    return sorted(specs, key=lambda k: (-specs[k][0].itemsize, k))


def index_layout(params):
    """The tensors of an index file in file order: a list of ``(name, dtype, shape)``.

    Prefix tensors first, then ``_padding`` (if needed) up to an
    :data:`ALIGN` boundary, then the per-point tensors.
    """
    specs = expected_tensors(params)
    prefix = _ordered({k: v for k, v in specs.items() if not is_per_point(k)})
    points = _ordered({k: v for k, v in specs.items() if is_per_point(k)})
    layout = [(k,) + specs[k] for k in prefix]
    prefix_bytes = sum(int(np.prod(specs[k][1], dtype=np.int64)) * specs[k][0].itemsize
                       for k in prefix)
    if prefix_bytes % ALIGN:
        layout.append(("_padding", np.dtype("u1"), (ALIGN - prefix_bytes % ALIGN,)))
    return layout + [(k,) + specs[k] for k in points]


def per_point_order(params):
    """Names of the per-point tensors in file order."""
    return [name for name, _, _ in index_layout(params) if is_per_point(name)]


def fetch_bytes(params):
    """What a lazy reader fetches of an index with :class:`.IndexParams` ``params``:
    ``(scorer_bytes, scorer_ranges, rerank_bytes, rerank_ranges)``, the bytes of
    one point's rows of the scorer part (fetched for every point of a probed
    cluster, one range per tensor and run of clusters) and of the rerank part
    (fetched for every candidate, one range per tensor and candidate)."""
    specs = expected_tensors(params)

    def row(name):
        dtype, shape = specs[name]
        return dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    scorer = scorer_order(params)
    rerank = [name for name in per_point_order(params) if name in RERANK_PARTS]
    return sum(map(row, scorer)), len(scorer), sum(map(row, rerank)), len(rerank)


def scorer_order(params):
    """Names of the per-point tensors a lazy reader fetches for a whole probed cluster
    (with ``attribute_checksums``, for a filtered search also :func:`attribute_order`)."""
    return [name for name in per_point_order(params) if name not in RERANK_PARTS
            and not (params.attribute_checksums and is_point_tensor(name))]


def attribute_order(params):
    """Names of the attribute tensors a lazy reader fetches apart from the scorers
    (``attribute_checksums``; none otherwise), in file order."""
    return ([name for name in per_point_order(params) if is_point_tensor(name)]
            if params.attribute_checksums else [])


def cluster_crc(parts, names):
    """CRC-32 of one cluster's rows of the per-point arrays ``names``, taken in that order."""
    return crc32_chain(as_bytes(parts[name]) for name in names)


_CHECK_WEIGHTS = {}


def vector_checks(vectors, row_scale=None, bits=32):
    """A checksum per rerank vector row (and its scale): (n,) uint32, or uint16
    with ``bits=16`` (:attr:`.IndexParams.check_bits`).

    ``sum(byte_i * w_i) mod 2**bits`` over the row's bytes with fixed odd
    weights ``w_i``: any change of one byte changes it (an odd weight times a
    change below 2**8 is never a multiple of 2**16), other changes escape
    with probability about 2**-bits, and a file changed under a reader fails
    on its first rows. Unlike a CRC it is one vectorised product for any
    number of rows, built and checked the same way in the browser.
    """
    dtype = np.uint16 if bits == 16 else np.uint32
    if not len(vectors):
        return np.zeros(0, dtype)
    rows = np.ascontiguousarray(vectors).reshape(len(vectors), -1).view(np.uint8)
    if row_scale is not None:
        scale = np.ascontiguousarray(row_scale, dtype="<f4").reshape(-1, 1).view(np.uint8)
        rows = np.concatenate([rows, scale], axis=1)
    weights = check_weights(rows.shape[1])
    return ((rows.astype(np.uint64) @ weights) & np.uint64((1 << bits) - 1)).astype(dtype)


def check_weights(width):
    """The :func:`vector_checks` weights of rows of ``width`` bytes, made once.

    A lazy reader makes them when it opens a file: they come from
    ``numpy.random``, whose first import took 39 ms in Pyodide (and 6 ms more
    for the generator), which a site's first query paid while a visitor waited.
    """
    weights = _CHECK_WEIGHTS.get(width)
    if weights is None:
        rng = np.random.default_rng(0x10A4)
        weights = _CHECK_WEIGHTS[width] = (rng.integers(0, 1 << 31, width, dtype=np.uint64) * 2 + 1)
    return weights


def crc_tensors(params):
    """The per-cluster checksum tensors an index with :class:`.IndexParams` ``params``
    holds, each with the per-point tensors it covers (in file order):
    ``cluster_crc32`` always, ``cluster_scorer_crc32`` with row checksums,
    ``cluster_attribute_crc32`` with attribute checksums."""
    kinds = {"cluster_crc32": per_point_order(params)}
    if params.row_checksums:
        kinds["cluster_scorer_crc32"] = scorer_order(params)
    if params.attribute_checksums:
        kinds["cluster_attribute_crc32"] = attribute_order(params)
    return kinds


def cluster_crcs(tensors, params):
    """Each of :func:`crc_tensors` of a whole index's tensors: a dict of (C,)
    arrays, each cluster's CRC over its rows."""
    offsets = tensors["cluster_offsets"]
    kinds = crc_tensors(params)
    return {kind: np.array([cluster_crc({name: tensors[name][offsets[j]:offsets[j + 1]]
                                         for name in names}, names)
                            for j in range(len(offsets) - 1)], dtype=np.uint32)
            for kind, names in kinds.items()}


def file_metadata(params):
    """The metadata of an index file, before its checksums are added."""
    return {
        "format": FORMAT_NAME,
        "format_version": ("8" if params.attribute_checksums
                           else "7" if params.a_bits == 4
                           else "6" if params.scale_bits == 16
                           else "5" if params.check_bits == 16
                           else "4" if (params.positional_ids or not params.stores_norms
                                        or params.quantization_bits == 4)
                           else "3" if params.residual_scorers
                           else "1" if params.rerank_dims is None else "2"),
        "params": params.to_json(),
    }


def prefix_crc(header, prefix_chunks):
    """CRC-32 of the canonical header (both checksums left out) and the prefix bytes."""
    return crc32_chain(prefix_chunks, zlib.crc32(safetensors_io.canonical_header(
        header, exclude=(safetensors_io.CHECKSUM_KEY, PREFIX_CHECKSUM_KEY))))


def encode_index(tensors, params):
    """Serialise an index; returns ``(head, chunks)`` as :func:`safetensors_io.encode`.

    ``tensors`` are every tensor of the layout (``cluster_crc32`` included).
    What :func:`decode_index` would refuse is refused here, before any byte
    is written.
    """
    check_publishable(tensors, params)
    layout = index_layout(params)
    arrays = []
    for name, dtype, shape in layout:
        arr = np.zeros(shape, dtype) if name == "_padding" else tensors[name]
        if arr.dtype != dtype or arr.shape != tuple(shape):
            raise ValueError(f"tensor {name!r} is {arr.dtype}{list(arr.shape)}, "
                             f"expected {dtype}{list(shape)}")
        arrays.append(np.ascontiguousarray(arr))
    header = safetensors_io.make_header(layout, file_metadata(params))
    chunks = [as_bytes(a) for a in arrays]
    n_prefix = next(i for i, (name, _, _) in enumerate(layout) if is_per_point(name))
    header["__metadata__"][PREFIX_CHECKSUM_KEY] = \
        f"crc32:{prefix_crc(header, chunks[:n_prefix]):08x}"
    crc = crc32_chain(chunks, safetensors_io.header_crc(header))
    return safetensors_io.sign_header(header, crc), chunks


def check_publishable(tensors, params=None):
    """Refuse to write what a load would refuse: the parameters as stored (when
    given), and the values of ``tensors`` (all of them, or a prefix, or a cluster)."""
    try:
        if params is not None:
            parse_params(file_metadata(params))
        check_values(tensors, None if params is None else params.n)
    except ValueError as exc:
        raise ValueError("refusing to write an index that could not be loaded: "
                         + str(exc).removeprefix("invalid index file: ")) from None


def invalid(msg):
    """Raise the ``ValueError`` of a malformed index file."""
    raise ValueError(f"invalid index file: {msg}")


def parse_params(metadata):
    """The :class:`.IndexParams` stored in a file's metadata; ``ValueError`` if malformed."""
    fmt = metadata.get("format")
    if fmt != FORMAT_NAME:
        invalid(f"not a lorann_wasm index (format={fmt!r})")
    version = metadata.get("format_version", "")
    if not version.isdigit() or len(version) > 6:
        invalid(f"bad format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise ValueError(
            f"index file has format version {version}, newer than this lorann_wasm "
            f"supports ({FORMAT_VERSION}); upgrade lorann_wasm"
        )
    try:
        params = IndexParams.from_json(metadata.get("params", ""))
    except ValueError as exc:
        invalid(str(exc))
    if params.rerank_dims is not None and int(version) < 2:
        invalid("rerank_dims needs format version 2 or later")
    if params.residual_scorers and int(version) < 3:
        invalid("residual_scorers needs format version 3 or later")
    if (params.positional_ids or not params.stores_norms
            or params.quantization_bits == 4) and int(version) < 4:
        invalid("positional ids, leaving out squared norms and 4-bit B need format version 4")
    if params.check_bits == 16 and int(version) < 5:
        invalid("16-bit row checks need format version 5")
    if params.scale_bits == 16 and int(version) < 6:
        invalid("16-bit B scales need format version 6")
    if params.a_bits == 4 and int(version) < 7:
        invalid("4-bit A needs format version 7")
    if params.attribute_checksums and int(version) < 8:
        invalid("attribute checksums need format version 8")
    return params


def check_layout(tensors_specs, params):
    """Check that the tensors (name -> (dtype, shape)) are exactly those ``params`` call for."""
    expected = expected_tensors(params)
    if set(tensors_specs) != set(expected):
        missing, extra = set(expected) - set(tensors_specs), set(tensors_specs) - set(expected)
        invalid(f"tensor set does not match the parameters (missing {sorted(missing)}, extra {sorted(extra)})")
    for name, (dtype, shape) in expected.items():
        if tensors_specs[name] != (dtype, shape):
            have = tensors_specs[name]
            invalid(f"tensor {name!r} is {have[0]}{list(have[1])}, expected {dtype}{list(shape)}")


def check_finite_and_scales(t):
    """Float tensors (of those present in ``t``) are finite and small enough for float32
    arithmetic (see :data:`.MAX_SQ_NORM`); scales are positive and decode within it."""
    for name, arr in t.items():
        if arr.dtype.kind != "f" or not arr.size:
            continue
        if not np.isfinite(arr).all():
            invalid(f"tensor {name!r} contains NaN or infinite values")
        limit = MAX_SQ_NORM if name == "sq_norms" else MAX_ABS
        if name.startswith(("attr.", "summary.")):
            limit = np.inf  # attribute values are compared, never multiplied
        if name in SCALES:
            if not (arr > 0).all():
                invalid(f"tensor {name!r} has non-positive scales")
            limit = MAX_ABS / 127  # an int8 code times its scale stays below MAX_ABS
        if float(np.abs(arr).max()) > limit:
            invalid(f"tensor {name!r} holds values too large for float32 arithmetic")
    basis = t.get("vectors_basis")
    if basis is not None and basis.size:
        # orthonormal columns keep a query's norm (and so its arithmetic) as it is
        columns = np.ascontiguousarray(basis.T)
        gram = times_transposed(columns, columns)
        gram[np.diag_indices_from(gram)] -= 1.0
        if not float(np.abs(gram).max()) <= BASIS_TOLERANCE:
            invalid("vectors_basis does not have orthonormal columns")


def check_offsets(offsets, n):
    """``cluster_offsets`` must run from 0 to n without decreasing."""
    # (the range check first: differences of wild int64 values can wrap around)
    if (offsets[0] != 0 or offsets[-1] != n or offsets.min() < 0 or offsets.max() > n
            or np.any(np.diff(offsets) < 0)):
        invalid("cluster_offsets are not a non-decreasing sequence from 0 to n")


def check_cluster_ids(ids, n):
    """A cluster's ids (or all of them) must be distinct and in ``0..n-1``."""
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        invalid("ids are not a permutation of 0..n-1: some lie outside it")
    if ids.size < 2:
        return
    low = int(ids.min())
    if int(ids.max()) - low < 4 * ids.size:  # dense (a whole index): counting is linear
        repeated = np.bincount((ids - low).astype(np.intp)).max() > 1
    else:  # a few ids spread over 0..n-1 (one cluster)
        repeated = (np.diff(np.sort(ids)) == 0).any()
    if repeated:
        invalid("ids are not a permutation of 0..n-1: an id occurs twice")


def check_values(t, n=None):
    """The values of tensors ``t``: a whole index, its prefix or one cluster's rows.

    With ``n``, the offsets and ids present are checked against it too (n
    distinct ids in 0..n-1 are a permutation).
    """
    if n is not None:
        if "cluster_offsets" in t:
            check_offsets(t["cluster_offsets"], n)
        if "ids" in t:
            check_cluster_ids(t["ids"], n)
    check_finite_and_scales(t)


def check_attributes(tensors, params):
    """The attribute columns present in ``tensors`` hold values a query can use."""
    if params.attributes:
        try:
            check_columns(tensors, params.attributes)
        except ValueError as exc:
            invalid(str(exc))


def check_prefix(header, prefix, required):
    """Verify ``prefix_checksum`` over the header and the ``prefix`` bytes.

    A file without one passes unless ``required`` (lazy loading needs it).
    """
    stored = header.get("__metadata__", {}).get(PREFIX_CHECKSUM_KEY)
    if stored is None:
        if required:
            raise ValueError(
                "this index file has no prefix checksum, so it cannot be loaded lazily; "
                "save it again with this version of lorann_wasm")
        return
    if f"crc32:{prefix_crc(header, [prefix]):08x}" != stored:
        invalid("prefix checksum mismatch: the header or prefix is corrupted")


def prefix_end(header):
    """Offset (in the data section) where the per-point tensors start."""
    return min(entry["data_offsets"][0] for k, entry in header.items() if is_per_point(k))


def decode_index(buf):
    """Validate and parse an index file buffer; returns ``(tensors, params)``.

    Raises ``ValueError`` for anything that is not a well-formed index of a
    supported version.
    """
    tensors, metadata = safetensors_io.decode(buf)
    params = parse_params(metadata)
    tensors.pop("_padding", None)
    check_layout({k: (v.dtype, v.shape) for k, v in tensors.items()}, params)
    check_values(tensors, params.n)
    check_attributes(tensors, params)
    header, data_start = safetensors_io.parse_header(memoryview(buf).cast("B"))
    check_prefix(header, memoryview(buf).cast("B")[data_start:data_start + prefix_end(header)],
                 required=False)
    return tensors, params
