"""Exact distances and exact top-k over stored vectors.

Used twice: to rerank LoRANN's candidates, and for brute-force search
(``ExactIndex`` and ``LorannIndex.exact_search``).
"""

import numpy as np

from .metrics import from_inner_products
from .topk import smallest_k

#: bound on the float32 temporaries of one step (values, not bytes)
WORK_VALUES = 1 << 22


def rerank_one(vectors, query, candidates, k, distance):
    """Best ``k`` of ``candidates`` (R,) for one query (d,), by exact distance.

    Returns ``(rows, distances)`` of length min(k, R), best first.
    """
    ip = vectors.inner_products(candidates, query)
    dist = from_inner_products(ip, distance, vectors.sq_norms[candidates], query @ query)
    best = smallest_k(dist, k)
    return candidates[best], dist[best]


def rerank(vectors, queries, candidates, k, distance):
    """Best ``k`` of ``candidates`` (b, R) for each query, by exact distance.

    ``candidates`` holds row numbers into ``vectors``; ``-1`` marks padding.
    Returns ``(rows, distances)`` of shape (b, min(k, R)), best first, with
    ``-1`` / ``inf`` where a query had fewer than k candidates.
    """
    b, width = candidates.shape
    dim = vectors.codes.shape[1]
    out_rows = np.empty((b, min(k, width)), dtype=np.int64)
    out_dist = np.empty(out_rows.shape, dtype=np.float32)
    step = max(1, WORK_VALUES // max(1, width * dim))
    q_sq = np.einsum("ij,ij->i", queries, queries)
    for s in range(0, b, step):
        cand = candidates[s:s + step]
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        ip = vectors.inner_products(safe, queries[s:s + step])
        dist = from_inner_products(ip, distance, vectors.sq_norms[safe], q_sq[s:s + step, None])
        dist[~valid] = np.inf
        best = smallest_k(dist, k)
        rows = np.arange(cand.shape[0])[:, None]
        out_rows[s:s + step] = cand[rows, best]
        out_dist[s:s + step] = dist[rows, best]
    out_rows[~np.isfinite(out_dist)] = -1
    return out_rows, out_dist


def brute_force(vectors, queries, k, distance):
    """Exact ``k`` nearest rows of ``vectors`` for each query: ``(rows, distances)``."""
    n = vectors.codes.shape[0]
    b = queries.shape[0]
    rows = np.empty((b, k), dtype=np.int64)
    dists = np.empty((b, k), dtype=np.float32)
    q_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
    # Chunk over queries so a (chunk, n) distance block stays bounded.
    step = max(1, WORK_VALUES // n)
    for s in range(0, b, step):
        ip = vectors.inner_products_all(queries[s:s + step])
        dist = from_inner_products(ip, distance, vectors.sq_norms, q_sq[s:s + step])
        best = smallest_k(dist, k)
        rows[s:s + step] = best
        dists[s:s + step] = dist[np.arange(best.shape[0])[:, None], best]
    return rows, dists
