"""Pyodide asset verification, the local static server, and site assembly."""

import http.client
import json
import os
import shutil

import pytest

from lorann_wasm.site import runtime as pyodide_assets
from lorann_wasm.site.serve import serve_in_background


@pytest.fixture(scope="module")
def assets():
    return pyodide_assets.ensure_assets()


def test_assets_match_the_official_lock_file(assets):
    lock = pyodide_assets.verify(assets)
    assert lock["info"]["version"] == "0.27.7"
    for name in ("numpy", "scipy", "openblas"):
        path = os.path.join(assets, lock["packages"][name]["file_name"])
        assert pyodide_assets.sha256(path) == lock["packages"][name]["sha256"]


def test_tampered_wheel_is_refused(assets, tmp_path):
    copy = tmp_path / "pyodide"
    shutil.copytree(assets, copy)
    lock = json.loads((copy / "pyodide-lock.json").read_text())
    wheel = copy / lock["packages"]["numpy"]["file_name"]
    data = bytearray(wheel.read_bytes())
    data[1000] ^= 1
    wheel.write_bytes(bytes(data))
    with pytest.raises(pyodide_assets.AssetError, match="sha256 mismatch for numpy-2.0.2"):
        pyodide_assets.verify(str(copy))
    wheel.unlink()
    with pytest.raises(pyodide_assets.AssetError, match="missing numpy-2.0.2"):
        pyodide_assets.verify(str(copy))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (root / "x.wasm").write_bytes(b"\0asm")
    (root / "m.mjs").write_text("export {}")
    srv, url = serve_in_background(str(root))
    yield srv.server_address[1]
    srv.shutdown()


def _get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_server_ranges(server):
    blob = bytes(range(256)) * 4
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=10-19"})
    assert status == 206 and body == blob[10:20]
    assert headers["content-range"] == "bytes 10-19/1024"
    status, _, body = _get(server, "/blob.bin", {"Range": "bytes=1000-"})
    assert status == 206 and body == blob[1000:]
    status, _, body = _get(server, "/blob.bin", {"Range": "bytes=-4"})
    assert status == 206 and body == blob[-4:]
    status, headers, _ = _get(server, "/blob.bin", {"Range": "bytes=5000-6000"})
    assert status == 416 and headers["content-range"] == "bytes */1024"
    status, headers, body = _get(server, "/blob.bin")
    assert status == 200 and body == blob and headers["accept-ranges"] == "bytes"
    # not one valid range (several, reversed, empty): ignored as RFC 9110 allows, 200
    for ignored in ("bytes=0-1,5-6", "bytes=9-2", "bytes=", "bytes=-", "items=0-4"):
        status, _, body = _get(server, "/blob.bin", {"Range": ignored})
        assert status == 200 and body == blob, ignored


def test_server_survives_hostile_requests(server):
    import socket
    import time

    assert _get(server, "/%00")[0] == 404  # a NUL in the path: an answer, not a dropped line
    host, port = "127.0.0.1", server
    # many connections at once: all answered promptly (a listen backlog of 5 made
    # some wait 8-60 s)
    import concurrent.futures
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(lambda _: _get(server, "/blob.bin", {"Range": "bytes=0-9"})[0],
                                 range(200)))
    assert statuses == [206] * 200 and time.perf_counter() - start < 20
    # a half-sent request holds its connection only until the read timeout
    from lorann_wasm.site.serve import Handler
    assert 0 < Handler.timeout <= 60
    half = socket.create_connection((host, int(port)))
    half.sendall(b"GET /blob.bin HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert _get(server, "/blob.bin")[0] == 200  # others are served meanwhile
    half.close()


def test_server_mime_types_and_binding(server):
    assert _get(server, "/x.wasm")[1]["content-type"] == "application/wasm"
    assert _get(server, "/m.mjs")[1]["content-type"] == "text/javascript"
    assert _get(server, "/nope")[0] == 404
