"""Reliability: every build that succeeds loads, no input gives a silently wrong answer,
interrupts leave nothing behind. Each test reproduces one way it used to go wrong."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.bridge import Session
from lorann_wasm.training.out_of_core import build_file
from lorann_wasm.cli import main
from lorann_wasm.format import index_file
from lorann_wasm.lazy import FileReader, LazyIndex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small():
    data = clustered(2000, 32, seed=3)
    return data, LorannIndex(data, n_clusters=20, rank=8, distance="l2").build()


def test_data_whose_arithmetic_overflows_is_refused_and_the_old_file_kept(tmp_path):
    x = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32) * 1e19
    with pytest.raises(ValueError, match="too large.*scale"):
        LorannIndex(x, n_clusters=20, rank=8).build()
    with pytest.raises(ValueError, match="too large.*scale"):
        build_file(x, tmp_path / "x.lorann", n_clusters=20, rank=8)
    keep = tmp_path / "keep.lorann"
    LorannIndex(x / 1e19, n_clusters=20, rank=8).build(target_recall=None).save(keep)
    before = keep.read_bytes()
    np.save(tmp_path / "big.npy", x)
    for extra in ([], ["--out-of-core"]):
        assert main(["build", str(tmp_path / "big.npy"), "-o", str(keep), *extra]) == 1
        assert keep.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["big.npy", "keep.lorann"]  # no temporary left
    near_max = np.random.default_rng(1).uniform(-3e38, 3e38, (500, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="too large"):
        LorannIndex(near_max, n_clusters=5, rank=4, rerank_dtype="int8").build()


def test_quantization_bits_is_an_integer_checked_up_front(tmp_path):
    data = clustered(600, 16, seed=2)
    with pytest.raises(TypeError, match="quantization_bits must be an integer"):
        LorannIndex(data, quantization_bits=8.0)
    index = LorannIndex(data, quantization_bits=np.int64(8), rank=4).build(target_recall=None)
    index.save(tmp_path / "q.lorann")
    assert LorannIndex.load(tmp_path / "q.lorann").params["quantization_bits"] == 8


def test_save_refuses_what_load_would_refuse(small, tmp_path, monkeypatch):
    _, index = small
    path = tmp_path / "s.lorann"
    index.save(path)
    before = path.read_bytes()
    broken = dict(index._tensors, sq_norms=np.full(index.n, np.inf, np.float32))
    monkeypatch.setattr(index, "_tensors", broken)
    with pytest.raises(ValueError, match="refusing to write.*NaN or infinite"):
        index.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["s.lorann"]


def test_huge_queries_are_refused_alike_single_and_batch(small):
    data, index = small
    for q in (data[0] * 1e30, data[:3] * 1e30):
        with pytest.raises(ValueError, match="too large"):
            index.search(q, 5)
    ip = LorannIndex(data, n_clusters=20, rank=8, distance="ip").build(target_recall=None)
    with pytest.raises(ValueError, match="too large"):
        ip.search(data[:3] * 1e37, 5)
    scaled = data[:20] * 1e15  # large but within range: single and batch agree, -1 only pads
    batch = index.search(scaled, 5, clusters_to_search=2, points_to_rerank=5)
    single = np.array([index.search(q, 5, clusters_to_search=2, points_to_rerank=5)
                       for q in scaled])
    assert np.array_equal(batch, single)
    for row in batch:
        assert (row[:np.count_nonzero(row >= 0)] >= 0).all()


def _resign(tensors, params, monkeypatch):
    """File bytes for ``tensors`` with every checksum right (the semantic checks alone)."""
    monkeypatch.setattr(index_file, "check_publishable", lambda *a, **k: None)
    tensors = dict(tensors, **index_file.cluster_crcs(tensors, params))
    head, chunks = index_file.encode_index(tensors, params)
    monkeypatch.undo()
    return b"".join([head, *chunks])


def test_an_empty_last_cluster_is_searched_alike(small, monkeypatch, tmp_path):
    data, index = small
    off = index._tensors["cluster_offsets"].copy()
    off[-2] = off[-1]  # the last cluster's points now belong to the one before: it is empty
    raw = _resign(dict(index._tensors, cluster_offsets=off), index._params, monkeypatch)
    loaded = LorannIndex.from_bytes(raw)
    (tmp_path / "e.lorann").write_bytes(raw)
    lazy = LazyIndex(FileReader(tmp_path / "e.lorann"))
    kw = dict(clusters_to_search=20, points_to_rerank=50)
    batch = loaded.search(data[:10], 5, **kw)
    assert np.array_equal(batch, [loaded.search(q, 5, **kw) for q in data[:10]])
    assert np.array_equal(batch, lazy.search(data[:10], 5, **kw))
    assert (batch >= 0).all()


def test_lazy_and_full_loading_refuse_repeated_ids(small, monkeypatch, tmp_path):
    data, index = small
    raw = _resign(dict(index._tensors, ids=np.zeros(index.n, np.int64)), index._params,
                  monkeypatch)
    with pytest.raises(ValueError, match="permutation"):
        LorannIndex.from_bytes(raw)
    (tmp_path / "z.lorann").write_bytes(raw)
    with pytest.raises(ValueError, match="permutation|another cluster"):
        LazyIndex(FileReader(tmp_path / "z.lorann")).search(data[0], 5)
    # ids distinct within each cluster but repeated across two: only a lazy reader that
    # remembers which cluster holds which id can tell (fetched in one round, the two
    # clusters' ids are checked together; fetched apart, against the one before)
    ids = index._tensors["ids"].copy()
    off = index._tensors["cluster_offsets"]
    ids[off[1]] = ids[off[0]]
    raw = _resign(dict(index._tensors, ids=ids), index._params, monkeypatch)
    (tmp_path / "y.lorann").write_bytes(raw)
    lazy = LazyIndex(FileReader(tmp_path / "y.lorann"))
    with pytest.raises(ValueError, match="another cluster|occurs twice"):
        lazy.search(data[:50], 5, clusters_to_search=20)
    store = LazyIndex(FileReader(tmp_path / "y.lorann"))._store
    counts = {"bytes": 0, "requests": 0, "clusters": 0}

    def supply(j):  # cluster j alone, in a round of its own
        run = [(j, j + 1, "scorers")]
        store.supply(run, [memoryview(raw)[a:b] for a, b in store._ranges(run)], counts)

    supply(0)
    with pytest.raises(ValueError, match="another cluster"):
        supply(1)


@pytest.mark.parametrize("bad", [7, -1, float("nan"), True, "0.9"])
def test_target_recall_is_validated_when_searching(small, bad):
    _, index = small
    with pytest.raises((ValueError, TypeError), match="target_recall"):
        index.search(small[0][0], 5, target_recall=bad)


def test_cli_refuses_bad_recalls_and_distances_without_output(small, tmp_path, capsys):
    data, index = small
    index.save(tmp_path / "i.lorann")
    np.save(tmp_path / "q.npy", data[:5])
    with pytest.raises(SystemExit) as exit_:
        main(["search", str(tmp_path / "i.lorann"), str(tmp_path / "q.npy"),
              "--target-recall", "7"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["build", str(tmp_path / "q.npy"), "-o", str(tmp_path / "o.lorann"),
              "--out-of-core", "--target-recall", "-3"])
    assert exit_.value.code == 2
    assert main(["search", str(tmp_path / "i.lorann"), str(tmp_path / "q.npy"),
                 "--distances", str(tmp_path / "d.npy")]) == 1
    assert "--distances needs -o" in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()


@pytest.mark.parametrize("extra", [[], ["--out-of-core"]])
def test_an_empty_npy_file_is_one_clear_error(tmp_path, capsys, extra):
    (tmp_path / "empty.npy").write_bytes(b"")
    assert main(["build", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "o.lorann"),
                 *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lorann-wasm: error:") and "empty.npy" in err[-1]
    assert "Traceback" not in "".join(err)


def test_info_on_a_tuning_record_without_k_is_one_clear_error(small, monkeypatch, tmp_path,
                                                              capsys):
    _, index = small
    tuning = {k: v for k, v in index.params["tuning"].items() if k != "k"}
    params = index._params
    monkeypatch.setattr(index_file, "check_publishable", lambda *a, **k: None)
    monkeypatch.setattr(type(params), "__post_init__", lambda self: None)
    head, chunks = index_file.encode_index(index._tensors, params.replace(tuning=tuning))
    monkeypatch.undo()
    (tmp_path / "t.lorann").write_bytes(b"".join([head, *chunks]))
    assert main(["info", str(tmp_path / "t.lorann")]) == 1
    assert "tuning table" in capsys.readouterr().err


def test_the_bridge_answers_every_bad_call_with_a_readable_error(small, tmp_path):
    _, index = small
    session = Session()
    session.load(index.to_bytes())
    q = np.zeros(32, np.float32).tobytes()
    for call in (lambda: session.search(q, 1, 5, 0, float("inf")),
                 lambda: session.search(q, 1, 5, 0, 2.5),
                 lambda: session.search(q, float("nan"), 5),
                 lambda: session.supply([]),
                 lambda: session.finish(),
                 lambda: session.embed(json.dumps(1e400)),
                 lambda: session.load_lazy(type("R", (), {"read": lambda self, r: []})())):
        with pytest.raises((ValueError, TypeError)) as err:
            call()
        assert str(err.value)  # a message a person can read
    plan = json.loads(session.plan(q, 1, 5))
    assert plan["ranges"] == []
    session.supply([])
    ids, _ = session.finish()
    assert np.array_equal(ids, index.search(np.zeros(32, np.float32), 5))


def test_small_clusters_do_not_blow_up_memory():
    data = clustered(2000, 32, seed=4)
    index = LorannIndex(data, n_clusters=1000, rank=4).build(target_recall=None)
    arrays = index._store.arrays
    b_rows = index.n * 4 * 4
    # rows of B and one bias each; 32-row blocks per cluster once took ~16x here
    assert sum(s.nbytes for s in arrays.scorers) <= 2 * b_rows
    assert np.array_equal(index.search(data[:20], 5),
                          [index.search(q, 5) for q in data[:20]])


def _session_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("how", [["--workers", "2"], ["--out-of-core"]])
def test_sigterm_stops_the_build_its_workers_and_removes_temporary_files(tmp_path, how):
    x = clustered(150_000, 64, seed=9)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorann_wasm", "build", str(tmp_path / "x.npy"), "-o",
         str(out / "x.lorann"), "--target-recall", "none", *how],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = ""
    while "regressions" not in seen and "assigning" not in seen:  # well into the build
        line = proc.stderr.readline()
        assert line, f"the build ended early: {seen}"
        seen += line
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 143, err
    assert "terminated" in err and "Traceback" not in err, err
    deadline = time.time() + 20
    while _session_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _session_alive(proc.pid), "worker processes outlived the build"
    assert os.listdir(out) == []  # neither the index nor a temporary file
