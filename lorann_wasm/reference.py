"""LoRANN, plainly: the whole algorithm in NumPy, written to be read beside the paper.

Jääsaari, Hyvönen, Roos, *LoRANN: Low-Rank Matrix Factorization for Approximate
Nearest Neighbor Search*, NeurIPS 2024 (arXiv:2410.18926). No speed tricks:
one cluster and one query at a time, float64 where it is clearer. The fast
code (``training/``, ``query/``) computes the same things; ``tests/
test_reference.py`` holds its searches to :func:`search` here and its
regression to :func:`fit_scorer`.

Build (section 3 of the paper):

1. reduce the dimension globally: project onto the top ``g`` eigenvectors
   of ``QᵀQ`` for training queries ``Q`` (section 3.3);
2. cluster the reduced points with k-means (IVF, section 2);
3. for each cluster ``j`` fit a rank-``r`` scorer to the exact inner products
   ``Y = Q_j X_jᵀ`` of its training queries: reduced-rank regression keeps
   ``Y``'s top right singular vectors ``V``, and ``A_j = X_jᵀ V``,
   ``B_j = Vᵀ``, so ``q A_j B_j`` approximates ``q X_jᵀ`` (equations 3-5).
   Here the points are taken minus their centroid ``c_j`` and ``q · c_j`` is
   added back exactly (this package's residual scorers);
4. store ``A`` and ``B`` in 8 bits (section 3.4), ``B`` one scale per point
   (this package's sites store both in 4 bits).

Search: probe the ``c`` clusters whose centroids score best, score their
points with ``q A_j B_j + q · c_j``, rerank the best ``R`` exactly with the
stored vectors, return the best ``k`` (section 2, equation 2). A filter
keeps the points that pass: the answer is the ``k`` nearest of those.
"""

import numpy as np


# -- build -------------------------------------------------------------------

def global_projection(queries, g):
    """(d, g): the top ``g`` eigenvectors of ``QᵀQ`` (section 3.3)."""
    w, u = np.linalg.eigh(queries.T.astype(np.float64) @ queries)
    return u[:, ::-1][:, :g]


def kmeans(x, k, iterations=20, seed=0, spherical=False):
    """(centroids (k, g), labels (n,)): Lloyd's k-means from k random points;
    spherical (unit centroids, inner-product assignment) for ip and cosine."""
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), k, replace=False)].astype(np.float64)
    for _ in range(iterations):
        if spherical:
            labels = np.argmax(x @ centroids.T, axis=1)
        else:
            labels = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centroids[j] = members.mean(axis=0)
                if spherical:
                    centroids[j] /= max(np.linalg.norm(centroids[j]), 1e-12)
    return centroids, labels


def fit_scorer(points, queries, rank, center=None):
    """(A (g, rank), B (rank, n_j)) of one cluster: reduced-rank regression of the
    exact scores ``Y = Q (X - c)ᵀ`` (equations 3-5)."""
    x = points - (0 if center is None else center)
    y = queries.astype(np.float64) @ x.T
    v = np.linalg.svd(y, full_matrices=False)[2][:rank].T  # top right singular vectors
    v = np.pad(v, ((0, 0), (0, rank - v.shape[1])))  # fewer directions than the rank: zeros
    return x.T @ v, v.T


def quantize_rows(m):
    """(int8 codes, float scales): symmetric 8 bits, one scale per row (section 3.4)."""
    peak = np.abs(m).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127, 1.0)
    return np.clip(np.rint(m / scale), -127, 127).astype(np.int8), scale[:, 0]


def build(data, n_clusters, g, rank, queries=None, train_size=5, distance="ip", seed=0):
    """The model as a dict of plain arrays: projection, centroids, each cluster's
    members (ids), ``A_j`` and ``B_j`` (8-bit, dequantised back), and the vectors.
    Each training query trains its ``train_size`` nearest clusters."""
    queries = data if queries is None else queries
    projection = global_projection(queries, g)
    x, q = data @ projection, queries @ projection
    spherical = distance != "l2"
    centroids, labels = kmeans(x, n_clusters, seed=seed, spherical=spherical)
    nearest = np.argsort(_to_centroids(q, centroids, distance), axis=1)[:, :train_size]
    clusters = []
    for j in range(n_clusters):
        ids = np.flatnonzero(labels == j)
        trainers = q[(nearest == j).any(axis=1)]
        trainers = x[ids] if len(trainers) < len(ids) else trainers  # too few: its points
        a, b = fit_scorer(x[ids], trainers, rank, centroids[j])
        codes, scale = quantize_rows(b.T)
        clusters.append({"ids": ids, "A": a, "B": (codes * scale[:, None]).T,
                         "sq_norms": (data[ids].astype(np.float64) ** 2).sum(axis=1)})
    return {"projection": projection, "centroids": centroids, "clusters": clusters,
            "vectors": data, "distance": distance}


# -- search ------------------------------------------------------------------

def _to_centroids(reduced, centroids, distance):
    if distance == "l2":
        return ((reduced[..., None, :] - centroids) ** 2).sum(-1)
    return -(reduced @ centroids.T)


def search(model, query, k, clusters_to_search, points_to_rerank, passes=None):
    """The ``k`` nearest ids of one query: probe, score, rerank (section 2).

    ``passes`` (a boolean per id, or None) is a filter: only passing points
    are scored and reranked, so the answer is the k nearest of those; with
    every cluster probed and every passing point reranked it is exact search
    over them. Fewer than k reached: the tail is -1.
    """
    distance = model["distance"]
    q = np.asarray(query, np.float64)
    if distance == "cosine":
        q = q / np.linalg.norm(q)
    reduced = q @ model["projection"] if model["projection"] is not None else q
    order = np.argsort(_to_centroids(reduced, model["centroids"], distance), kind="stable")
    ids, scores = [], []
    for j in order[:clusters_to_search]:
        cluster = model["clusters"][j]
        inner = (reduced @ cluster["A"]) @ cluster["B"] + reduced @ model["centroids"][j]
        if distance == "l2":  # ‖q - x‖² = ‖x‖² - 2 q·x + ‖q‖²: the last term ranks nothing
            score = cluster["sq_norms"] - 2 * inner
        else:
            score = -inner
        keep = np.ones(len(score), bool) if passes is None else passes[cluster["ids"]]
        ids.extend(cluster["ids"][keep])
        scores.extend(score[keep])
    best = np.array(ids, dtype=np.int64)[np.argsort(scores, kind="stable")[
        :max(k, points_to_rerank)]]
    x = model["vectors"][best]
    exact = ((x - q) ** 2).sum(axis=1) if distance == "l2" else -(x @ q)
    found = best[np.argsort(exact, kind="stable")[:k]]
    return np.concatenate([found, np.full(k - len(found), -1)])


def model_of(index):
    """The model :func:`search` reads, from a built :class:`.LorannIndex`'s file
    tensors (dequantised, decoded, per cluster): to check the fast query path on
    the very scorers the fast build made."""
    from .format.index_file import decode_index
    t, p = decode_index(index.to_bytes())[0], index.params
    bits = p["quantization_bits"]
    from .quantization import dequantize_A, dequantize_rows
    A = (dequantize_A(t["A"], t["A_scales"], p.get("a_bits", 8), p["global_dim"]) if bits
         else t["A"])
    B = dequantize_rows(t["B"], t.get("B_scales"), bits, p["rank"])
    vectors = t["vectors"].astype(np.float64)
    if p["rerank_dtype"] == "int8" and p["int8_scales"] == "dimension":
        vectors = vectors * t["vectors_dim_scale"] + t["vectors_dim_offset"]
    elif p["rerank_dtype"] == "int8":
        vectors = vectors * t["vectors_row_scale"][:, None]
    if "vectors_basis" in t:
        vectors = vectors @ t["vectors_basis"].T
    offsets = t["cluster_offsets"]
    ids = t["ids"] if "ids" in t else np.arange(p["n"])
    norms = (t["sq_norms"] if "sq_norms" in t else np.zeros(p["n"])).astype(np.float64)
    order = np.argsort(ids)  # the model's vectors are in id order
    clusters = [{"ids": ids[lo:hi], "A": A[j].astype(np.float64),
                 "B": B[lo:hi].T.astype(np.float64), "sq_norms": norms[lo:hi]}
                for j, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:]))]
    if not p.get("residual_scorers"):
        raise ValueError("files made before residual scorers are not modelled here")
    return {"projection": t.get("projection"), "centroids": t["centroids"].astype(np.float64),
            "clusters": clusters, "vectors": vectors[order], "distance": p["distance"]}
