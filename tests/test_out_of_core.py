"""The out-of-core build: same index quality as in memory, bounded reads, clean failures."""

import os

import h5py
import numpy as np
import pytest

from conftest import clustered, recall
from lorann_wasm import LorannIndex
from lorann_wasm.cli import main
from lorann_wasm.params import IndexParams
from lorann_wasm.training.out_of_core import build_file, memory_bound
from lorann_wasm.training.sources import RowSource, open_vectors


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ooc")
    both = clustered(8200, 64, seed=21)
    np.save(folder / "data.npy", both[:8000])
    return folder, both[:8000], both[8000:]


@pytest.mark.parametrize("kw", [
    dict(distance="l2"),
    dict(distance="ip", rerank_dtype="int8", global_dim=32),
    dict(distance="cosine", rerank_dtype="float16", quantization_bits=None),
    dict(distance="l2", rerank_dtype="int8", int8_scales="vector"),
])
def test_matches_in_memory_quality(mixture, tmp_path, kw):
    folder, data, queries = mixture
    params = build_file(np.load(folder / "data.npy", mmap_mode="r"), tmp_path / "a.lorann",
                        rank=16, seed=3, **kw)
    streamed = LorannIndex.load(tmp_path / "a.lorann")  # full checksum and value validation
    assert streamed.params == params
    in_memory = LorannIndex(data, rank=16, seed=3, **kw).build(target_recall=None)
    truth = in_memory.exact_search(queries, 10)
    assert np.array_equal(streamed.exact_search(queries, 10), truth)
    setting = dict(clusters_to_search=6, points_to_rerank=80)
    r_streamed = recall(streamed.search(queries, 10, **setting), truth)
    r_memory = recall(in_memory.search(queries, 10, **setting), truth)
    assert r_streamed > 0.85 and abs(r_streamed - r_memory) < 0.02
    assert sorted(os.listdir(tmp_path)) == ["a.lorann"], "scratch or temporary file left behind"


def test_sources_give_identical_files(mixture, tmp_path):
    folder, data, _ = mixture
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["train"] = data
    files = []
    for name, src in [("npy", np.load(folder / "data.npy", mmap_mode="r")), ("array", data),
                      ("hdf5", open_vectors(tmp_path / "d.hdf5")),
                      ("memmap", np.memmap(tmp_path / "raw.f32", np.float32, "w+", shape=data.shape))]:
        if name == "memmap":
            src[:] = data
            src.flush()
        build_file(src, tmp_path / f"{name}.lorann", rank=8, seed=1)
        files.append((tmp_path / f"{name}.lorann").read_bytes())
    assert all(f == files[0] for f in files[1:])


def test_training_queries(mixture, tmp_path):
    folder, data, queries = mixture
    build_file(data, tmp_path / "t.lorann", rank=8, training_queries=queries, distance="l2")
    index = LorannIndex.load(tmp_path / "t.lorann")
    truth = index.exact_search(queries, 10)
    assert recall(index.search(queries, 10, clusters_to_search=8, points_to_rerank=100), truth) > 0.9
    with pytest.raises(ValueError, match="dimension 3"):
        build_file(data, tmp_path / "u.lorann", training_queries=np.ones((5, 3), np.float32))


def test_bad_input_fails_cleanly(tmp_path):
    data = clustered(3000, 16, seed=2)
    data[2500, 3] = np.nan
    np.save(tmp_path / "nan.npy", data)
    with pytest.raises(ValueError, match="row 2500 contains NaN"):
        build_file(np.load(tmp_path / "nan.npy", mmap_mode="r"), tmp_path / "x.lorann", rank=8)
    big = clustered(3000, 16, seed=2) * 1e5
    with pytest.raises(ValueError, match="float16"):
        build_file(big, tmp_path / "x.lorann", rerank_dtype="float16", rank=8)
    with pytest.raises(ValueError, match="2-D"):
        build_file(np.zeros(5, np.float32), tmp_path / "x.lorann")
    with pytest.raises(TypeError, match="array-like"):
        build_file([[1.0, 2.0]], tmp_path / "x.lorann")
    with pytest.raises(ValueError, match="n_clusters=4000"):
        build_file(clustered(3000, 16), tmp_path / "x.lorann", n_clusters=4000, rank=8)
    assert sorted(os.listdir(tmp_path)) == ["nan.npy"], "partial output left behind"


def test_memmap_is_read_without_mapping_it(mixture):
    folder, data, _ = mixture
    src = RowSource(np.load(folder / "data.npy", mmap_mode="r"))
    assert src._file is not None  # reads go through the file, not the mapping
    assert np.array_equal(src.read(100, 300), data[100:300])
    assert np.array_equal(src.take(np.array([0, 5, 7999])), data[[0, 5, 7999]])
    view = RowSource(np.load(folder / "data.npy", mmap_mode="r")[10:])
    assert view._file is None and np.array_equal(view.read(0, 5), data[10:15])


def test_memory_bound_is_independent_of_data_bytes():
    small, _ = memory_bound(4_000_000, 128, IndexParams.for_data(
        4_000_000, 128, n_clusters=2000, global_dim=128))
    wide, parts = memory_bound(4_000_000, 384, IndexParams.for_data(
        4_000_000, 384, n_clusters=2000, global_dim=128))
    assert wide < 4_000_000 * 128 * 4 and wide - small < 64 << 20
    assert any("largest phase" in k for k in parts)


def test_cli_out_of_core(mixture, tmp_path):
    folder, data, queries = mixture
    out = tmp_path / "c.lorann"
    assert main(["build", str(folder / "data.npy"), "-o", str(out), "--out-of-core",
                 "--distance", "l2", "--rank", "8"]) == 0
    index = LorannIndex.load(out)
    assert index.n == 8000 and "tuning" not in index.params
    assert main(["build", str(tmp_path / "missing.npy"), "-o", str(out), "--out-of-core"]) == 1
    (tmp_path / "x.txt").write_text("hi")
    assert main(["build", str(tmp_path / "x.txt"), "-o", str(out), "--out-of-core"]) == 1
