"""The calls a browser worker makes into Python: flat buffers in, flat arrays out.

Kept free of Pyodide imports so it is tested in CPython. Arguments may be
any Python buffer, or Pyodide's proxy of a JS typed array (which has
``to_py()``, one bulk copy into WebAssembly memory). Results are flat NumPy
arrays (int32 ids, float32 distances) that JS reads with ``getBuffer()``,
without per-element conversion. A search parameter of 0 means "the index's
stored default".
"""

import json
import math

import numpy as np

from .index import LorannIndex
from .lazy import LazyIndex


def _buffer(x):
    return x.to_py() if hasattr(x, "to_py") else x


def _queries(buf, count):
    flat = np.frombuffer(_buffer(buf), dtype=np.float32)
    count = _count(count, "count")
    if count < 1 or flat.size % count:
        raise ValueError(f"a batch of {count} queries cannot hold {flat.size} values")
    return flat.reshape(count, flat.size // count)


def _count(value, name):
    """A whole number sent by JS (where every number is a float), or a clear ValueError."""
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def _split(buffers, ranges):
    """The responses to ``ranges`` as one buffer each, from a list of buffers or from
    one buffer holding them back to back (checked against the ranges' sizes)."""
    if not (hasattr(buffers, "to_bytes") or isinstance(buffers, (bytes, bytearray, memoryview))):
        return [part.to_bytes() if hasattr(part, "to_bytes") else part for part in buffers]
    joined = memoryview(_buffer(buffers)).cast("B")
    sizes = [b - a for a, b in ranges]
    if sum(sizes) != joined.nbytes:
        raise ValueError(f"the responses hold {joined.nbytes} bytes; the ranges asked "
                         f"for {sum(sizes)}")
    ends = np.cumsum([0] + sizes).tolist()
    return [joined[a:b] for a, b in zip(ends[:-1], ends[1:])]


def _default(value, name):
    value = _count(value, name)
    return None if value == 0 else value


def _filter(text):
    """``(where, allow)`` from the JSON a page sends ("" for no filter)."""
    if not text:
        return None, None
    try:
        spec = json.loads(text)
    except ValueError:
        raise ValueError("the filter is not valid JSON") from None
    if not isinstance(spec, dict) or set(spec) - {"where", "allow"}:
        raise ValueError('the filter must be {"where": {...}, "allow": [ids]}')
    allow = spec.get("allow")
    if allow is not None:
        if not isinstance(allow, list) or not all(type(i) is int for i in allow):
            raise ValueError("allow must be a list of integer ids")
        allow = np.array(allow, dtype=np.int64)
    return spec.get("where"), allow


class JsRangeReader:
    """A reader for :class:`.lazy.LazyIndex` backed by a JS object.

    The object has ``size`` and ``read(rangesJson)``, which takes a JSON list
    of ``[start, stop]`` and returns an array of ``Uint8Array``; each is
    copied into Python in one bulk copy (``to_bytes``).
    """

    def __init__(self, js):
        self.js = js
        size = getattr(js, "size", None)
        if size is None or not callable(getattr(js, "read", None)):
            raise TypeError("reader must have size and read(ranges)")
        self.size = _count(size, "reader size")

    def read(self, ranges):
        parts = self.js.read(json.dumps([[int(a), int(b)] for a, b in ranges]))
        return [part.to_bytes() if hasattr(part, "to_bytes") else bytes(part) for part in parts]


class Session:
    """One loaded index and the operations the worker offers on it."""

    def __init__(self):
        self.index = None
        self.nbytes = 0
        self.encoder = None
        self._pending = None

    def load(self, data):
        """Load an index file from a buffer; returns its description as JSON."""
        buf = _buffer(data)
        index = LorannIndex.from_bytes(buf)
        self.index, self.nbytes = index, len(buf)
        return self.info()

    def load_lazy(self, reader, cache_bytes=0):
        """Open an index by its prefix through ``reader`` (see :class:`JsRangeReader`).

        Clusters are fetched as queries probe them; ``cache_bytes`` (0: the
        default) bounds the cluster cache. Returns the description as JSON.
        """
        if not isinstance(reader, JsRangeReader) and hasattr(reader, "to_py"):
            reader = JsRangeReader(reader)
        cache_bytes = _count(cache_bytes, "cache_bytes")
        kwargs = {"cache_bytes": cache_bytes} if cache_bytes > 0 else {}
        self.index = LazyIndex(reader, **kwargs)
        self.nbytes = self.index.size
        return self.info()

    @property
    def lazy(self):
        return isinstance(self.index, LazyIndex)

    def info(self):
        self._require()
        extra = {}
        if self.lazy:
            extra = {"lazy": True, "prefix_bytes": self.index.prefix_bytes,
                     "fetched": dict(self.index.stats)}
        return json.dumps({"bytes": self.nbytes, **self.index.params, **extra})

    def plan(self, queries, count, k, clusters_to_search=0, points_to_rerank=0, filter_json=""):
        """Plan a search (see :meth:`.QueryEngine.plan`); returns the byte ranges it
        still needs as JSON ``{"ranges": [[start, stop], ...], "path": ...,
        "passing": ...}`` (no ranges for a whole index; ``path`` and the estimated
        ``passing`` points as in :class:`.Plan`). The worker fetches the ranges in
        parallel and hands them to :meth:`supply` until no ranges are left, then
        calls :meth:`finish`. ``filter_json`` is "" or ``{"where": {...} or null,
        "allow": [ids] or null}``; the other arguments are those of :meth:`search`."""
        plan = self._plan(queries, count, k, clusters_to_search, points_to_rerank, filter_json)
        return json.dumps({**self._next(plan), "path": plan.path, "passing": plan.passing})

    def _plan(self, queries, count, k, clusters_to_search, points_to_rerank, filter_json):
        """The one way in: the JS arguments checked and turned into a pending :class:`.Plan`."""
        self._require()
        q = _queries(queries, count)
        where, allow = _filter(filter_json)
        self._pending = self.index.plan(
            q[0] if q.shape[0] == 1 else q, _count(k, "k"),
            clusters_to_search=_default(clusters_to_search, "clusters_to_search"),
            points_to_rerank=_default(points_to_rerank, "points_to_rerank"),
            where=where, allow=allow)
        return self._pending

    def supply(self, buffers):
        """Hand over the responses to the ranges asked for: a list of byte buffers,
        or one buffer holding them back to back (one copy out of JS, not one per
        range: 500 ranges one by one took 40 ms in Pyodide). Returns what is needed
        next as :meth:`plan` does (the candidates' vector rows after the clusters),
        no ranges when :meth:`finish` can run."""
        plan = self._require_plan()
        self.index.supply(plan, _split(buffers, plan.ranges))
        return json.dumps(self._next(plan))

    def supply_part(self, count, buffers):
        """Hand over the responses to the first ``count`` ranges asked for (a count
        in the plan's ``cuts``) while the rest are on their way: their clusters are
        checked and kept now (see :meth:`.QueryEngine.supply_part`). ``buffers`` as
        :meth:`supply` takes them; the next :meth:`supply` hands over the rest."""
        plan = self._require_plan()
        count = _count(count, "count")
        if count > len(plan.ranges):
            raise ValueError(f"{count} ranges handed over; {len(plan.ranges)} are asked for")
        self.index.supply_part(plan, count, _split(buffers, plan.ranges[:count]))

    def _next(self, plan):
        """What a plan needs next, as JSON-ready values: ``ranges`` (byte ranges of
        the index file); while clusters are missing, ``spans`` (the storage
        positions ``[first, end)`` of every probed cluster) and ``cuts`` (the
        counts of ranges that end a run of clusters, which :meth:`supply_part`
        takes); once they are here, ``candidates`` (the ids of the points to
        rerank). A site's ids are storage positions, so the worker fetches the
        probed clusters' record offsets and then the candidates' records in the
        same rounds."""
        out = {"ranges": [[a, b] for a, b in plan.ranges], "spans": [], "candidates": None,
               "cuts": []}
        if plan.stage == "clusters":
            out["spans"] = self.index.cluster_spans(np.unique(plan.probed))
            out["cuts"] = self.index.run_ends(plan)
        elif plan.view is not None and plan.candidates is not None:
            positions = np.asarray(plan.candidates).ravel()
            ids = plan.view[0].ids[positions[positions >= 0]]
            out["candidates"] = np.unique(ids).tolist()
        return out

    def finish(self):
        """Finish the planned search: ``(ids, distances)`` as :meth:`search`."""
        plan, self._pending = self._require_plan(), None
        ids, dists = self.index.search(plan, return_distances=True)
        return ids.astype(np.int32).ravel(), dists.ravel()

    def _require_plan(self):
        self._require()
        if self._pending is None:
            raise ValueError("no search is planned")
        return self._pending

    def fetch_stats(self):
        """What the latest search fetched, the running totals and the cache size (JSON)."""
        self._require()
        if not self.lazy:
            return json.dumps(None)
        return json.dumps({**self.index.last_fetch, "total": dict(self.index.stats),
                           "cached_bytes": self.index.cached_bytes})

    def _require_whole(self, what):
        self._require()
        if self.lazy:
            raise ValueError(f"{what} needs the whole index; it is loaded lazily")

    def _require(self):
        if self.index is None:
            raise ValueError("no index is loaded")

    def search(self, queries, count, k, clusters_to_search=0, points_to_rerank=0,
               filter_json=""):
        """Approximate search; ``queries`` holds ``count`` float32 vectors back to back.

        Returns ``(ids, distances)``, flat (count * k,), best first per query.
        ``filter_json`` as in :meth:`plan`. The same plan and finish as the lazy
        route, in one call: what a lazily loaded index still lacks is read through
        its reader.
        """
        self._plan(queries, count, k, clusters_to_search, points_to_rerank, filter_json)
        return self.finish()

    def exact_search(self, queries, count, k):
        """Brute-force search over the stored vectors; same layout as :meth:`search`."""
        self._require_whole("exact search")
        q = _queries(queries, count)
        ids, dists = self.index.exact_search(q, _count(k, "k"), return_distances=True)
        return ids.astype(np.int32).ravel(), dists.ravel()

    def vectors(self, ids):
        """The stored (decoded) vectors of ``ids`` (int32 buffer), flat float32."""
        self._require_whole("reading stored vectors")
        ids = np.frombuffer(_buffer(ids), dtype=np.int32).astype(np.intp)
        return self.index.get_vectors(ids).ravel()

    # -- text queries ---------------------------------------------------------

    def load_encoder(self, data):
        """Load MiniLM weights (see lorann_wasm.embed.minilm.export_weights); returns JSON,
        with ``token_row_bytes`` when the word-piece rows beyond the file's head are read
        from a token-rows file (:meth:`token_ranges`, :meth:`add_tokens`)."""
        from .embed.minilm import MiniLM
        buf = _buffer(data)
        self.encoder = MiniLM.from_bytes(buf)
        info = {"bytes": len(buf), **self.encoder.config}
        if self.encoder.known_tokens is not None:
            info["token_row_bytes"] = self.encoder.token_row_bytes
        return json.dumps(info)

    def token_ranges(self, texts_json):
        """JSON ``{"ids": [...], "ranges": [[start, stop], ...]}``: the word pieces of the
        texts whose rows are not loaded, and their byte ranges in the token-rows file."""
        self._require_encoder()
        ids = self.encoder.missing_tokens(self._texts(texts_json))
        width = self.encoder.token_row_bytes
        return json.dumps({"ids": ids.tolist(),
                           "ranges": [[i * width, (i + 1) * width] for i in ids.tolist()]})

    def add_tokens(self, ids_json, data):
        """Load word-piece rows: ``data`` is the rows of the JSON list ``ids`` back to
        back, or the whole token-rows file when ``ids_json`` is ``"all"``."""
        self._require_encoder()
        if self.encoder.known_tokens is None:
            return
        ids = (np.arange(len(self.encoder.known_tokens)) if ids_json == "all"
               else np.asarray(json.loads(ids_json), dtype=np.intp))
        self.encoder.add_token_rows(ids, _buffer(data))

    @staticmethod
    def _texts(texts_json):
        texts = json.loads(texts_json)
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a JSON list of strings")
        return texts

    def _require_encoder(self):
        if self.encoder is None:
            raise ValueError("no text encoder is loaded")

    def embed(self, texts_json):
        """Embeddings of a JSON list of strings, flat float32 (n * hidden)."""
        self._require_encoder()
        return self.encoder.encode(self._texts(texts_json)).ravel()
