"""Which clusters a filtered search probes, and whether it searches exactly.

Given the per-cluster estimates of passing points (:meth:`.Filter.bounds`)
and each query's distances to the centroids:

* **Adaptive probing** ("filtered"): clusters are taken in centroid order,
  skipping those where no point can pass, until the estimated passing points
  reach the *budget*: as many as the unfiltered search would score
  (``clusters_to_search`` times the mean cluster size) times the index's
  ``filter_factor`` (tuned at build time with random allow lists, see
  :mod:`..training.tuning`; 1 if untuned). Only passing points are scored
  and the best ``points_to_rerank`` of them reranked. A filter that passes
  1 % of the points thus probes about 100 times more clusters than the
  unfiltered search, and scores about as many points.
* **Exact** ("exact"): every passing point (in the clusters that may hold
  one) is reranked exactly; no approximate scoring. This is exact filtered
  search, and it is chosen when its estimated cost is the lower:

      exact:    rows_checked * ROW_COST + passing * d
      filtered: rows_probed * ROW_COST + min(budget, passing) * r
                + points_to_rerank * d

  in multiply-adds, where ``rows_checked`` are the points of every cluster
  that may hold a passing point, ``rows_probed`` the points of the clusters
  adaptive probing is expected to visit (``rows_checked * budget /
  passing``), ``d`` the vectors' dimension and ``r`` the scorer's rank.
"""

import numpy as np

#: the cost of enumerating one point and testing the filter on it, in
#: multiply-adds: measured on wordnet-minilm (python -m lorann_wasm.bench.filtered),
#: where the exact and the adaptive path cost the same at about 4 % of the points
ROW_COST = 6
#: the budget factor of an index without a tuned one
DEFAULT_FILTER_FACTOR = 1.0


def choose_path(estimate, sizes, budget, points_to_rerank, dim, rank):
    """``"exact"`` or ``"filtered"`` by the cost model above (module docstring)."""
    passing = float(estimate.sum())
    if passing <= 0:
        return "exact"
    checked = float(sizes[estimate > 0].sum())
    probed = min(checked, checked * budget / passing)
    exact = checked * ROW_COST + passing * dim
    adaptive = probed * ROW_COST + min(budget, passing) * rank + points_to_rerank * dim
    return "exact" if exact <= adaptive else "filtered"


def filtered_probes(distances, estimate, budget):
    """Per query, the clusters adaptive probing visits: a list of 1-D arrays.

    ``distances`` (b, C) to the centroids; clusters are taken nearest first,
    those with estimate 0 skipped, up to and including the one at which the
    estimates reach ``budget``.
    """
    order = np.argsort(distances, axis=1, kind="stable")
    est = estimate[order]
    reached = np.cumsum(est, axis=1) >= budget
    count = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, order.shape[1])
    return [row[:c][e[:c] > 0] for row, e, c in zip(order, est, count)]


def passing_clusters(estimate, queries):
    """The exact path's probes: every cluster that may hold a passing point, per query."""
    probes = np.flatnonzero(estimate > 0)
    return [probes] * queries
