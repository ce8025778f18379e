"""A small, strict reader and writer for the safetensors container.

Layout: 8-byte little-endian header length ``N``, ``N`` bytes of JSON (the
header), then the data section. The header maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data section) and may hold ``"__metadata__"``, a str -> str map.

The writer adds a ``"checksum"`` metadata entry: CRC-32 of the canonical
header (sorted keys, no white space, the checksum entry left out) followed by
the data section, so any change to a tensor, its shape, offsets or metadata
is detected. The reader validates everything before trusting any of it and
raises ``ValueError`` for every malformed input; arrays it returns are
zero-copy, read-only views of the buffer.
"""

import json
import struct
import zlib

import numpy as np

#: safetensors dtype name -> NumPy dtype (little-endian); nothing else is accepted
DTYPES = {
    "F64": np.dtype("<f8"),  # attribute columns (filtering.columns)
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}
_NAMES = {dt: name for name, dt in DTYPES.items()}
#: largest header this reader parses; real headers are a few kB
MAX_HEADER_BYTES = 1 << 20
MAX_NDIM = 4
CHECKSUM_KEY = "checksum"


def canonical_header(header, exclude=(CHECKSUM_KEY,)):
    """The header as signed: sorted keys, no white space, ``exclude`` metadata left out."""
    meta = {k: v for k, v in header.get("__metadata__", {}).items() if k not in exclude}
    canon = dict(header, __metadata__=meta)
    return json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()


def as_bytes(array):
    """The bytes of a C-contiguous array as a flat memoryview (also for empty arrays)."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def crc32_chain(chunks, crc=0):
    """CRC-32 of byte chunks taken one after another, continuing from ``crc``."""
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return crc


def header_crc(header):
    """CRC-32 of the header as signed: where a file's checksum starts."""
    return zlib.crc32(canonical_header(header))


def checksum(header, chunks):
    """The checksum value of a header (as signed) and its data section chunks."""
    return f"crc32:{crc32_chain(chunks, header_crc(header)):08x}"


def make_header(specs, metadata):
    """Header for tensors ``specs`` (ordered ``(name, dtype, shape)``), laid out back to back."""
    header, offset = {}, 0
    for name, dtype, shape in specs:
        dtype = np.dtype(dtype)
        if dtype.newbyteorder("<") not in _NAMES:
            raise TypeError(f"tensor {name!r} has unsupported dtype {dtype}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {
            "dtype": _NAMES[dtype.newbyteorder("<")],
            "shape": [int(s) for s in shape],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header["__metadata__"] = dict(metadata)
    return header


def sign_header(header, data_crc):
    """Store the checksum and serialise: ``data_crc`` is the CRC-32 of the data
    section chained onto that of the canonical header. Returns the bytes that
    start the file (length prefix included)."""
    header["__metadata__"][CHECKSUM_KEY] = f"crc32:{data_crc:08x}"
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)  # keeps the data section 8-byte aligned
    return struct.pack("<Q", len(body)) + body


def encode(tensors, metadata):
    """Serialise ``tensors`` (an ordered list of ``(name, array)``) with ``metadata``.

    Returns ``(head, chunks)``: the header bytes (length prefix included) and
    the list of data-section buffers in file order.
    """
    arrays = []
    for name, arr in tensors:
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in "<|=" else arr.dtype
        arrays.append((name, np.ascontiguousarray(arr, dtype=dt)))
    header = make_header([(name, a.dtype, a.shape) for name, a in arrays], metadata)
    chunks = [as_bytes(a) for _, a in arrays]
    return sign_header(header, crc32_chain(chunks, header_crc(header))), chunks


def _fail(msg):
    raise ValueError(f"invalid index file: {msg}")


def parse_header(buf):
    if len(buf) < 8:
        _fail(f"file is {len(buf)} bytes, too short for a safetensors header")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER_BYTES:
        _fail(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(buf):
        _fail(f"header length {n} runs past the end of the {len(buf)}-byte file (truncated?)")
    try:
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        _fail(f"header is not valid UTF-8 JSON ({type(exc).__name__})")
    if not isinstance(header, dict):
        _fail("header is not a JSON object")
    return header, 8 + n


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(name, entry, data_len):
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        _fail(f"tensor {name!r} entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        _fail(f"tensor {name!r} has unsupported dtype {dtype!r}")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(_is_int(s) and s >= 0 for s in shape)):
        _fail(f"tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)):
        _fail(f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        _fail(f"tensor {name!r} offsets [{begin}, {end}] lie outside the {data_len}-byte data section")
    count = 1
    for s in shape:
        count *= s
    if count * DTYPES[dtype].itemsize != end - begin:
        _fail(f"tensor {name!r}: shape {shape} of {dtype} does not match {end - begin} bytes")
    return DTYPES[dtype], tuple(shape), begin, end


def check_entries(header, data_len):
    """Validate a parsed header against a data section of ``data_len`` bytes.

    Returns ``(metadata, entries)``: the str -> str metadata and, in file
    order, ``(name, dtype, shape, begin, end)`` of tensors that tile the data
    section exactly.
    """
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        _fail("__metadata__ must map strings to strings")
    entries = []
    for name, entry in header.items():
        if name != "__metadata__":
            entries.append((name,) + _check_entry(name, entry, data_len))
    entries.sort(key=lambda e: (e[3], e[4]))
    cursor = 0
    for name, _, _, begin, end in entries:
        if begin != cursor:
            what = "overlaps the previous tensor" if begin < cursor else "leaves a gap before it"
            _fail(f"tensor {name!r} {what} (starts at {begin}, expected {cursor})")
        cursor = end
    if cursor != data_len:
        _fail(f"data section is {data_len} bytes but tensors cover {cursor} (truncated or padded?)")
    return metadata, entries


def decode(buf, require_checksum=True):
    """Validate and parse a safetensors buffer (bytes, bytearray or memoryview).

    Returns ``(tensors, metadata)``: a dict of read-only NumPy views in file
    order and the str -> str metadata. Raises ``ValueError`` on any defect,
    including a checksum mismatch, or a missing checksum unless
    ``require_checksum`` is false (for files written by other tools).
    """
    buf = memoryview(buf).cast("B")
    header, data_start = parse_header(buf)
    metadata, entries = check_entries(header, len(buf) - data_start)
    stored = metadata.get(CHECKSUM_KEY)
    data = buf[data_start:]
    if stored is None:
        if require_checksum:
            _fail("no checksum in the metadata")
    elif checksum(header, [data]) != stored:
        _fail("checksum mismatch: the file is corrupted")
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin)
        arr.flags.writeable = False
        tensors[name] = arr.reshape(shape)
    return tensors, metadata
