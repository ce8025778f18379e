"""Brute-force exact search: the ground truth and the baseline to beat."""

from ._checks import as_matrix, as_prepared_queries, check_k
from .metrics import check_distance, prepare
from .query.rerank import brute_force
from .query.vectors import RerankVectors


class ExactIndex:
    """Exact k-nearest-neighbour search over ``data`` (n, d).

    ``distance`` is ``"ip"``, ``"cosine"`` or ``"l2"``; see
    :mod:`lorann_wasm.metrics` for what the returned distances mean.
    """

    def __init__(self, data, distance="ip"):
        self.distance = check_distance(distance)
        data = as_matrix(data, "data")
        self.n, self.dim = data.shape
        self._vectors = RerankVectors.encode(prepare(data, self.distance, "data"))

    def search(self, q, k=10, return_distances=False):
        """Ids (int64) of the ``k`` nearest rows, best first.

        ``q`` is (d,) for one query, giving 1-D results, or (b, d), giving
        (b, k). With ``return_distances`` returns ``(ids, distances)``.
        """
        queries, single = as_prepared_queries(q, self.dim, self.distance)
        k = check_k(k, self.n)
        ids, dists = brute_force(self._vectors, queries, k, self.distance)
        if single:
            ids, dists = ids[0], dists[0]
        return (ids, dists) if return_distances else ids
