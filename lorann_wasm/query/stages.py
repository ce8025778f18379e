"""The query path's steps, one call each, over a resident index.

For code that must run the engine's own functions rather than a copy of them:
the benchmark floor (``lorann_wasm.bench``), the stage profiler
(``build_scripts/measure/profile_query.py``) and build-time tuning. A search is
``prepare`` -> ``reduce`` -> ``probe`` -> ``candidates`` -> ``rerank`` ->
``ids``; :meth:`.QueryEngine.search` does the same with validation, plans,
filters and padding around it.
"""

import numpy as np

from .._checks import as_prepared_queries
from ..filtering.predicates import compile_filter
from .candidates import candidates_blocked, candidates_single
from .rerank import rerank, rerank_one


class Stages:
    """``prefix`` (:class:`.Prefix`), ``arrays`` (:class:`.ClusterArrays`, every point)
    and ``params`` (:class:`.IndexParams`) of a resident index, and its query steps."""

    def __init__(self, prefix, arrays, params):
        self.prefix, self.arrays, self.params = prefix, arrays, params

    def prepare(self, q):
        """``q`` (d,) or (b, d) as the engine searches it (float32, unit length for cosine)."""
        matrix, single = as_prepared_queries(q, self.params.dim, self.params.distance)
        return matrix[0] if single else matrix

    def reduce(self, q):
        """The query in the global projection's space."""
        return self.prefix.reduce(q)

    def probe(self, reduced, clusters, ordered=False):
        """The ``clusters`` nearest clusters of each query (by centroid)."""
        return self.prefix.probe(reduced, clusters, ordered=ordered)

    def candidates(self, reduced, probes, count):
        """Positions of the ``count`` best approximate candidates: (R,) for one query,
        (b, R) (-1 where fewer) for several."""
        if reduced.ndim == 1:
            return candidates_single(self.arrays, reduced, probes, count)
        return candidates_blocked(self.arrays, reduced, probes, count)

    def rerank(self, q, candidates, k):
        """``(positions, distances)`` of the ``k`` nearest candidates, by exact distance."""
        if q.ndim == 1:
            return rerank_one(self.arrays.vectors, q, candidates, k, self.params.distance)
        return rerank(self.arrays.vectors, q, candidates, k, self.params.distance)

    def ids(self, positions):
        """User ids of positions (-1 stays -1)."""
        return np.where(positions >= 0, self.arrays.ids[np.maximum(positions, 0)], -1)

    def passing(self, where=None, allow=None):
        """Which ids pass a filter, by the index's own per-point test: (n,) bool."""
        mask = np.ones(self.params.n, dtype=bool)
        flt = compile_filter(where, allow, self.params.attributes, self.params.n)
        if flt is not None:
            mask[self.arrays.ids] = flt.passes(self.arrays)
        return mask
