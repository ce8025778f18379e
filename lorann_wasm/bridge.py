"""The calls a browser worker makes into Python: flat buffers in, flat arrays out.

Kept free of Pyodide imports so it is tested in CPython. Arguments may be
any Python buffer, or Pyodide's proxy of a JS typed array (which has
``to_py()``, one bulk copy into WebAssembly memory). Results are flat NumPy
arrays (int32 ids, float32 distances) that JS reads with ``getBuffer()``,
without per-element conversion. A search parameter of 0 means "the index's
stored default".
"""

import json

import numpy as np

from .index import LorannIndex


def _buffer(x):
    return x.to_py() if hasattr(x, "to_py") else x


def _queries(buf, count):
    flat = np.frombuffer(_buffer(buf), dtype=np.float32)
    count = int(count)
    if count < 1 or flat.size % count:
        raise ValueError(f"a batch of {count} queries cannot hold {flat.size} values")
    return flat.reshape(count, flat.size // count)


def _default(value):
    value = int(value)
    return None if value == 0 else value


class Session:
    """One loaded index and the operations the worker offers on it."""

    def __init__(self):
        self.index = None
        self.nbytes = 0
        self._positions = None

    def load(self, data):
        """Load an index file from a buffer; returns its description as JSON."""
        buf = _buffer(data)
        index = LorannIndex.from_bytes(buf)
        self.index, self.nbytes, self._positions = index, len(buf), None
        return self.info()

    def info(self):
        self._require()
        return json.dumps({"bytes": self.nbytes, **self.index.params})

    def _require(self):
        if self.index is None:
            raise ValueError("no index is loaded")

    def search(self, queries, count, k, clusters_to_search=0, points_to_rerank=0):
        """Approximate search; ``queries`` holds ``count`` float32 vectors back to back.

        Returns ``(ids, distances)``, flat (count * k,), best first per query.
        """
        self._require()
        q = _queries(queries, count)
        ids, dists = self.index.search(
            q[0] if q.shape[0] == 1 else q, int(k),
            clusters_to_search=_default(clusters_to_search),
            points_to_rerank=_default(points_to_rerank), return_distances=True)
        return ids.astype(np.int32).ravel(), dists.ravel()

    def exact_search(self, queries, count, k):
        """Brute-force search over the stored vectors; same layout as :meth:`search`."""
        self._require()
        q = _queries(queries, count)
        ids, dists = self.index.exact_search(q, int(k), return_distances=True)
        return ids.astype(np.int32).ravel(), dists.ravel()

    def vectors(self, ids):
        """The stored (decoded) vectors of ``ids`` (int32 buffer), flat float32."""
        self._require()
        ids = np.frombuffer(_buffer(ids), dtype=np.int32).astype(np.intp)
        return self.index.get_vectors(ids).ravel()
