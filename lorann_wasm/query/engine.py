"""The one query path of a LoRANN index, resident or lazily fetched.

A search is planned, then finished:

1. :meth:`QueryEngine.plan` validates the queries and settings, reduces the
   queries, probes the clusters and asks the cluster store which byte
   ranges are still missing (none for a resident index). The
   :class:`Plan` is a value the caller may inspect.
2. A caller that fetches bytes itself (the browser worker, in parallel)
   hands them over with :meth:`QueryEngine.supply`. Once the probed
   clusters are here, the approximate stage (:mod:`.candidates`) runs over
   a view of them; if the store still lacks the candidates' rerank vectors
   (lazily loaded files with row checksums), ``plan.ranges`` then lists
   those, to be fetched and supplied the same way (``plan.stage``:
   ``"clusters"``, ``"vectors"``, ``"ready"``).
3. :meth:`QueryEngine.search` given the plan finishes it, reading through
   the index's reader whatever was not supplied: exact reranking
   (:mod:`.rerank`) of the candidates.

A filtered search (``where=``, ``allow=``; :mod:`..filtering`) plans from the
prefix's attribute summaries which clusters to probe, per query, and takes
one of two paths (``plan.path``, chosen by :mod:`..filtering.planner`):
"filtered" scores only the passing points of adaptively probed clusters;
"exact" reranks every passing point. An unfiltered search (or one whose
filter passes every point) takes the path "approximate".
"""

import dataclasses
from collections import OrderedDict

import numpy as np

from .._checks import as_prepared_queries
from ..filtering.planner import choose_path, cluster_weights, filtered_probes, passing_clusters
from ..filtering.predicates import compile_filter, filter_key
from ..params import SearchSettings
from .candidates import BATCH_BLOCK, candidates_batch, candidates_filtered, candidates_single
from .rerank import brute_force, exact_l2, rerank, rerank_one
from .vectors import RerankVectors


@dataclasses.dataclass
class Plan:
    """A validated search and the clusters it probes.

    ``queries`` (b, d) are prepared for the metric (normalised for cosine),
    ``reduced`` their projections and ``probes`` (b, c) the clusters each
    probes; for a single 1-D query (``single``) the last two are 1-D.
    ``runs`` and ``ranges`` are the clusters still to fetch and their byte
    ranges (empty for a resident index); ``fetched`` counts what this
    search fetched.

    A filtered search has its :class:`.Filter` in ``filter``, ``probes`` as a
    list of 1-D arrays (one per query: adaptive probing probes more or fewer
    clusters per query) and ``passing``, the estimated number of points
    that pass; ``path`` is "approximate", "filtered" or "exact".
    """

    queries: np.ndarray
    single: bool
    settings: SearchSettings
    reduced: np.ndarray
    probes: np.ndarray
    runs: list
    ranges: list
    fetched: dict
    engine_id: int
    #: "clusters": ``ranges`` are probed clusters; "vectors": candidates' vector rows;
    #: "ready": nothing is missing
    stage: str = "clusters"
    view: tuple = None  # (ClusterArrays, probes renumbered into it)
    candidates: np.ndarray = None
    filter: object = None
    path: str = "approximate"
    passing: float = None
    bounded: object = None
    budget: float = None  # adaptive probing's, in (weighted) points

    @property
    def probed(self):
        """Every probe of the plan as one flat array (clusters, with repeats)."""
        if isinstance(self.probes, list):
            return np.concatenate(self.probes) if self.probes else np.zeros(0, np.intp)
        return np.ravel(self.probes)


@dataclasses.dataclass
class BoundedFilter:
    """A compiled :class:`.Filter` with its per-cluster ``estimate`` of passing
    points, whether ``everyone`` passes, and (resident indexes, once asked) which
    points pass (``mask``, per position), their ``positions`` and the clusters
    that hold them (``owners``)."""

    filter: object
    estimate: np.ndarray
    everyone: bool
    mask: np.ndarray = None
    positions: np.ndarray = None
    owners: np.ndarray = None
    subset: object = None  # the passing rows' RerankVectors, for the exact path
    weights: np.ndarray = None  # toward the probing budget (planner.cluster_weights)
    factors: list = None  # the tuned factors the weights were made with


def pad_results(ids, dists, k):
    """Pad the last axis to ``k`` with id -1 and distance inf (fewer candidates than k)."""
    if ids.shape[-1] < k:
        pad = [(0, 0)] * (ids.ndim - 1) + [(0, k - ids.shape[-1])]
        ids = np.pad(ids, pad, constant_values=-1)
        dists = np.pad(dists, pad, constant_values=np.inf)
    return ids, dists


class QueryEngine:
    """Search over an index's :class:`.Prefix` and a cluster store (see :mod:`.stores`).

    Subclasses set ``_params`` (:class:`.IndexParams`), ``_prefix`` and
    ``_store``, and may override :meth:`_check_ready`.
    """

    _params = _prefix = _store = None
    #: the plan of the latest search (what it probed and fetched)
    last_plan = None

    def _check_ready(self):
        pass

    @property
    def params(self):
        """A copy of the build and default search parameters (and the tuning record)."""
        return self._params.to_dict()

    @property
    def n(self):
        return self._params.n

    @property
    def dim(self):
        return self._params.dim

    @property
    def distance(self):
        return self._params.distance

    def plan(self, q, k=10, clusters_to_search=None, points_to_rerank=None,
             target_recall=None, where=None, allow=None, filter_path=None):
        """Validate a search and probe its clusters: a :class:`Plan`.

        Arguments as :meth:`search`. ``plan.ranges`` are the byte ranges
        still missing; fetch them and :meth:`supply` them, or let
        :meth:`search` read them through the index's reader.
        """
        self._check_ready()
        p = self._params
        queries, single = as_prepared_queries(q, p.dim, p.distance)
        settings = p.search_settings(k, clusters_to_search, points_to_rerank, target_recall)
        if filter_path not in (None, "filtered", "exact"):
            raise ValueError(f"filter_path must be None, 'filtered' or 'exact', got "
                             f"{filter_path!r}")
        bounded = None if where is None and allow is None else self._bounded(where, allow)
        plan = Plan(queries, single, settings, None, None, [], [],
                    {"bytes": 0, "requests": 0, "clusters": 0}, id(self))
        if bounded is not None:
            self._plan_filtered(plan, bounded, filter_path)
        if plan.path != "exact":  # (the exact path needs neither)
            plan.reduced = self._prefix.reduce(queries[0] if single else queries)
        if plan.filter is None:
            plan.probes = self._prefix.probe(plan.reduced, settings.clusters_to_search)
        elif plan.path == "filtered":
            count = 1 if single else len(queries)
            distances = self._prefix.distances(plan.reduced.reshape(count, -1))
            plan.probes = filtered_probes(distances, bounded.weights, plan.budget)
        plan.runs, plan.ranges = self._store.missing(plan.probed)
        self._advance(plan)
        return plan

    #: filters most recently used, with their bounds (a page of facets repeats a few)
    FILTERS_KEPT = 16

    def _bounded(self, where, allow):
        """The :class:`BoundedFilter` of ``where`` and ``allow`` (None: they filter
        nothing), from the cache of recent filters when it is there."""
        cache = self.__dict__.setdefault("_filters", OrderedDict())
        key = filter_key(where, allow)
        if key is not None and key in cache:
            cache.move_to_end(key)
            return cache[key]
        p, sizes = self._params, self._prefix.sizes
        flt = compile_filter(where, allow, p.attributes, p.n)
        if flt is None:
            return None
        # From the prefix's summaries alone, also when every point is at hand: a
        # lazily loaded index then plans the same probes and finds the same points.
        estimate, everyone = flt.bounds(self._prefix.summaries, sizes)
        bounded = BoundedFilter(flt, estimate, bool(everyone[sizes > 0].all()))
        if self._store.resident:  # test every point once per filter
            arrays = self._store.arrays
            bounded.mask = flt.passes(arrays)
            bounded.positions = np.flatnonzero(bounded.mask)
            bounded.owners = np.searchsorted(arrays.offsets, bounded.positions, side="right") - 1
        if key is not None:
            cache[key] = bounded
            while len(cache) > self.FILTERS_KEPT:
                cache.popitem(last=False)
        return bounded

    def _plan_filtered(self, plan, bounded, filter_path):
        """Choose the path and each query's probes (see :mod:`..filtering.planner`);
        a filter every point passes is dropped."""
        if bounded.everyone:
            return
        p, flt, estimate = self._params, bounded.filter, bounded.estimate
        factors = (p.tuning or {}).get("filter_factors")
        if bounded.weights is None or bounded.factors != factors:
            bounded.weights = cluster_weights(factors, estimate, self._prefix.sizes)
            bounded.factors = factors
        budget = plan.budget = plan.settings.clusters_to_search * p.n / p.n_clusters
        plan.filter, plan.passing, plan.bounded = flt, float(estimate.sum()), bounded
        plan.path = filter_path or choose_path(estimate, bounded.weights, budget,
                                               plan.settings.points_to_rerank, p.dim,
                                               p.global_dim, p.rank, not self._store.resident)
        if plan.path == "exact":
            plan.probes = passing_clusters(estimate, 1 if plan.single else len(plan.queries))

    def _received(self, plan):
        """What ``plan.ranges`` asked for is here: on to the next stage."""
        plan.runs, plan.ranges = [], []
        if plan.stage == "clusters":
            self._advance(plan)
        else:
            plan.stage = "ready"

    def _advance(self, plan):
        """With the probed clusters here: the candidates, and the vectors they still need."""
        if plan.stage == "clusters" and not plan.runs:
            if plan.filter is None:
                plan.view = self._store.view(plan.probes)
                plan.candidates = self._candidates(plan)
            else:
                plan.candidates = self._filtered_candidates(plan)
                if self._probe_further(plan):
                    plan.runs, plan.ranges = self._store.missing(plan.probed)
                    self._advance(plan)
                    return
            if plan.view is None:  # nothing can pass the filter
                plan.stage = "ready"
                return
            plan.runs, plan.ranges = self._store.missing_vectors(plan.view[0], plan.candidates)
            plan.stage = "vectors" if plan.runs else "ready"

    def _probe_further(self, plan):
        """Estimates can be high (numeric ranges, several conditions): a query whose
        probes held fewer than k passing points probes every cluster that may hold
        one. Returns whether any did."""
        if plan.path != "filtered":
            return False
        found = plan.candidates.reshape(len(plan.probes), -1)
        short = (found >= 0).sum(axis=1) < plan.settings.k
        everywhere = np.flatnonzero(plan.bounded.estimate > 0)
        more = False
        for i in np.flatnonzero(short):
            if len(plan.probes[i]) < len(everywhere):
                rest = np.setdiff1d(everywhere, plan.probes[i])
                plan.probes[i] = np.concatenate([plan.probes[i], rest])
                more = True
        if more:
            plan.view, plan.candidates = None, None
        return more

    def supply(self, plan, buffers):
        """Hand over the responses to ``plan.ranges`` (byte buffers, in order); the
        plan then lists what it needs next (see the module docstring)."""
        self._own(plan)
        if plan.stage == "clusters":
            self._store.supply(plan.runs, buffers, plan.fetched)
        elif plan.stage == "vectors":
            self._store.supply_vectors(plan.view[0], plan.runs, buffers, plan.fetched)
        elif len(buffers):
            raise ValueError("this search needs nothing more: there is nothing to supply")
        else:
            return
        self._received(plan)

    def _own(self, plan):
        if not isinstance(plan, Plan) or plan.engine_id != id(self):
            raise ValueError("this plan was made by another index")

    def search(self, q, k=10, clusters_to_search=None, points_to_rerank=None,
               return_distances=False, target_recall=None, where=None, allow=None,
               filter_path=None):
        """Approximate ``k`` nearest neighbours of ``q``.

        ``q`` is (d,) for one query, giving 1-D results, or (b, d), giving
        (b, k); or a :class:`Plan` from :meth:`plan` (then the other search
        arguments are the plan's). Returns int64 ids, best first; with
        ``return_distances`` returns ``(ids, distances)``. The
        ``clusters_to_search`` best clusters are scored approximately and the
        best ``max(k, points_to_rerank)`` points are reranked exactly; both
        default to the index's stored presets (``params``). ``target_recall``
        instead picks them from the build-time tuning table (the cheapest
        setting measured to reach at least that recall@10). If fewer than k
        points are reached, the tail is padded with id -1 and distance inf.

        ``where`` (conditions on the index's attributes, see
        :mod:`lorann_wasm.filtering.predicates`) and ``allow`` (ids, or a
        boolean mask over ids) restrict the results to the points that pass
        both: the k nearest of those, never another; fewer than k if fewer
        pass. How such a search ran is in ``last_plan.path`` ("filtered":
        adaptive probing, "exact": every passing point reranked);
        ``filter_path`` forces one of the two.
        """
        if isinstance(q, Plan):
            self._own(q)
            plan = q
        else:
            plan = self.plan(q, k, clusters_to_search, points_to_rerank, target_recall,
                             where, allow, filter_path)
        self.last_plan = plan
        try:
            if plan.stage == "clusters":  # not supplied: read through the reader
                self._store.fetch_missing(plan.probed, plan.fetched)
                self._received(plan)
            if plan.stage == "vectors":
                self._store.fetch_vectors(plan.view[0], plan.runs, plan.fetched)
                self._received(plan)
            ids, dists = self._finish(plan)
        finally:
            self._store.release()
        return (ids, dists) if return_distances else ids

    def _candidates(self, plan):
        """The points to rerank: positions in the plan's view, best first (-1: none)."""
        to_rerank = plan.settings.points_to_rerank
        arrays, probes = plan.view
        if plan.single:
            return candidates_single(arrays, plan.reduced, probes, to_rerank)
        blocks = [candidates_batch(arrays, plan.reduced[s:s + BATCH_BLOCK],
                                   probes[s:s + BATCH_BLOCK], to_rerank)
                  for s in range(0, len(probes), BATCH_BLOCK)]
        width = max(b.shape[1] for b in blocks)
        return np.concatenate(
            [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1) for b in blocks])

    def _filtered_candidates(self, plan):
        """Per query the passing points of its probes, all of them ("exact") or the
        ``points_to_rerank`` best by approximate score ("filtered"), -1 padded."""
        flat = plan.probed
        count = len(plan.probes)
        if not flat.size:
            return np.full((0,) if plan.single else (count, 0), -1, dtype=np.intp)
        arrays, local = self._store.view(flat)
        split = np.split(local, np.cumsum([len(pr) for pr in plan.probes])[:-1])
        plan.view = (arrays, split)
        to_rerank = plan.settings.points_to_rerank
        bounded = plan.bounded
        if self._store.resident:  # the view is the whole index: tested once per filter
            mask, passing, owner = bounded.mask, bounded.positions, bounded.owners
        else:  # one test of every point of the probed clusters
            mask = plan.filter.passes(arrays)
            passing = np.flatnonzero(mask)
            owner = np.searchsorted(arrays.offsets, passing, side="right") - 1
        if plan.path == "exact":  # every passing point, the same for every query
            found = [passing] * count
            v = arrays.vectors
            if (self._store.resident and bounded.subset is None
                    and len(passing) * v.codes[:1].nbytes <= self.SUBSET_BYTES):
                bounded.subset = RerankVectors(
                    v.codes[passing], v.sq_norms[passing], offset=v.offset, scale=v.scale,
                    vector_scale=None if v.vector_scale is None else v.vector_scale[passing])
        else:
            found = []
            reduced = plan.reduced.reshape(count, -1)
            slot = np.empty(arrays.n_clusters, dtype=np.intp)
            for i, probes in enumerate(split):
                slot.fill(-1)
                slot[probes] = np.arange(len(probes))
                which = slot[owner]
                keep = which >= 0
                positions, which = passing[keep], which[keep]
                if 4 * len(positions) >= arrays.sizes[probes].sum():  # dense: whole blocks
                    found.append(candidates_single(arrays, reduced[i], probes, to_rerank, mask))
                else:
                    found.append(candidates_filtered(arrays, reduced[i], probes, positions,
                                                     which, to_rerank))
        if plan.single:
            return found[0]
        width = max(len(f) for f in found)
        out = np.full((count, width), -1, dtype=np.intp)
        for i, f in enumerate(found):
            out[i, :len(f)] = f
        return out

    #: an exact filtered search keeps its passing rows' vectors side by side (one
    #: product instead of a gather per query) when they take at most this
    SUBSET_BYTES = 32 << 20

    def _finish_exact(self, plan, arrays):
        """Exact search over the passing rows' vectors, kept contiguous."""
        subset, positions, k = plan.bounded.subset, plan.bounded.positions, plan.settings.k
        distance = self._params.distance
        rows, dists = brute_force(subset, plan.queries, min(k, len(positions)), distance)
        if distance == "l2":
            rows, dists = exact_l2(subset, plan.queries, rows, dists)
        ids = arrays.ids[positions[rows]]
        return pad_results(ids[0], dists[0], k) if plan.single else pad_results(ids, dists, k)

    def _finish(self, plan):
        k = plan.settings.k
        if plan.view is None:  # nothing passed the filter
            shape = (0,) if plan.single else (len(plan.queries), 0)
            return pad_results(np.zeros(shape, np.int64), np.zeros(shape, np.float32), k)
        arrays, candidates = plan.view[0], plan.candidates
        if plan.path == "exact" and plan.bounded.subset is not None:
            return self._finish_exact(plan, arrays)
        if plan.single:
            vectors, rows, back = arrays.rerank_view(candidates)
            rows, dists = rerank_one(vectors, plan.queries[0], rows, k, self._params.distance)
            return pad_results(arrays.ids[rows if back is None else back[rows]], dists, k)
        vectors, rows, back = arrays.rerank_view(candidates)
        rows, dists = rerank(vectors, plan.queries, rows, k, self._params.distance)
        positions = np.maximum(rows, 0) if back is None else back[np.maximum(rows, 0)]
        ids = np.where(rows >= 0, arrays.ids[positions], -1)
        return pad_results(ids, dists, k)
