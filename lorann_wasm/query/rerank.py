"""Exact distances and exact top-k over stored vectors.

Used twice: to rerank LoRANN's candidates, and for brute-force search
(``ExactIndex`` and ``LorannIndex.exact_search``).
"""

import numpy as np

from ..kernels import einsum
from ..metrics import from_inner_products, is_euclidean
from ..topk import smallest_k

#: float32 values gathered per reranking step: small enough to stay in cache
#: (measured: 1M beats 4M by ~20% on 400 x 384 candidates per query)
WORK_VALUES = 1 << 20
#: float32 values per brute-force step: larger blocks keep its matmul efficient
BRUTE_FORCE_VALUES = 1 << 22


def query_terms(vectors, queries, distance):
    """What reranking takes of queries (d,) or (b, d), once per query: their
    coordinates as the vectors are stored, and for Euclidean distances over a
    basis their squared norms (..., 1), else None."""
    q_sq = None
    if is_euclidean(distance) and vectors.basis is not None:
        q_sq = einsum("...j,...j->...", queries, queries)[..., None]
    return vectors.in_basis(queries), q_sq


def candidate_distances(vectors, queries, rows, distance, terms=None):
    """Exact distances from queries (d,) or (b, d) to ``rows`` (R,) or (b, R).

    ``terms``: the queries' :func:`query_terms`, when the caller has them
    (``queries`` is then not read).

    Euclidean ones are ``||x - q||^2`` from the differences: one pass more
    than the expansion ``||x||^2 - 2<q, x> + ||q||^2`` over the candidates,
    but exact (the expansion loses float32 precision for large norms) and in
    fewer NumPy calls than the expansion plus recomputing the final k.

    With a basis they are the expansion, with the full squared norms of the
    points (see :meth:`.RerankVectors.encode`) and of the queries: the
    distance within the basis plus the energy of both outside it.
    """
    coords, q_sq = terms or query_terms(vectors, queries, distance)
    if is_euclidean(distance) and vectors.basis is None:
        diff = vectors.decode(rows)
        diff -= coords[..., None, :]
        return einsum("...j,...j->...", diff, diff)
    ip = vectors.inner_products(rows, coords)
    return from_inner_products(ip, distance, None if q_sq is None else vectors.sq_norms[rows],
                               q_sq)


def exact_l2(vectors, queries, rows, dist):
    """Recompute squared L2 of the final ``rows`` (b, k) as ``||x - q||^2`` and re-sort.

    Brute force ranks by the expansion ``||x||^2 - 2<q, x> + ||q||^2``, which
    is fast but loses float32 precision for large norms (a vector's distance
    to itself would not come out as 0); the k returned values are exact.
    (With a basis the expansion is the distance: they are returned as they are.)
    """
    if vectors.basis is not None:
        return rows, dist
    valid = np.isfinite(dist)
    diff = vectors.decode(np.where(valid, rows, 0))
    diff -= queries[..., None, :]
    exact = np.where(valid, np.einsum("...j,...j->...", diff, diff), np.inf).astype(np.float32)
    order = np.argsort(exact, axis=-1, kind="stable")
    at = np.arange(rows.shape[0])[:, None]
    return rows[at, order], exact[at, order]


def rerank_one(vectors, query, candidates, k, distance):
    """Best ``k`` of ``candidates`` (R,), none of them -1, for one query (d,), by
    exact distance. Returns ``(rows, distances)`` of length min(k, R), best first.
    """
    dist = candidate_distances(vectors, query, candidates, distance)
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
    for s in range(0, b, step):
        cand = candidates[s:s + step]
        valid = cand >= 0
        dist = candidate_distances(vectors, queries[s:s + step], np.where(valid, cand, 0),
                                    distance)
        dist[~valid] = np.inf
        best = smallest_k(dist, k)
        rows = np.arange(cand.shape[0])[:, None]
        out_rows[s:s + step] = cand[rows, best]
        out_dist[s:s + step] = dist[rows, best]
    out_rows[~np.isfinite(out_dist)] = -1
    return out_rows, out_dist


def brute_force(vectors, queries, k, distance):
    """Exact ``k`` nearest rows of ``vectors`` for each query: ``(rows, distances)``.

    (To search some rows only, search their :meth:`.RerankVectors.subset`.)"""
    q_sq = np.einsum("ij,ij->i", queries, queries)[:, None]  # the whole norm (see encode)
    queries = vectors.in_basis(queries)
    n = vectors.codes.shape[0]
    b = queries.shape[0]
    rows = np.empty((b, k), dtype=np.int64)
    dists = np.empty((b, k), dtype=np.float32)
    # Chunk over queries so a (chunk, n) distance block stays bounded.
    step = max(1, BRUTE_FORCE_VALUES // n)
    for s in range(0, b, step):
        ip = vectors.inner_products_all(queries[s:s + step])
        dist = from_inner_products(ip, distance, vectors.sq_norms, q_sq[s:s + step])
        best = smallest_k(dist, k)
        rows[s:s + step] = best
        dists[s:s + step] = dist[np.arange(best.shape[0])[:, None], best]
    return rows, dists
