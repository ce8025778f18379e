"""The index file: safetensors-compatible, validated, atomic, round-trips exactly."""

import json
import os
import struct
import zlib

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.format import index_file, safetensors_io

VARIANTS = [
    dict(distance="ip"),
    dict(distance="l2", quantization_bits=None, rerank_dtype="float16"),
    dict(distance="cosine", rerank_dtype="int8", int8_scales="vector"),
    dict(distance="l2", rerank_dtype="int8", int8_scales="dimension", global_dim=24),
    dict(distance="ip", rerank_dtype="int8", rerank_dims=24),
]


@pytest.fixture(scope="module", params=range(len(VARIANTS)))
def small(request):
    data = clustered(1500, 40, seed=request.param)
    index = LorannIndex(data, rank=12, seed=3, **VARIANTS[request.param]).build()
    return index, data[:60] + 0.05


def test_save_load_round_trip(small, tmp_path):
    index, queries = small
    path = tmp_path / "a.lorann"
    index.save(path)
    loaded = LorannIndex.load(path)
    assert loaded.params == index.params
    for q in (queries, queries[0]):
        a, ad = index.search(q, 10, return_distances=True)
        b, bd = loaded.search(q, 10, return_distances=True)
        assert np.array_equal(a, b) and np.array_equal(ad, bd)
    assert np.array_equal(index.exact_search(queries, 5), loaded.exact_search(queries, 5))
    # Saving a loaded index reproduces the file byte for byte.
    assert loaded.to_bytes() == path.read_bytes() == index.to_bytes()
    # the loaded arrays are views of the file's buffer, read-only as from bytes
    vectors = loaded._tensors["vectors"]
    assert not vectors.flags.writeable and not vectors.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        vectors[0] = 0


def test_from_bytes_accepts_buffers_and_is_zero_copy(small):
    index, queries = small
    raw = index.to_bytes()
    for buf in (raw, bytearray(raw), memoryview(raw)):
        loaded = LorannIndex.from_bytes(buf)
        assert np.array_equal(loaded.search(queries, 10), index.search(queries, 10))
    loaded = LorannIndex.from_bytes(raw)
    backing = np.frombuffer(raw, dtype=np.uint8)
    assert np.shares_memory(loaded._tensors["vectors"], backing)
    assert np.shares_memory(loaded._tensors["ids"], backing)


def test_readable_by_safetensors(small, tmp_path):
    index, _ = small
    path = tmp_path / "b.lorann"
    index.save(path)
    tensors = load_file(str(path))
    ours, _ = safetensors_io.decode(path.read_bytes())
    assert set(tensors) == set(ours)
    for name, arr in tensors.items():
        assert np.array_equal(arr, ours[name]), name
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    # version 6 for 16-bit B scales (every new build): older readers would read
    # 32-bit ones, so they refuse the file (versions 3, 4 and 5 did the same for
    # residual scorers, leaving out the squared norms and 16-bit row checks)
    assert meta["format"] == "lorann_wasm"
    l2 = index.params["distance"] == "l2"
    assert index.params["residual_scorers"] is True
    assert index.params.get("stores_norms", True) is l2
    assert index.params["check_bits"] == 16 and tensors["vector_checks"].dtype == np.uint16
    if index.params["quantization_bits"] is None:  # no B_scales: a version 5 file
        assert "B_scales" not in tensors and meta["format_version"] == "5"
    else:
        assert index.params["scale_bits"] == 16 and tensors["B_scales"].dtype == np.float16
        assert meta["format_version"] == ("7" if index.params["quantization_bits"] == 4 else "6")
    assert ("sq_norms" in tensors) is l2
    assert json.loads(meta["params"]) == index.params
    assert meta["checksum"].startswith("crc32:")


def test_layout_prefix_then_per_point_arrays_sorted_by_cluster(small):
    index, _ = small
    raw = index.to_bytes()
    (hlen,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + hlen])
    assert (8 + hlen) % 8 == 0
    ranges = {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}
    prefix_end = max(e for k, (b, e) in ranges.items() if k not in index_file.PER_POINT)
    point_start = min(b for k, (b, e) in ranges.items() if k in index_file.PER_POINT)
    assert prefix_end <= point_start and point_start % index_file.ALIGN == 0
    for name, (b, _) in ranges.items():
        itemsize = safetensors_io.DTYPES[header[name]["dtype"]].itemsize
        assert (8 + hlen + b) % itemsize == 0, f"{name} is misaligned"
    # cluster j's rows are contiguous, and its CRC covers exactly them
    t, _ = index_file.decode_index(raw)
    off = t["cluster_offsets"]
    data = memoryview(raw)[8 + hlen:]
    names = sorted((k for k in ranges if k in index_file.PER_POINT), key=lambda k: ranges[k][0])
    for j in (0, len(off) - 2):
        crc = 0
        for name in names:
            b, e = ranges[name]
            row = (e - b) // t[name].shape[0]
            crc = zlib.crc32(data[b + off[j] * row:b + off[j + 1] * row], crc)
        assert crc == t["cluster_crc32"][j]


def test_save_is_atomic(small, tmp_path, monkeypatch):
    index, _ = small
    path = tmp_path / "c.lorann"
    path.write_bytes(b"old contents")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["c.lorann"], "temporary file left behind"
    monkeypatch.undo()
    index.save(path)
    assert LorannIndex.load(path).params == index.params
    assert os.listdir(tmp_path) == ["c.lorann"]


def _rewrite(raw, edit):
    """Parse ``raw``, let ``edit`` change the header dict, re-sign it validly."""
    (hlen,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    data = edit(header, data) or data
    header["__metadata__"].pop("checksum")
    header["__metadata__"]["checksum"] = safetensors_io.checksum(header, [data])
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + data


def _set_meta(key, value):
    def edit(h, _):
        h["__metadata__"][key] = value
    return edit


def _set_param(key, value):
    def edit(h, _):
        p = json.loads(h["__metadata__"]["params"])
        p[key] = value
        h["__metadata__"]["params"] = json.dumps(p)
    return edit


def _both(first, second):
    def edit(h, d):
        first(h, d)
        second(h, d)
    return edit


def _set_entry(name, field, value):
    def edit(h, _):
        h[name][field] = value
    return edit


def _drop(name):
    def edit(h, _):
        del h[name]
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set_meta("format_version", "9"), "newer than this lorann_wasm supports"),
    (_both(_set_meta("format_version", "4"), _set_param("scale_bits", 32)),
     "need format version 5"),
    (_set_param("check_bits", 8), "check_bits must be 16 or 32"),
    (_set_param("scale_bits", 8), "scale_bits must be 16 or 32"),
    (_set_meta("format_version", "2"), "needs format version 3"),
    (_both(_set_meta("format_version", "1"), _set_param("rerank_dims", 20)),
     "needs format version 2"),
    (_set_param("rerank_dims", 41), "rerank_dims must be"),
    (_set_meta("format_version", "x"), "bad format_version"),
    (_set_meta("format", "something-else"), "not a lorann_wasm index"),
    (_set_meta("params", "{"), "params metadata is not valid JSON"),
    (_set_param("rank", 13), "expected"),
    (_set_param("n", 1499), "does not match|expected|permutation|cluster_offsets"),
    (_set_param("distance", "hamming"), "unknown distance"),
    (_set_param("rank", "12"), "wrong type"),
    (_set_param("clusters_to_search", 10 ** 6), "inconsistent parameters"),
    (_set_param("tuning", {"table": [[0.9, 10 ** 6, 50, 0.9]]}), "tuning table"),
    (_set_param("tuning", {"table": [[0.9, 2, True, 0.9]]}), "tuning table"),
    (_set_param("tuning", {"table": "x"}), "tuning table"),
    (_set_entry("ids", "dtype", "BF16"), "unsupported dtype"),
    (_set_entry("ids", "shape", [10 ** 12]), "does not match"),
    (_set_entry("ids", "shape", [-1]), "invalid shape"),
    (_set_entry("ids", "shape", [True]), "invalid shape"),
    (_set_entry("ids", "data_offsets", [0, 2 ** 62]), "outside"),
    (_set_entry("ids", "data_offsets", [0]), "invalid data_offsets"),
    (_set_entry("ids", "extra", 1), "exactly dtype, shape and data_offsets"),
    (_drop("centroids"), "gap|missing"),
    (lambda h, d: d + b"\0" * 8, "truncated or padded"),
])
def test_malformed_but_correctly_checksummed_files_are_refused(small, edit, match):
    index, _ = small
    bad = _rewrite(index.to_bytes(), edit)
    with pytest.raises(ValueError, match=match):
        LorannIndex.from_bytes(bad)


def test_semantic_checks_catch_signed_garbage(small):
    index, _ = small
    raw = index.to_bytes()
    t, _ = index_file.decode_index(raw)

    def clobber(name, value):
        def edit(h, data):
            b, e = h[name]["data_offsets"]
            arr = np.frombuffer(data[b:e], dtype=t[name].dtype).copy()
            arr.flat[0] = value
            return data[:b] + arr.tobytes() + data[e:]
        return edit

    cases = [("ids", t["ids"][1], "permutation"), ("cluster_offsets", 5, "cluster_offsets"),
             ("centroids", np.nan, "NaN")]
    if "sq_norms" in t:
        cases.append(("sq_norms", np.inf, "NaN"))
    if "vectors_basis" in t:  # a longer column could overflow the rotated queries
        cases.append(("vectors_basis", 3.0, "orthonormal columns"))
    for name, value, match in cases:
        with pytest.raises(ValueError, match=match):
            LorannIndex.from_bytes(_rewrite(raw, clobber(name, value)))


@pytest.mark.parametrize("blob, match", [
    (b"", "too short"), (b"\x01\x02", "too short"),
    (struct.pack("<Q", 2 ** 40) + b"{}", "exceeds"),
    (struct.pack("<Q", 100) + b"{}", "runs past the end"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid UTF-8 JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 20000) + b"[" * 20000, "not valid UTF-8 JSON"),
    (struct.pack("<Q", 2) + b"{}", "no checksum"),
    (b"PK\x03\x04" + b"\0" * 100, "runs past the end|exceeds"),
])
def test_other_formats_and_garbage(blob, match):
    with pytest.raises(ValueError, match=match):
        LorannIndex.from_bytes(blob)


def test_plain_safetensors_file_is_not_an_index(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones((3, 3), np.float32)}, str(path), metadata={"format": "np"})
    with pytest.raises(ValueError, match="no checksum"):
        LorannIndex.load(path)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        LorannIndex.load(tmp_path / "nope.lorann")


def test_a_file_written_before_the_redesign_still_loads_and_answers_alike(tmp_path):
    """tests/data holds an index (and its answers) saved by the code before the
    build/query/format redesign: the file format and the answers did not change."""
    import pathlib

    from conftest import clustered
    from lorann_wasm.lazy import FileReader, LazyIndex

    folder = pathlib.Path(__file__).parent / "data"
    path = folder / "made-before-the-redesign.lorann"
    want = np.load(folder / "made-before-the-redesign.ids.npy")
    queries = clustered(400, 16, seed=41)[:20] + 0.01
    index = LorannIndex.load(path)
    assert index.params["tuning"]["k"] == 10
    assert np.array_equal(index.search(queries, 5), want)
    assert np.array_equal(LazyIndex(FileReader(path)).search(queries, 5), want)
    index.save(tmp_path / "again.lorann")  # and saves to the same bytes
    assert (tmp_path / "again.lorann").read_bytes() == path.read_bytes()


def test_format_4_files_leave_out_what_nothing_reads_and_older_versions_refuse_them(tmp_path):
    """An inner-product index stores no squared norms, an index numbered by position no
    ids, and a 4-bit one packs B two codes a byte: fewer bytes for a lazy query to
    fetch per probed point (54 -> 26 for wordnet's site). Such a file says version 4."""
    from lorann_wasm.lazy import FileReader, LazyIndex

    data = clustered(3000, 40, seed=8)
    queries = data[:80] + 0.03
    plain = LorannIndex(data, rank=16, seed=2, distance="ip").build(target_recall=None)
    packed = LorannIndex(data, rank=16, seed=2, distance="ip",
                         quantization_bits=4).build(target_recall=None)
    t, p = index_file.decode_index(packed.to_bytes())
    assert t["B"].dtype == np.uint8 and t["B"].shape == (3000, 8) and "sq_norms" not in t
    assert p.quantization_bits == 4
    # and A (the prefix) in 4 bits too: each A_j transposed, its rows packed like B's
    assert p.a_bits == 4 and t["A"].dtype == np.uint8 and t["A"].shape == (
        p.n_clusters, 16, -(-p.global_dim // 2))
    exact = plain.exact_search(queries, 10)
    hits = [np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(i.search(
        queries, 10, clusters_to_search=4, points_to_rerank=100), exact)]) for i in (plain, packed)]
    # 4-bit scorers are coarser: here they need 100 candidates where 8-bit ones need 40
    # (random picks of 100 of the ~220 probed points would find about half)
    assert hits[1] >= hits[0] - 0.02, hits
    before = packed.search(queries, 10)
    old_ids = packed.number_by_position()
    t, p = index_file.decode_index(packed.to_bytes())
    assert "ids" not in t and p.positional_ids
    answer = packed.search(queries, 10)
    assert np.array_equal(old_ids[answer], before)
    assert np.array_equal(LorannIndex.from_bytes(packed.to_bytes()).search(queries, 10), answer)
    path = tmp_path / "p.lorann"
    packed.save(path)
    assert np.array_equal(LazyIndex(FileReader(str(path))).search(queries, 10), answer)
    assert np.array_equal(packed.get_vectors(answer[0]),
                          LorannIndex.load(path).get_vectors(answer[0]))
    assert os.path.getsize(path) < len(plain.to_bytes()) - 3000 * (8 + 8)  # ids, half of B
    for version in ("6", "4", "3", "2"):
        bad = _rewrite(path.read_bytes(), _set_meta("format_version", version))
        with pytest.raises(ValueError, match="format version"):
            LorannIndex.from_bytes(bad)
    l2 = _rewrite(LorannIndex(data[:500], rank=8, distance="l2").build(
        target_recall=None).to_bytes(), _set_param("stores_norms", False))
    with pytest.raises(ValueError, match="squared norms"):
        LorannIndex.from_bytes(l2)


def _documented_tensors():
    """docs/format.md's tensor table: name -> (dtype text, shape text)."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).parent.parent / "docs" / "format.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[\w.]+`", cells[0]):
            rows[cells[0].strip("`")] = (cells[2], cells[3])
    return rows


def test_the_documented_tensor_table_matches_the_code():
    """docs/format.md is the normative table: every tensor any index has is in it,
    with its dtype, and every row of it is a tensor some index has."""
    from lorann_wasm.params import IndexParams
    documented = _documented_tensors()
    assert len(documented) >= 19
    schema = [{"name": "i", "kind": "int"}, {"name": "f", "kind": "float"},
              {"name": "b", "kind": "bool"}, {"name": "s", "kind": "string", "values": ["a"]},
              {"name": "t", "kind": "strings", "values": ["x", "y"]}]
    seen = set()
    for kw in [dict(distance="ip"), dict(distance="l2", quantization_bits=None),
               dict(distance="cosine", quantization_bits=4, rerank_dtype="int8",
                    int8_scales="vector"),
               dict(distance="ip", rerank_dtype="int8", rerank_dims=8, attributes=schema)]:
        p = IndexParams.for_data(100, 40, n_clusters=4, global_dim=16, rank=6, **kw)
        for positional in (False, True):
            for name, (dtype, shape) in index_file.expected_tensors(
                    p.replace(positional_ids=positional)).items():
                key = name if name in documented else name.split(".")[0] + ".NAME"
                assert key in documented, f"{name} is not in docs/format.md"
                assert dtype.name in documented[key][0], (name, dtype, documented[key][0])
                seen.add(key)
    assert seen == set(documented), set(documented) - seen


def test_16_bit_row_checks_catch_every_change_of_one_byte():
    """Format 5 keeps 2 bytes of check per vector row: every one-byte change of a
    row (and its scale) must still change it."""
    rng = np.random.default_rng(9)
    row = rng.integers(-128, 128, (1, 24), dtype=np.int8)
    scale = np.array([0.37], np.float32)
    width = row.nbytes + scale.nbytes
    base = index_file.vector_checks(row, scale, bits=16)
    assert base.dtype == np.uint16
    raw = np.concatenate([row.view(np.uint8), scale.view(np.uint8)[None]], axis=1)
    changed = np.repeat(raw, width * 255, axis=0)
    at = np.repeat(np.arange(width), 255)
    changed[np.arange(len(changed)), at] += np.tile(np.arange(1, 256, dtype=np.uint8), width)
    checks = index_file.vector_checks(changed[:, :row.nbytes].view(np.int8),
                                      changed[:, row.nbytes:].copy().view(np.float32)[:, 0],
                                      bits=16)
    assert len(checks) == width * 255 and not (checks == base[0]).any()


def test_16_bit_scales_lose_only_float16_rounding_and_need_format_6():
    """Format 6 stores B's per-point scales as float16, relative to a power of two
    folded into the cluster's A (an exact product): a point's scale loses only
    float16's rounding, and older readers refuse the file."""
    from lorann_wasm.quantization import half_scales

    rng = np.random.default_rng(4)
    scales = (10.0 ** rng.uniform(-4, 4, 2000)).astype(np.float32)
    half, factor = half_scales(scales)
    assert half.dtype == np.float16 and factor >= scales.max() > factor / 2
    assert float(factor) == 2.0 ** round(float(np.log2(factor)))
    back = half.astype(np.float32) * factor
    normal = scales >= factor * 2.0 ** -14  # float16's normal range: relative rounding
    assert np.all(np.abs(back - scales)[normal] <= scales[normal] * 2.0 ** -11)
    assert np.all(np.abs(back - scales)[~normal] <= factor * 2.0 ** -24)  # below: absolute
    assert (half > 0).all() and 0 < normal.mean() < 1  # (both kinds were tried)
    assert half_scales(np.zeros(0, np.float32))[0].shape == (0,)

    index = LorannIndex(clustered(800, 16, seed=2), rank=8, quantization_bits=4).build()
    raw = index.to_bytes()
    assert safetensors_io.decode(raw)[0]["B_scales"].dtype == np.float16
    with pytest.raises(ValueError, match="need format version 6"):
        LorannIndex.from_bytes(_rewrite(raw, _set_meta("format_version", "5")))


def test_a_4_bit_A_halves_the_prefix_and_keeps_the_answers_of_an_8_bit_one(tmp_path):
    """Format 7 stores A in 4 bits with 4-bit scorers: each column of each A_j keeps
    its scale, codes round to within half a step, the prefix nearly halves, and the
    search finds what the same index with an 8-bit A finds."""
    from lorann_wasm.lazy import FileReader, LazyIndex
    from lorann_wasm.quantization import dequantize_A, quantize_A

    A = np.random.default_rng(4).normal(size=(5, 9, 6)).astype(np.float32)  # odd g packs
    codes, scales = quantize_A(A, 4)
    assert codes.shape == (5, 6, 5) and codes.dtype == np.uint8 and scales.shape == (5, 6)
    back = dequantize_A(codes, scales, 4, 9)
    assert back.shape == A.shape
    assert np.all(np.abs(back - A) <= scales[:, None, :] / 2 + 1e-6)
    assert np.allclose(np.abs(A).max(axis=1), 7 * scales)  # each column's peak is ±7
    assert np.array_equal(dequantize_A(*quantize_A(A, 8), 8, 9).shape, A.shape)

    data = clustered(3000, 40, seed=8)
    queries = data[:200] + 0.03
    four = LorannIndex(data, rank=16, seed=2, quantization_bits=4).build(target_recall=None)
    assert four.params["a_bits"] == 4
    eight = LorannIndex(data, rank=16, seed=2, quantization_bits=4)
    eight._params = eight._params.replace(a_bits=8)
    eight.build(target_recall=None)
    four.save(tmp_path / "4.lorann")
    eight.save(tmp_path / "8.lorann")
    assert safetensors_io.decode((tmp_path / "8.lorann").read_bytes())[1]["format_version"] == "6"
    prefix = [LazyIndex(FileReader(tmp_path / f"{b}.lorann")).prefix_bytes for b in (4, 8)]
    assert prefix[0] < 0.65 * prefix[1], prefix
    setting = dict(clusters_to_search=6, points_to_rerank=60)
    same = np.mean(four.search(queries, 10, **setting) == eight.search(queries, 10, **setting))
    assert same > 0.97, same


def test_attributes_with_checksums_of_their_own_are_fetched_only_to_filter(tmp_path):
    """Format 8 checks the attribute columns apart (``cluster_attribute_crc32``): a
    lazy search that does not filter on them fetches exactly their bytes less than
    in a format-7 twin, a filtered one fetches them with its clusters (also for
    clusters already here without them) and answers as the whole index does, and a
    damaged attribute row fails only the searches that read it."""
    from lorann_wasm.lazy import FileReader, LazyIndex

    rng = np.random.default_rng(3)
    data = clustered(3000, 24, seed=5)
    queries = data[:40] + 0.02
    cat = np.array(["red", "green", "blue"])[rng.integers(0, 3, len(data))]
    year = rng.integers(1990, 2030, len(data))
    build = dict(attributes={"cat": cat, "year": year}, n_clusters=40, rank=8, seed=1,
                 quantization_bits=4)  # as a site's
    index = LorannIndex(data, **build).build(target_recall=None)
    old = LorannIndex(data, **build)
    old._params = old._params.replace(attribute_checksums=False)
    old.build(target_recall=None)
    index.save(tmp_path / "8.lorann")
    old.save(tmp_path / "7.lorann")
    raw = (tmp_path / "8.lorann").read_bytes()
    tensors, meta = safetensors_io.decode(raw)
    assert meta["format_version"] == "8" and index.params["attribute_checksums"]
    assert safetensors_io.decode((tmp_path / "7.lorann").read_bytes())[1][
        "format_version"] == "7"
    assert tensors["cluster_attribute_crc32"].shape == (40,)
    setting = dict(clusters_to_search=6, points_to_rerank=30)
    per_point = 1 + 8  # a category code and an int64 year
    for q in queries[:5]:
        plans = [LazyIndex(FileReader(tmp_path / f"{v}.lorann")).plan(q, 10, **setting)
                 for v in (8, 7)]
        points = int(index._prefix.sizes[np.unique(plans[0].probed)].sum())
        fetched = [sum(b - a for a, b in p.ranges) for p in plans]
        assert fetched[1] - fetched[0] == points * per_point, fetched
    red = {"cat": "red"}
    for path in ("filtered", "exact"):
        lazy = LazyIndex(FileReader(tmp_path / "8.lorann"))
        assert (lazy.search(queries, 10, **setting) == index.search(queries, 10, **setting)
                ).all()
        plan = lazy.plan(queries[0], 10, where=red, filter_path=path)
        # the clusters probed before are here, their attributes not: only those come
        kinds = {part for lo, hi, part in plan.runs}
        assert plan.stage == "clusters" and "attributes" in kinds and plan.ranges
        assert (lazy.search(queries, 10, where=red, filter_path=path)
                == index.search(queries, 10, where=red, filter_path=path)).all()
        assert (cat[lazy.search(queries, 10, where=red)] == "red").all()

    # a damaged category code of a probed cluster: only a filtered search reads it
    header = json.loads(raw[8:8 + struct.unpack_from("<Q", raw)[0]])
    start = 8 + struct.unpack_from("<Q", raw)[0] + header["attr.cat"]["data_offsets"][0]
    probed = int(np.unique(LazyIndex(FileReader(tmp_path / "8.lorann")).plan(
        queries[0], 10, **setting).probed)[0])
    bad = bytearray(raw)
    bad[start + int(index._prefix.offsets[probed])] ^= 1
    (tmp_path / "bad.lorann").write_bytes(bytes(bad))
    damaged = LazyIndex(FileReader(tmp_path / "bad.lorann"))
    assert (damaged.search(queries[0], 10, **setting)
            == index.search(queries[0], 10, **setting)).all()
    with pytest.raises(ValueError, match=f"cluster {probed} failed its attributes' checksum"):
        damaged.search(queries[0], 10, where=red, **setting)
    with pytest.raises(ValueError):
        LorannIndex.from_bytes(bytes(bad))
    with pytest.raises(ValueError, match="attribute checksums need format version 8"):
        LorannIndex.from_bytes(_rewrite(raw, _set_meta("format_version", "7")))
