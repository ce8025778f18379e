"""Auto-tuning of the search parameters at build time.

The C++ reference leaves ``clusters_to_search`` and ``points_to_rerank`` to
the user. Here the build holds out a sample of training queries, computes
their exact neighbours, measures recall@k over a grid of settings and keeps,
for each target recall, the cheapest setting that reaches it. Cost is a
deterministic operation count per query, so the choice does not depend on
how busy the machine is:

    c * g * r            (q A_j for the probed clusters)
  + points(c) * r        (approximate scores of their points)
  + R * d                (exact reranking)

where ``points(c)`` is the mean number of points in the c probed clusters.
When the tuning queries are data points (no training queries given), each
query's own id is left out of both its exact and its approximate results
(leave-one-out), so the estimate is not inflated by trivial self-matches.
"""

import numpy as np

from ..query.candidates import BATCH_BLOCK, candidates_batch
from ..query.rerank import WORK_VALUES, brute_force, candidate_distances
from ..topk import smallest_k

TARGETS = (0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.98, 0.99, 0.995)
CLUSTER_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96,
                112, 128, 160, 192, 256)
RERANK_GRID = (10, 15, 20, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500)
#: stop adding clusters once the deepest rerank reaches this recall
SATURATED = 0.999


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


def measure_grid(prefix, arrays, queries, distance, k=10, self_ids=None, verbose=None):
    """Recall@k of every (clusters_to_search, points_to_rerank) on the grid.

    ``prefix`` and ``arrays`` are a resident index's :class:`.Prefix` and
    :class:`.ClusterArrays`.
    Returns a list of ``(c, R, recall, cost, standard error of recall)``. ``queries`` are prepared
    (normalised for cosine); ``self_ids`` are the queries' own ids for
    leave-one-out, or None; ``verbose`` a build progress reporter.

    Work is shared across the grid: going from c to the next c' probed
    clusters scores only the clusters c..c' and merges them into each
    query's pool of the best ``R_max`` candidates so far (the best R of a
    union are the best R of the best R of one part and the other part), so
    every cluster is scored once per query, not once per c. Each pool's
    exact distances are taken once per c; every R is then a prefix.
    """
    vectors, ids = arrays.vectors, arrays.ids
    extra = 0 if self_ids is None else 1
    kk = k + extra
    truth_rows, _ = brute_force(vectors, queries, kk, distance)
    truth = _drop_self(ids[truth_rows], self_ids, k)
    r, g = arrays.A_t.shape[1], arrays.A_t.shape[2]
    d = vectors.codes.shape[1]
    reduced = prefix.reduce(queries)
    c_grid = sorted({c for c in CLUSTER_GRID if c < arrays.n_clusters} | {arrays.n_clusters})
    probes = prefix.probe(reduced, c_grid[-1])
    r_max = min(RERANK_GRID[-1], ids.shape[0])
    r_grid = sorted({min(R, r_max) for R in RERANK_GRID if R >= kk})
    block = max(1, WORK_VALUES // (r_max * d))
    b = queries.shape[0]
    results = []
    pool = np.full((b, 0), -1, dtype=np.intp)  # each query's best candidates so far
    pool_scores = np.zeros((b, 0), dtype=np.float32)
    c_prev = 0
    for c in c_grid:
        points = float(arrays.sizes[probes[:, :c]].sum(axis=1).mean())
        parts = [candidates_batch(arrays, reduced[s:s + BATCH_BLOCK],
                                  probes[s:s + BATCH_BLOCK, c_prev:c], r_max, with_scores=True)
                 for s in range(0, b, BATCH_BLOCK)]
        width = max(part[0].shape[1] for part in parts)
        new = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1)
                              for p, _ in parts])
        new_scores = np.concatenate([np.pad(v, ((0, 0), (0, width - v.shape[1])),
                                            constant_values=np.inf) for _, v in parts])
        both = np.concatenate([pool_scores, new_scores], axis=1)
        best = smallest_k(both, min(r_max, both.shape[1]))  # sorted: best first
        at = np.arange(b)[:, None]
        pool = np.concatenate([pool, new], axis=1)[at, best]
        pool_scores = both[at, best]
        c_prev = c
        hits = np.zeros((len(r_grid), b))
        for s in range(0, b, block):
            sl = slice(s, s + block)
            ranked = pool[sl]
            valid = ranked >= 0
            exact = candidate_distances(vectors, queries[sl], np.where(valid, ranked, 0),
                                         distance)
            exact[~valid] = np.inf
            at = np.arange(ranked.shape[0])[:, None]
            for i, R in enumerate(r_grid):
                rows = ranked[at, smallest_k(exact[:, :R], kk)]
                found = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
                hits[i, sl] = hits_per_query(
                    _drop_self(found, None if self_ids is None else self_ids[sl], k), truth[sl])
        per_query = hits / k
        recalls = per_query.mean(axis=1)
        stderr = per_query.std(axis=1) / np.sqrt(b)
        results += [(c, R, float(rec), c * g * r + points * r + R * d, float(se))
                    for R, rec, se in zip(r_grid, recalls, stderr)]
        if verbose:
            verbose.step("tuning (clusters probed)", c, c_grid[-1])
        if recalls.max() >= SATURATED:
            break
    if verbose:
        verbose.step("tuning (clusters probed)", c_grid[-1], c_grid[-1])
    return results


def choose(results, targets=TARGETS, z=1.0):
    """For each target, the cheapest grid point reaching it: rows [target, c, R, recall].

    "Reaching" means ``recall - z * stderr >= target``: picking the cheapest
    of many noisy estimates that pass favours ones that are noisy-high, and
    the margin counters that. A target no setting reaches gets the most
    accurate setting measured.
    """
    table = []
    most_accurate = max(results, key=lambda t: (t[2], -t[3]))
    for target in targets:
        ok = [t for t in results if t[2] - z * t[4] >= target]
        c, R, rec, _, _ = min(ok, key=lambda t: t[3]) if ok else most_accurate
        table.append([float(target), int(c), int(R), round(float(rec), 4)])
    return table
