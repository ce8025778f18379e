"""The per-cluster regressions through any executor give a byte-identical index file."""

import concurrent.futures
import json
import multiprocessing
import os

import numpy as np
import pytest

from conftest import clustered
from build_scripts.demo.wordnet_jsonl import wordnet_documents
from lorann_wasm import LorannIndex
from lorann_wasm.bench.datasets import wordnet_synsets
from lorann_wasm.embed.cache import EmbeddingCache
from lorann_wasm.embed.encoders import cache_name
from lorann_wasm.cli import main
from lorann_wasm.training.out_of_core import build_file
from lorann_wasm.user_cache import user_cache


def _build(data, executor=None):
    return LorannIndex(data, rank=16, distance="l2", seed=4).build(executor=executor).to_bytes()


def _build_out_of_core(path, data, executor=None):
    build_file(data, path, rank=16, distance="l2", seed=4, rerank_dtype="int8",
               executor=executor)
    return path.read_bytes()


@pytest.fixture(scope="module")
def dask_cluster():
    import distributed  # the test extra installs it; a missing Dask must fail, not skip

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster


def test_executors_give_identical_files(dask_cluster, tmp_path):
    import distributed

    data = clustered(6000, 48, seed=17)
    np.save(tmp_path / "d.npy", data)
    serial = _build(data)
    streamed = _build_out_of_core(tmp_path / "serial.lorann", np.load(tmp_path / "d.npy", mmap_mode="r"))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert _build(data, pool) == serial
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert _build(data, pool) == serial
        assert _build_out_of_core(tmp_path / "pool.lorann", data, pool) == streamed
    with distributed.Client(dask_cluster) as client:
        executor = client.get_executor()
        assert _build(data, executor) == serial
        assert _build_out_of_core(tmp_path / "dask.lorann", data, executor) == streamed


def test_cli_workers_and_dask_scheduler(dask_cluster, tmp_path):
    data = clustered(3000, 40, seed=2)
    np.save(tmp_path / "d.npy", data)
    for name, extra in [("1", ["--workers", "1"]), ("2", ["--workers", "2"]),
                        ("dask", ["--dask-scheduler", dask_cluster.scheduler_address])]:
        for mode in ([], ["--out-of-core"]):
            out = tmp_path / f"{name}{''.join(mode)}.lorann"
            assert main(["build", str(tmp_path / "d.npy"), "-o", str(out), "--rank", "8",
                         *extra, *mode]) == 0
    for mode in ("", "--out-of-core"):
        first = (tmp_path / f"1{mode}.lorann").read_bytes()
        assert (tmp_path / f"2{mode}.lorann").read_bytes() == first
        assert (tmp_path / f"dask{mode}.lorann").read_bytes() == first
    assert main(["build", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.lorann"),
                 "--workers", "0"]) == 1
    assert main(["build", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.lorann"),
                 "--workers", "2", "--dask-scheduler", dask_cluster.scheduler_address]) == 1
    assert main(["build", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.lorann"),
                 "--dask-scheduler", "tcp://127.0.0.1:9"]) == 1


def test_site_embedding_on_workers_and_dask_gives_the_same_site(dask_cluster, tmp_path):
    """`lorann-wasm site` embeds the same vectors, and makes a byte-identical site, in this
    process, in a pool of two processes and on a Dask cluster of two worker processes."""

    docs = wordnet_documents(wordnet_synsets()[5000:5600])
    src = tmp_path / "wn.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    versions, vectors = {}, {}
    for name, extra in [("one", ["--workers", "1"]), ("pool", ["--workers", "2"]),
                        ("dask", ["--dask-scheduler", dask_cluster.scheduler_address])]:
        cache = tmp_path / f"cache-{name}"
        cache.mkdir()  # the embeddings start from nothing; the runtime is the user's
        for folder in os.listdir(user_cache()):
            if folder.startswith("pyodide"):
                os.symlink(user_cache(folder), cache / folder)
        assert main(["site", str(src), "-o", str(tmp_path / name), "--cache-dir", str(cache),
                     "--facet-field", "pos", *extra]) == 0
        versions[name] = json.loads((tmp_path / name / "site.json").read_text())["version"]
        texts = [f"{d['title']}: {d['text']}" for d in docs]
        vectors[name] = EmbeddingCache(cache / "embeddings", cache_name("numpy")).vectors(texts)
    assert versions["pool"] == versions["one"] and versions["dask"] == versions["one"]
    np.testing.assert_array_equal(vectors["pool"], vectors["one"])
    np.testing.assert_array_equal(vectors["dask"], vectors["one"])
