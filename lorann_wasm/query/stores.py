"""Where a query finds the points of the clusters it probes: two cluster stores.

Both answer ``missing(probes)`` (the byte ranges still to fetch) and
``view(probes)`` (a :class:`.ClusterArrays` over the probed clusters and the
probes renumbered into it), so the query path (:mod:`.engine`) is written
once:

* :class:`ResidentClusters`: every cluster in memory (a fully loaded index);
  nothing is ever missing and the view is the whole index.
* :class:`FetchedClusters`: clusters fetched by byte range as queries probe
  them, each verified against its CRC-32 and its ids, kept in an LRU cache
  with a byte budget, in the form a query reads (lazy loading); a query's view
  lists the probed clusters' scorers and gathers only its candidates' rerank
  vectors. In files with row checksums (``IndexParams.row_checksums``) a
  probed cluster is fetched without its rerank vectors (its scorer part,
  checked against ``cluster_scorer_crc32``), and only the candidates' vector
  rows are fetched after, each checked against its ``vector_checks`` entry;
  in files with attribute checksums (``IndexParams.attribute_checksums``)
  a probed cluster's attribute columns come too only for a search with
  conditions on them (checked against ``cluster_attribute_crc32``), and
  otherwise never: for the WordNet site's index (rank 48, 4-bit, two facets)
  that is 28 of a point's 414 bytes for every probed point (30 with the
  facets), and 384 more for the few hundred candidates.

Both also answer ``missing_vectors(view, positions)``: the vector rows still
to fetch for candidate ``positions`` of a view (never any for a resident
index).
"""

from collections import OrderedDict

import numpy as np

from ..filtering.columns import is_point_tensor
from ..format.index_file import (RERANK_PARTS, attribute_order, check_attributes,
                                 check_values, check_weights, invalid, vector_checks)
from ..format.safetensors_io import crc32_chain
from ..metrics import is_euclidean
from ..quantization import dequantize_rows
from .clusters import ClusterArrays, scorer_matrix
from .vectors import RerankVectors


#: what a run of clusters fetches (see :meth:`FetchedClusters.missing`): their scorer
#: parts, or (files with ``attribute_checksums``) their attribute columns
SCORERS, ATTRIBUTES = "scorers", "attributes"


def _adjacent(clusters):
    """Runs ``(lo, hi)`` of adjacent cluster numbers covering the set ``clusters``."""
    runs = []
    for j in sorted(clusters):
        if runs and runs[-1][1] == j:
            runs[-1][1] = j + 1
        else:
            runs.append([j, j + 1])
    return [tuple(r) for r in runs]


def checked_range(byte_range, buf):
    """``buf``, the response to ``byte_range`` (start, stop), as a byte view;
    ``ValueError`` if it is shorter or longer."""
    start, stop = byte_range
    view = memoryview(buf).cast("B") if len(buf) else memoryview(b"")
    if view.nbytes != stop - start:
        raise ValueError(
            f"truncated response: asked for bytes {start}-{stop - 1} ({stop - start} "
            f"bytes), got {view.nbytes}")
    return view


def read_ranges(reader, ranges):
    """Read byte ``ranges`` through ``reader``: one checked byte view per range."""
    buffers = reader.read(ranges)
    if len(buffers) != len(ranges):
        raise ValueError(f"the reader returned {len(buffers)} buffers for {len(ranges)} ranges")
    return [checked_range(r, buf) for r, buf in zip(ranges, buffers)]


def _point_arrays(parts, params):
    """(B rows as float32, bias) of a cluster's (or the index's) stored per-point tensors."""
    B = dequantize_rows(parts["B"], parts.get("B_scales"), params.quantization_bits,
                        params.rank)
    bias = parts["sq_norms"] if is_euclidean(params.distance) else np.zeros(len(B), np.float32)
    return B, bias


def _ids_and_norms(parts, params, first):
    """A cluster's (or the index's) ids and squared norms, from its stored rows that
    start at position ``first``: files with positional ids store no ids (a point's id
    is its position), and only l2 files store squared norms (zeros stand in)."""
    count = len(parts["vectors"]) if "vectors" in parts else len(parts["B"])
    ids = parts["ids"] if "ids" in parts else np.arange(first, first + count, dtype=np.int64)
    norms = parts["sq_norms"] if "sq_norms" in parts else np.zeros(count, np.float32)
    return ids, norms


class ResidentClusters:
    """All clusters of a fully loaded index, from its tensors."""

    #: every view is the same (the whole index), so what is learnt of one holds for all
    resident = True

    def __init__(self, tensors, params, prefix):
        t = tensors
        B, bias = _point_arrays(t, params)
        ids, norms = _ids_and_norms(t, params, 0)
        vectors = RerankVectors(t["vectors"], norms,
                                vector_scale=t.get("vectors_row_scale"), **prefix.vector_coding)
        self.arrays = ClusterArrays.from_rows(
            A_t=prefix.A_t, offsets=prefix.offsets, ids=ids, B_rows=B, bias=bias,
            residual=prefix.residual,
            vectors=vectors, attributes={k: v for k, v in t.items() if is_point_tensor(k)})

    def missing(self, probes, attributes=False):
        return [], []

    def fetch_missing(self, probes, fetched, attributes=False):
        pass

    def supply(self, runs, buffers, fetched):
        if runs or buffers:
            raise ValueError("this index is fully loaded: there is nothing to supply")

    def view(self, probes):
        return self.arrays, probes

    def missing_vectors(self, view, positions):
        return [], []

    def release(self):
        pass


class _Cluster:
    """One fetched, verified cluster: its scorer (:func:`.scorer_matrix`) and its
    rerank vectors.

    ``have`` marks the rows whose vectors are here: all of them, or (files
    with row checksums) those fetched so far, each checked against ``checks``.
    """

    __slots__ = ("j", "scorer", "codes", "sq_norms", "row_scale", "ids",
                 "checks", "have", "attributes", "nbytes")

    def __init__(self, j, parts, params, first, attributes, vector_rows, B, bias):
        """Cluster j from its checked rows ``parts`` (starting at position ``first``),
        with ``attributes`` the names of its attribute tensors among them (None:
        they come apart, :meth:`FetchedClusters.supply` sets them), ``vector_rows``
        ``(dtype, row shape, with row scales)`` of the rerank vectors fetched later
        (None: they are in ``parts``) and ``B``, ``bias`` its decoded scorer rows."""
        self.j = j
        self.scorer = scorer_matrix(B, bias, params.residual_scorers)
        self.ids, self.sq_norms = _ids_and_norms(parts, params, first)
        self.checks = parts.get("vector_checks")
        self.attributes = (None if attributes is None
                           else {name: parts[name] for name in attributes})
        if vector_rows is None:
            self.codes, self.row_scale = parts["vectors"], parts.get("vectors_row_scale")
            self.have = np.ones(len(B), dtype=bool)
        else:  # filled row by row as candidates need them
            dtype, row_shape, row_scales = vector_rows
            self.codes = np.empty((len(B),) + row_shape, dtype)
            self.row_scale = np.empty(len(B), np.float32) if row_scales else None
            self.have = np.zeros(len(B), dtype=bool)
        self.nbytes = sum(a.nbytes for a in (self.scorer, self.codes,
                                              self.sq_norms, self.ids, self.have,
                                              *(self.attributes or {}).values())) + (
            0 if self.checks is None else self.checks.nbytes)


class FetchedClusters:
    """Clusters fetched through ``reader`` as queries probe them.

    ``point_tensors`` lists the per-point tensors in file order as
    ``(name, absolute start, bytes per row, dtype, row shape)``.
    ``cache_bytes`` bounds the memory the cached clusters take between
    searches (during one, its own clusters are kept whatever their size).
    ``stats`` counts bytes, requests, clusters fetched and cache hits.
    """

    resident = False

    def __init__(self, reader, params, prefix, point_tensors, cache_bytes):
        self.reader, self.params, self.prefix = reader, params, prefix
        if params.row_checksums:  # scorer parts first, candidates' vectors after
            self.point_tensors = [t for t in point_tensors if t[0] not in RERANK_PARTS]
            self.vector_tensors = [t for t in point_tensors if t[0] in RERANK_PARTS]
            check_weights(sum(row_bytes for _, _, row_bytes, _, _ in self.vector_tensors))
        else:
            self.point_tensors, self.vector_tensors = point_tensors, []
        # files with attribute checksums: the attribute columns apart, for filtered searches
        apart = set(attribute_order(params))
        self.attribute_tensors = [t for t in self.point_tensors if t[0] in apart]
        self.point_tensors = [t for t in self.point_tensors if t[0] not in apart]
        self._tensors = {SCORERS: self.point_tensors, ATTRIBUTES: self.attribute_tensors}
        # what every fetched cluster needs, in the form the loops below read fast
        # (Python ints and lists: in Pyodide each NumPy scalar costs a call)
        self._starts = prefix.offsets.tolist()
        self._expected = {
            SCORERS: (prefix.cluster_scorer_crc32 if self.vector_tensors
                      else prefix.cluster_crc32).tolist(),
            ATTRIBUTES: ([] if prefix.cluster_attribute_crc32 is None
                         else prefix.cluster_attribute_crc32.tolist())}
        self._attributes = (None if self.attribute_tensors else
                            [t[0] for t in self.point_tensors if is_point_tensor(t[0])])
        shapes = {name: (dtype, tuple(shape)) for name, _, _, dtype, shape in self.vector_tensors}
        self._vector_rows = (shapes["vectors"] + ("vectors_row_scale" in shapes,)
                             if self.vector_tensors else None)
        self.cache_bytes = int(cache_bytes)
        self.cached_bytes = 0
        self.stats = {"bytes": 0, "requests": 0, "clusters_fetched": 0, "cache_hits": 0}
        self._cache = OrderedDict()
        # which cluster holds each id, as far as fetched: lets a lazy reader
        # refuse repeated ids across clusters as the full loader does
        self._owner = np.full(params.n, -1, dtype=np.int32)

    # -- what to fetch ------------------------------------------------------

    def missing(self, probes, attributes=False):
        """``(runs, ranges)``: what ``probes`` still lack, as runs ``(lo, hi, part)``
        of adjacent clusters (part :data:`SCORERS`: uncached clusters; with
        ``attributes``, part :data:`ATTRIBUTES`: clusters whose attribute columns
        came apart and are not here yet), and the non-empty byte ranges to fetch
        for them (one per tensor of the part and run)."""
        wanted = {int(j) for j in np.ravel(probes)}
        runs = self._runs(wanted, attributes)
        self.stats["cache_hits"] += len(wanted) - sum(hi - lo for lo, hi, part in runs
                                                      if part == SCORERS)
        return runs, self._ranges(runs)

    def fetch_missing(self, probes, fetched, attributes=False):
        """Fetch whatever of ``probes`` is not here (now) through the reader."""
        runs = self._runs({int(j) for j in np.ravel(probes)}, attributes)
        if runs:
            self.fetch(runs, fetched)

    def _runs(self, wanted, attributes):
        runs = [(lo, hi, SCORERS) for lo, hi in _adjacent(wanted - set(self._cache))]
        if attributes and self.attribute_tensors:
            lacking = {j for j in wanted if j not in self._cache
                       or self._cache[j].attributes is None}
            runs += [(lo, hi, ATTRIBUTES) for lo, hi in _adjacent(lacking)]
        return runs

    def _ranges(self, runs):
        off = self._starts
        return [(start + off[lo] * row_bytes, start + off[hi] * row_bytes)
                for lo, hi, part in runs if off[hi] > off[lo]
                for _, start, row_bytes, _, _ in self._tensors[part]]

    def range_counts(self, runs):
        """How many of the ranges of ``runs`` (see :meth:`missing`) each run takes, in
        order: one per tensor of its part, none for a run of empty clusters."""
        off = self._starts
        return [len(self._tensors[part]) if off[hi] > off[lo] else 0 for lo, hi, part in runs]

    def fetch(self, runs, fetched):
        """Fetch ``runs`` through the reader and install them."""
        ranges = self._ranges(runs)
        self.supply(runs, read_ranges(self.reader, ranges) if ranges else [], fetched)

    def supply(self, runs, buffers, fetched):
        """Install ``runs`` (see :meth:`missing`) from ``buffers``, the responses to
        their ranges, in order: uncached clusters, then attribute columns of
        clusters (here, or installed by the same call). Every byte is checked."""
        runs = [(int(lo), int(hi), part) for lo, hi, part in runs]
        if not all(0 <= lo < hi <= self.prefix.n_clusters and part in self._tensors
                   and (part == SCORERS or self.attribute_tensors) for lo, hi, part in runs):
            raise ValueError(f"runs of clusters out of range: {runs}")
        wanted = self._ranges(runs)
        if len(buffers) != len(wanted):
            raise ValueError(f"{len(buffers)} buffers supplied for {len(wanted)} ranges")
        views = [checked_range(r, b) for r, b in zip(wanted, buffers)]
        for counter in (self.stats, fetched):
            counter["requests"] += len(wanted)
            counter["bytes"] += sum(v.nbytes for v in views)
        of_part = {SCORERS: ([], []), ATTRIBUTES: ([], [])}  # runs, their views
        at = 0
        for (lo, hi, part), count in zip(runs, self.range_counts(runs)):
            of_part[part][0].append((lo, hi))
            of_part[part][1].extend(views[at:at + count])
            at += count
        rows, spans = self._checked(SCORERS, *of_part[SCORERS])
        check_values(rows, self.params.n)  # ids in range and distinct, values finite
        check_attributes(rows, self.params)
        B, bias = _point_arrays(rows, self.params)
        names = [t[0] for t in self.point_tensors]
        for j, at, size in spans:
            if j not in self._cache:
                self._install(j, {name: rows[name][at:at + size] for name in names},
                              B[at:at + size], bias[at:at + size])
                fetched["clusters"] += 1
        rows, spans = self._checked(ATTRIBUTES, *of_part[ATTRIBUTES])
        check_attributes(rows, self.params)
        for j, at, size in spans:
            cluster = self._cache.get(j)
            if cluster is None:
                raise ValueError(f"attributes supplied for cluster {j}, which is not here")
            if cluster.attributes is None:
                cluster.attributes = {name: rows[name][at:at + size] for name in rows}
                added = sum(a.nbytes for a in cluster.attributes.values())
                cluster.nbytes += added
                self.cached_bytes += added

    def _checked(self, part, runs, views):
        """The rows of ``runs`` ``(lo, hi)`` of ``part`` from their ``views`` (one per
        tensor and non-empty run): ``(rows, spans)``, one array per tensor holding
        every run's rows side by side, and ``(cluster, first row, rows)`` of each
        cluster, whose bytes were checked against its CRC. (One array per tensor,
        decoded at once: 48 clusters one by one took 26 ms in Pyodide.)"""
        tensors = self._tensors[part]
        count = len(tensors)
        joined = [b"".join(views[i::count]) for i in range(count)]
        rows = {name: np.frombuffer(joined[i], dtype).reshape((-1,) + tuple(row_shape))
                for i, (name, _, _, dtype, row_shape) in enumerate(tensors)}
        # each cluster's rows of every tensor, in file order, against its CRC
        chunks = [(memoryview(b), t[2]) for b, t in zip(joined, tensors)]
        off, expected = self._starts, self._expected[part]
        spans, at = [], 0
        for lo, hi in runs:
            for j in range(lo, hi):
                size = off[j + 1] - off[j]
                if crc32_chain(b[at * width:(at + size) * width]
                               for b, width in chunks) != expected[j]:
                    what = "attributes' checksum" if part == ATTRIBUTES else "checksum"
                    invalid(f"cluster {j} failed its {what}: the file is corrupted "
                            "or changed while it was being read")
                spans.append((j, at, size))
                at += size
        return rows, spans

    def _install(self, j, parts, B, bias):
        """Keep cluster j, its rows ``parts`` checked, its scorer rows decoded."""
        cluster = _Cluster(j, parts, self.params, self._starts[j], self._attributes,
                           self._vector_rows, B, bias)
        if "ids" in parts:
            owners = self._owner[cluster.ids]
            if ((owners != -1) & (owners != j)).any():
                invalid(f"cluster {j} holds ids that another cluster holds too")
            self._owner[cluster.ids] = j
        self._cache[j] = cluster
        self.cached_bytes += cluster.nbytes
        self.stats["clusters_fetched"] += 1

    # -- what a query reads ---------------------------------------------------

    def view(self, probes):
        """A :class:`.ClusterArrays` over the probed clusters (all cached), and the
        probes renumbered into it."""
        unique, local = np.unique(probes, return_inverse=True)
        clusters = []
        for j in unique:
            self._cache.move_to_end(int(j))
            clusters.append(self._cache[int(j)])
        offsets = np.zeros(len(clusters) + 1, dtype=np.intp)
        np.cumsum([len(c.ids) for c in clusters], out=offsets[1:])
        arrays = ClusterArrays(
            A_t=self.prefix.A_t[unique], offsets=offsets,
            ids=np.concatenate([c.ids for c in clusters]),
            scorers=[c.scorer for c in clusters],
            clusters=clusters, vector_coding=self.prefix.vector_coding,
            residual=self.prefix.residual)
        return arrays, local.reshape(np.shape(probes))

    # -- candidates' vectors (files with row checksums) -------------------------

    def missing_vectors(self, view, positions):
        """``(runs, ranges)``: the vector rows not yet here for candidate ``positions``
        (any shape, -1 for none) of ``view``, as runs ``(cluster, first row, end row)``
        within single clusters and their byte ranges (one per vector tensor and run)."""
        if not self.vector_tensors:
            return [], []
        flat = np.unique(positions[positions >= 0])
        owner = np.searchsorted(view.offsets, flat, side="right") - 1
        row = flat - view.offsets[owner]
        need = np.ones(len(flat), dtype=bool)
        for i in np.unique(owner):  # a loop over the probed clusters, not over points
            at = owner == i
            need[at] = ~view.clusters[i].have[row[at]]
        owner, row = owner[need], row[need]
        if not len(row):
            return [], []
        # a range per run of rows side by side, none between candidates: the browser
        # asks for all of a search's ranges in one request, where a range costs a
        # part header of ~110 bytes, less than any row (merging rows within 4 kB of
        # each other fetched 70 % more bytes on the WordNet site)
        cut = np.flatnonzero((np.diff(owner) != 0) | (np.diff(row) > 1)) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [len(row)]])
        js = np.array([c.j for c in view.clusters])
        runs = list(zip(js[owner[starts]].tolist(), row[starts].tolist(),
                        (row[ends - 1] + 1).tolist()))
        return runs, self._vector_ranges(runs)

    def _vector_ranges(self, runs):
        off = self._starts
        return [(start + (off[j] + lo) * row_bytes, start + (off[j] + hi) * row_bytes)
                for j, lo, hi in runs for _, start, row_bytes, _, _ in self.vector_tensors]

    def fetch_vectors(self, view, runs, fetched):
        """Fetch the vector rows ``runs`` (see :meth:`missing_vectors`) through the reader."""
        ranges = self._vector_ranges(runs)
        self.supply_vectors(view, runs, read_ranges(self.reader, ranges) if ranges else [],
                            fetched)

    def supply_vectors(self, view, runs, buffers, fetched):
        """Install vector rows ``runs`` of the clusters of ``view`` from ``buffers``, the
        responses to their ranges, in order; each row is checked against its checksum."""
        clusters = {c.j: c for c in view.clusters}
        wanted = self._vector_ranges(runs)
        if len(buffers) != len(wanted):
            raise ValueError(f"{len(buffers)} buffers supplied for {len(wanted)} ranges")
        views = [checked_range(r, b) for r, b in zip(wanted, buffers)]
        for counter in (self.stats, fetched):
            counter["requests"] += len(wanted)
            counter["bytes"] += sum(r[1] - r[0] for r in wanted)
        for j, lo, hi in runs:
            cluster = clusters.get(j)
            if cluster is None or not 0 <= lo < hi <= len(cluster.ids):
                raise ValueError(f"vector rows {lo}:{hi} of cluster {j} are not in this search")
        if not runs:
            return
        # Every run's rows side by side, checked and stored a cluster at a time: a
        # few calls per probed cluster, not per run (500 runs one by one took 40 ms
        # in Pyodide)
        count = len(self.vector_tensors)
        parts = {name: np.frombuffer(b"".join(views[i::count]), dtype).reshape(
                     (-1,) + tuple(row_shape))
                 for i, (name, _, _, dtype, row_shape) in enumerate(self.vector_tensors)}
        js, los, his = (np.array(column, dtype=np.intp) for column in zip(*runs))
        lengths = his - los
        owner = np.repeat(js, lengths)  # each fetched row's cluster ...
        first = np.cumsum(lengths) - lengths
        row = np.arange(len(owner)) - np.repeat(first - los, lengths)  # ... and its row there
        by_cluster = np.argsort(owner, kind="stable")
        bounds = np.flatnonzero(np.diff(owner[by_cluster])) + 1
        groups = [(clusters[int(owner[g[0]])], g, row[g])
                  for g in np.split(by_cluster, bounds)]
        expected = np.empty(len(owner), dtype=np.uint32)  # (16-bit checks widen)
        for cluster, at, rows in groups:
            expected[at] = cluster.checks[rows]
        bad = np.flatnonzero(vector_checks(parts["vectors"], parts.get("vectors_row_scale"),
                                           self.params.check_bits) != expected)
        if len(bad):
            invalid(f"cluster {int(owner[bad[0]])}: the rerank vector of row {int(row[bad[0]])} "
                    "failed its checksum: the file is corrupted or changed while it was "
                    "being read")
        check_values(parts)  # finite, within bounds
        for cluster, at, rows in groups:
            cluster.codes[rows] = parts["vectors"][at]
            if cluster.row_scale is not None:
                cluster.row_scale[rows] = parts["vectors_row_scale"][at]
            cluster.have[rows] = True

    def release(self):
        """Evict least recently used clusters down to the byte budget."""
        while self.cached_bytes > self.cache_bytes and self._cache:
            _, cluster = self._cache.popitem(last=False)
            self.cached_bytes -= cluster.nbytes
