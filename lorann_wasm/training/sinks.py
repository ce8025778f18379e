"""Where the training pipeline puts an index: memory or a file, in the same layout.

A sink gives the pipeline a *scratch* (rows stored in cluster order, read
back a cluster at a time), takes each cluster's per-point rows
(:meth:`write_cluster`, which also takes the cluster's CRC-32) and finally
the prefix (:meth:`finish`). Both sinks are context managers: leaving the
block by an exception discards everything.
"""

import os
import tempfile

import numpy as np

from ..atomic import atomic_output
from ..format import safetensors_io
from ..format.index_file import (PREFIX_CHECKSUM_KEY, check_publishable, cluster_crc,
                                 crc_tensors, expected_tensors, file_metadata, index_layout,
                                 per_point_order, prefix_crc, prefix_end, vector_checks)
from ..format.safetensors_io import as_bytes, crc32_chain

#: bytes of the output file checksummed per read
CRC_READ_BYTES = 64 << 20


class ArrayScratch:
    """Rows kept in a float32 array (n, d)."""

    def __init__(self, rows):
        self.rows = rows

    def write(self, first_row, x):
        self.rows[first_row:first_row + len(x)] = x

    def read(self, start, stop):
        return self.rows[start:stop]


class FileScratch:
    """Rows kept in an unlinked temporary file in ``folder``: n * d * 4 bytes of disk."""

    def __init__(self, folder, d):
        fd, path = tempfile.mkstemp(prefix=".lorann-rows-", dir=folder)
        os.unlink(path)  # removed from the folder now, freed when closed
        self.fd, self.row_bytes, self.d = fd, 4 * d, d

    def write(self, first_row, x):
        os.pwrite(self.fd, as_bytes(x), first_row * self.row_bytes)

    def read(self, start, stop):
        out = np.empty((stop - start, self.d), dtype=np.float32)
        view = as_bytes(out)
        if view.nbytes and os.preadv(self.fd, [view], start * self.row_bytes) != view.nbytes:
            raise OSError("scratch file ended early")
        return out

    def close(self):
        os.close(self.fd)


class _Sink:
    def __init__(self, params):
        self.params = params
        self.names = per_point_order(params)
        self.crc_names = crc_tensors(params)  # checksum tensor -> the tensors it covers
        self._crcs = {kind: np.zeros(params.n_clusters, dtype=np.uint32)
                      for kind in self.crc_names}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def crcs(self):
        """The per-cluster checksum tensors of the prefix."""
        return dict(self._crcs)

    def write_cluster(self, j, first_row, parts):
        """Store cluster j's per-point rows (``parts``: name -> rows) from ``first_row`` on."""
        if self.params.row_checksums:
            parts = dict(parts, vector_checks=vector_checks(
                parts["vectors"], parts.get("vectors_row_scale"), self.params.check_bits))
        parts = {name: np.ascontiguousarray(parts[name]) for name in self.names}
        check_publishable(parts)
        for kind, names in self.crc_names.items():
            self._crcs[kind][j] = cluster_crc(parts, names)
        for name in self.names:
            self._put(name, parts[name], first_row)


class MemorySink(_Sink):
    """Builds the index's tensors in memory; :meth:`finish` returns them (a dict)."""

    def __init__(self, params):
        super().__init__(params)
        self.tensors = {name: np.empty(shape, dtype)
                        for name, (dtype, shape) in expected_tensors(params).items()}
        # float32 rerank vectors in the data's own basis are the sorted rows
        # themselves: sort them in place
        vectors = self.tensors["vectors"]
        in_place = vectors.dtype == np.float32 and params.rerank_dims is None
        self.scratch = ArrayScratch(vectors if in_place else
                                    np.empty((params.n, params.dim), np.float32))

    def _put(self, name, rows, first_row):
        self.tensors[name][first_row:first_row + len(rows)] = rows

    def finish(self, prefix):
        for name, value in prefix.items():
            self.tensors[name][...] = value
        self.tensors.update(self.crcs())
        return self.tensors


class FileSink(_Sink):
    """Writes the index file in place, cluster by cluster, to a temporary file that
    is renamed to ``path`` when the ``with`` block ends without an error.

    The scratch is a file of n * d * 4 bytes in ``scratch_dir`` (default: beside
    ``path``).
    """

    def __init__(self, path, params, scratch_dir=None):
        super().__init__(params)
        self.path = path
        self.scratch_dir = scratch_dir or os.path.dirname(os.path.abspath(os.fspath(path)))
        layout = index_layout(params)
        self.header = safetensors_io.make_header(layout, file_metadata(params))
        self.header["__metadata__"][PREFIX_CHECKSUM_KEY] = "crc32:00000000"
        self.data_start = len(safetensors_io.sign_header(dict(self.header), 0))
        self.total = self.data_start + self.header[layout[-1][0]]["data_offsets"][1]

    def __enter__(self):
        self._output = atomic_output(self.path)
        self.fd = self._output.__enter__().fileno()
        try:
            os.ftruncate(self.fd, self.total)
            self.scratch = FileScratch(self.scratch_dir, self.params.dim)
        except BaseException as exc:
            self._output.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.scratch.close()
        finally:
            return self._output.__exit__(*exc)

    def _put(self, name, rows, first_row):
        entry = self.header[name]
        if rows.dtype != safetensors_io.DTYPES[entry["dtype"]]:
            raise AssertionError(f"{name}: writing {rows.dtype} into {entry['dtype']}")
        row_bytes = rows.dtype.itemsize * int(np.prod(entry["shape"][1:], dtype=np.int64))
        os.pwrite(self.fd, as_bytes(rows),
                  self.data_start + entry["data_offsets"][0] + first_row * row_bytes)

    def _crc(self, start, stop, crc):
        """Chain the CRC-32 of file bytes ``start:stop`` onto ``crc``."""
        def blocks(at):
            while at < stop:
                block = os.pread(self.fd, min(CRC_READ_BYTES, stop - at), at)
                if not block:
                    raise OSError("output file ended early")
                at += len(block)
                yield block
        return crc32_chain(blocks(start), crc)

    def finish(self, prefix):
        """Write the prefix and the signed header; returns the file's size."""
        prefix = dict(prefix, **self.crcs())
        check_publishable(prefix, self.params)
        for name, value in prefix.items():
            self._put(name, np.ascontiguousarray(value), 0)
        h, start = self.header, self.data_start
        crc = self._crc(start, start + prefix_end(h), prefix_crc(h, []))
        h["__metadata__"][PREFIX_CHECKSUM_KEY] = f"crc32:{crc:08x}"
        crc = self._crc(start, self.total, safetensors_io.header_crc(h))
        head = safetensors_io.sign_header(h, crc)
        if len(head) != start:
            raise AssertionError("header length changed while signing")
        os.pwrite(self.fd, head, 0)
        return self.total
