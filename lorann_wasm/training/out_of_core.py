"""Out-of-core builds: an index file from data larger than memory.

:func:`build_file` runs the training pipeline (:mod:`.pipeline`) over a row
source read a chunk at a time, into a :class:`.sinks.FileSink`: the rows
are sorted by cluster into a scratch file beside the output, and each
cluster's rows of every per-point tensor are written straight into the
index file. The working set is bounded independently of the data size
apart from :data:`BYTES_PER_VECTOR` bookkeeping bytes per vector;
:func:`memory_bound` states it. The file is written to a temporary name and
renamed when complete, and is byte-identical for any executor, and to
``LorannIndex(...).build(target_recall=None).save()`` of the same data.
"""

from ..filtering.columns import AttributeTable
from ..params import IndexParams
from .kmeans import ASSIGN_CHUNK, SAMPLE_PER_CLUSTER
from .pipeline import train
from .progress import progress_logger
from .projection import PROJECTION_SAMPLE
from .sinks import FileSink
from .sources import CHUNK_BYTES, RowSource

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
    c, g, r = params.n_clusters, params.global_dim, params.rank
    w = min(params.train_size, c)
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


def build_file(data, path, *, training_queries=None, executor=None, verbose=False,
               scratch_dir=None, attributes=None, **build_args):
    """Build an index of ``data`` without holding it in memory; write it to ``path``.

    ``data`` is an array-like of shape (n, d) read by row slices: a
    ``np.memmap``, a ``.npy`` opened with ``np.load(..., mmap_mode="r")``,
    an ``h5py`` dataset, or an ordinary array (or a :class:`RowSource`).
    ``training_queries`` likewise, or None for the data itself. Build
    parameters (``build_args``: ``n_clusters``, ``rank``, ``distance``, ...)
    are those of :class:`.LorannIndex` (see :meth:`.IndexParams.for_data`); the search presets are
    its untuned defaults (no auto-tuning here). ``executor`` runs the
    per-cluster regressions; the file does not depend on it. A scratch file
    of n * d * 4 bytes is made in ``scratch_dir`` (default: beside ``path``)
    and removed. ``attributes`` are filterable columns as for :class:`.LorannIndex`
    (held in memory: one value per point). Returns the index parameters.
    """
    log = progress_logger(verbose)
    source = data if isinstance(data, RowSource) else RowSource(data, "data")
    queries = None
    if training_queries is not None:
        queries = (training_queries if isinstance(training_queries, RowSource)
                   else RowSource(training_queries, "training_queries"))
        if queries.d != source.d:
            raise ValueError(f"training_queries have dimension {queries.d}, data has {source.d}")
    table = None if attributes is None else AttributeTable.from_columns(attributes, source.n)
    p = IndexParams.for_data(source.n, source.d, attributes=table and table.schema,
                             **build_args)
    bound, _ = memory_bound(source.n, source.d, p)
    log(f"out-of-core build of {source.n} x {source.d}: working set bound "
        f"{bound / 2**20:.0f} MB (data {source.n * source.d * 4 / 2**20:.0f} MB as float32)")
    with FileSink(path, p, scratch_dir) as sink:
        total = train(source, p, sink, queries=queries, executor=executor, verbose=log,
                      attributes=table)
    log(f"wrote {path} ({total / 2**20:.1f} MB)")
    return p.to_dict()
