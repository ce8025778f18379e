"""The one query path of a LoRANN index, resident or lazily fetched.

A search is planned, then finished:

1. :meth:`QueryEngine.plan` validates the queries and settings, reduces the
   queries, probes the clusters and asks the cluster store which byte
   ranges are still missing (none for a resident index). The
   :class:`Plan` is a value the caller may inspect.
2. A caller that fetches bytes itself (the browser worker, in parallel)
   hands them over with :meth:`QueryEngine.supply` (the clusters may come
   in parts as they arrive, :meth:`QueryEngine.supply_part`: they are then
   checked and kept while the rest are on their way). Once the probed
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

import numpy as np

from .._checks import as_prepared_queries
from ..filtering.planner import filtered_probes
from ..params import SearchSettings
from .candidates import candidates_blocked, candidates_single
from .filtered import (RecentFilters, filtered_candidates, finish_exact, plan_filtered,
                       probe_further, settle_probes)
from .rerank import rerank, rerank_one


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
    distances: np.ndarray = None  # (b, C) to the centroids, for adaptive probing
    widened: bool = False  # a query found too few: every cluster that may hold one

    @property
    def probed(self):
        """Every probe of the plan as one flat array (clusters, with repeats)."""
        if isinstance(self.probes, list):
            return np.concatenate(self.probes) if self.probes else np.zeros(0, np.intp)
        return self.probes.reshape(-1)  # (the method: np.ravel's wrapper costs more)


def _tests_attributes(plan):
    """Whether a search tests its points' attribute columns (a filter with conditions
    on them): a lazy reader then fetches them with the probed clusters."""
    return plan.filter is not None and bool(plan.filter.conditions)


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

    @property
    def stages(self):
        """The query path's steps over this index (:class:`.Stages`); resident only."""
        from .stages import Stages
        self._check_ready()
        if not self._store.resident:
            raise ValueError("stages need every cluster in memory: load the index whole")
        return Stages(self._prefix, self._store.arrays, self._params)

    def fetch_bytes(self, positional_ids=None):
        """Bytes a lazy reader fetches per point of this index's file: ``(scorer
        bytes, scorer ranges, rerank bytes, rerank ranges)``, see
        :func:`.format.index_file.fetch_bytes`; ``positional_ids=True``: of the
        file once its points are numbered by position (no ``ids`` to fetch,
        :meth:`.LorannIndex.number_by_position`)."""
        from ..format.index_file import fetch_bytes
        params = self._params
        if positional_ids is not None:
            params = params.replace(positional_ids=positional_ids)
        return fetch_bytes(params)

    def cluster_spans(self, clusters):
        """Storage positions ``[first, end)`` of each of ``clusters``, as Python ints."""
        offsets = self._prefix.offsets
        return [[int(offsets[j]), int(offsets[j + 1])] for j in np.asarray(clusters).tolist()]

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
        bounded = None
        if where is not None or allow is not None:
            if getattr(self, "_filters", None) is None:
                self._filters = RecentFilters()
            bounded = self._filters.get(where, allow, p, self._prefix, self._store)
        plan = Plan(queries, single, settings, None, None, [], [],
                    {"bytes": 0, "requests": 0, "clusters": 0}, id(self))
        if bounded is not None:
            plan_filtered(plan, bounded, filter_path, p, self._prefix.sizes,
                          fetching=not self._store.resident)
        if plan.path != "exact":  # (the exact path needs neither)
            plan.reduced = self._prefix.reduce(queries[0] if single else queries)
        if plan.filter is None:
            plan.probes = self._prefix.probe(plan.reduced, settings.clusters_to_search,
                                             ordered=False)
        elif plan.path == "filtered":
            count = 1 if single else len(queries)
            plan.distances = self._prefix.distances(plan.reduced.reshape(count, -1))
            plan.probes = filtered_probes(plan.distances, bounded.weights, plan.budget)
            if self._store.resident:  # every cluster's passing points are counted
                settle_probes(plan, self._prefix.sizes)
        self._ask_for_clusters(plan)
        self._advance(plan)
        return plan

    def _ask_for_clusters(self, plan):
        """Set what the plan's probed clusters still lack as its runs and ranges (their
        attribute columns too, for a search that tests them)."""
        plan.runs, plan.ranges = self._store.missing(plan.probed, _tests_attributes(plan))

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
                plan.candidates = filtered_candidates(plan, self._store)
                if plan.path == "filtered" and settle_probes(plan, self._prefix.sizes):
                    self._ask_for_clusters(plan)
                    self._advance(plan)
                    return
                if probe_further(plan):
                    self._ask_for_clusters(plan)
                    self._advance(plan)
                    return
            if plan.view is None:  # nothing can pass the filter
                plan.stage = "ready"
                return
            plan.runs, plan.ranges = self._store.missing_vectors(plan.view[0], plan.candidates)
            plan.stage = "vectors" if plan.runs else "ready"

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

    def run_ends(self, plan):
        """The counts of ``plan.ranges`` that end a run of clusters: those
        :meth:`supply_part` takes (none unless the plan is fetching clusters)."""
        if plan.stage != "clusters" or not plan.runs:
            return []
        return np.cumsum(self._store.range_counts(plan.runs)).tolist()

    def supply_part(self, plan, count, buffers):
        """Hand over the responses to the first ``count`` of ``plan.ranges`` (byte
        buffers, in order) while the rest are still on their way: the clusters they
        hold are checked and kept now, and the plan asks for the rest only.
        ``count`` must be one of :meth:`run_ends`; the last of them is handed over by
        :meth:`supply` (an empty list, if every run came in parts)."""
        self._own(plan)
        ends = self.run_ends(plan)
        if count not in ends:
            raise ValueError(f"{count} ranges do not end a run of clusters this plan asks for "
                             f"(runs end at {ends[:8]}{'...' if len(ends) > 8 else ''})")
        runs = sum(1 for end in ends if end <= count)
        self._store.supply(plan.runs[:runs], buffers, plan.fetched)
        plan.runs, plan.ranges = plan.runs[runs:], plan.ranges[count:]

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
            # not supplied: read through the reader, as many rounds as the plan needs
            # (a filtered query that found too few probes further: clusters again)
            while plan.stage != "ready":
                if plan.stage == "clusters":
                    self._store.fetch_missing(plan.probed, plan.fetched,
                                              _tests_attributes(plan))
                else:
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
        return candidates_blocked(arrays, plan.reduced, probes, to_rerank)

    def _finish(self, plan):
        k = plan.settings.k
        if plan.view is None:  # nothing passed the filter
            shape = (0,) if plan.single else (len(plan.queries), 0)
            return pad_results(np.zeros(shape, np.int64), np.zeros(shape, np.float32), k)
        arrays, candidates = plan.view[0], plan.candidates
        if plan.path == "exact" and plan.bounded.subset is not None:
            return pad_results(*finish_exact(plan, arrays, self._params.distance), k)
        if plan.single:
            vectors, rows, back = arrays.rerank_view(candidates)
            rows, dists = rerank_one(vectors, plan.queries[0], rows, k, self._params.distance)
            return pad_results(arrays.ids[rows if back is None else back[rows]], dists, k)
        vectors, rows, back = arrays.rerank_view(candidates)
        rows, dists = rerank(vectors, plan.queries, rows, k, self._params.distance)
        positions = np.maximum(rows, 0) if back is None else back[np.maximum(rows, 0)]
        ids = np.where(rows >= 0, arrays.ids[positions], -1)
        return pad_results(ids, dists, k)
