"""The LoRANN training pipeline, start to finish: one for every kind of build.

Each step reads the data a chunk at a time (:class:`.sources.RowSource`), so
the same code builds in memory (:class:`.sinks.MemorySink`, what
``LorannIndex.build`` uses) and out of core (:class:`.sinks.FileSink`,
``build_file``), and both write the same bytes:

1. global projection, fitted on a seeded sample of training queries
   (:mod:`.projection`);
2. k-means on a seeded sample of the reduced data: the centroids
   (:mod:`.kmeans`); with ``rerank_dims``, the basis of the rerank vectors,
   fitted as the projection is, on a seeded sample of the data;
3. one pass assigns every point to its nearest cluster and every training
   query to its ``train_size`` nearest, adding the query to those clusters'
   Gram matrices ``Q_j^T Q_j`` (all the regression needs of the queries),
   and takes the value range of each stored dimension;
4. one pass copies the points, in cluster order, to the sink's scratch;
5. cluster by cluster (through an optional ``concurrent.futures.Executor``,
   :mod:`.parallel`): the reduced-rank regression (:mod:`.regression`),
   8-bit storage of ``B`` (:mod:`..quantization`) and the rerank vectors
   (:mod:`..query.vectors`) go into the sink;
6. the prefix: centroids, projection, the ``A`` matrices, the offsets.

Clusters that end up with no points stay empty: every reader handles them.
"""

import numpy as np

from .._checks import check_magnitudes
from ..kernels import times
from ..metrics import is_euclidean, prepare
from ..quantization import half_scales, quantize_A, quantize_int4, quantize_int8
from ..query.vectors import RerankVectors, dimension_scales
from .cluster_order import CHAIN_LIMIT, chain_order
from .kmeans import SAMPLE_PER_CLUSTER, kmeans, nearest_centroids
from .parallel import fit_all
from .progress import progress_logger
from .projection import PROJECTION_SAMPLE, fit_projection

def sample_rows(rng, n, size):
    """A seeded sample of ``size`` of ``n`` rows, increasing (all of them if n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))


def train(source, params, sink, *, queries=None, held_out=None, executor=None, verbose=False,
          attributes=None):
    """Train an index on the rows of ``source`` with ``params``; write it into ``sink``.

    ``queries`` (a :class:`.RowSource`, or None for the data itself) are the
    training queries; their rows ``held_out`` (increasing) are left out of
    the regressions (they are kept for tuning). ``executor`` runs the
    per-cluster regressions; the output does not depend on it.
    ``attributes`` (an :class:`.AttributeTable`, matching ``params.attributes``)
    are stored per point in cluster order, with per-cluster summaries in the
    prefix. Returns what ``sink.finish`` returns.
    """
    log = progress_logger(verbose)
    p = params
    n, d = source.n, source.d
    c, g = p.n_clusters, p.global_dim
    euclidean = is_euclidean(p.distance)
    rng = np.random.default_rng(p.seed)
    train_rows = queries or source

    def prepared(src):
        """Rows of ``src`` in the index's space, refused if their arithmetic overflows."""
        def transform(x, first_row=None):
            x = prepare(x, p.distance, src.name)
            check_magnitudes(x, src.name, first_row)
            return x
        return transform

    projection = None
    if g < d:
        rows = sample_rows(rng, train_rows.n, PROJECTION_SAMPLE)
        projection = fit_projection(train_rows.take(rows, prepared(train_rows)), g)
        log(f"global projection {d} -> {g} dims")

    def reduce(x):
        return x if projection is None else x @ projection

    rows = sample_rows(rng, n, SAMPLE_PER_CLUSTER * c)
    centroids, _ = kmeans(source.take(rows, lambda x: reduce(prepared(source)(x))), c,
                          euclidean=euclidean, seed=p.seed, progress=log.step)
    del rows
    log(f"k-means on {min(n, SAMPLE_PER_CLUSTER * c)} points: {c} centroids")
    centroids = centroids[chain_order(centroids)]  # probed clusters side by side
    log("clusters numbered along a chain of nearest centroids" if c <= CHAIN_LIMIT
        else f"clusters kept in k-means' numbering (over {CHAIN_LIMIT:,})")

    basis = None
    if p.rerank_dims is not None:
        rows = sample_rows(rng, n, PROJECTION_SAMPLE)
        basis = fit_projection(source.take(rows, prepared(source)), p.rerank_dims)
        log(f"rerank vectors: {p.rerank_dims} of {d} principal directions")

    def stored(x):
        return x if basis is None else times(x, basis)

    w = min(p.train_size, c)
    grams = np.zeros((c, g, g), dtype=np.float64)
    counts = np.zeros(c, dtype=np.int64)
    labels = np.empty(n, dtype=np.int32)
    s = p.stored_dims
    low, high = np.full(s, np.inf, np.float32), np.full(s, -np.inf, np.float32)
    passes = ([(source, w, True)] if queries is None
              else [(source, 1, False), (queries, w, True)])
    for src, nearest, trains in passes:
        for i, (start, stop) in enumerate(src.chunks()):
            x = prepared(src)(src.read(start, stop), start)
            if src is source:
                xs = stored(x)
                low, high = np.minimum(low, xs.min(axis=0)), np.maximum(high, xs.max(axis=0))
            reduced = reduce(x)
            near = nearest_centroids(reduced, centroids, euclidean, nearest)
            if src is source:
                labels[start:stop] = near[:, 0]
            if trains:
                _add_grams(grams, counts, reduced, near, _kept(held_out, start, stop))
            log.step(f"assigning {src.name}", i + 1, len(src.chunks()))
    if p.rerank_dtype == "float16" and max(-float(low.min()), float(high.max())) > 65504:
        raise ValueError("rerank_dtype='float16' cannot hold values above 65504 "
                         "(float16 max is 65504); use 'float32' or 'int8'")
    dim_range = (low, high)
    if p.int8_scales == "dimension" and not np.isfinite(dimension_scales(low, high)[1]).all():
        raise ValueError("the data's value range per dimension overflows float32 in int8 "
                         "scales; scale the data down")

    sizes = np.bincount(labels, minlength=c)
    offsets = np.zeros(c + 1, dtype=np.int64)  # stored as int64 on every platform
    np.cumsum(sizes, out=offsets[1:])
    ids = np.argsort(labels, kind="stable").astype(np.int64)
    log(f"{n} points in {c} clusters (sizes {int(sizes.min())}..{int(sizes.max())})")
    _sort_into(source, prepared(source), labels, offsets, sink.scratch, log)
    del labels

    A = np.empty((c, g, p.rank), dtype=np.float32)

    def job(j):
        x = sink.scratch.read(int(offsets[j]), int(offsets[j + 1]))
        return (reduce(x), grams[j], int(counts[j]),
                centroids[j] if p.residual_scorers else None)

    for j, (a, b) in enumerate(fit_all(c, job, p.rank, executor, log)):
        A[j] = a
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        vectors = RerankVectors.encode(sink.scratch.read(lo, hi), p.rerank_dtype,
                                       p.int8_scales or "dimension", dim_range, basis)
        parts = {"ids": ids[lo:hi], "sq_norms": vectors.sq_norms, "vectors": vectors.codes,
                 "vectors_row_scale": vectors.vector_scale}
        if attributes is not None:
            parts.update(attributes.point_rows(ids[lo:hi]))
        if p.quantization_bits == 8:
            parts["B"], parts["B_scales"] = quantize_int8(b.T, axis=1)
        elif p.quantization_bits == 4:
            parts["B"], parts["B_scales"] = quantize_int4(b.T)
        else:
            parts["B"] = b.T
        if p.scale_bits == 16:  # (A is quantised below, with the factor in it)
            parts["B_scales"], factor = half_scales(parts["B_scales"])
            A[j] *= factor
        sink.write_cluster(j, lo, parts)

    prefix = {"cluster_offsets": offsets, "centroids": centroids}
    if projection is not None:
        prefix["projection"] = projection
    if basis is not None:
        prefix["vectors_basis"] = basis
    if p.quantization_bits in (8, 4):
        prefix["A"], prefix["A_scales"] = quantize_A(A, p.a_bits)
    else:
        prefix["A"] = A
    if p.int8_scales == "dimension":
        prefix["vectors_dim_offset"], prefix["vectors_dim_scale"] = dimension_scales(*dim_range)
    if attributes is not None:
        prefix.update(attributes.summaries(ids, offsets))
        log(f"attributes {', '.join(c['name'] for c in p.attributes)}: stored with "
            "per-cluster summaries")
    log(f"rerank vectors stored as {p.rerank_dtype}")
    return sink.finish(prefix)


def _kept(held_out, start, stop):
    """Mask of rows start:stop not in ``held_out`` (sorted), or None to keep all."""
    if held_out is None or not len(held_out):
        return None
    lo, hi = np.searchsorted(held_out, [start, stop])
    if lo == hi:
        return None
    keep = np.ones(stop - start, dtype=bool)
    keep[held_out[lo:hi] - start] = False
    return keep


def _add_grams(grams, counts, reduced, nearest, keep):
    """Add each query's outer product to its nearest clusters' Gram matrices."""
    if keep is not None:
        reduced, nearest = reduced[keep], nearest[keep]
    w = nearest.shape[1]
    flat = nearest.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(flat, minlength=len(counts)))))
    rows = order // w
    for j in np.flatnonzero(np.diff(bounds)):
        q = reduced[rows[bounds[j]:bounds[j + 1]]].astype(np.float64)
        grams[j] += q.T @ q
        counts[j] += q.shape[0]


def _sort_into(source, prepare_rows, labels, offsets, scratch, log):
    """Copy the prepared rows into ``scratch`` in cluster order."""
    fill = offsets[:-1].copy()
    chunks = source.chunks()
    for i, (start, stop) in enumerate(chunks):
        x = prepare_rows(source.read(start, stop))
        lab = labels[start:stop]
        order = np.argsort(lab, kind="stable")
        x, lab = x[order], lab[order]
        runs = np.flatnonzero(np.diff(lab)) + 1
        for a, b in zip(np.concatenate(([0], runs)), np.concatenate((runs, [len(lab)]))):
            j = lab[a]
            scratch.write(int(fill[j]), x[a:b])
            fill[j] += b - a
        log.step("sorting rows by cluster", i + 1, len(chunks))
