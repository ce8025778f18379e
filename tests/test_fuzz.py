"""Every damaged index file either loads with identical results or raises ValueError."""

import resource
import signal
import struct

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex

N_MUTATIONS = 2400


def _mutate(rng, raw, other):
    """One random mutation of ``raw``: truncate, flip, overwrite, splice, insert or delete."""
    buf = bytearray(raw)
    (hlen,) = struct.unpack_from("<Q", raw)
    kind = rng.integers(6)
    if kind == 0:  # truncate
        return bytes(buf[:rng.integers(0, len(buf))]), "truncate"
    if kind == 1:  # flip bits, half of the time inside the 8-byte length + JSON header
        for _ in range(rng.integers(1, 4)):
            end = 8 + hlen if rng.random() < 0.5 else len(buf)
            buf[rng.integers(0, end)] ^= 1 << rng.integers(8)
        return bytes(buf), "flip"
    if kind == 2:  # overwrite a run with random bytes
        start = rng.integers(0, len(buf))
        n = min(int(rng.integers(1, 64)), len(buf) - start)
        buf[start:start + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return bytes(buf), "overwrite"
    if kind == 3:  # splice in a slice of another index file at the same or another place
        n = int(rng.integers(1, 512))
        src = int(rng.integers(0, len(other) - n))
        dst = src if rng.random() < 0.5 else int(rng.integers(0, len(buf) - n))
        buf[dst:dst + n] = other[src:src + n]
        return bytes(buf), "splice"
    if kind == 4:  # insert bytes
        pos = rng.integers(0, len(buf))
        return bytes(buf[:pos]) + rng.bytes(int(rng.integers(1, 16))) + bytes(buf[pos:]), "insert"
    pos = rng.integers(0, len(buf) - 1)  # delete bytes
    return bytes(buf[:pos]) + bytes(buf[pos + rng.integers(1, 16):]), "delete"


def _results(index, queries):
    ids, d = index.search(queries, 5, return_distances=True)
    one = index.search(queries[0], 5, clusters_to_search=2, points_to_rerank=7)
    return ids, d, one


def _alarm(signum, frame):
    raise TimeoutError("loading a mutated file hung")


def test_mutated_files_fail_cleanly_or_load_identically():
    data = clustered(300, 12, n_centers=6, seed=11)
    queries = data[:8] + 0.01
    base = LorannIndex(data, n_clusters=6, rank=6, distance="l2", seed=0).build()
    other = LorannIndex(data, n_clusters=7, rank=5, distance="ip", rerank_dtype="int8",
                        int8_scales="vector", seed=1).build().to_bytes()
    raw = base.to_bytes()
    want = _results(base, queries)

    rng = np.random.default_rng(20241024)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {}
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(600)
    try:
        for _ in range(N_MUTATIONS):
            mutated, kind = _mutate(rng, raw, other)
            try:
                loaded = LorannIndex.from_bytes(mutated)
            except ValueError:
                outcomes[kind, "refused"] = outcomes.get((kind, "refused"), 0) + 1
                continue
            got = _results(loaded, queries)
            for a, b in zip(got, want):
                assert np.array_equal(a, b), f"{kind} mutation loaded with different results"
            outcomes[kind, "loaded"] = outcomes.get((kind, "loaded"), 0) + 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB while loading damaged files"
    assert sum(outcomes.values()) == N_MUTATIONS
    # every kind of mutation was exercised, and most were refused
    assert {k for k, _ in outcomes} == {"truncate", "flip", "overwrite", "splice", "insert", "delete"}
    refused = sum(v for (_, r), v in outcomes.items() if r == "refused")
    assert refused >= 0.9 * N_MUTATIONS, outcomes


@pytest.mark.parametrize("cut", [0, 7, 8, 9, 100, -1000, -1])
def test_truncation_at_boundaries(cut):
    data = clustered(300, 12, n_centers=6, seed=11)
    raw = LorannIndex(data, n_clusters=6, rank=6).build().to_bytes()
    with pytest.raises(ValueError):
        LorannIndex.from_bytes(raw[:cut])


N_RESIGNED = 1500


def _resigned_mutation(rng, tensors, params):
    """Damage the values of one tensor, then re-sign everything (the per-cluster CRCs,
    the row checksums, the prefix and the file checksums), so only the semantic checks
    can object."""
    from lorann_wasm.format.index_file import cluster_crcs, vector_checks

    signatures = ("cluster_crc32", "cluster_scorer_crc32", "vector_checks")
    t = {k: np.array(v) for k, v in tensors.items()}
    name = str(rng.choice(sorted(k for k in t if k not in signatures)))
    flat = t[name].reshape(-1)
    at = rng.integers(0, flat.size, int(rng.integers(1, 4)))
    kind = int(rng.integers(5))
    if kind == 0:  # random bits
        raw = flat.view(np.uint8).reshape(flat.size, -1)
        raw[at] = rng.integers(0, 256, raw[at].shape, dtype=np.uint8)
    elif kind == 1:  # another element's value (duplicates ids, offsets out of order)
        flat[at] = flat[rng.integers(0, flat.size)]
    elif kind == 2:  # a special value: NaN, inf, 0, -1, n or huge
        special = [0, -1, params.n, 2 ** 31] + ([np.nan, np.inf, -np.inf, 3e38]
                                                 if flat.dtype.kind == "f" else [])
        with np.errstate(all="ignore"):
            flat[at] = np.array(special[int(rng.integers(len(special)))]).astype(flat.dtype)
    elif kind == 3:  # swap two elements
        i, j = rng.integers(0, flat.size, 2)
        flat[i], flat[j] = flat[j].copy(), flat[i].copy()
    else:  # negate
        with np.errstate(all="ignore"):
            flat[at] = -flat[at] if flat.dtype.kind in "fi" else flat[at]
    off = t["cluster_offsets"]
    if params.row_checksums:
        t["vector_checks"] = vector_checks(t["vectors"], t.get("vectors_row_scale"),
                                           params.check_bits)
    if (np.diff(off) >= 0).all() and off[0] == 0 and off[-1] == params.n:
        t.update(cluster_crcs(t, params))
    return t, f"{name}:{kind}"


def test_resigned_mutations_are_refused_or_answered_alike_by_both_loaders(monkeypatch,
                                                                         tmp_path):
    from lorann_wasm.format import index_file
    from lorann_wasm.lazy import FileReader, LazyIndex

    monkeypatch.setattr(index_file, "check_publishable", lambda *a, **k: None)
    data = clustered(300, 12, n_centers=6, seed=11)
    queries = data[:6] + 0.01
    bases = [LorannIndex(data, n_clusters=6, rank=6, distance="l2", seed=0).build(),
             LorannIndex(data, n_clusters=7, rank=5, distance="ip", rerank_dtype="int8",
                         int8_scales="vector", seed=1).build(target_recall=None)]
    rng = np.random.default_rng(20261127)
    outcomes = {"refused by both": 0, "loaded by both": 0}
    path = tmp_path / "m.lorann"
    for case in range(N_RESIGNED):
        base = bases[case % 2]
        tensors, what = _resigned_mutation(rng, base._tensors, base._params)
        head, chunks = index_file.encode_index(tensors, base._params)
        raw = b"".join([head, *chunks])
        path.write_bytes(raw)
        # every cluster probed and every point reranked: both loaders read every row
        everything = dict(clusters_to_search=base.params["n_clusters"],
                          points_to_rerank=base.n)
        try:
            full = LorannIndex.from_bytes(raw).search(queries, 5, **everything)
        except ValueError:
            full = None
        try:
            lazy = LazyIndex(FileReader(path)).search(queries, 5, **everything)
        except ValueError:
            lazy = None
        assert (full is None) == (lazy is None), f"{what}: one loader refused, the other did not"
        if full is None:
            outcomes["refused by both"] += 1
        else:
            assert np.array_equal(full, lazy), f"{what}: the loaders answered differently"
            outcomes["loaded by both"] += 1
    # both outcomes happen: values that break the index, values that only change answers
    assert min(outcomes.values()) >= 0.1 * N_RESIGNED, outcomes
