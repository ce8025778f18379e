"""``LorannIndex``: the public face of the index."""

import json
import math

import numpy as np

from ._checks import as_int, as_matrix, as_queries, check_k
from .atomic import atomic_output
from .build import build_tensors, progress_logger
from .index_file import decode_index, encode_index
from .metrics import check_distance, prepare
from .quantization import dequantize_int8
from .rerank import brute_force, rerank, rerank_one
from .search import BATCH_BLOCK, SearchArrays, candidates_batch, candidates_single
from .tuning import choose, lookup, lookup_target, measure_grid
from .vectors import INT8_SCALES, RERANK_DTYPES, RerankVectors


class NotBuiltError(RuntimeError):
    """Raised when an index is searched or saved before ``build()``."""


def default_n_clusters(n):
    """``round(sqrt(n))``, at least 1: about sqrt(n) points per cluster."""
    return max(1, int(round(math.sqrt(n))))


def default_global_dim(dim):
    """No reduction below 200 dims, 128 up to 1000 dims, 256 above (as in the C++ lorann)."""
    if dim < 200:
        return dim
    return 128 if dim <= 1000 else 256


def default_search_params(n_clusters, n):
    """``(clusters_to_search, points_to_rerank)`` used when search is not told.

    Probe 1/32 of the clusters (at least 8, at most all of them) and rerank
    100 points (at most n). On Fashion-MNIST (l2) this gives recall@10 of
    about 0.98; see the README for measured trade-offs.
    """
    return min(n_clusters, max(8, -(-n_clusters // 32))), min(n, 100)


def build_params(n, d, *, n_clusters=None, global_dim=None, rank=32, train_size=5,
                 quantization_bits=8, distance="ip", seed=0, rerank_dtype="float32",
                 int8_scales="dimension"):
    """Validated build parameters (and default search presets) for n vectors of dimension d.

    Arguments as :class:`LorannIndex`; raises ``TypeError``/``ValueError``
    naming the bad one.
    """
    distance = check_distance(distance)
    n_clusters = default_n_clusters(n) if n_clusters is None else as_int(
        n_clusters, "n_clusters", low=1)
    if n_clusters > n:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of points ({n})")
    global_dim = default_global_dim(d) if global_dim is None else as_int(
        global_dim, "global_dim", low=1)
    if global_dim > d:
        raise ValueError(f"global_dim={global_dim} is larger than the data dimension ({d})")
    rank = as_int(rank, "rank", low=1)
    if rank > global_dim:
        raise ValueError(
            f"rank={rank} is larger than the dimension it approximates "
            f"(global_dim={global_dim}, data dimension {d})")
    train_size = as_int(train_size, "train_size", low=1)
    if quantization_bits is not None and quantization_bits != 8:
        raise ValueError(f"quantization_bits must be 8 or None, got {quantization_bits!r}")
    if rerank_dtype not in RERANK_DTYPES:
        raise ValueError(f"unknown rerank_dtype {rerank_dtype!r}; expected one of {RERANK_DTYPES}")
    if rerank_dtype == "int8" and int8_scales not in INT8_SCALES:
        raise ValueError(f"unknown int8_scales {int8_scales!r}; expected one of {INT8_SCALES}")
    c, r = default_search_params(n_clusters, n)
    return {
        "n": n, "dim": d, "distance": distance, "n_clusters": n_clusters,
        "global_dim": global_dim, "rank": rank, "train_size": train_size,
        "quantization_bits": quantization_bits, "rerank_dtype": rerank_dtype,
        "int8_scales": int8_scales if rerank_dtype == "int8" else None,
        "seed": as_int(seed, "seed", low=0),
        "clusters_to_search": c, "points_to_rerank": r,
    }


def search_settings(params, k, clusters_to_search=None, points_to_rerank=None,
                    target_recall=None):
    """``(clusters_to_search, points_to_rerank)`` for a search of ``k`` neighbours.

    Explicit values are validated; ``target_recall`` picks them from the
    tuning table; otherwise the stored presets apply. At least k points are
    reranked.
    """
    p = params
    if target_recall is not None:
        if clusters_to_search is not None or points_to_rerank is not None:
            raise ValueError("give target_recall or explicit search parameters, not both")
        if not p.get("tuning"):
            raise ValueError("this index has no tuning table; build it with target_recall")
        clusters_to_search, points_to_rerank = lookup(p["tuning"]["table"], float(target_recall))
    c = p["clusters_to_search"] if clusters_to_search is None else as_int(
        clusters_to_search, "clusters_to_search", low=1, high=p["n_clusters"])
    r = p["points_to_rerank"] if points_to_rerank is None else as_int(
        points_to_rerank, "points_to_rerank", low=1)
    return c, max(k, r)


def search_request(params, q, k, clusters_to_search=None, points_to_rerank=None,
                   target_recall=None):
    """Validate a search: ``(queries, single, k, clusters_to_search, points_to_rerank)``.

    ``queries`` is (b, d), prepared for the metric; ``single`` says whether
    ``q`` was one 1-D vector; the settings come from :func:`search_settings`.
    """
    queries, single = as_queries(q, params["dim"])
    k = check_k(k, params["n"])
    c, r = search_settings(params, k, clusters_to_search, points_to_rerank, target_recall)
    return prepare(queries, params["distance"], "q"), single, k, c, r


def pad_results(ids, dists, k):
    """Pad the last axis to ``k`` with id -1 and distance inf (fewer candidates than k)."""
    if ids.shape[-1] < k:
        pad = [(0, 0)] * (ids.ndim - 1) + [(0, k - ids.shape[-1])]
        ids = np.pad(ids, pad, constant_values=-1)
        dists = np.pad(dists, pad, constant_values=np.inf)
    return ids, dists


class LorannIndex:
    """Approximate nearest-neighbour index (LoRANN, Jaasaari et al., NeurIPS 2024).

    ``data`` is an (n, d) numeric array. ``distance`` is ``"ip"``,
    ``"cosine"`` or ``"l2"``; returned distances are smaller-is-better (see
    :mod:`lorann_wasm.metrics`). ``n_clusters`` defaults to
    :func:`default_n_clusters`, ``global_dim`` to :func:`default_global_dim`
    (an int equal to d disables the reduction). ``rank`` is the rank of each
    cluster's scorer; ``train_size`` the number of nearest clusters each
    training query trains. ``quantization_bits`` is 8 or None (float32
    scorer). ``rerank_dtype`` is ``"float32"``, ``"float16"`` or ``"int8"``;
    for int8, ``int8_scales`` is ``"dimension"`` or ``"vector"``. ``seed``
    fixes every random choice.

    Call :meth:`build` before searching.
    """

    def __init__(self, data, n_clusters=None, global_dim=None, rank=32, train_size=5,
                 quantization_bits=8, distance="ip", seed=0, rerank_dtype="float32",
                 int8_scales="dimension"):
        data = as_matrix(data, "data")
        self._params = build_params(
            data.shape[0], data.shape[1], n_clusters=n_clusters, global_dim=global_dim,
            rank=rank, train_size=train_size, quantization_bits=quantization_bits,
            distance=distance, seed=seed, rerank_dtype=rerank_dtype, int8_scales=int8_scales)
        self._data = prepare(data, self._params["distance"], "data")
        self._tensors = None

    # -- construction -----------------------------------------------------

    def build(self, training_queries=None, verbose=False, target_recall=0.95,
              tuning_queries=500, executor=None):
        """Train the index; returns ``self``.

        ``training_queries`` (m, d) are examples of the queries to expect;
        by default the data itself serves. ``verbose`` prints step timings.

        With ``target_recall`` (default 0.95; None to skip), ``tuning_queries``
        training queries (by default, data points) are held out of training
        and searched exactly and approximately (data points leave themselves
        out of their own results), a table of
        the cheapest (clusters_to_search, points_to_rerank) per target recall
        is stored in ``params["tuning"]``, and the entry for
        ``target_recall`` becomes the default search setting.

        ``executor`` (any ``concurrent.futures.Executor``, e.g. a process
        pool) runs the per-cluster regressions in parallel; the index is
        byte-identical to a build without it. The query path never uses it.
        """
        if self._data is None:
            raise RuntimeError("this index was loaded from a file and is already built")
        if training_queries is not None:
            training_queries = as_matrix(training_queries, "training_queries")
            if training_queries.shape[1] != self.dim:
                raise ValueError(f"training_queries have dimension {training_queries.shape[1]}, "
                                 f"data has {self.dim}")
            training_queries = prepare(training_queries, self.distance, "training_queries")
        if target_recall is not None and not 0 < float(target_recall) <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        tuning_queries = as_int(tuning_queries, "tuning_queries", low=1)
        log = progress_logger(verbose)
        source = self._data if training_queries is None else training_queries
        held_out = None
        if target_recall is not None:
            rng = np.random.default_rng(self._params["seed"] + 1)
            count = min(tuning_queries, source.shape[0] // 2)
            held_out = np.sort(rng.choice(source.shape[0], count, replace=False))
        self._attach(build_tensors(self._data, self._params, training_queries, log, held_out,
                                   executor))
        if held_out is not None and len(held_out):
            self._tune(source[held_out], held_out if training_queries is None else None,
                       float(target_recall), log)
        self._data = None  # the sorted rerank vectors replace it
        return self

    def _tune(self, queries, self_ids, target_recall, log):
        """Measure the held-out ``queries``, store the table, set the default preset."""
        k = min(10, self.n - (self_ids is not None))
        if k < 1:
            return
        results = measure_grid(self._arrays, self._vectors, self._ids, queries,
                               self.distance, k=k, self_ids=self_ids, verbose=log)
        table = choose(results)
        c, r = lookup(table, target_recall)
        self._params.update(clusters_to_search=c, points_to_rerank=r, tuning={
            "k": k, "queries": int(len(queries)), "leave_one_out": self_ids is not None,
            "target_recall": target_recall, "table": table})
        estimate = next(row[3] for row in table if row[0] == lookup_target(table, target_recall))
        log(f"tuned for recall@{k} >= {target_recall}: clusters_to_search={c}, "
            f"points_to_rerank={r} (estimated recall {estimate:.4f})")

    def _attach(self, tensors):
        """Derive the query-time arrays from the stored tensors."""
        p = self._params
        self._tensors = tensors
        if p["quantization_bits"] == 8:
            A = dequantize_int8(tensors["A"], tensors["A_scales"], axis=1)
            Bt = dequantize_int8(tensors["B"], tensors["B_scales"], axis=1)
        else:
            A, Bt = tensors["A"], tensors["B"]
        self._arrays = SearchArrays(
            projection=tensors.get("projection"), centroids=tensors["centroids"],
            offsets=tensors["cluster_offsets"], A=A, Bt=Bt, sq_norms=tensors["sq_norms"],
            euclidean=p["distance"] == "l2")
        self._vectors = RerankVectors(
            tensors["vectors"], tensors["sq_norms"],
            offset=tensors.get("vectors_dim_offset"), scale=tensors.get("vectors_dim_scale"),
            vector_scale=tensors.get("vectors_row_scale"))
        self._ids = tensors["ids"]
        self._positions = None  # id -> row, made on first get_vectors()

    # -- properties -------------------------------------------------------

    @property
    def params(self):
        """A copy of the build and default search parameters (and the tuning table)."""
        return json.loads(json.dumps(self._params))

    @property
    def n(self):
        return self._params["n"]

    @property
    def dim(self):
        return self._params["dim"]

    @property
    def distance(self):
        return self._params["distance"]

    @property
    def is_built(self):
        return self._tensors is not None

    def _require_built(self):
        if self._tensors is None:
            raise NotBuiltError("the index is not built yet; call build() first")

    # -- search -----------------------------------------------------------

    def search(self, q, k=10, clusters_to_search=None, points_to_rerank=None,
               return_distances=False, target_recall=None):
        """Approximate ``k`` nearest neighbours of ``q``.

        ``q`` is (d,) for one query, giving 1-D results, or (b, d), giving
        (b, k). Returns int64 ids (row numbers of the data), best first; with
        ``return_distances`` returns ``(ids, distances)``. The
        ``clusters_to_search`` best clusters are scored approximately and the
        best ``max(k, points_to_rerank)`` points are reranked exactly; both
        default to the index's stored presets (``params``). ``target_recall``
        instead picks them from the build-time tuning table (the cheapest
        setting measured to reach at least that recall@10). If fewer than k
        points are reached, the tail is padded with id -1 and distance inf.
        """
        self._require_built()
        queries, single, k, c, r = search_request(self._params, q, k, clusters_to_search,
                                                  points_to_rerank, target_recall)
        if single:
            ids, dists = self._search_one(queries[0], k, c, r)
        else:
            reduced = self._arrays.reduce(queries)
            probes = self._arrays.probe(reduced, c)
            candidates = self._batch_candidates(reduced, probes, r)
            rows, dists = rerank(self._vectors, queries, candidates, k, self.distance)
            ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], -1)
        ids, dists = pad_results(ids, dists, k)
        return (ids, dists) if return_distances else ids

    def _search_one(self, query, k, c, r):
        """One query, 1-D all the way: no per-cluster loop, few NumPy calls."""
        reduced = self._arrays.reduce(query)
        probes = self._arrays.probe(reduced, c)
        candidates = candidates_single(self._arrays, reduced, probes, r)
        rows, dists = rerank_one(self._vectors, query, candidates, k, self.distance)
        return self._ids[rows], dists

    def _batch_candidates(self, reduced, probes, r):
        blocks = [candidates_batch(self._arrays, reduced[s:s + BATCH_BLOCK],
                                   probes[s:s + BATCH_BLOCK], r)
                  for s in range(0, reduced.shape[0], BATCH_BLOCK)]
        width = max(b.shape[1] for b in blocks)
        return np.concatenate(
            [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in blocks])

    def exact_search(self, q, k=10, return_distances=False):
        """Exact ``k`` nearest neighbours among the stored (rerank) vectors.

        Same arguments and return shapes as :meth:`search`.
        """
        self._require_built()
        queries, single = as_queries(q, self.dim)
        k = check_k(k, self.n)
        queries = prepare(queries, self.distance, "q")
        rows, dists = brute_force(self._vectors, queries, k, self.distance)
        ids = self._ids[rows]
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, dists) if return_distances else ids

    def get_vectors(self, ids):
        """The stored vectors (decoded to float32, normalised for cosine) of ``ids``."""
        self._require_built()
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n):
            raise ValueError(f"ids must be in [0, {self.n}), got range "
                             f"[{ids.min()}, {ids.max()}]")
        if self._positions is None:
            self._positions = np.empty(self.n, dtype=np.intp)
            self._positions[self._ids] = np.arange(self.n)
        return self._vectors.decode(self._positions[ids])

    # -- persistence ------------------------------------------------------

    def to_bytes(self):
        """The index file as ``bytes`` (see :mod:`lorann_wasm.index_file`)."""
        self._require_built()
        head, chunks = encode_index(self._stored_tensors(), self._params)
        return b"".join([head, *chunks])

    def save(self, path):
        """Write the index file to ``path`` atomically (temporary file, then rename)."""
        self._require_built()
        head, chunks = encode_index(self._stored_tensors(), self._params)
        with atomic_output(path) as f:
            f.write(head)
            for chunk in chunks:
                f.write(chunk)

    def _stored_tensors(self):
        return {k: v for k, v in self._tensors.items() if k != "cluster_crc32"}

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
        index._params = params
        index._data = None
        index._attach(tensors)
        return index

    @classmethod
    def load(cls, path):
        """Load an index file written by :meth:`save`."""
        with open(path, "rb") as f:
            buf = f.read()
        return cls.from_bytes(buf)

    def __repr__(self):
        p = getattr(self, "_params", None)
        if p is None:
            return "LorannIndex(<not initialised>)"
        state = "built" if getattr(self, "_tensors", None) is not None else "not built"
        return (f"LorannIndex(n={p['n']}, dim={p['dim']}, distance={p['distance']!r}, "
                f"n_clusters={p['n_clusters']}, global_dim={p['global_dim']}, rank={p['rank']}, "
                f"{state})")
