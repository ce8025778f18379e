"""Lazy loading: open an index file by its prefix, fetch clusters as queries probe them.

:class:`LazyIndex` reads the header and the prefix (centroids, projection,
``A`` matrices; see :mod:`.format.index_file`) and answers queries through
the same query path as a fully loaded index (:mod:`.query.engine`), with a
cluster store that fetches only the byte ranges of probed clusters not yet
cached (:class:`.query.stores.FetchedClusters`). Every byte is checked: the
header and prefix against ``prefix_checksum``, each fetched cluster against
its CRC-32 and its ids. Results are identical to those of the fully loaded
:class:`.LorannIndex`, and a file one refuses, the other refuses too.

Bytes come from a *reader*: any object with ``size`` (the file's length)
and ``read(ranges)``, which returns one buffer per ``(start, stop)`` range.
:class:`FileReader` reads a local file; in the browser the worker supplies
one backed by HTTP ``Range`` requests.
"""

import os
import struct

import numpy as np

from .format import safetensors_io
from .format.index_file import (check_layout, check_prefix, check_values, invalid,
                                parse_params, per_point_order, prefix_end)
from .query.engine import QueryEngine
from .query.prefix import Prefix
from .query.stores import FetchedClusters, read_ranges

#: default byte budget of the cluster cache
CACHE_BYTES = 64 << 20


class FileReader:
    """Byte ranges of a local file (seek and read): the CPython twin of HTTP Range."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = open(self.path, "rb")
        self.size = os.fstat(self._file.fileno()).st_size

    def read(self, ranges):
        out = []
        for start, stop in ranges:
            self._file.seek(start)
            out.append(self._file.read(stop - start))
        return out

    def close(self):
        self._file.close()


class LazyIndex(QueryEngine):
    """A LoRANN index whose clusters are fetched on demand from ``reader``.

    ``cache_bytes`` bounds the memory the cached clusters take between
    searches (a search keeps its own clusters whatever their size).
    Searching has the arguments and results of :meth:`.LorannIndex.search`,
    and :meth:`plan` / :meth:`supply` let a caller fetch the ranges itself.
    ``stats`` counts bytes, requests, clusters fetched and cache hits;
    ``last_fetch`` is what the latest search fetched. Raises ``ValueError``
    for a file that is not a valid index, a short read (truncated response)
    or a cluster that fails its checks.
    """

    def __init__(self, reader, cache_bytes=CACHE_BYTES):
        size = getattr(reader, "size", None)
        if not callable(getattr(reader, "read", None)) or size is None:
            raise TypeError("reader must have size and read(ranges)")
        self.reader, self.size = reader, int(size)
        params, tensors, point_tensors, self.prefix_bytes = _open_prefix(reader, self.size)
        self._params = params
        self._prefix = Prefix(tensors, params)
        self._store = FetchedClusters(reader, params, self._prefix, point_tensors, cache_bytes)
        self._store.stats.update(bytes=self.prefix_bytes, requests=3)  # header and prefix

    @property
    def stats(self):
        return self._store.stats

    @property
    def last_fetch(self):
        """Bytes, requests and clusters the latest search (or plan) fetched."""
        if self.last_plan is None:
            return {"bytes": 0, "requests": 0, "clusters": 0}
        return dict(self.last_plan.fetched)

    @property
    def cached_bytes(self):
        """Bytes the cached clusters take in memory."""
        return self._store.cached_bytes


def _open_prefix(reader, size):
    """Read and verify the header and prefix: ``(params, prefix tensors, point tensors,
    prefix bytes)``; point tensors as :class:`.FetchedClusters` wants them."""
    (head,) = read_ranges(reader, [(0, min(8, size))])
    if len(head) < 8:
        invalid(f"file is {size} bytes, too short for a header")
    (hlen,) = struct.unpack("<Q", bytes(head))
    if hlen > safetensors_io.MAX_HEADER_BYTES or 8 + hlen > size:
        invalid(f"header length {hlen} is too large for the {size}-byte file")
    (body,) = read_ranges(reader, [(8, 8 + hlen)])
    header, data_start = safetensors_io.parse_header(bytes(head) + bytes(body))
    metadata, entries = safetensors_io.check_entries(header, size - data_start)
    params = parse_params(metadata)
    specs = {e[0]: (e[1], e[2]) for e in entries if e[0] != "_padding"}
    check_layout(specs, params)
    end = prefix_end(header)
    (prefix,) = read_ranges(reader, [(data_start, data_start + end)])
    check_prefix(header, prefix, required=True)
    tensors = {name: np.frombuffer(prefix, dtype, count=int(np.prod(shape, dtype=np.int64)),
                                   offset=begin).reshape(shape)
               for name, dtype, shape, begin, stop in entries
               if stop <= end and name != "_padding"}
    check_values(tensors, params.n)
    point_tensors = []
    for name in per_point_order(params):
        dtype, shape = specs[name]
        begin = header[name]["data_offsets"][0]
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        point_tensors.append((name, data_start + begin, row_bytes, dtype, shape[1:]))
    return params, tensors, point_tensors, data_start + end
