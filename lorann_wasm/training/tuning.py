"""Auto-tuning of the search parameters at build time.

The C++ reference leaves ``clusters_to_search`` and ``points_to_rerank`` to
the user. Here the build holds out a sample of training queries, computes
their exact neighbours, measures recall@k over a grid of settings and keeps,
for each target recall, the cheapest setting that reaches it. Cost is a
deterministic operation count per query (or what the caller counts, such
as a lazily loaded site's bytes per query), so the choice does not depend
on how busy the machine is:

    c * g * r            (q A_j for the probed clusters)
  + points(c) * r        (approximate scores of their points)
  + R * d                (exact reranking)

where ``points(c)`` is the mean number of points in the c probed clusters.

Filtered search (:mod:`..filtering.planner`) probes clusters until the
estimated passing points reach ``clusters_to_search`` times the mean
cluster size times a factor; :func:`tune_filter_factors` picks, for filters
passing 50 %, 10 % and 1 % of the points, the smallest factor at which
held-out queries filtered by random allow lists (independent of the
vectors: passing points are spread over every cluster) reach the target
recall.
When the tuning queries are data points (no training queries given), each
query's own id is left out of both its exact and its approximate results
(leave-one-out), so the estimate is not inflated by trivial self-matches.
"""

import numpy as np

from ..query.candidates import candidates_blocked
from ..query.rerank import WORK_VALUES, brute_force, candidate_distances, query_terms
from ..topk import smallest_k

TARGETS = (0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.98, 0.99, 0.995)
CLUSTER_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96,
                112, 128, 160, 192, 256)
RERANK_GRID = (10, 15, 20, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500)
#: stop adding clusters once the deepest rerank reaches this recall, or once the
#: best recall rose by less than PLATEAU in one step of the grid (wordnet-minilm:
#: +0.0004 from 128 to 160 clusters, then +0.0008 over the 182 clusters left,
#: which took 40 % of the tuning time)
SATURATED = 0.999
PLATEAU = 0.0005


def hits_per_query(found, truth):
    """How many of the true neighbours (rows of ``truth``) each query found, (b,)."""
    hits = (found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)
    return hits.any(axis=2).sum(axis=1)


def recall_at_k(found, truth, k):
    """Mean fraction of each query's true ``k`` nearest ids among its first ``k`` found."""
    found, truth = np.asarray(found)[:, :k], np.asarray(truth)[:, :k]
    return float(hits_per_query(found, truth).sum()) / (truth.shape[0] * k)


def _drop_self(ids, self_ids, k):
    """First k of each row after removing the query's own id (leave-one-out)."""
    if self_ids is None:
        return ids[:, :k]
    keep = ids != self_ids[:, None]
    # stable: move kept entries to the front, preserving order
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return ids[np.arange(ids.shape[0])[:, None], order]


def operations(c, points, R, arrays):
    """The default cost of a setting: multiply-adds per query (see the module's text)."""
    r, g = arrays.A_t.shape[1], arrays.A_t.shape[2]
    return c * g * r + points * r + R * arrays.vectors.codes.shape[1]


def measure_grid(prefix, arrays, queries, distance, k=10, self_ids=None, verbose=None,
                 truth_vectors=None, cost=operations):
    """Recall@k of every (clusters_to_search, points_to_rerank) on the grid.

    ``prefix`` and ``arrays`` are a resident index's :class:`.Prefix` and
    :class:`.ClusterArrays`.
    Returns a list of ``(c, R, recall, cost, standard error of recall)``. ``queries`` are prepared
    (normalised for cosine); ``self_ids`` are the queries' own ids for
    leave-one-out, or None; ``verbose`` a build progress reporter;
    ``truth_vectors`` the vectors (in the order of ``arrays``) exact search over
    which gives the true neighbours, by default ``arrays.vectors``; ``cost(c,
    points, R, arrays)`` the cost of a setting (``points``: the mean number of
    points in the c probed clusters), by default :func:`operations`.

    Work is shared across the grid: going from c to the next c' probed
    clusters scores only the clusters c..c' and merges them into each
    query's pool of the best ``R_max`` candidates so far (the best R of a
    union are the best R of the best R of one part and the other part), so
    every cluster is scored once per query, not once per c. A candidate's
    exact distance is taken once, when it enters the pool; every R is then a
    prefix. (Measured on wordnet-minilm, 500 queries: 12.2 s before exact
    distances were kept and recall was counted for all queries at once.)
    """
    vectors, ids = arrays.vectors, arrays.ids
    extra = 0 if self_ids is None else 1
    kk = k + extra
    truth_rows, _ = brute_force(truth_vectors or vectors, queries, kk, distance)
    truth = _drop_self(ids[truth_rows], self_ids, k)
    reduced = prefix.reduce(queries)
    c_grid = sorted({c for c in CLUSTER_GRID if c < arrays.n_clusters} | {arrays.n_clusters})
    probes = prefix.probe(reduced, c_grid[-1])
    r_max = min(RERANK_GRID[-1], ids.shape[0])
    r_grid = sorted({min(R, r_max) for R in RERANK_GRID if R >= kk})
    b = queries.shape[0]
    results = []
    pool = np.full((b, 0), -1, dtype=np.intp)  # each query's best candidates so far
    pool_scores = np.zeros((b, 0), dtype=np.float32)
    pool_exact = np.zeros((b, 0), dtype=np.float32)  # their exact distances
    c_prev, best_before = 0, -1.0
    for c in c_grid:
        points = float(arrays.sizes[probes[:, :c]].sum(axis=1).mean())
        new, new_scores = candidates_blocked(arrays, reduced, probes[:, c_prev:c], r_max,
                                             with_scores=True)
        both = np.concatenate([pool_scores, new_scores], axis=1)
        best = smallest_k(both, min(r_max, both.shape[1]))  # sorted: best first
        at = np.arange(b)[:, None]
        pool = np.concatenate([pool, new], axis=1)[at, best]
        pool_scores = both[at, best]
        # exact distances carry over with their entries: only newcomers need one
        pool_exact = np.concatenate([pool_exact, np.full(new.shape, np.nan, np.float32)],
                                    axis=1)[at, best]
        _fill_exact(vectors, queries, pool, pool_exact, distance)
        c_prev = c
        hits = np.zeros((len(r_grid), b))
        for i, R in enumerate(r_grid):
            rows = pool[at, smallest_k(pool_exact[:, :R], kk)]
            found = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
            hits[i] = hits_per_query(_drop_self(found, self_ids, k), truth)
        per_query = hits / k
        recalls = per_query.mean(axis=1)
        stderr = per_query.std(axis=1) / np.sqrt(b)
        results += [(c, R, float(rec), float(cost(c, points, R, arrays)), float(se))
                    for R, rec, se in zip(r_grid, recalls, stderr)]
        if verbose:
            verbose.step("tuning (clusters probed)", c, c_grid[-1])
        if recalls.max() >= SATURATED or recalls.max() - best_before < PLATEAU:
            break
        best_before = recalls.max()
    if verbose:
        verbose.step("tuning (clusters probed)", c_grid[-1], c_grid[-1])
    return results


def _fill_exact(vectors, queries, pool, exact, distance):
    """Fill the NaN entries of ``exact`` (b, R) with the exact distances from
    ``queries`` to the rows in ``pool`` (b, R); inf where ``pool`` is -1."""
    q, col = np.nonzero(np.isnan(exact))
    rows = pool[q, col]
    valid = rows >= 0
    exact[q[~valid], col[~valid]] = np.inf
    q, col, rows = q[valid], col[valid], rows[valid]
    coords, q_sq = query_terms(vectors, queries, distance)  # once per query, not per entry
    step = max(1, WORK_VALUES // coords.shape[1])
    for s in range(0, len(rows), step):
        sl = slice(s, s + step)
        terms = coords[q[sl]], None if q_sq is None else q_sq[q[sl]]
        exact[q[sl], col[sl]] = candidate_distances(vectors, None, rows[sl, None], distance,
                                                    terms)[:, 0]


def choose(results, targets=TARGETS, z=1.0):
    """For each target, the cheapest grid point reaching it: rows [target, c, R, recall].

    "Reaching" means ``recall - z * stderr >= target``: picking the cheapest
    of many noisy estimates that pass favours ones that are noisy-high, and
    the margin counters that. A target no setting reaches gets the cheapest
    setting within ``z`` standard errors of the most accurate one: settings
    the measurement cannot tell apart from the best (without this margin,
    int8 wordnet-minilm's out-of-reach targets got all 342 clusters probed
    for an estimated 0.966).
    """
    table = []
    best = max(results, key=lambda t: (t[2], -t[3]))
    near_best = min((t for t in results if t[2] >= best[2] - z * best[4]), key=lambda t: t[3])
    for target in targets:
        ok = [t for t in results if t[2] - z * t[4] >= target]
        c, R, rec, _, _ = min(ok, key=lambda t: t[3]) if ok else near_best
        table.append([float(target), int(c), int(R), round(float(rec), 4)])
    return table


#: budget factors tried, in increasing order; the shares of points the random allow
#: lists of :func:`tune_filter_factors` pass; the queries it uses, at most
FILTER_FACTORS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
FILTER_SHARES = (0.5, 0.1, 0.01)
FILTER_QUERIES = 200
#: recall gains below this (200 queries estimate recall@10 to about 0.005) count as none
FILTER_FLAT = 0.003


def tune_filter_factors(arrays, search, queries, self_ids, target, k, distance, seed=0,
                        truth_vectors=None):
    """``[[share, factor], ...]``: for each of :data:`FILTER_SHARES`, the smallest
    :data:`FILTER_FACTORS` entry at which filtered search of ``queries`` (at most
    :data:`FILTER_QUERIES`) under a random allow list passing that share of the
    points (independent of the vectors) reaches ``target`` recall@k; if none
    does (the unfiltered setting itself may fall a little short), the first
    within :data:`FILTER_FLAT` of the best recall measured. ``self_ids``
    (queries that are data points) are left out of every allow list.

    ``arrays`` are the index's :class:`.ClusterArrays`; ``search(queries, allow,
    [[share, factor]])`` is its filtered search with that factor table;
    ``truth_vectors`` as for :func:`measure_grid`.
    """
    rng = np.random.default_rng(seed)
    queries = queries[:FILTER_QUERIES]
    n = len(arrays.ids)
    table = []
    for share in FILTER_SHARES:
        allowed = rng.random(n) < share
        if self_ids is not None:
            allowed[self_ids[:FILTER_QUERIES]] = False
        if allowed.sum() < k:
            continue
        # exact search over just the allowed rows: half a pass over the data in all
        rows_allowed = np.flatnonzero(allowed[arrays.ids])
        rows, _ = brute_force((truth_vectors or arrays.vectors).subset(rows_allowed),
                              queries, k, distance)
        truth = arrays.ids[rows_allowed[rows]]
        recalls = []
        for factor in FILTER_FACTORS:
            recalls.append(recall_at_k(search(queries, allowed, [[share, factor]]), truth, k))
            if recalls[-1] >= target:
                break
        # the first factor reaching the target; else the first one within
        # FILTER_FLAT of the best recall seen (more probing no longer helps)
        best = max(recalls)
        chosen = next(f for f, rec in zip(FILTER_FACTORS, recalls)
                      if rec >= min(target, best - FILTER_FLAT))
        table.append([share, chosen])
    return table
