"""Lazy loading (CPython, over a local file): identical results, few bytes, clean failures."""

import json
import os
import struct

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.lazy import FileReader, LazyIndex


@pytest.fixture(scope="module")
def mixture():
    both = clustered(12150, 64, seed=31)
    return both[:12000], both[12000:]


def _single(index, queries, k=10, **kw):
    out = [index.search(q, k, return_distances=True, **kw) for q in queries]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


@pytest.mark.parametrize("kw", [
    dict(distance="l2"),
    dict(distance="ip", rerank_dtype="int8"),
    dict(distance="cosine", rerank_dtype="float16", quantization_bits=None),
    dict(distance="l2", rerank_dtype="int8", int8_scales="vector", global_dim=24),
    dict(distance="cosine", rerank_dtype="int8", rerank_dims=20),
])
def test_identical_to_the_full_index(mixture, tmp_path, kw):
    data, queries = mixture
    LorannIndex(data, rank=12, seed=2, **kw).build().save(tmp_path / "i.lorann")
    full = LorannIndex.load(tmp_path / "i.lorann")
    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"), cache_bytes=1 << 20)
    assert lazy.params == full.params
    for setting in ({}, {"clusters_to_search": 3, "points_to_rerank": 20},
                    {"target_recall": 0.99}):
        # one engine: a lazy batch is the full index's batch, lazy singles its singles
        ids, dists = lazy.search(queries, 10, return_distances=True, **setting)
        want_ids, want_dists = full.search(queries, 10, return_distances=True, **setting)
        assert np.array_equal(ids, want_ids) and np.array_equal(dists, want_dists)
        ids, dists = _single(lazy, queries[:40], **setting)
        want_ids, want_dists = _single(full, queries[:40], **setting)
        assert np.array_equal(ids, want_ids) and np.array_equal(dists, want_dists)
    assert np.array_equal(lazy.search(queries[0], 5), full.search(queries[0], 5))
    assert lazy.cached_bytes <= (1 << 20) + 200_000  # budget, plus at most one query's clusters


def test_fetches_only_probed_clusters_and_caches_them(mixture, tmp_path):
    data, queries = mixture
    LorannIndex(data, rank=12, n_clusters=200, seed=2).build(target_recall=None).save(
        tmp_path / "i.lorann")
    size = (tmp_path / "i.lorann").stat().st_size
    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"), cache_bytes=64 << 20)
    assert lazy.prefix_bytes < 0.08 * size
    lazy.search(queries[0], 10, clusters_to_search=4, points_to_rerank=20)
    cold = lazy.last_fetch
    assert cold["clusters"] == 4 and cold["bytes"] < 4 * 3 * size / 200
    # the four clusters' scorer parts: one range per tensor (5) and run; then the
    # 20 candidates' vector rows only, some runs of them merged
    assert cold["requests"] <= 4 * 5 + 20
    whole = lazy.params["n_clusters"] and 4 * (size - lazy.prefix_bytes) / 200
    assert cold["bytes"] < 0.6 * whole  # float32 vectors of dimension 48: most of a point
    lazy.search(queries[0], 10, clusters_to_search=4, points_to_rerank=20)
    assert lazy.last_fetch == {"bytes": 0, "requests": 0, "clusters": 0}
    assert lazy.stats["cache_hits"] == 4
    lazy.search(queries, 10, clusters_to_search=200)  # everything: adjacent clusters coalesce
    scorer_requests = 5 * 5  # 196 clusters around 4 cached ones: 5 runs
    assert lazy.last_fetch["clusters"] == 196
    # then a range per run of candidate rows side by side (the browser asks for all of
    # them in one request): never a row between candidates
    rows = lazy.last_fetch["requests"] - scorer_requests
    assert 0 < rows <= lazy.n and lazy.last_fetch["bytes"] < size


def test_old_files_fetch_whole_clusters(tmp_path):
    """A file made before row checksums: a probed cluster comes whole, vectors included."""
    lazy = LazyIndex(FileReader(os.path.join(os.path.dirname(__file__), "data",
                                             "made-before-the-redesign.lorann")))
    assert not lazy._params.row_checksums
    q = LorannIndex.load(os.path.join(os.path.dirname(__file__), "data",
                                      "made-before-the-redesign.lorann")).get_vectors([3])[0]
    lazy.search(q, 5, clusters_to_search=2)
    assert lazy.last_fetch["clusters"] == 2
    assert lazy.last_fetch["requests"] <= 2 * 5  # per-point tensors (5) per run, nothing after


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def test_corruption_and_short_reads_are_errors(mixture, tmp_path):
    data, queries = mixture
    index = LorannIndex(data[:3000], rank=8, seed=2).build(target_recall=None)
    path = tmp_path / "i.lorann"
    index.save(path)
    size = path.stat().st_size
    _flip(path, size - 10)  # inside the last cluster's B (the last tensor)
    lazy = LazyIndex(FileReader(path))
    last = index.params["n_clusters"] - 1
    probes = lazy._prefix.probe(lazy._prefix.reduce(data[:3000]), 1)[:, 0]
    hit = int(np.flatnonzero(probes == last)[0])
    with pytest.raises(ValueError, match=f"cluster {last} failed its checksum"):
        lazy.search(data[hit], 10, clusters_to_search=1)
    other = int(np.flatnonzero(probes != last)[0])
    assert lazy.search(data[other], 10, clusters_to_search=1)[0] >= 0  # still usable

    # a rerank vector fetched on its own is checked against its row checksum
    index.save(path)
    (hlen,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8:8 + hlen])
    _flip(path, 8 + hlen + header["vectors"]["data_offsets"][1] - 10)  # the last point's vector
    lazy = LazyIndex(FileReader(path))
    with pytest.raises(ValueError, match=f"cluster {last}: the rerank vector of row "
                                         r"\d+ failed its checksum"):
        lazy.search(data[hit], 10, clusters_to_search=1, points_to_rerank=3000)
    assert lazy.search(data[other], 10, clusters_to_search=1)[0] >= 0  # still usable

    index.save(path)
    (hlen,) = struct.unpack("<Q", path.read_bytes()[:8])
    _flip(path, 8 + hlen + 100)  # inside the prefix
    with pytest.raises(ValueError, match="prefix checksum mismatch"):
        LazyIndex(FileReader(path))

    index.save(path)

    lazy = LazyIndex(FileReader(path))
    read = lazy.reader.read
    lazy.reader.read = lambda ranges: [b[:-1] for b in read(ranges)]  # a server cutting short
    with pytest.raises(ValueError, match="truncated response"):
        lazy.search(data[0], 10, clusters_to_search=lazy.params["n_clusters"])
    path.write_bytes(path.read_bytes()[:size // 2])
    with pytest.raises(ValueError, match="invalid index file"):
        LazyIndex(FileReader(path))
    path.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="too short"):
        LazyIndex(FileReader(path))


def test_file_without_prefix_checksum_is_refused(mixture, tmp_path):
    data, _ = mixture
    raw = LorannIndex(data[:2000], rank=8).build(target_recall=None).to_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    del header["__metadata__"]["prefix_checksum"]
    from lorann_wasm.format import safetensors_io
    body = raw[8 + hlen:]
    header["__metadata__"].pop("checksum")
    header["__metadata__"]["checksum"] = safetensors_io.checksum(header, [body])
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    old = struct.pack("<Q", len(head)) + head + body
    (tmp_path / "old.lorann").write_bytes(old)
    assert LorannIndex.load(tmp_path / "old.lorann").n == 2000  # the full loader still reads it
    with pytest.raises(ValueError, match="cannot be loaded lazily"):
        LazyIndex(FileReader(tmp_path / "old.lorann"))


def test_identical_on_fashion_mnist(tmp_path):
    from lorann_wasm.bench.datasets import fashion_mnist

    train, test = fashion_mnist()
    LorannIndex(train[:12000], distance="l2", rerank_dtype="int8", seed=0).build().save(
        tmp_path / "f.lorann")
    full = LorannIndex.load(tmp_path / "f.lorann")
    lazy = LazyIndex(FileReader(tmp_path / "f.lorann"), cache_bytes=4 << 20)
    queries = test[:200]
    ids, dists = lazy.search(queries, 10, return_distances=True)
    want_ids, want_dists = _single(full, queries)
    assert np.array_equal(ids, want_ids) and np.array_equal(dists, want_dists)
    assert lazy.stats["bytes"] < 200 * (tmp_path / "f.lorann").stat().st_size / 10


def test_plan_and_supply_fetch_for_the_caller(mixture, tmp_path):
    data, queries = mixture
    LorannIndex(data, rank=12, n_clusters=150, seed=2).build(target_recall=None).save(
        tmp_path / "i.lorann")
    full = LorannIndex.load(tmp_path / "i.lorann")
    raw = (tmp_path / "i.lorann").read_bytes()

    class NoReads(FileReader):
        def read(self, ranges):
            raise AssertionError("search read by itself after supply()")

    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"))
    lazy._store.reader = NoReads(tmp_path / "i.lorann")
    for i, q in enumerate(queries[:30]):
        plan = lazy.plan(q, 10, clusters_to_search=6)  # a value: what the search needs
        clusters = sum(hi - lo for lo, hi, _ in plan.runs) if plan.stage == "clusters" else 0
        stages = []
        while plan.ranges:  # the clusters' scorer parts, then the candidates' vectors
            assert all(b > a for a, b in plan.ranges)
            stages.append(plan.stage)
            lazy.supply(plan, [raw[a:b] for a, b in plan.ranges])  # e.g. fetched in parallel
        assert plan.stage == "ready" and plan.fetched["clusters"] == clusters
        if i == 0:
            assert stages == ["clusters", "vectors"]
        fetched = plan.fetched["bytes"]
        assert np.array_equal(lazy.search(plan), full.search(q, 10, clusters_to_search=6))
        assert lazy.last_fetch["bytes"] == fetched  # search counted what supply fetched
    plan = lazy.plan(queries[40:44], 10, clusters_to_search=6)  # a batch plans the same way
    with pytest.raises(ValueError, match="truncated response"):
        lazy.supply(plan, [raw[a:b - 1] for a, b in plan.ranges])
    with pytest.raises(ValueError, match="buffers supplied"):
        lazy.supply(plan, [])
    bad = [bytearray(raw[a:b]) for a, b in plan.ranges]
    bad[-1][0] ^= 1
    with pytest.raises(ValueError, match="failed its checksum"):
        lazy.supply(plan, bad)
    with pytest.raises(ValueError, match="another index"):
        full.search(plan)
    while plan.ranges:
        lazy.supply(plan, [raw[a:b] for a, b in plan.ranges])
    assert np.array_equal(lazy.search(plan), full.search(queries[40:44], 10, clusters_to_search=6))
    with pytest.raises(ValueError, match="needs nothing more"):
        lazy.supply(plan, [b"x"])
    # a whole index plans too: nothing is missing
    assert full.plan(queries[0], 10).ranges == []


@pytest.mark.parametrize("where", [None, {"tag": "b"}])
def test_clusters_may_be_supplied_in_parts_as_they_arrive(mixture, tmp_path, where):
    """The worker hands over the clusters that have come while the rest stream in
    (supply_part at the plan's run ends): the same answer as one supply, and a
    count that does not end a run, or a part of the wrong stage, is refused."""
    data, queries = mixture
    LorannIndex(data, rank=12, n_clusters=150, seed=2, attributes={"tag": ["a", "b", "c"] * 4000}
                ).build(target_recall=None).save(tmp_path / "i.lorann")
    full = LorannIndex.load(tmp_path / "i.lorann")
    raw = (tmp_path / "i.lorann").read_bytes()
    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"))
    parted = 0
    for q in queries[:12]:
        plan = lazy.plan(q, 10, clusters_to_search=24, where=where)
        while plan.ranges:
            ends = lazy.run_ends(plan)
            if plan.stage == "clusters" and len(ends) > 2:
                cuts = ends[len(ends) // 3], ends[2 * len(ends) // 3]  # two parts, then the rest
                with pytest.raises(ValueError, match="do not end a run"):
                    lazy.supply_part(plan, cuts[0] + 1 if cuts[0] + 1 not in ends else -1,
                                     [raw[a:b] for a, b in plan.ranges[:cuts[0] + 1]])
                done = 0
                for cut in cuts:
                    if cut > done:
                        lazy.supply_part(plan, cut - done,
                                         [raw[a:b] for a, b in plan.ranges[:cut - done]])
                        done = cut
                        parted += 1
                assert plan.stage == "clusters" and len(plan.ranges) == ends[-1] - done
            else:
                assert lazy.run_ends(plan) == [] or plan.stage == "clusters"
            stage = plan.stage
            lazy.supply(plan, [raw[a:b] for a, b in plan.ranges])
            if stage == "vectors":
                assert lazy.run_ends(plan) == []
        got = lazy.search(plan)
        assert np.array_equal(got, full.search(q, 10, clusters_to_search=24, where=where))
    assert parted >= 8  # (later queries find some clusters cached)
    plan = lazy.plan(queries[20], 10, clusters_to_search=24)
    lazy.supply(plan, [raw[a:b] for a, b in plan.ranges])
    if plan.ranges:  # the vectors' stage takes its ranges whole
        with pytest.raises(ValueError, match="do not end a run"):
            lazy.supply_part(plan, 1, [raw[a:b] for a, b in plan.ranges[:1]])


@pytest.mark.parametrize("kw", [dict(distance="ip", rerank_dtype="int8", quantization_bits=4,
                                     attributes={"tag": ["a", "b", "c"] * 4000}),
                                dict(distance="l2", rerank_dtype="float16")])
def test_fetch_bytes_is_what_the_lazy_reader_fetches(mixture, tmp_path, kw):
    """A site's index is tuned by the bytes a cold query fetches (site/builder.py's
    bytes_per_query), computed from fetch_bytes: it must be what the reader fetches."""
    data, queries = mixture
    LorannIndex(data, rank=12, n_clusters=150, seed=2, **kw).build(target_recall=None).save(
        tmp_path / "i.lorann")
    index = LorannIndex.load(tmp_path / "i.lorann")
    scorer, scorer_ranges, rerank, rerank_ranges = index.fetch_bytes()
    lazy = LazyIndex(FileReader(tmp_path / "i.lorann"))
    assert lazy.fetch_bytes() == (scorer, scorer_ranges, rerank, rerank_ranges)
    # numbered by position, a file holds no ids: 8 bytes and a range less a probed point
    assert index.fetch_bytes(positional_ids=True) == (scorer - 8, scorer_ranges - 1, rerank,
                                                      rerank_ranges)
    index.number_by_position()
    assert index.fetch_bytes() == index.fetch_bytes(positional_ids=True)
    for q in queries[:5]:
        lazy = LazyIndex(FileReader(tmp_path / "i.lorann"))
        plan = lazy.plan(q, 10, clusters_to_search=6, points_to_rerank=40)
        points = sum(hi - lo for lo, hi in lazy.cluster_spans(plan.probed[0]
                                                              if plan.probed.ndim > 1
                                                              else plan.probed))
        assert sum(b - a for a, b in plan.ranges) == points * scorer
        assert len(plan.ranges) == len(plan.runs) * scorer_ranges
        lazy.supply(plan, lazy.reader.read(plan.ranges))
        assert plan.stage == "vectors"
        assert sum(b - a for a, b in plan.ranges) == len(plan.candidates) * rerank
        assert len(plan.ranges) <= len(plan.candidates) * rerank_ranges


def test_a_query_imports_no_module_the_open_could_have(mixture, tmp_path):
    """What a lazy query's path first imports, a visitor's first query waits for:
    ``numpy.random`` (the row-check weights) cost 45 ms in Pyodide. The open
    makes them; the first query then imports nothing of ours or NumPy's but
    what NumPy itself loads on first use (``numpy.ma``, natively, by np.unique)."""
    import subprocess
    import sys

    data, queries = mixture
    path = tmp_path / "a.lorann"
    LorannIndex(data, rank=8, seed=1).build().save(path)
    np.save(tmp_path / "q.npy", queries[:1])
    code = f"""
import sys, numpy as np
from lorann_wasm.lazy import FileReader, LazyIndex
index = LazyIndex(FileReader({str(path)!r}))
q = np.load({str(tmp_path / "q.npy")!r})[0]
before = set(sys.modules)
index.search(q, 10)
print(sorted(m for m in set(sys.modules) - before if not m.startswith("numpy.ma")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
