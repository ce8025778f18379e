"""Running the per-cluster regressions, in process or through any executor, and the
local process pools that builds (and embedding) use."""

import contextlib
import os
import signal

from .regression import fit_cluster_scorer_gram

#: environment of pool workers that share the cores: one BLAS / OpenMP thread each
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _ignore_interrupts():
    """Pool workers leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def process_pool(workers, environment=None):
    """A pool of ``workers`` spawned processes, with ``environment`` set for them as
    they start; on an error or an interrupt its workers are stopped at once rather
    than left to finish."""
    import concurrent.futures
    import multiprocessing

    saved = {k: os.environ.get(k) for k in environment or {}}
    os.environ.update(environment or {})  # inherited by the workers as they start
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
    try:
        yield pool
    except BaseException:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    pool.shutdown(wait=True)


#: clusters fitted per task when an executor runs the regressions
CLUSTERS_PER_TASK = 8


def fit_clusters(jobs, rank):
    """Fit a list of clusters, each ``(points, gram, n_queries, center)`` (see
    :func:`.regression.fit_cluster_scorer_gram`); the unit of work sent to executors."""
    return [fit_cluster_scorer_gram(points, gram, n, rank, center)
            for points, gram, n, center in jobs]


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
