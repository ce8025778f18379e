"""One single-query search taken apart: each stage of the query path timed on its own.

``build_scripts/measure/profile_query.py`` runs :func:`stage_times` natively and under
Pyodide, so the two platforms' floors can be read side by side. The stages
call the query path's own functions in the engine's order, on a resident
index's arrays.
"""

import time

import numpy as np

from ..kernels import rowwise_dot, vector_times
from ..query.candidates import positions_of, with_one
from ..topk import unordered_smallest_k


def stage_times(index, queries, clusters, rerank, k=10, passes=5):
    """``[(stage, microseconds per query, multiply-adds per query or None), ...]``
    for single searches of ``queries`` (b, d) at (``clusters``, ``rerank``) on a
    resident :class:`.LorannIndex`: each stage over all queries in turn, best
    of ``passes``; the last row is the whole ``index.search``."""
    engine = index.stages
    prefix, arrays, p = engine.prefix, engine.arrays, engine.params
    vectors = arrays.vectors
    r, g = arrays.A_t.shape[1], arrays.A_t.shape[2]

    def select(scores):  # as candidates_single picks the points to rerank
        return (unordered_smallest_k(scores, rerank) if rerank < len(scores)
                else np.arange(len(scores)))

    steps = []  # each query's intermediate results, so every stage runs on real inputs
    for q in queries:
        q = engine.prepare(q)
        reduced = prefix.reduce(q)
        probes = prefix.probe(reduced, clusters, ordered=False)
        t = with_one(rowwise_dot(arrays.A_t[probes], reduced))
        order = probes.tolist()
        scores = np.concatenate([vector_times(row, arrays.scorers[j]) for row, j in zip(t, order)])
        best = select(scores)
        positions = positions_of(arrays, probes, arrays.sizes[probes], best)
        steps.append((q, reduced, probes, t, order, scores, best, positions))
    points = float(np.mean([len(s[5]) for s in steps]))
    projected = prefix.projection_t is not None
    stages = [
        ("validation", lambda s: engine.prepare(s[0]), None),
        ("projection", lambda s: prefix.reduce(s[0]), p.dim * g if projected else None),
        ("probing", lambda s: prefix.probe(s[1], clusters, ordered=False), p.n_clusters * g),
        ("q A_j", lambda s: with_one(rowwise_dot(arrays.A_t[s[2]], s[1])), clusters * r * g),
        ("approximate scores", lambda s: np.concatenate(
            [vector_times(row, arrays.scorers[j]) for row, j in zip(s[3], s[4])]),
         points * (r + 1)),
        (f"select {rerank}", lambda s: select(s[5]), None),
        ("positions", lambda s: positions_of(arrays, s[2], arrays.sizes[s[2]], s[6]), None),
        ("rerank", lambda s: engine.rerank(s[0], s[7], k),
         min(rerank, points) * vectors.codes.shape[1]),
        ("whole search", lambda s: index.search(s[0], k, clusters_to_search=clusters,
                                                points_to_rerank=rerank), None),
    ]
    best_us = [float("inf")] * len(stages)
    for _ in range(passes):
        for i, (_, fn, _) in enumerate(stages):
            start = time.perf_counter()
            for s in steps:
                fn(s)
            best_us[i] = min(best_us[i], (time.perf_counter() - start) / len(steps) * 1e6)
    return [(name, us, macs) for (name, _, macs), us in zip(stages, best_us)]
