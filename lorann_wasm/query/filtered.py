"""The filtered parts of the query path (``where=``, ``allow=``), for :mod:`.engine`.

A search's filter is compiled and bounded per cluster once
(:class:`RecentFilters`, which keeps the last few), then each search:

1. :func:`plan_filtered` chooses the path (:mod:`..filtering.planner`) and,
   for "exact", the probes: every cluster that may hold a passing point (the
   "filtered" path's probes come from the centroid distances, in the engine);
2. :func:`filtered_candidates` finds each query's candidates among the
   probed clusters' passing points; :func:`probe_further` widens the probes
   of a query that found fewer than k;
3. :func:`finish_exact` answers an exact search from the passing rows'
   vectors, kept side by side.
"""

import dataclasses
from collections import OrderedDict

import numpy as np

from ..filtering.planner import (DENSE, choose_path, cluster_weights, filtered_probes,
                                 passing_clusters)
from ..filtering.predicates import compile_filter, filter_key
from ..metrics import is_euclidean
from .candidates import candidates_filtered, candidates_single
from .rerank import brute_force, exact_l2
from .vectors import RerankVectors

#: an exact filtered search keeps its passing rows' vectors side by side (one
#: product instead of a gather per query) when they take at most this
SUBSET_BYTES = 32 << 20


@dataclasses.dataclass
class BoundedFilter:
    """A compiled :class:`.Filter` with its per-cluster ``estimate`` of passing
    points and whether ``everyone`` passes; for a resident index also which
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
    paths: dict = dataclasses.field(default_factory=dict)  # (budget, R, fetching) -> path
    #: each cluster's passing points as counted, NaN until its points were tested
    #: (every cluster's at once for a resident index; a lazy one's as they arrive)
    counts: np.ndarray = None


class RecentFilters:
    """The :class:`BoundedFilter` of the filters searched most recently (a page of
    facets repeats a few), for one index's ``params``, ``prefix`` and ``store``."""

    KEPT = 16

    def __init__(self):
        self._cache = OrderedDict()

    def get(self, where, allow, params, prefix, store):
        """The bounded filter of ``where`` and ``allow`` (None: they filter nothing)."""
        key = filter_key(where, allow)
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        flt = compile_filter(where, allow, params.attributes, params.n)
        if flt is None:
            return None
        # From the prefix's summaries alone, also when every point is at hand: a
        # lazily loaded index then plans the same probes and finds the same points.
        estimate, everyone = flt.bounds(prefix.summaries, prefix.sizes)
        bounded = BoundedFilter(flt, estimate, bool(everyone[prefix.sizes > 0].all()),
                                counts=np.full(len(estimate), np.nan))
        if store.resident:  # test every point once per filter
            arrays = store.arrays
            bounded.mask = flt.passes(arrays)
            bounded.positions = np.flatnonzero(bounded.mask)
            bounded.owners = np.searchsorted(arrays.offsets, bounded.positions, side="right") - 1
            bounded.counts = np.bincount(bounded.owners, minlength=len(estimate)).astype(float)
        if key is not None:
            self._cache[key] = bounded
            while len(self._cache) > self.KEPT:
                self._cache.popitem(last=False)
        return bounded


def plan_filtered(plan, bounded, filter_path, params, sizes, fetching):
    """Choose the plan's path and probing budget; the exact path's probes too.
    A filter every point passes is left out of the plan (unfiltered search)."""
    if bounded.everyone:
        return
    factors = (params.tuning or {}).get("filter_factors")
    if bounded.weights is None or bounded.factors != factors:
        bounded.weights = cluster_weights(factors, bounded.estimate, sizes)
        bounded.factors, bounded.paths = factors, {}
    plan.budget = plan.settings.clusters_to_search * params.n / params.n_clusters
    if plan.settings.clusters_to_search >= params.n_clusters:
        plan.budget = np.inf  # every cluster asked for: each that may hold a passing point
    plan.filter, plan.passing, plan.bounded = bounded.filter, float(bounded.estimate.sum()), bounded
    if not filter_path:  # the same settings choose the same path: choose once
        key = (plan.budget, plan.settings.points_to_rerank, fetching)
        if key not in bounded.paths:
            bounded.paths[key] = choose_path(bounded.estimate, bounded.weights, sizes, *key[:2],
                                             params.dim, params.global_dim, params.rank,
                                             fetching)
        filter_path = bounded.paths[key]
    plan.path = filter_path
    if plan.path == "exact":
        plan.probes = passing_clusters(bounded.estimate, 1 if plan.single else len(plan.queries))


def filtered_candidates(plan, store):
    """Per query the passing points of its probes, all of them ("exact") or the
    ``points_to_rerank`` best by approximate score ("filtered"), -1 padded; sets
    ``plan.view``."""
    flat = plan.probed
    count = len(plan.probes)
    if not flat.size:
        return np.full((0,) if plan.single else (count, 0), -1, dtype=np.intp)
    if plan.path == "exact" and plan.bounded.subset is not None:  # finish_exact needs none
        plan.view = (store.arrays, None)
        return np.zeros((0,) if plan.single else (count, 0), dtype=np.intp)
    arrays, local = store.view(flat)
    split = np.split(local, np.cumsum([len(pr) for pr in plan.probes])[:-1])
    plan.view = (arrays, split)
    to_rerank = plan.settings.points_to_rerank
    bounded = plan.bounded
    if store.resident:  # the view is the whole index: tested once per filter
        mask, passing, owner = bounded.mask, bounded.positions, bounded.owners
    else:  # one test of every point of the probed clusters
        mask = plan.filter.passes(arrays)
        passing = np.flatnonzero(mask)
        owner = np.searchsorted(arrays.offsets, passing, side="right") - 1
        seen = np.array([c.j for c in arrays.clusters], dtype=np.intp)
        bounded.counts[seen] = np.bincount(owner, minlength=len(seen))
    if plan.path == "exact":  # every passing point, the same for every query
        found = [passing] * count
        v = arrays.vectors
        if (store.resident and bounded.subset is None
                and len(passing) * v.codes[:1].nbytes <= SUBSET_BYTES):
            bounded.subset = v.subset(passing)
    else:
        found = []
        reduced = plan.reduced.reshape(count, -1)
        slot = np.empty(arrays.n_clusters, dtype=np.intp)
        for i, probes in enumerate(split):  # a loop over queries, not points
            slot.fill(-1)
            slot[probes] = np.arange(len(probes))
            which = slot[owner]
            keep = which >= 0
            positions, which = passing[keep], which[keep]
            if len(positions) >= DENSE * arrays.sizes[probes].sum():  # score whole blocks
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


def settle_probes(plan, sizes):
    """Adaptive probing again, with each cluster's passing points as counted where
    they have been (estimated from the summaries elsewhere): the estimates of a
    range, or of conditions taken as independent, can be far off, and a query far
    from the passing points (one class's images asked for from another's) then
    stopped short. Returns whether the probes changed: a lazily loaded index
    fetches the clusters now wanted and settles again, until every cluster its
    probes count on has been counted, so it ends with the resident index's probes."""
    bounded = plan.bounded
    known = ~np.isnan(bounded.counts)
    if plan.widened or not known.any():  # (probe_further's widening is final)
        return False
    passing = np.where(known, bounded.counts, bounded.estimate)
    weights = cluster_weights(bounded.factors, passing, sizes)
    probes = filtered_probes(plan.distances, weights, plan.budget)
    if len(probes) == len(plan.probes) and all(
            np.array_equal(a, b) for a, b in zip(probes, plan.probes)):
        return False
    plan.probes = probes
    plan.view, plan.candidates = None, None
    return True


def probe_further(plan):
    """Estimates can be high (numeric ranges, several conditions): a query whose
    probes held fewer than k passing points probes every cluster that may hold
    one. Returns whether any did (the plan's view and candidates are then reset)."""
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
        plan.widened = True
    return more


def finish_exact(plan, arrays, distance):
    """``(ids, distances)`` of an exact search over the passing rows' vectors, kept
    side by side (``plan.bounded.subset``), unpadded."""
    subset, positions, k = plan.bounded.subset, plan.bounded.positions, plan.settings.k
    if not len(positions):  # the summaries could not rule it out, but no point passes
        shape = (0,) if plan.single else (len(plan.queries), 0)
        return np.zeros(shape, np.int64), np.zeros(shape, np.float32)
    rows, dists = brute_force(subset, plan.queries, min(k, len(positions)), distance)
    if is_euclidean(distance):
        rows, dists = exact_l2(subset, plan.queries, rows, dists)
    ids = arrays.ids[positions[rows]]
    return (ids[0], dists[0]) if plan.single else (ids, dists)
