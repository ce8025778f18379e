"""The per-cluster regressions through an executor give a byte-identical index."""

import concurrent.futures
import multiprocessing

import numpy as np

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.cli import main


def _build(data, executor=None):
    return LorannIndex(data, rank=16, distance="l2", seed=4).build(executor=executor).to_bytes()


def test_executors_give_identical_files():
    data = clustered(6000, 48, seed=17)
    serial = _build(data)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert _build(data, pool) == serial
    with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert _build(data, pool) == serial


def test_cli_workers(tmp_path):
    data = clustered(3000, 40, seed=2)
    np.save(tmp_path / "d.npy", data)
    for workers in ("1", "2"):
        assert main(["build", str(tmp_path / "d.npy"), "-o", str(tmp_path / f"{workers}.lorann"),
                     "--rank", "8", "--workers", workers]) == 0
    assert (tmp_path / "1.lorann").read_bytes() == (tmp_path / "2.lorann").read_bytes()
    assert main(["build", str(tmp_path / "d.npy"), "-o", str(tmp_path / "x.lorann"),
                 "--workers", "0"]) == 1
