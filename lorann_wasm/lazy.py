"""Lazy loading: open an index file by its prefix, fetch clusters as queries probe them.

:class:`LazyIndex` reads the header and the prefix (centroids, projection,
``A`` matrices; see :mod:`.index_file`), then, per query, only the byte
ranges of the probed clusters that are not cached, coalescing runs of
adjacent clusters into one range per per-point tensor. Every byte is checked:
the header and prefix against ``prefix_checksum``, each fetched cluster
against its CRC-32 in ``cluster_crc32``. Results are identical to those of
the fully loaded :class:`.LorannIndex`.

Bytes come from a *reader*: any object with ``size`` (the file's length)
and ``read(ranges)``, which returns one buffer per ``(start, stop)`` range.
:class:`FileReader` reads a local file; in the browser the worker supplies
one backed by HTTP ``Range`` requests.
"""

import os
import struct
import zlib
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

from . import safetensors_io
from .index import pad_results, search_request
from .index_file import (check_finite_and_scales, check_layout, check_prefix, parse_params,
                         per_point_order, prefix_end)
from .quantization import dequantize_int8
from .rerank import rerank_one
from .search import BLOCK, ProbeArrays, candidates_single, cluster_blocks
from .vectors import RerankVectors

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


def _fail(msg):
    raise ValueError(f"invalid index file: {msg}")


class _Cluster:
    """One fetched cluster, in the form the query path uses."""

    __slots__ = ("B_blocks", "bias_blocks", "codes", "sq_norms", "row_scale", "ids", "nbytes")

    def __init__(self, parts, params, B_scales_needed):
        n = parts["ids"].shape[0]
        if parts["ids"].size and (parts["ids"].min() < 0 or parts["ids"].max() >= params["n"]):
            _fail("a cluster holds ids outside 0..n-1")
        check_finite_and_scales(parts)
        Bt = (dequantize_int8(parts["B"], parts["B_scales"], axis=1) if B_scales_needed
              else parts["B"])
        bias = parts["sq_norms"] if params["distance"] == "l2" else np.zeros(n, np.float32)
        self.B_blocks, self.bias_blocks = cluster_blocks(Bt, bias)
        self.codes, self.sq_norms, self.ids = parts["vectors"], parts["sq_norms"], parts["ids"]
        self.row_scale = parts.get("vectors_row_scale")
        self.nbytes = sum(a.nbytes for a in (self.B_blocks, self.bias_blocks, self.codes,
                                              self.sq_norms, self.ids))


class LazyIndex:
    """A LoRANN index whose clusters are fetched on demand from ``reader``.

    ``cache_bytes`` bounds the memory the cached clusters take (the clusters
    of the current query are kept even beyond it). Searching has the
    arguments and results of :meth:`.LorannIndex.search`. ``stats`` counts
    bytes and requests; ``last_fetch`` is what the latest search fetched.
    Raises ``ValueError`` for a file that is not a valid index, a short read
    (truncated response) or a cluster that fails its checksum.
    """

    def __init__(self, reader, cache_bytes=CACHE_BYTES):
        self.reader = reader
        self.cache_bytes = int(cache_bytes)
        self.size = int(reader.size)
        self.stats = {"bytes": 0, "requests": 0, "clusters_fetched": 0, "cache_hits": 0}
        self.last_fetch = {"bytes": 0, "requests": 0, "clusters": 0}
        (head,) = self._read([(0, min(8, self.size))])
        if len(head) < 8:
            _fail(f"file is {self.size} bytes, too short for a header")
        (hlen,) = struct.unpack("<Q", bytes(head))
        if hlen > safetensors_io.MAX_HEADER_BYTES or 8 + hlen > self.size:
            _fail(f"header length {hlen} is too large for the {self.size}-byte file")
        (body,) = self._read([(8, 8 + hlen)])
        header, data_start = safetensors_io.parse_header(bytes(head) + bytes(body))
        metadata, entries = safetensors_io.check_entries(header, self.size - data_start)
        self.params = parse_params(metadata)
        specs = {e[0]: (e[1], e[2]) for e in entries if e[0] != "_padding"}
        check_layout(specs, self.params)
        end = prefix_end(header)
        (prefix,) = self._read([(data_start, data_start + end)])
        check_prefix(header, prefix, required=True)
        self.prefix_bytes = data_start + end
        t = {name: np.frombuffer(prefix, dtype, count=int(np.prod(shape, dtype=np.int64)),
                                 offset=begin).reshape(shape)
             for name, dtype, shape, begin, stop in entries if stop <= end and name != "_padding"}
        self._check_prefix_values(t)
        p = self.params
        A = (dequantize_int8(t["A"], t["A_scales"], axis=1) if p["quantization_bits"] == 8
             else t["A"])
        self.probe_arrays = ProbeArrays(projection=t.get("projection"), centroids=t["centroids"],
                                        offsets=t["cluster_offsets"], A=A,
                                        euclidean=p["distance"] == "l2")
        self.cluster_crc32 = t["cluster_crc32"]
        self.dim_offset, self.dim_scale = t.get("vectors_dim_offset"), t.get("vectors_dim_scale")
        # per-point tensors in file order: (name, absolute start, bytes per row, dtype, row shape)
        self._point_tensors = []
        for name in per_point_order(p):
            dtype, shape = specs[name]
            begin = header[name]["data_offsets"][0]
            row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
            self._point_tensors.append((name, data_start + begin, row_bytes, dtype, shape[1:]))
        self._cache = OrderedDict()
        self._cached_bytes = 0
        self._planned = False

    # -- fetching ---------------------------------------------------------

    def _read(self, ranges):
        """Read ``ranges`` through the reader; checks each buffer's length."""
        buffers = self.reader.read(ranges)
        if len(buffers) != len(ranges):
            raise ValueError(f"the reader returned {len(buffers)} buffers for {len(ranges)} ranges")
        out = [self._checked(r, buf) for r, buf in zip(ranges, buffers)]
        self.stats["requests"] += len(ranges)
        self.last_fetch["requests"] += len(ranges)
        return out

    def _check_prefix_values(self, t):
        p = self.params
        off = t["cluster_offsets"]
        if off[0] != 0 or off[-1] != p["n"] or np.any(np.diff(off) < 0):
            _fail("cluster_offsets are not a non-decreasing sequence from 0 to n")
        check_finite_and_scales(t)

    def missing_ranges(self, clusters):
        """Byte ranges to fetch for the uncached ``clusters``: ``(runs, ranges)``.

        Adjacent clusters are coalesced into runs; each run needs one range
        per per-point tensor.
        """
        missing = sorted({int(j) for j in clusters} - set(self._cache))
        runs = []
        for j in missing:
            if runs and runs[-1][1] == j:
                runs[-1][1] = j + 1
            else:
                runs.append([j, j + 1])
        return runs, self._run_ranges(runs)

    def _run_ranges(self, runs):
        """The byte range of each per-point tensor for each run of clusters, in order."""
        off = self.probe_arrays.offsets
        ranges = []
        for lo, hi in runs:
            for _, start, row_bytes, _, _ in self._point_tensors:
                ranges.append((start + int(off[lo]) * row_bytes, start + int(off[hi]) * row_bytes))
        return ranges

    def _fetch(self, clusters):
        """Make sure ``clusters`` are cached, fetching what is missing."""
        runs, ranges = self.missing_ranges(clusters)
        self.stats["cache_hits"] += len(set(int(j) for j in clusters)) - sum(hi - lo for lo, hi in runs)
        if runs:
            self._install(runs, self._read([r for r in ranges if r[1] > r[0]]))

    def plan(self, q, k=10, clusters_to_search=None, points_to_rerank=None, target_recall=None):
        """What searching ``q`` will fetch: ``(runs, ranges)`` of its uncached clusters.

        Lets a caller fetch the ranges itself (the browser worker does, in
        parallel) and hand them to :meth:`supply` before searching. Arguments
        as :meth:`search`.
        """
        queries, _, _, c, _ = search_request(self.params, q, k, clusters_to_search,
                                             points_to_rerank, target_recall)
        probes = self.probe_arrays.probe(self.probe_arrays.reduce(queries), c)
        self.last_fetch = {"bytes": 0, "requests": 0, "clusters": 0}
        self._planned = True
        return self.missing_ranges(probes.ravel())

    def supply(self, runs, buffers):
        """Install clusters fetched for :meth:`plan`'s ``runs``: ``buffers`` are the
        responses to its non-empty ranges, in order. Checked like any fetch."""
        runs = [[int(lo), int(hi)] for lo, hi in runs]
        if not all(0 <= lo < hi <= self.probe_arrays.n_clusters for lo, hi in runs):
            raise ValueError(f"runs of clusters out of range: {runs}")
        wanted = [r for r in self._run_ranges(runs) if r[1] > r[0]]
        if len(buffers) != len(wanted):
            raise ValueError(f"{len(buffers)} buffers supplied for {len(wanted)} ranges")
        self.stats["requests"] += len(wanted)
        self.last_fetch["requests"] += len(wanted)
        self._install(runs, [self._checked(r, b) for r, b in zip(wanted, buffers)])

    def _checked(self, byte_range, buf):
        """``buf`` as bytes of ``byte_range``, refusing a short or long one."""
        start, stop = byte_range
        view = memoryview(buf).cast("B")
        if view.nbytes != stop - start:
            raise ValueError(
                f"truncated response: asked for bytes {start}-{stop - 1} ({stop - start} "
                f"bytes), got {view.nbytes}")
        self.stats["bytes"] += view.nbytes
        self.last_fetch["bytes"] += view.nbytes
        return view

    def _install(self, runs, buffers):
        """Verify and cache the clusters of ``runs`` from their ranges' ``buffers``."""
        buffers = iter(buffers)
        off = self.probe_arrays.offsets
        q8 = self.params["quantization_bits"] == 8
        for lo, hi in runs:
            base = int(off[lo])
            run = [next(buffers) if off[hi] > off[lo] else memoryview(b"")
                   for _ in self._point_tensors]
            for j in range(lo, hi):
                if j in self._cache:
                    continue
                a, b = int(off[j]) - base, int(off[j + 1]) - base
                crc, parts = 0, {}
                for (name, _, row_bytes, dtype, row_shape), buf in zip(self._point_tensors, run):
                    piece = buf[a * row_bytes:b * row_bytes]
                    crc = zlib.crc32(piece, crc)
                    parts[name] = np.frombuffer(piece, dtype).reshape((b - a,) + tuple(row_shape))
                if crc != int(self.cluster_crc32[j]):
                    _fail(f"cluster {j} failed its checksum: the file is corrupted "
                          "or changed while it was being read")
                cluster = _Cluster(parts, self.params, q8)
                self._cache[j] = cluster
                self._cached_bytes += cluster.nbytes
                self.stats["clusters_fetched"] += 1
                self.last_fetch["clusters"] += 1

    def _evict(self, keep):
        keep = set(int(j) for j in keep)
        for j in list(self._cache):
            if self._cached_bytes <= self.cache_bytes:
                break
            if j not in keep:
                self._cached_bytes -= self._cache.pop(j).nbytes

    @property
    def cached_bytes(self):
        """Bytes the cached clusters take in memory."""
        return self._cached_bytes

    # -- search -----------------------------------------------------------

    @property
    def n(self):
        return self.params["n"]

    @property
    def dim(self):
        return self.params["dim"]

    @property
    def distance(self):
        return self.params["distance"]

    def search(self, q, k=10, clusters_to_search=None, points_to_rerank=None,
               return_distances=False, target_recall=None):
        """Approximate ``k`` nearest neighbours, as :meth:`.LorannIndex.search`.

        A batch is answered query by query (each with the single-query path).
        """
        queries, single, k, c, r = search_request(self.params, q, k, clusters_to_search,
                                                  points_to_rerank, target_recall)
        if not self._planned:  # after plan() + supply(), count what they fetched
            self.last_fetch = {"bytes": 0, "requests": 0, "clusters": 0}
        self._planned = False
        ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
        dists = np.full((queries.shape[0], k), np.inf, dtype=np.float32)
        for i, query in enumerate(queries):
            found, d = pad_results(*self._search_one(query, k, c, r), k)
            ids[i], dists[i] = found, d
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, dists) if return_distances else ids

    def _search_one(self, query, k, c, r):
        arrays = self.probe_arrays
        reduced = arrays.reduce(query)
        probes = arrays.probe(reduced, c)
        self._fetch(probes)
        for j in probes:
            self._cache.move_to_end(int(j))
        clusters = [self._cache[int(j)] for j in probes]
        candidates, owner, row = self._candidates(clusters, reduced, probes, r)
        # Gather the candidates' vectors in candidate order, so reranking sees
        # exactly the arrays the fully loaded index would.
        codes = np.empty((len(candidates), self.dim), dtype=clusters[0].codes.dtype)
        sq_norms = np.empty(len(candidates), dtype=np.float32)
        ids = np.empty(len(candidates), dtype=np.int64)
        row_scale = None if clusters[0].row_scale is None else np.empty(len(candidates), np.float32)
        for i in np.unique(owner):
            at = np.flatnonzero(owner == i)
            cl = clusters[i]
            codes[at], sq_norms[at], ids[at] = cl.codes[row[at]], cl.sq_norms[row[at]], cl.ids[row[at]]
            if row_scale is not None:
                row_scale[at] = cl.row_scale[row[at]]
        vectors = RerankVectors(codes, sq_norms, offset=self.dim_offset, scale=self.dim_scale,
                                vector_scale=row_scale)
        rows, dists = rerank_one(vectors, query, np.arange(len(candidates)), k, self.distance)
        self._evict(probes)
        return ids[rows], dists

    def _candidates(self, clusters, reduced, probes, r):
        """Approximate stage over the probed clusters laid out in probe order.

        Returns the candidates' local positions and, for each, the index (in
        ``clusters``) of its cluster and its row within it.
        """
        local = SimpleNamespace(A_t=self.probe_arrays.A_t[probes])
        local.n_blocks = np.array([cl.B_blocks.shape[0] for cl in clusters], dtype=np.intp)
        local.block_start = np.zeros(len(clusters) + 1, dtype=np.intp)
        np.cumsum(local.n_blocks, out=local.block_start[1:])
        local.B_blocks = np.concatenate([cl.B_blocks for cl in clusters])
        local.bias_blocks = np.concatenate([cl.bias_blocks for cl in clusters])
        local.pos_blocks = np.arange(local.bias_blocks.size).reshape(-1, BLOCK)
        local.pos_blocks = np.where(np.isfinite(local.bias_blocks), local.pos_blocks, -1)
        candidates = candidates_single(local, reduced, np.arange(len(clusters)), r)
        owner = np.searchsorted(local.block_start * BLOCK, candidates, side="right") - 1
        row = candidates - local.block_start[owner] * BLOCK
        return candidates, owner, row
