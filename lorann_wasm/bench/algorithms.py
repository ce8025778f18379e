"""The algorithms a benchmark compares, behind one small interface.

Each wrapper builds on (n, d) float32 data with a metric, lists the query
settings to sweep, and answers single and batch queries with ids. Peers are
optional: a wrapper whose package is missing reports itself unavailable.
All run single-threaded.
"""

import os
import tempfile

import numpy as np


class Algorithm:
    """Base class: ``fit``, ``settings``, ``query``, ``batch_query``, ``index_bytes``."""

    name = "?"
    #: the importable module this algorithm needs, if any
    requires = None

    @classmethod
    def available(cls):
        import importlib.util
        return cls.requires is None or importlib.util.find_spec(cls.requires) is not None

    def fit(self, data, distance):
        raise NotImplementedError

    def settings(self):
        """The query settings to sweep, as dicts (one empty dict: nothing to sweep)."""
        return [{}]

    def query(self, q, k, **setting):
        raise NotImplementedError

    def batch_query(self, queries, k, **setting):
        return np.array([self.query(q, k, **setting) for q in queries])

    def index_bytes(self):
        return 0


#: clusters probed by the IVF-Flat methods' settings
NPROBE = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def _normalize(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class LorannWasm(Algorithm):
    """This package."""

    name = "lorann_wasm"

    def __init__(self, clusters=(2, 4, 6, 8, 12, 16, 24, 32, 48), rerank=(20, 50, 100, 200, 400),
                 **params):
        self.params, self.clusters, self.rerank = params, clusters, rerank

    def fit(self, data, distance):
        from ..index import LorannIndex
        self.index = LorannIndex(data, distance=distance, **self.params).build()

    def settings(self):
        c_max = self.index.params["n_clusters"]
        return [{"clusters_to_search": c, "points_to_rerank": r}
                for c in self.clusters if c <= c_max for r in self.rerank]

    def query(self, q, k, **s):
        return self.index.search(q, k, **s)

    def batch_query(self, queries, k, **s):
        return self.index.search(queries, k, **s)

    def index_bytes(self):
        return len(self.index.to_bytes())


class LorannWasmFloor(LorannWasm):
    """This package's query path with nothing around it: a floor, not a product.

    The same index and the same functions the engine runs for resident,
    unfiltered queries (reduce, probe, score and select, rerank), called
    directly: no validation, no plan, no padding of short results. Between
    this and ``lorann_wasm`` lies the engine's own cost; between this and the
    C++ reference, the NumPy kernels' (``build_scripts/measure/profile_query`` times
    them one by one). Queries are float32, as the harness gives them.
    """

    name = "lorann_wasm stages (floor)"

    def fit(self, data, distance):
        super().fit(data, distance)
        self.stages = self.index.stages

    def query(self, q, k, clusters_to_search, points_to_rerank):
        stages = self.stages
        if self.index.distance == "cosine":
            q = _normalize(q.reshape(-1, q.shape[-1])).reshape(q.shape)
        reduced = stages.reduce(q)
        probes = stages.probe(reduced, clusters_to_search)
        rows, _ = stages.rerank(q, stages.candidates(reduced, probes, max(k, points_to_rerank)), k)
        return stages.ids(rows)

    batch_query = query  # the stages take one query (d,) or several (b, d)


class Exact(Algorithm):
    """NumPy brute force (ExactIndex)."""

    name = "exact (numpy)"

    def fit(self, data, distance):
        from ..exact import ExactIndex
        self.index = ExactIndex(data, distance=distance)
        self.nbytes = data.nbytes

    def query(self, q, k):
        return self.index.search(q, k)

    def batch_query(self, queries, k):
        return self.index.search(queries, k)

    def index_bytes(self):
        return self.nbytes


def _scored_rows(x, euclidean):
    """``[s x, b]`` (n, d + 1) float32, whose product with ``[q, 1]`` ranks rows by
    distance: ``s = -2``, ``b = ||x||^2`` for l2; ``s = -1``, ``b = 0`` otherwise."""
    bias = np.einsum("ij,ij->i", x, x) if euclidean else np.zeros(len(x))
    return np.column_stack([(-2.0 if euclidean else -1.0) * x, bias]).astype(np.float32)


class NumpyIVFFlat(Algorithm):
    """IVF-Flat in the fewest NumPy calls: a floor, not a product.

    Probe the centroids, score each probed cluster's rows where they lie
    with one product (:func:`_scored_rows`), keep the k best. No validation,
    no exact recomputation, no engine: what a pure NumPy single query costs
    at the least, beside faiss IVF-Flat on the same number of clusters
    (:mod:`lorann_wasm`'s own k-means).
    """

    name = "numpy IVF-Flat (floor)"

    def __init__(self, n_clusters, nprobe=NPROBE):
        self.n_clusters, self.nprobe = n_clusters, nprobe

    def fit(self, data, distance):
        from ..training.kmeans import kmeans
        self.cosine, euclidean = distance == "cosine", distance == "l2"
        x = np.ascontiguousarray(_normalize(data) if self.cosine else data, dtype=np.float32)
        centroids, labels = kmeans(x, self.n_clusters, euclidean=euclidean)
        self.ids = np.argsort(labels, kind="stable")
        ends = np.cumsum(np.bincount(labels, minlength=self.n_clusters))
        self.spans = list(zip([0] + ends[:-1].tolist(), ends.tolist()))
        self.rows = _scored_rows(x[self.ids], euclidean)
        self.centroids = _scored_rows(centroids, euclidean)
        self.one = np.ones(1, np.float32)

    def settings(self):
        return [{"nprobe": p} for p in self.nprobe if p <= self.n_clusters]

    def query(self, q, k, nprobe):
        q = np.asarray(q, dtype=np.float32)
        q = np.concatenate((_normalize(q[None])[0] if self.cosine else q, self.one))
        near = self.centroids @ q
        probes = (near.argpartition(nprobe - 1)[:nprobe] if nprobe < len(near)
                  else np.arange(len(near)))
        spans = [self.spans[j] for j in probes.tolist()]
        dist = np.concatenate([self.rows[a:b] @ q for a, b in spans])
        best = dist.argpartition(k - 1)[:k] if k < len(dist) else np.arange(len(dist))
        return np.concatenate([self.ids[a:b] for a, b in spans])[best[dist[best].argsort()]]

    def index_bytes(self):
        return self.rows.nbytes + self.ids.nbytes + self.centroids.nbytes


class CppLorann(Algorithm):
    """The C++ reference (PyPI ``lorann``), same n_clusters / global_dim / rank."""

    name = "lorann (C++)"
    requires = "lorann"

    def __init__(self, n_clusters, global_dim, rank=32, clusters=LorannWasm().clusters,
                 rerank=LorannWasm().rerank):
        self.n_clusters, self.global_dim, self.rank = n_clusters, global_dim, rank
        self.clusters, self.rerank = clusters, rerank

    def fit(self, data, distance):
        import lorann
        self.cosine = distance == "cosine"
        data = np.ascontiguousarray(_normalize(data) if self.cosine else data)
        metric = lorann.L2 if distance == "l2" else lorann.IP
        global_dim = None if self.global_dim >= data.shape[1] else self.global_dim
        self.index = lorann.LorannIndex(data, self.n_clusters, global_dim, quantization_bits=8,
                                        rank=self.rank, distance=metric, copy=True)
        self.index.build(n_threads=1)

    def settings(self):
        return [{"clusters_to_search": c, "points_to_rerank": r}
                for c in self.clusters if c <= self.n_clusters for r in self.rerank]

    def _q(self, q):
        q = np.ascontiguousarray(q, dtype=np.float32)
        if self.cosine:
            q = _normalize(q[None])[0] if q.ndim == 1 else _normalize(q)
        return q

    def query(self, q, k, clusters_to_search, points_to_rerank):
        return self.index.search(self._q(q), k, clusters_to_search, points_to_rerank, n_threads=1)

    def batch_query(self, queries, k, clusters_to_search, points_to_rerank):
        return self.index.search(self._q(queries), k, clusters_to_search, points_to_rerank,
                                 n_threads=1)

    def index_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            self.index.save(path)
            return os.path.getsize(path)


class _Faiss(Algorithm):
    requires = "faiss"

    def _prepare(self, data, distance):
        import faiss
        faiss.omp_set_num_threads(1)
        self.cosine = distance == "cosine"
        self.metric = faiss.METRIC_L2 if distance == "l2" else faiss.METRIC_INNER_PRODUCT
        return np.ascontiguousarray(_normalize(data) if self.cosine else data)

    def _q(self, q):
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        return _normalize(q) if self.cosine else q

    def query(self, q, k, **s):
        return self.batch_query(q, k, **s)[0]

    def index_bytes(self):
        import faiss
        return int(faiss.serialize_index(self.index).nbytes)


class FaissIVFFlat(_Faiss):
    """faiss IVF-Flat with the same number of clusters."""

    name = "faiss IVF-Flat"

    def __init__(self, n_clusters, nprobe=NPROBE):
        self.n_clusters, self.nprobe = n_clusters, nprobe

    def fit(self, data, distance):
        import faiss
        data = self._prepare(data, distance)
        quantizer = faiss.IndexFlat(data.shape[1], self.metric)
        self.index = faiss.IndexIVFFlat(quantizer, data.shape[1], self.n_clusters, self.metric)
        self.index.train(data)
        self.index.add(data)

    def settings(self):
        return [{"nprobe": p} for p in self.nprobe if p <= self.n_clusters]

    def batch_query(self, queries, k, nprobe):
        self.index.nprobe = nprobe
        return self.index.search(self._q(queries), k)[1]


class FaissHNSW(_Faiss):
    """faiss HNSW-Flat (M=32, efConstruction=100)."""

    name = "faiss HNSW"

    def __init__(self, m=32, ef_construction=100, ef_search=(10, 16, 24, 32, 48, 64, 96, 128, 256)):
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def fit(self, data, distance):
        import faiss
        data = self._prepare(data, distance)
        self.index = faiss.IndexHNSWFlat(data.shape[1], self.m, self.metric)
        self.index.hnsw.efConstruction = self.ef_construction
        self.index.add(data)

    def settings(self):
        return [{"efSearch": e} for e in self.ef_search]

    def batch_query(self, queries, k, efSearch):
        self.index.hnsw.efSearch = efSearch
        return self.index.search(self._q(queries), k)[1]
