"""What every query needs before it touches a point: the index file's prefix."""

import numpy as np

from ..kernels import times_transposed
from ..metrics import is_euclidean
from ..quantization import dequantize_A
from ..topk import smallest_k


class Prefix:
    """The prefix tensors in query form: reduce queries, pick the clusters to probe.

    Holds the projection, the centroids and the per-cluster ``A`` matrices,
    pre-scaled by -1 (inner product) or -2 (Euclidean) so that a query's
    approximate distances are ``(q A_j) B_j`` (plus ``||x||^2``); the cluster
    offsets; and how the rerank vectors are coded (int8 per-dimension scales, basis).
    """

    def __init__(self, tensors, params):
        t = tensors
        self.euclidean = is_euclidean(params.distance)
        factor = -2.0 if self.euclidean else -1.0
        A = (dequantize_A(t["A"], t["A_scales"], params.a_bits, params.global_dim)
             if params.quantization_bits else t["A"])
        # Operands are kept transposed (reduction axis last, contiguous): see kernels.
        projection = t.get("projection")
        self.projection_t = None if projection is None else np.ascontiguousarray(projection.T)
        centroids = t["centroids"]
        self.centroids_scaled = np.ascontiguousarray(factor * centroids)
        self.centroid_bias = (np.einsum("ij,ij->i", centroids, centroids) if self.euclidean
                              else None)
        self.offsets = t["cluster_offsets"].astype(np.intp)
        self.sizes = np.diff(self.offsets)
        A_t = (factor * A).transpose(0, 2, 1)  # (C, r, g)
        #: residual scorers: each A_j^T gets the (scaled) centroid as a last row, so
        #: ``q A_j`` ends with the cluster's term of every score, scaled ``q . c_j``
        #: (a scorer's row of ones takes it to each point; see .clusters)
        self.residual = params.residual_scorers
        if self.residual:
            A_t = np.concatenate((A_t, self.centroids_scaled[:, None, :]), axis=1)
        self.A_t = np.ascontiguousarray(A_t)  # (C, r [+ 1], g)
        #: how the rerank vectors are stored: :class:`.RerankVectors` keywords
        self.vector_coding = {"offset": t.get("vectors_dim_offset"),
                              "scale": t.get("vectors_dim_scale"),
                              "basis": t.get("vectors_basis")}
        self.cluster_crc32 = t["cluster_crc32"]
        self.cluster_scorer_crc32 = t.get("cluster_scorer_crc32")  # files with row checksums
        # files with attribute checksums
        self.cluster_attribute_crc32 = t.get("cluster_attribute_crc32")
        #: per-cluster summaries of the attribute columns (see filtering.columns)
        self.summaries = {name: value for name, value in t.items()
                          if name.startswith("summary.")}

    @property
    def n_clusters(self):
        return self.sizes.shape[0]

    def reduce(self, queries):
        """Queries in the globally reduced space."""
        return queries if self.projection_t is None else times_transposed(queries, self.projection_t)

    def distances(self, reduced):
        """Distances (up to a per-query constant) to every centroid: (C,) or (b, C)."""
        dist = times_transposed(reduced, self.centroids_scaled)
        if self.centroid_bias is not None:
            dist += self.centroid_bias
        return dist

    def probe(self, reduced, clusters_to_search, ordered=True):
        """The ``clusters_to_search`` best clusters: (c,) for one query (g,), (b, c) for
        (b, g); best first, or with ``ordered=False`` in no particular order."""
        dist = self.distances(reduced)
        if ordered:
            return smallest_k(dist, clusters_to_search)
        if clusters_to_search >= dist.shape[-1]:
            return np.broadcast_to(np.arange(dist.shape[-1]), dist.shape).copy()
        return dist.argpartition(clusters_to_search - 1, axis=-1)[..., :clusters_to_search]
