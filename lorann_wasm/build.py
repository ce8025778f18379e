"""Index construction: the LoRANN training pipeline, start to finish.

1. global projection from the training queries (:mod:`.projection`);
2. k-means of the reduced data (:mod:`.kmeans`);
3. each training query goes to its ``train_size`` nearest clusters;
4. a reduced-rank regression per cluster (:mod:`.regression`);
5. optional 8-bit storage of ``A`` and ``B`` (:mod:`.quantization`);
6. rerank vectors, encoded and sorted by cluster (:mod:`.vectors`).

The result is the dict of tensors that :mod:`.index_file` stores.
"""

import sys
import time

import numpy as np

from .kmeans import kmeans, nearest_centroids
from .projection import fit_projection
from .quantization import quantize_int8
from .regression import fit_cluster_scorer, fit_cluster_scorer_gram
from .vectors import RerankVectors


class _Progress:
    """Build progress: ``log(message)`` and ``log.step(stage, done, total)``.

    ``verbose`` may be False (silent), True (timed lines on stderr) or a
    reporter: a callable taking messages, optionally with a
    ``step(stage, done, total)`` method (the CLI draws progress bars with it).
    """

    def __init__(self, verbose):
        self.verbose = verbose
        self.t0 = time.perf_counter()

    def __call__(self, msg):
        if callable(self.verbose):
            self.verbose(msg)
        elif self.verbose:
            print(f"[lorann_wasm {time.perf_counter() - self.t0:7.2f}s] {msg}",
                  file=sys.stderr, flush=True)

    def step(self, stage, done, total):
        step = getattr(self.verbose, "step", None)
        if step is not None:
            step(stage, done, total)
        elif self.verbose and (done == total or done % max(1, total // 10) == 0):
            self(f"{stage}: {done}/{total}")


def progress_logger(verbose):
    """The :class:`_Progress` for a ``verbose`` argument (passes one through)."""
    return verbose if isinstance(verbose, _Progress) else _Progress(verbose)


def _group(labels, n_groups):
    """Members of each group: ``(order, offsets)`` with group j = order[offsets[j]:offsets[j+1]]."""
    order = np.argsort(labels, kind="stable")
    offsets = np.zeros(n_groups + 1, dtype=np.int64)  # stored as int64 on every platform
    np.cumsum(np.bincount(labels, minlength=n_groups), out=offsets[1:])
    return order, offsets


#: clusters fitted per task when an executor runs the regressions
CLUSTERS_PER_TASK = 8


def fit_clusters(jobs, rank):
    """Fit a list of clusters; the unit of work sent to executors.

    Each job is ``(points, queries)`` or ``(points, gram, n_queries)`` (see
    :func:`.regression.fit_cluster_scorer_gram`).
    """
    return [fit_cluster_scorer(*job, rank) if len(job) == 2 else fit_cluster_scorer_gram(*job, rank)
            for job in jobs]


def executor_width(executor):
    """How many tasks ``executor`` runs at once, as far as can be told (at least 1)."""
    workers = getattr(executor, "_max_workers", None)  # concurrent.futures pools
    client = getattr(executor, "_client", None)  # distributed.Client.get_executor()
    if workers is None and client is not None:
        try:
            workers = sum(client.nthreads().values())
        except Exception:  # a scheduler that cannot be asked: assume a small cluster
            workers = None
    return max(1, workers or 2)


def fit_all(n_clusters, job, rank, executor, log):
    """``(A_j, B_j)`` for every cluster, in cluster order, with or without an executor.

    With an executor, tasks of :data:`CLUSTERS_PER_TASK` clusters are kept
    at most ``2 * workers`` in flight (so the inputs in memory stay bounded)
    and collected in submission order, so the result does not depend on
    which worker finishes first.
    """
    batches = [range(s, min(s + CLUSTERS_PER_TASK, n_clusters))
               for s in range(0, n_clusters, CLUSTERS_PER_TASK)]
    if executor is None:
        for batch in batches:
            for j, fitted in zip(batch, fit_clusters([job(j) for j in batch], rank)):
                log.step("reduced-rank regressions", j + 1, n_clusters)
                yield fitted
        return
    window = 2 * executor_width(executor)
    pending = []
    for batch in batches + [None] * window:
        if batch is not None:
            pending.append((batch, executor.submit(fit_clusters, [job(j) for j in batch], rank)))
        if len(pending) > window or (batch is None and pending):
            done_batch, future = pending.pop(0)
            for fitted in future.result():
                yield fitted
            log.step("reduced-rank regressions", done_batch[-1] + 1, n_clusters)


def build_tensors(data, params, training_queries=None, verbose=False, held_out=None,
                  executor=None):
    """Train an index on ``data`` (n, d) float32 (already normalised for cosine).

    ``verbose``: see :class:`_Progress`.

    ``params`` holds the validated build parameters; ``training_queries``
    defaults to the data itself. Rows ``held_out`` of the training queries
    are not used for training (they are kept for tuning). ``executor`` (any
    ``concurrent.futures.Executor``) runs the per-cluster regressions; the
    result is byte-identical with or without it. Returns the tensors of the
    index file.
    """
    log = progress_logger(verbose)
    n, d = data.shape
    g, r, n_clusters = params["global_dim"], params["rank"], params["n_clusters"]
    euclidean = params["distance"] == "l2"
    rng = np.random.default_rng(params["seed"])
    queries = data if training_queries is None else training_queries

    projection = None
    if g < d:
        projection = fit_projection(queries, g, rng)
        log(f"global projection {d} -> {g} dims")
    reduced = data if projection is None else data @ projection
    reduced_q = reduced if training_queries is None else (
        queries if projection is None else queries @ projection)
    if held_out is not None and len(held_out) < reduced_q.shape[0]:
        keep = np.ones(reduced_q.shape[0], dtype=bool)
        keep[held_out] = False
        reduced_q = reduced_q[keep]

    centroids, labels = kmeans(reduced, n_clusters, euclidean=euclidean, seed=params["seed"],
                               progress=log.step)
    order, offsets = _group(labels, n_clusters)
    log(f"k-means: {n} points in {n_clusters} clusters "
        f"(sizes {int(np.diff(offsets).min())}..{int(np.diff(offsets).max())})")

    w = min(params["train_size"], n_clusters)
    assigned = nearest_centroids(reduced_q, centroids, euclidean, w)
    q_order, q_offsets = _group(assigned.ravel(), n_clusters)
    q_rows = q_order // w
    log(f"{reduced_q.shape[0]} training queries assigned to {w} clusters each")

    A = np.empty((n_clusters, g, r), dtype=np.float32)
    Bt = np.empty((n, r), dtype=np.float32)

    def job(j):
        return (reduced[order[offsets[j]:offsets[j + 1]]],
                reduced_q[q_rows[q_offsets[j]:q_offsets[j + 1]]])

    for j, (a, b) in enumerate(fit_all(n_clusters, job, r, executor, log)):
        A[j] = a
        Bt[offsets[j]:offsets[j + 1]] = b.T

    tensors = {"cluster_offsets": offsets, "centroids": centroids, "ids": order.astype(np.int64)}
    if projection is not None:
        tensors["projection"] = projection
    if params["quantization_bits"] == 8:
        tensors["A"], tensors["A_scales"] = quantize_int8(A, axis=1)
        tensors["B"], tensors["B_scales"] = quantize_int8(Bt, axis=1)
    else:
        tensors["A"], tensors["B"] = A, Bt

    vectors = RerankVectors.encode(data[order], params["rerank_dtype"],
                                   params["int8_scales"] or "dimension")
    tensors["vectors"] = vectors.codes
    tensors["sq_norms"] = vectors.sq_norms
    if vectors.scale is not None:
        tensors["vectors_dim_offset"] = vectors.offset
        tensors["vectors_dim_scale"] = vectors.scale
    if vectors.vector_scale is not None:
        tensors["vectors_row_scale"] = vectors.vector_scale
    log(f"rerank vectors stored as {params['rerank_dtype']}")
    return tensors
