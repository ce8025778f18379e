"""``LorannIndex``: the public face of the index."""

import os

import numpy as np

from ._checks import as_int, as_matrix, as_prepared_queries, check_k
from .atomic import atomic_output
from .filtering.columns import AttributeTable
from .format.index_file import cluster_crcs, decode_index, encode_index
from .metrics import check_nonzero_rows, prepare
from .params import TARGET_RECALL, IndexParams, check_target_recall, lookup, lookup_target
from .query.engine import QueryEngine
from .query.prefix import Prefix
from .query.rerank import brute_force
from .query.stores import ResidentClusters


class NotBuiltError(RuntimeError):
    """Raised when an index is searched or saved before ``build()``."""


class LorannIndex(QueryEngine):
    """Approximate nearest-neighbour index (LoRANN, Jaasaari et al., NeurIPS 2024).

    ``data`` is an (n, d) numeric array. The build parameters (keywords,
    validated by :meth:`.IndexParams.for_data`): ``distance`` is ``"ip"``,
    ``"cosine"`` or ``"l2"``; returned distances are smaller-is-better (see
    :mod:`lorann_wasm.metrics`). ``n_clusters`` defaults to
    :func:`.params.default_n_clusters`, ``global_dim`` to :func:`.params.default_global_dim`
    (an int equal to d disables the reduction). ``rank`` is the rank of each
    cluster's scorer; ``train_size`` the number of nearest clusters each
    training query trains. ``quantization_bits`` is 8, 4 (each point's
    row of the scorer in 4-bit codes: half the bytes a lazy query fetches per
    probed point, a little recall) or None (float32 scorer). ``rerank_dtype`` is ``"float32"``, ``"float16"`` or ``"int8"``;
    for int8, ``int8_scales`` is ``"dimension"`` or ``"vector"``. ``rerank_dims``
    (default None: all) stores the rerank vectors as their coordinates along
    the data's top ``rerank_dims`` principal directions: fewer bytes per
    point, reranking that is exact only within those directions. ``seed``
    fixes every random choice. ``attributes`` (a dict of column name -> one
    value per point: ints, floats, bools, strings or lists of strings; see
    :mod:`.filtering.columns`) are stored in the index for ``where=`` filters.

    Call :meth:`build` before searching.
    """

    def __init__(self, data, attributes=None, **build_args):
        data = as_matrix(data, "data")
        self._attributes = (None if attributes is None
                            else AttributeTable.from_columns(attributes, data.shape[0]))
        self._params = IndexParams.for_data(
            *data.shape, attributes=self._attributes and self._attributes.schema, **build_args)
        if self._params.distance == "cosine":
            check_nonzero_rows(data, "data")
        self._data = data
        self._tensors = None

    # -- construction -----------------------------------------------------

    def build(self, training_queries=None, verbose=False, target_recall=TARGET_RECALL,
              tuning_queries=500, executor=None, tuning_cost=None):
        """Train the index; returns ``self``.

        ``training_queries`` (m, d) are examples of the queries to expect;
        by default the data itself serves. ``verbose`` prints step timings.

        With ``target_recall`` (default 0.95; None to skip), ``tuning_queries``
        training queries (by default, data points) are held out of training
        and searched exactly and approximately (data points leave themselves
        out of their own results), a table of
        the cheapest (clusters_to_search, points_to_rerank) per target recall
        is stored in ``params["tuning"]``, and the entry for
        ``target_recall`` becomes the default search setting. "Cheapest" is by
        ``tuning_cost(c, points, R, arrays)`` (see
        :func:`.training.tuning.measure_grid`), by default the operation count.

        ``executor`` (any ``concurrent.futures.Executor``, e.g. a process
        pool) runs the per-cluster regressions in parallel; the index is
        byte-identical to a build without it. The query path never uses it.
        """
        if self._data is None:
            raise RuntimeError("this index was loaded from a file and is already built")
        # Imported here: loading and searching (the browser) never need the build side.
        from .training.pipeline import train
        from .training.progress import progress_logger
        from .training.sinks import MemorySink
        from .training.sources import RowSource
        p = self._params
        source = RowSource(self._data, "data")
        queries = None
        if training_queries is not None:
            queries = RowSource(as_matrix(training_queries, "training_queries"),
                                "training_queries")
            if queries.d != self.dim:
                raise ValueError(f"training_queries have dimension {queries.d}, "
                                 f"data has {self.dim}")
        if target_recall is not None:
            target_recall = check_target_recall(target_recall)
        tuning_queries = as_int(tuning_queries, "tuning_queries", low=1)
        log = progress_logger(verbose)
        tuning_source = queries or source
        held_out = None
        if target_recall is not None:
            rng = np.random.default_rng(p.seed + 1)
            count = min(tuning_queries, tuning_source.n // 2)
            held_out = np.sort(rng.choice(tuning_source.n, count, replace=False))
        with MemorySink(p) as sink:
            tensors = train(source, p, sink, queries=queries, held_out=held_out,
                            executor=executor, verbose=log, attributes=self._attributes)
        self._attach(tensors, p)
        if held_out is not None and len(held_out):
            held = tuning_source.take(held_out, lambda x: prepare(x, p.distance, "queries"))
            self._tune(held, held_out if queries is None else None, target_recall, log,
                       self._truth_vectors(), tuning_cost)
        self._data = None  # the sorted rerank vectors replace it
        return self

    def _truth_vectors(self):
        """What tuning takes as the true neighbours' vectors, in stored order: the
        stored ones, unless they lie along fewer directions than the data (then
        recall would be measured against the stored approximation itself)."""
        if self._params.rerank_dims is None:
            return None  # float32 codes are the data; float16/int8 lose ~0.5% recall
        from .query.vectors import RerankVectors
        rows = prepare(self._data, self.distance, "data")[self._store.arrays.ids]
        return RerankVectors.encode(rows)

    def _tune(self, queries, self_ids, target_recall, log, truth_vectors=None, cost=None):
        """Measure the held-out ``queries``, store the table, set the default preset.

        ``truth_vectors`` (in stored order) give the true neighbours, by
        default the stored vectors."""
        k = min(10, self.n - (self_ids is not None))
        if k < 1:
            return
        from .training.tuning import choose, measure_grid, operations, tune_filter_factors

        results = measure_grid(self._prefix, self._store.arrays, queries, self.distance, k=k,
                               self_ids=self_ids, verbose=log, truth_vectors=truth_vectors,
                               cost=cost or operations)
        table = choose(results)
        c, r = lookup(table, target_recall)
        self._params = self._params.replace(
            clusters_to_search=c, points_to_rerank=r, tuning={
                "k": k, "queries": int(len(queries)), "leave_one_out": self_ids is not None,
                "target_recall": target_recall, "table": table})
        tuned = self._params

        def search(queries, allow, factors):  # filtered, with this factor table
            self._params = tuned.replace(tuning=dict(tuned.tuning, filter_factors=factors))
            return self.search(queries, k, allow=allow, filter_path="filtered")
        try:
            factors = tune_filter_factors(self._store.arrays, search, queries, self_ids,
                                          target_recall, k, self.distance, tuned.seed,
                                          truth_vectors)
        finally:
            self._params = tuned
        self._params = tuned.replace(tuning=dict(tuned.tuning, filter_factors=factors))
        log("filtered search: probing budget factors " + ", ".join(
            f"{f} at {s:.0%} passing" for s, f in factors) + f" reach recall@{k} >= "
            f"{target_recall} under random allow lists")
        estimate = next(row[3] for row in table if row[0] == lookup_target(table, target_recall))
        log(f"tuned for recall@{k} >= {target_recall}: clusters_to_search={c}, "
            f"points_to_rerank={r} (estimated recall {estimate:.4f})")
        if estimate < target_recall:
            log(f"no setting reached recall@{k} {target_recall}: this one measured the most"
                + (" (rerank_dims limits it: store more directions)"
                   if self._params.rerank_dims is not None else ""))

    def _attach(self, tensors, params):
        """Make the query-time arrays from the index's tensors."""
        self._params = params
        self._tensors = tensors
        self._prefix = Prefix(tensors, params)
        self._store = ResidentClusters(tensors, params, self._prefix)
        self._positions = None  # id -> row, made on first get_vectors()
        self._filters = None  # recent filters' bounds: they depend on the tensors

    # -- properties -------------------------------------------------------

    @property
    def is_built(self):
        return self._tensors is not None

    def _check_ready(self):
        if self._tensors is None:
            raise NotBuiltError("the index is not built yet; call build() first")

    # -- search (see QueryEngine.plan and QueryEngine.search) ------------

    def exact_search(self, q, k=10, return_distances=False):
        """Exact ``k`` nearest neighbours among the stored (rerank) vectors.

        Same arguments and return shapes as :meth:`search`.
        """
        self._check_ready()
        queries, single = as_prepared_queries(q, self.dim, self.distance)
        k = check_k(k, self.n)
        arrays = self._store.arrays
        rows, dists = brute_force(arrays.vectors, queries, k, self.distance)
        ids = arrays.ids[rows]
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, dists) if return_distances else ids

    def get_vectors(self, ids):
        """The stored vectors (decoded to float32, normalised for cosine) of ``ids``;
        with ``rerank_dims``, their projection onto the stored directions."""
        self._check_ready()
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n):
            raise ValueError(f"ids must be in [0, {self.n}), got range "
                             f"[{ids.min()}, {ids.max()}]")
        if self._positions is None:
            self._positions = np.empty(self.n, dtype=np.intp)
            self._positions[self._store.arrays.ids] = np.arange(self.n)
        return self._store.arrays.vectors.original(self._positions[ids])

    def number_by_position(self):
        """Renumber the points in the order they are stored (cluster by cluster).

        Afterwards the id of a point is its row in the file, so points found
        together (one cluster) have neighbouring ids and records kept in id
        order are read in few ranges. Returns ``old_ids`` (n,): the former id
        of each new id. Search results are otherwise unchanged.
        """
        self._check_ready()
        old_ids = np.array(self._store.arrays.ids)
        tensors = dict(self._tensors)
        tensors.pop("ids", None)  # a point's id is its position: the file stores none
        params = self._params.replace(positional_ids=True)
        tensors.update(cluster_crcs(tensors, params))  # they covered the ids
        self._attach(tensors, params)
        return old_ids

    # -- persistence ------------------------------------------------------

    def to_bytes(self):
        """The index file as ``bytes`` (see :mod:`lorann_wasm.index_file`)."""
        self._check_ready()
        head, chunks = encode_index(self._tensors, self._params)
        return b"".join([head, *chunks])

    def save(self, path):
        """Write the index file to ``path`` atomically (temporary file, then rename)."""
        self._check_ready()
        head, chunks = encode_index(self._tensors, self._params)
        with atomic_output(path) as f:
            f.write(head)
            for chunk in chunks:
                f.write(chunk)

    @classmethod
    def from_bytes(cls, buf):
        """Load an index from a buffer (bytes, bytearray, memoryview).

        Arrays are zero-copy views of ``buf`` where possible, so keep it
        alive and unchanged. Raises ``ValueError`` if the buffer is not a
        valid index file.
        """
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes expects bytes, bytearray or memoryview, got {type(buf).__name__}")
        tensors, params = decode_index(buf)
        index = cls.__new__(cls)
        index._data = None
        index._attach(tensors, params)
        return index

    @classmethod
    def load(cls, path):
        """Load an index file written by :meth:`save`."""
        with open(path, "rb") as f:
            # Read into memory NumPy allocates: NumPy asks Linux for huge pages
            # on large buffers, as for a freshly built index, which a ``bytes``
            # object does not get. Gathering 50 random 784-d rerank rows
            # measured 36-39 us that way against 43-46 us (Fashion-MNIST).
            buf = np.empty(os.fstat(f.fileno()).st_size, dtype=np.uint8)
            size = f.readinto(buf)
        buf.flags.writeable = False  # read-only views, as from bytes
        return cls.from_bytes(memoryview(buf[:size]))

    def __repr__(self):
        p = self._params
        if p is None:
            return "LorannIndex(<not initialised>)"
        state = "built" if getattr(self, "_tensors", None) is not None else "not built"
        return (f"LorannIndex(n={p.n}, dim={p.dim}, distance={p.distance!r}, "
                f"n_clusters={p.n_clusters}, global_dim={p.global_dim}, rank={p.rank}, "
                f"{state})")
