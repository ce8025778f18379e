"""The lorann-wasm command: every input format, the subcommands, and clean errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import ExactIndex, LorannIndex
from lorann_wasm.cli import main
from lorann_wasm.io import read_vectors

DATA = clustered(3000, 64, seed=5)
QUERIES = clustered(3100, 64, seed=5)[3000:] + 0.05


def _fvecs(path, x, dtype):
    with open(path, "wb") as f:
        for row in x:
            f.write(np.int32(len(row)).tobytes())
            f.write(row.astype(dtype).tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    np.save(d / "data.npy", DATA)
    np.save(d / "queries.npy", QUERIES)
    _fvecs(d / "data.fvecs", DATA, "<f4")
    bytes_data = np.clip(DATA * 10 + 128, 0, 255).astype(np.uint8)
    _fvecs(d / "data.bvecs", bytes_data, "u1")
    import h5py
    with h5py.File(d / "ann.hdf5", "w") as f:
        f.attrs["distance"] = "euclidean"
        f["train"] = DATA
        f["test"] = QUERIES
        f["neighbors"] = ExactIndex(DATA, distance="l2").search(QUERIES, 100)
    return d, bytes_data


def test_readers_agree(files):
    d, bytes_data = files
    assert np.array_equal(read_vectors(d / "data.npy"), DATA)
    assert np.array_equal(read_vectors(d / "data.fvecs"), DATA)
    assert np.array_equal(read_vectors(d / "data.bvecs"), bytes_data)
    assert np.array_equal(read_vectors(d / "ann.hdf5", "test"), QUERIES)


@pytest.mark.parametrize("name", ["data.npy", "data.fvecs", "data.bvecs", "ann.hdf5"])
def test_build_each_format(files, name, capsys):
    d, _ = files
    out = d / f"{name}.lorann"
    assert main(["build", str(d / name), "-o", str(out), "--distance", "l2", "--rank", "16"]) == 0
    text = capsys.readouterr().out
    assert "3,000 vectors" in text and "x raw float32" in text
    index = LorannIndex.load(out)
    assert index.n == 3000 and index.dim == 64 and index.params["tuning"]
    if name == "ann.hdf5":  # tuned recall next to the recall measured on real held-out queries
        assert "measured on held-out test queries" in text


def test_search_and_info(files, tmp_path, capsys):
    d, _ = files
    index_path = tmp_path / "i.lorann"
    assert main(["build", str(d / "data.npy"), "-o", str(index_path), "--rank", "16",
                 "--target-recall", "none", "--rerank-dtype", "int8"]) == 0
    capsys.readouterr()
    assert main(["search", str(index_path), str(d / "queries.npy"), "-k", "5",
                 "-o", str(tmp_path / "ids.npy"), "--distances", str(tmp_path / "d.npy")]) == 0
    ids = np.load(tmp_path / "ids.npy")
    assert ids.shape == (100, 5)
    assert np.array_equal(ids, LorannIndex.load(index_path).search(QUERIES, 5))
    assert main(["search", str(index_path), str(d / "queries.npy"), "-k", "3",
                 "--clusters-to-search", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 100 and len(lines[0].split()) == 3
    assert main(["info", str(index_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checksum"].endswith("(ok)") and info["params"]["rerank_dtype"] == "int8"
    assert info["lazy_loading"] is True
    assert info["arrays"]["vectors"].startswith("int8 [3000, 64]")


def test_build_with_rerank_dims(files, tmp_path, capsys):
    d, _ = files
    out = tmp_path / "dims.lorann"
    assert main(["build", str(d / "data.npy"), "-o", str(out), "--rank", "16",
                 "--rerank-dtype", "int8", "--rerank-dims", "40"]) == 0
    assert "rerank int8 along 40 of 64 directions" in capsys.readouterr().out
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arrays"]["vectors"].startswith("int8 [3000, 40]")
    assert info["arrays"]["vectors_basis"].startswith("float32 [64, 40]")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "lorann_wasm", *args], capture_output=True,
                          text=True, cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize("make_args, message", [
    (lambda d: ["build", str(d / "missing.npy"), "-o", str(d / "x.lorann")], "does not exist"),
    (lambda d: ["build", str(d / "data.npy"), "-o", str(d / "x.lorann"), "--rank", "100"],
     "rank=100 is larger"),
    (lambda d: ["build", str(d / "data.npy"), "-o", str(d / "no/such/dir/x.lorann"), "--rank", "8",
                "--target-recall", "none"], "No such file or directory"),
    (lambda d: ["build", str(d / "notes.txt"), "-o", str(d / "x.lorann")], "unknown extension"),
    (lambda d: ["build", str(d / "short.fvecs"), "-o", str(d / "x.lorann")], "not a multiple"),
    (lambda d: ["build", str(d / "ann.hdf5"), "--key", "nope", "-o", str(d / "x.lorann")],
     "has no dataset 'nope'"),
    (lambda d: ["search", str(d / "data.npy"), str(d / "queries.npy")], "invalid index file"),
    (lambda d: ["info", str(d / "garbage.lorann")], "invalid index file"),
    (lambda d: ["search", str(d / "good.lorann"), str(d / "wrongdim.npy")], "dimension 7"),
    (lambda d: ["build", str(d / "data.npy"), "-o", str(d / "x.lorann"), "--distance", "hamming"],
     "invalid choice"),
    (lambda d: ["build", str(d / "data.npy")], "required: -o/--output"),
    (lambda d: ["build", str(d / "data.npy"), "-o", str(d / "x.lorann"), "--rerank-dims", "65"],
     "rerank_dims must be <= 64"),
    (lambda d: ["search", str(d / "good.lorann"), str(d / "queries.npy"), "-k", "0"],
     "k must be >= 1"),
    (lambda d: ["bench", str(d / "ann.hdf5"), "--runs", "0"], "expected a whole number >= 1"),
])
def test_errors_are_one_line(files, make_args, message):
    d, _ = files
    (d / "notes.txt").write_text("hello")
    (d / "short.fvecs").write_bytes(np.int32(4).tobytes() + b"\0" * 10)
    (d / "garbage.lorann").write_bytes(b"\0" * 64)
    np.save(d / "wrongdim.npy", np.zeros((3, 7), np.float32))
    if not (d / "good.lorann").exists():
        LorannIndex(DATA, rank=8).build(target_recall=None).save(d / "good.lorann")
    result = _run(*make_args(d))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lorann-wasm: error:") and message in last, result.stderr


def test_bench_on_hdf5(files, tmp_path):
    d, _ = files
    result = _run("bench", str(d / "ann.hdf5"), "--queries", "50", "--single", "20",
                  "--runs", "2", "--methods", "lorann_wasm,exact,faiss-ivf,numpy-ivf",
                  "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "run 2 of 2" in result.stderr
    # the methods take turns setting by setting, in reverse order on the second run
    first, second = result.stderr.split("run 2 of 2")
    timed = [line.split()[0] for line in first.split("run 1 of 2")[1].splitlines()
             if line.startswith("  ")]
    assert timed[:4] == ["lorann_wasm", "exact", "faiss", "numpy"], timed
    timed = [line.split()[0] for line in second.splitlines() if line.startswith("  ")]
    assert timed[:4] == ["numpy", "faiss", "exact", "lorann_wasm"], timed
    for name in ("results.json", "results.csv", "pareto.md", "recall_qps.png"):
        assert (tmp_path / "r" / name).exists()
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    exact = [r for r in data["rows"] if r["method"] == "exact (numpy)"]
    assert exact and exact[0]["recall"] == 1.0
    ours = [r for r in data["rows"] if r["method"] == "lorann_wasm"]
    assert max(r["recall"] for r in ours) >= 0.99
    floor = sorted((r["setting"]["nprobe"], r["recall"]) for r in data["rows"]
                   if r["method"] == "numpy IVF-Flat (floor)")
    assert len(floor) > 1 and floor[-1][1] >= 0.99  # the most clusters probed: ~exact
    assert floor[0][1] < floor[-1][1]
    # one row per setting, the best of the two runs
    settings = [json.dumps(r["setting"], sort_keys=True) for r in ours]
    assert len(settings) == len(set(settings)) > 1
    assert all(r["qps_single"] > 0 and r["qps_batch"] > 0 for r in data["rows"])
    assert "| lorann_wasm |" in (tmp_path / "r" / "pareto.md").read_text()


def test_bench_skips_a_peer_that_refuses_the_data(tmp_path):
    import h5py
    low = clustered(2000, 32, seed=6)  # C++ LoRANN refuses d < 64
    with h5py.File(tmp_path / "low.hdf5", "w") as f:
        f["train"], f["test"] = low[:1900], low[1900:]
        f["neighbors"] = ExactIndex(low[:1900]).search(low[1900:], 10)
    result = _run("bench", str(tmp_path / "low.hdf5"), "--single", "20", "--runs", "1",
                  "--methods", "lorann_wasm,lorann-cpp", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "lorann (C++): cannot index this data, skipped" in result.stderr
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert {r["method"] for r in data["rows"]} == {"lorann_wasm"}


def test_build_options_are_the_index_parameters():
    """Every build parameter of IndexParams.for_data is a `lorann-wasm build` option with
    the library's own default (stated once, in the signature), and parses to it."""
    import inspect

    from lorann_wasm.cli import BUILD_HELP, _build_kwargs, make_parser
    from lorann_wasm.params import IndexParams

    params = {k: p.default for k, p in inspect.signature(IndexParams.for_data).parameters.items()
              if p.kind is p.KEYWORD_ONLY and k != "attributes"}  # (--attributes FILE)
    assert set(BUILD_HELP) == set(params)
    args = make_parser().parse_args(["build", "x.npy", "-o", "x.lorann"])
    assert _build_kwargs(args) == params
    args = make_parser().parse_args(["build", "x.npy", "-o", "x.lorann", "--quantization-bits",
                                     "none", "--rank", "8", "--distance", "l2"])
    assert _build_kwargs(args) == {**params, "quantization_bits": None, "rank": 8,
                                   "distance": "l2"}
