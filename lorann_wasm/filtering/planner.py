"""Which clusters a filtered search probes, and whether it searches exactly.

Given the per-cluster estimates of passing points (:meth:`.Filter.bounds`)
and each query's distances to the centroids:

* **Adaptive probing** ("filtered"): clusters are taken in centroid order,
  skipping those where no point can pass, until their *weights* reach the
  budget: as many points as the unfiltered search would score
  (``clusters_to_search`` times the mean cluster size). A cluster's weight
  is its estimated passing points divided by a factor that depends on the
  share of its points that pass (:func:`cluster_weights`). The factors are
  tuned at build time with random allow lists passing 50 %, 10 % and 1 % of
  the points (:mod:`..training.tuning`), and are 1 for a share of 1: where
  a filter passes a whole neighbourhood (a filter correlated with the
  vectors, such as a class), probing goes as deep as unfiltered search;
  where it passes a thin spread of points, fewer passing points suffice
  (measured on Fashion-MNIST: factors 0.5, 0.35, 0.25). Only passing points
  are scored and the best ``points_to_rerank`` of them reranked.
* **Exact** ("exact"): every passing point (in the clusters that may hold
  one) is reranked exactly; no approximate scoring. This is exact filtered
  search, and it is chosen when its estimated cost is the lower. In units of
  one reranking multiply-add:

      exact:    EXACT_COST * passing * d                  (one product, rows side by side)
      filtered: A_COST * min(2 * probed, C) * g * r       (q A_j, see candidates)
                + reach * r * (SCORE_COST * passing in sparse clusters
                               + points of dense clusters)  (scoring)
                + points_to_rerank * d

  where ``reach`` = min(1, budget / total weight) is the share of the
  clusters that may hold a passing point adaptive probing is expected to
  visit, ``probed`` their number, ``d`` the vectors' dimension, ``g`` the
  reduced one and ``r`` the scorer's rank. A cluster is dense where at least
  :data:`DENSE` of its points pass: it is scored whole, block by block, like
  unfiltered search; in a sparse one each passing point is gathered alone. The unit is a multiply-add of reranking gathered
  rows; the constants are measured natively: exact search over the passing
  rows kept side by side, and one product with all ``A_j``, run at about
  twice that speed; scoring a passing point, a gather of one row of ``B``,
  at about a twentieth (the two paths cost the same at about 2 % passing on
  Fashion-MNIST and 10 % on wordnet-minilm, ``lorann-wasm bench-filters``).
"""

import numpy as np

#: the relative costs of the module docstring's model (measured, see there)
EXACT_COST = 0.5
#: the share of a probed cluster's points passing from which it is scored whole
#: (candidates_single with a mask) rather than point by point
DENSE = 0.25
A_COST = 0.5
SCORE_COST = 20


def cluster_weights(factors, estimate, sizes):
    """Each cluster's weight toward the probing budget: its estimated passing points
    over the factor for its share passing (``factors``, the tuned ``[[share,
    factor], ...]``, interpolated in log(share), with factor 1 at share 1)."""
    pairs = sorted([[1.0, 1.0]] + [list(pair) for pair in factors or () if pair[0] < 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(sizes > 0, estimate / np.maximum(sizes, 1), 0.0)
        factor = np.interp(np.log(np.maximum(share, 1e-9)),
                           np.log([s for s, _ in pairs]), [f for _, f in pairs])
    return np.where(estimate > 0, estimate / factor, 0.0)


def choose_path(estimate, weights, sizes, budget, points_to_rerank, dim, reduced_dim, rank,
                fetching=False):
    """``"exact"`` or ``"filtered"`` by the cost model of the module docstring.

    When the clusters are ``fetching`` (lazy loading), bytes decide: the exact
    path fetches every cluster that may hold a passing point, so it is taken
    only where adaptive probing would fetch them all too."""
    passing = float(estimate.sum())
    if passing <= 0:
        return "exact"
    reach = min(1.0, budget / float(weights.sum()))
    if fetching:
        return "exact" if reach >= 1 else "filtered"
    probed = int((estimate > 0).sum()) * reach
    dense = estimate >= DENSE * sizes
    scored = SCORE_COST * float(estimate[~dense].sum()) + float(sizes[dense].sum())
    adaptive = (A_COST * min(2 * probed, len(estimate)) * reduced_dim * rank
                + reach * rank * scored + points_to_rerank * dim)
    return "exact" if EXACT_COST * passing * dim <= adaptive else "filtered"


def filtered_probes(distances, weights, budget):
    """Per query, the clusters adaptive probing visits: a list of 1-D arrays.

    ``distances`` (b, C) to the centroids; clusters are taken nearest first,
    those of weight 0 skipped, up to and including the one at which the
    weights reach ``budget``.
    """
    order = np.argsort(distances, axis=1, kind="stable")
    est = weights[order]
    reached = np.cumsum(est, axis=1) >= budget
    count = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, order.shape[1])
    return [row[:c][e[:c] > 0] for row, e, c in zip(order, est, count)]


def passing_clusters(estimate, queries):
    """The exact path's probes: every cluster that may hold a passing point, per query."""
    probes = np.flatnonzero(estimate > 0)
    return [probes] * queries
