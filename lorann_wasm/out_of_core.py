"""Out-of-core build: an index file from data larger than memory.

The same LoRANN pipeline as :mod:`.build`, arranged as passes over the data
that each read it a chunk at a time (:class:`.sources.RowSource`):

1. global projection, fitted on a seeded sample of rows;
2. k-means on a seeded sample of the reduced rows (centroids only);
3. assignment of every row to its ``train_size`` nearest clusters, which
   accumulates each cluster's training-query Gram matrix ``Q_j^T Q_j`` (all
   the regression needs of the queries) and the int8 value ranges;
4. the rows are copied, in cluster order, to a scratch file beside the output;
5. cluster by cluster (through an optional ``concurrent.futures.Executor``),
   the reduced-rank regression is fitted and the cluster's rows of every
   per-point tensor are written straight into the index file.

The working set is bounded independently of the data size apart from
:data:`BYTES_PER_VECTOR` bookkeeping bytes per vector; :func:`memory_bound`
states it. The file is written to a temporary name and renamed when complete,
and is byte-identical for any executor.
"""

import os
import tempfile
import zlib

import numpy as np

from . import safetensors_io
from .atomic import atomic_output
from .build import fit_all, progress_logger
from .index import build_params
from .index_file import (PREFIX_CHECKSUM_KEY, file_metadata, index_layout, per_point_order,
                         prefix_crc, prefix_end)
from .kmeans import ASSIGN_CHUNK, SAMPLE_PER_CLUSTER, kmeans, nearest_centroids
from .metrics import prepare
from .projection import PROJECTION_SAMPLE, fit_projection
from .quantization import quantize_int8
from .sources import CHUNK_BYTES, RowSource
from .vectors import RerankVectors, dimension_scales

#: int32 label, int64 id and an int64 sort buffer per vector
BYTES_PER_VECTOR = 20
#: interpreter, NumPy and BLAS buffers (measured 65 MB) plus allocator slack
BASE_BYTES = 128 << 20


def memory_bound(n, d, params, chunk_bytes=CHUNK_BYTES):
    """Bytes the build's working set stays under, with its parts (a dict).

    The largest of the phases (projection, k-means, assignment, regressions)
    plus per-vector bookkeeping and a fixed base; executor workers are
    separate processes and not counted.
    """
    c, g, r = params["n_clusters"], params["global_dim"], params["rank"]
    w = min(params["train_size"], c)
    sample = min(n, SAMPLE_PER_CLUSTER * c)
    chunk_rows = max(1, chunk_bytes // (4 * d))
    grams = 8 * c * g * g
    # a block of distances to the centroids, the argpartition indices of it, a temporary
    distances = ASSIGN_CHUNK * c * (4 + 8 + 8)
    phases = {
        "projection": min(n, PROJECTION_SAMPLE) * d * 12 + 16 * d * d + 2 * chunk_bytes,
        "k-means": sample * g * 4 + chunk_bytes + chunk_rows * g * 4 + ASSIGN_CHUNK * c * 8
        + ASSIGN_CHUNK * g * 20,
        "assignment": grams + 2 * chunk_bytes + chunk_rows * (4 * g + 32 * w) + distances,
        "sorting": grams + 3 * chunk_bytes,
        "regressions": grams + 8 * c * g * r + 2 * chunk_bytes,
    }
    parts = {"per-vector bookkeeping": BYTES_PER_VECTOR * n, "base": BASE_BYTES,
             "largest phase (" + max(phases, key=phases.get) + ")": max(phases.values())}
    return sum(parts.values()), parts


def _assign(source, distance, projection, centroids, euclidean, w, grams=None, counts=None,
            labels=None, stats=None, log=None):
    """Pass 3 over ``source``: assign each row to its w nearest clusters.

    Adds each row's outer product to those clusters' ``grams`` (and counts),
    fills ``labels`` (nearest cluster per row) and ``stats`` (value ranges);
    each only when given.
    """
    chunks = source.chunks()
    for i, (start, stop) in enumerate(chunks):
        x = prepare(source.read(start, stop), distance, source.name)
        if stats is not None:
            stats["low"] = np.minimum(stats["low"], x.min(axis=0))
            stats["high"] = np.maximum(stats["high"], x.max(axis=0))
        reduced = x if projection is None else x @ projection
        nearest = nearest_centroids(reduced, centroids, euclidean, w)
        if labels is not None:
            labels[start:stop] = nearest[:, 0]
        if log is not None:
            log.step("assignment", i + 1, len(chunks))
        if grams is None:
            continue
        flat = nearest.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(flat, minlength=len(counts)))))
        rows = order // w
        for j in np.flatnonzero(np.diff(bounds)):
            q = reduced[rows[bounds[j]:bounds[j + 1]]].astype(np.float64)
            grams[j] += q.T @ q
            counts[j] += q.shape[0]


def _sort_to_scratch(source, distance, labels, offsets, scratch, log):
    """Pass 4: write the prepared rows to ``scratch`` (a file) in cluster order."""
    fill = offsets[:-1].copy()
    row_bytes = 4 * source.d
    chunks = source.chunks()
    for i, (start, stop) in enumerate(chunks):
        x = prepare(source.read(start, stop), distance, source.name)
        lab = labels[start:stop]
        order = np.argsort(lab, kind="stable")
        x, lab = x[order], lab[order]
        runs = np.flatnonzero(np.diff(lab)) + 1
        for a, b in zip(np.concatenate(([0], runs)), np.concatenate((runs, [len(lab)]))):
            j = lab[a]
            os.pwrite(scratch, memoryview(x[a:b]).cast("B"), int(fill[j]) * row_bytes)
            fill[j] += b - a
        log.step("sorting rows by cluster", i + 1, len(chunks))


def _read_rows(fd, start, stop, d):
    out = np.empty((stop - start, d), dtype=np.float32)
    view = memoryview(out).cast("B")
    if os.preadv(fd, [view], start * 4 * d) != view.nbytes:
        raise OSError("scratch file ended early")
    return out


class _Writer:
    """Writes tensors into their places in the (pre-sized) output file."""

    def __init__(self, fd, header, data_start):
        self.fd, self.header, self.data_start = fd, header, data_start

    def write(self, name, array, first_row=0):
        a = np.ascontiguousarray(array)
        if a.dtype != safetensors_io.DTYPES[self.header[name]["dtype"]]:
            raise AssertionError(f"{name}: writing {a.dtype} into {self.header[name]['dtype']}")
        begin = self.header[name]["data_offsets"][0]
        shape = self.header[name]["shape"]
        row_bytes = a.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        os.pwrite(self.fd, memoryview(a).cast("B"), self.data_start + begin + first_row * row_bytes)
        return memoryview(a).cast("B")

    def crc(self, start, stop, crc):
        """Chain the CRC-32 of file bytes ``start:stop`` onto ``crc``."""
        while start < stop:
            block = os.pread(self.fd, min(CHUNK_BYTES, stop - start), start)
            if not block:
                raise OSError("output file ended early")
            crc = zlib.crc32(block, crc)
            start += len(block)
        return crc


def build_file(data, path, *, n_clusters=None, global_dim=None, rank=32, train_size=5,
               quantization_bits=8, distance="ip", seed=0, rerank_dtype="float32",
               int8_scales="dimension", training_queries=None, executor=None, verbose=False,
               scratch_dir=None):
    """Build an index of ``data`` without holding it in memory; write it to ``path``.

    ``data`` is an array-like of shape (n, d) read by row slices: a
    ``np.memmap``, a ``.npy`` opened with ``np.load(..., mmap_mode="r")``,
    an ``h5py`` dataset, or an ordinary array (or a :class:`RowSource`).
    ``training_queries`` likewise, or None for the data itself. Build
    parameters are those of :class:`.LorannIndex`; the search presets are
    its untuned defaults (no auto-tuning here). ``executor`` runs the
    per-cluster regressions; the file does not depend on it. A scratch file
    of n * d * 4 bytes is made in ``scratch_dir`` (default: beside ``path``)
    and removed. Returns the index parameters.
    """
    log = progress_logger(verbose)
    source = data if isinstance(data, RowSource) else RowSource(data, "data")
    queries = None
    if training_queries is not None:
        queries = (training_queries if isinstance(training_queries, RowSource)
                   else RowSource(training_queries, "training_queries"))
        if queries.d != source.d:
            raise ValueError(f"training_queries have dimension {queries.d}, data has {source.d}")
    n, d = source.n, source.d
    p = build_params(n, d, n_clusters=n_clusters, global_dim=global_dim, rank=rank,
                     train_size=train_size, quantization_bits=quantization_bits,
                     distance=distance, seed=seed, rerank_dtype=rerank_dtype,
                     int8_scales=int8_scales)
    bound, _ = memory_bound(n, d, p)
    log(f"out-of-core build of {n} x {d}: working set bound {bound / 2**20:.0f} MB "
        f"(data {n * d * 4 / 2**20:.0f} MB as float32)")
    c, g, r = p["n_clusters"], p["global_dim"], p["rank"]
    euclidean = distance == "l2"
    rng = np.random.default_rng(p["seed"])
    train = queries or source

    projection = None
    if g < d:
        rows = np.sort(rng.choice(train.n, min(train.n, PROJECTION_SAMPLE), replace=False))
        projection = fit_projection(train.take(rows, lambda x: prepare(x, distance, train.name)),
                                    g, rng)
        log(f"global projection {d} -> {g} dims")

    def reduce(x):
        x = prepare(x, distance, source.name)
        return x if projection is None else x @ projection

    rows = np.sort(rng.choice(n, min(n, SAMPLE_PER_CLUSTER * c), replace=False))
    centroids, _ = kmeans(source.take(rows, reduce), c, euclidean=euclidean, seed=p["seed"],
                          progress=log.step)
    del rows
    log(f"k-means on a sample: {c} centroids")

    w = min(p["train_size"], c)
    grams = np.zeros((c, g, g), dtype=np.float64)
    counts = np.zeros(c, dtype=np.int64)
    labels = np.empty(n, dtype=np.int32)
    stats = {"low": np.full(d, np.inf, np.float32), "high": np.full(d, -np.inf, np.float32)}
    if queries is None:
        _assign(source, distance, projection, centroids, euclidean, w, grams, counts,
                labels=labels, stats=stats, log=log)
    else:
        _assign(source, distance, projection, centroids, euclidean, 1, labels=labels,
                stats=stats, log=log)
        _assign(queries, distance, projection, centroids, euclidean, w, grams, counts)
    if rerank_dtype == "float16" and max(-stats["low"].min(), stats["high"].max()) > 65504:
        raise ValueError("rerank_dtype='float16' cannot hold values above 65504; "
                         "use 'float32' or 'int8'")
    sizes = np.bincount(labels, minlength=c)
    offsets = np.zeros(c + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    ids = np.argsort(labels, kind="stable").astype(np.int64)
    log(f"{n} points in {c} clusters (sizes {int(sizes.min())}..{int(sizes.max())})")

    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    scratch_fd, scratch_path = tempfile.mkstemp(prefix=".lorann-rows-", dir=scratch_dir or folder)
    try:
        os.unlink(scratch_path)  # removed from the folder now, freed when closed
        _sort_to_scratch(source, distance, labels, offsets, scratch_fd, log)
        del labels
        with atomic_output(path) as f:
            out_fd = f.fileno()
            layout = index_layout(p)
            header = safetensors_io.make_header(layout, file_metadata(p))
            header["__metadata__"][PREFIX_CHECKSUM_KEY] = "crc32:00000000"
            data_start = len(safetensors_io.sign_header(dict(header), 0))
            total = data_start + header[layout[-1][0]]["data_offsets"][1]
            os.ftruncate(out_fd, total)
            out = _Writer(out_fd, header, data_start)
            names = per_point_order(p)
            dim_range = (stats["low"], stats["high"])
            A = np.empty((c, g, r), dtype=np.float32)
            cluster_crc = np.empty(c, dtype=np.uint32)

            def job(j):
                x = _read_rows(scratch_fd, int(offsets[j]), int(offsets[j + 1]), d)
                return (x if projection is None else x @ projection, grams[j], int(counts[j]))

            for j, (a, b) in enumerate(fit_all(c, job, r, executor, log)):
                A[j] = a
                lo, hi = int(offsets[j]), int(offsets[j + 1])
                x = _read_rows(scratch_fd, lo, hi, d)
                vectors = RerankVectors.encode(x, rerank_dtype, int8_scales or "dimension", dim_range)
                parts = {"ids": ids[lo:hi], "sq_norms": vectors.sq_norms, "vectors": vectors.codes,
                         "vectors_row_scale": vectors.vector_scale}
                if quantization_bits == 8:
                    parts["B"], parts["B_scales"] = quantize_int8(b.T, axis=1)
                else:
                    parts["B"] = b.T
                crc = 0
                for name in names:
                    crc = zlib.crc32(out.write(name, parts[name], lo), crc)
                cluster_crc[j] = crc

            prefix = {"cluster_offsets": offsets, "centroids": centroids, "cluster_crc32": cluster_crc}
            if projection is not None:
                prefix["projection"] = projection
            if quantization_bits == 8:
                prefix["A"], prefix["A_scales"] = quantize_int8(A, axis=1)
            else:
                prefix["A"] = A
            if p["int8_scales"] == "dimension":
                prefix["vectors_dim_offset"], prefix["vectors_dim_scale"] = dimension_scales(*dim_range)
            for name, value in prefix.items():
                out.write(name, value)
            crc = out.crc(data_start, data_start + prefix_end(header), prefix_crc(header, []))
            header["__metadata__"][PREFIX_CHECKSUM_KEY] = f"crc32:{crc:08x}"
            crc = zlib.crc32(safetensors_io.canonical_header(header))
            crc = out.crc(data_start, total, crc)
            head = safetensors_io.sign_header(header, crc)
            if len(head) != data_start:
                raise AssertionError("header length changed while signing")
            os.pwrite(out_fd, head, 0)
    finally:
        os.close(scratch_fd)
    log(f"wrote {path} ({total / 2**20:.1f} MB)")
    return p
