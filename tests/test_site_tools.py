"""Pyodide asset verification, the local static server, and site assembly."""

import http.client
import json
import os
import shutil

import numpy as np
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


def test_a_site_runtime_leaves_out_only_modules_nothing_imports(assets, tmp_path):
    """A site's python_stdlib.zip is the verified one less STDLIB_DROPPED and legacy
    codecs (every other entry as it was), none of them imported anywhere in
    lorann_wasm; its lock file names NumPy alone, with the official entry."""
    import ast
    import zipfile

    import lorann_wasm

    pyodide_assets.copy_runtime(str(tmp_path / "rt"), src=assets)
    with zipfile.ZipFile(os.path.join(assets, "python_stdlib.zip")) as z:
        original = {i.filename: i.CRC for i in z.infolist()}
    with zipfile.ZipFile(tmp_path / "rt" / "python_stdlib.zip") as z:
        slim = {i.filename: i.CRC for i in z.infolist()}
        assert z.testzip() is None
    dropped = set(original) - set(slim)
    assert dropped == {p for p in original if pyodide_assets.dropped_from_stdlib(p)}
    assert all(slim[p] == original[p] for p in slim)
    assert {"unittest/__init__.py", "xml/dom/minidom.py", "encodings/cp1252.py",
            "encodings/shift_jis.py"} <= dropped
    assert {"encodings/utf_8.py", "encodings/cp437.py", "encodings/aliases.py",
            "zipfile/__init__.py", "email/message.py", "json/decoder.py"} <= set(slim)
    saved = (os.path.getsize(os.path.join(assets, "python_stdlib.zip"))
             - os.path.getsize(tmp_path / "rt" / "python_stdlib.zip"))
    assert saved > 600_000, saved

    root = os.path.dirname(lorann_wasm.__file__)
    imported = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        imported.update(a.name for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        imported.add(node.module)
    assert {"zipfile", "http.server", "argparse"} <= imported
    for module in imported:
        path = module.replace(".", "/")
        assert not any(pyodide_assets.dropped_from_stdlib(p)
                       for p in (path + ".py", path + "/__init__.py")), module

    lock = json.loads((tmp_path / "rt" / "pyodide-lock.json").read_text())
    official = json.loads(open(os.path.join(assets, "pyodide-lock.json")).read())
    assert list(lock["packages"]) == ["numpy"]
    assert lock["packages"]["numpy"] == official["packages"]["numpy"]
    assert lock["info"] == official["info"]
    with_scipy = pyodide_assets.slim_lock(official, ["scipy"])
    assert set(with_scipy["packages"]) == {"scipy", "numpy", "openblas"}


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
    # not valid ranges (reversed, empty, another unit, bounds of 5,000 digits that
    # Python will not read): ignored as RFC 9110 allows, 200
    for ignored in ("bytes=9-2", "bytes=", "bytes=-", "items=0-4", "bytes=0-1,9-2",
                    f"bytes={'9' * 5000}-{'1' * 5000}"):
        status, _, body = _get(server, "/blob.bin", {"Range": ignored})
        assert status == 200 and body == blob, ignored[:40]
    status, headers, _ = _get(server, "/blob.bin", {"Range": f"bytes={'9' * 5000}-"})
    assert status == 416  # starts beyond the file
    status, _, body = _get(server, "/blob.bin", {"Range": f"bytes=1020-{'9' * 5000}"})
    assert status == 206 and body == blob[1020:]


def test_server_sends_gzip_siblings_only_for_whole_files(tmp_path):
    """A file with a ``.gz`` sibling goes gzipped to a client that accepts gzip and asks
    for the whole file; a Range request, or a client without gzip, gets the plain bytes."""
    import gzip
    plain = b"lorann " * 5000
    (tmp_path / "a.js").write_bytes(plain)
    (tmp_path / "a.js.gz").write_bytes(gzip.compress(plain, mtime=0))
    (tmp_path / "b.js").write_bytes(plain)
    srv, _ = serve_in_background(str(tmp_path))
    port = srv.server_address[1]
    try:
        status, headers, body = _get(port, "/a.js", {"Accept-Encoding": "gzip, deflate, br"})
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "text/javascript" and "accept-encoding" in headers["vary"].lower()
        assert int(headers["content-length"]) == len(body) < len(plain) // 10
        assert gzip.decompress(body) == plain
        for accept in ("", "identity", "gzip;q=0, br", "*;q=0"):
            status, headers, body = _get(port, "/a.js", {"Accept-Encoding": accept})
            assert status == 200 and body == plain and "content-encoding" not in headers, accept
        status, headers, body = _get(port, "/a.js", {"Accept-Encoding": "gzip",
                                                     "Range": "bytes=7-13"})
        assert status == 206 and body == plain[7:14] and "content-encoding" not in headers
        status, headers, body = _get(port, "/b.js", {"Accept-Encoding": "gzip"})
        assert status == 200 and body == plain and "content-encoding" not in headers
        status, _, body = _get(port, "/a.js.gz")  # the sibling itself is a file too
        assert status == 200 and gzip.decompress(body) == plain
    finally:
        srv.shutdown()


def _multipart(headers, body):
    """The parts of a multipart/byteranges body: [(start, stop, total, bytes)]."""
    import re
    boundary = re.search(r"boundary=(\S+)", headers["content-type"]).group(1).encode()
    out = []
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        a, b, total = map(int, re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head).groups())
        out.append((a, b + 1, total, data[:-2]))  # the CRLF before the next boundary
    return out


def test_server_answers_several_ranges_in_one_response(server):
    blob = bytes(range(256)) * 4
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=0-1, 500-509,-3,2000-"})
    assert status == 206 and headers["content-type"].startswith("multipart/byteranges")
    assert int(headers["content-length"]) == len(body)
    parts = _multipart(headers, body)
    assert [(a, b) for a, b, _, _ in parts] == [(0, 2), (500, 510), (1021, 1024)]
    assert all(total == 1024 and data == blob[a:b] for a, b, total, data in parts)
    # one satisfiable range of several: a plain 206
    status, headers, body = _get(server, "/blob.bin", {"Range": "bytes=5000-6000,7-8"})
    assert status == 206 and body == blob[7:9] and headers["content-range"] == "bytes 7-8/1024"
    status, _, body = _get(server, "/blob.bin", {"Range": ",".join(["0-0"] * 1001)})
    assert status == 200 and body == blob  # more ranges than any page asks for: whole


def test_many_ranges_and_long_ones_arrive_whole_and_in_order(tmp_path):
    # a body is written in reads that cross parts (and, paced, in 16 kB pieces)
    blob = np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (tmp_path / "a.bin").write_bytes(blob)
    ranges = [(i * 997, i * 997 + 1 + i % 90) for i in range(140)] + [(150_000, 290_000)]
    header = "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in ranges)
    for rate in (None, 200):
        srv, _ = serve_in_background(str(tmp_path), rate_mbit=rate)
        try:
            status, headers, body = _get(srv.server_address[1], "/a.bin", {"Range": header})
        finally:
            srv.shutdown()
        assert status == 206 and int(headers["content-length"]) == len(body), rate
        parts = _multipart(headers, body)
        assert [(a, b) for a, b, _, _ in parts] == ranges, rate
        assert all(data == blob[a:b] for a, b, _, data in parts), rate


def test_server_emulates_a_slow_link_and_counts(tmp_path):
    import time
    (tmp_path / "a.bin").write_bytes(b"x" * 250_000)
    srv, url = serve_in_background(str(tmp_path), latency_ms=100, rate_mbit=8)
    srv.log = []  # each answer: (start, stop, path, ranged)
    try:
        port = srv.server_address[1]
        t = time.perf_counter()
        assert _get(port, "/a.bin", {"Range": "bytes=0-9"})[2] == b"x" * 10
        small = time.perf_counter() - t
        t = time.perf_counter()
        assert len(_get(port, "/a.bin?v=2")[2]) == 250_000
        big = time.perf_counter() - t
        assert srv.stats == {"requests": 2, "bytes": 250_010}
    finally:
        srv.shutdown()
    assert 0.1 <= small < 0.5  # one round trip
    assert big >= 0.1 + 0.25  # a round trip, then 250 kB at 1 MB/s
    assert [(path, ranged) for _, _, path, ranged in srv.log] == [("/a.bin", True),
                                                                 ("/a.bin", False)]
    assert all(0.1 <= stop - start for start, stop, _, _ in srv.log)
    assert srv.log[1][1] - srv.log[1][0] >= 0.35


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


def test_server_never_serves_what_lies_outside_its_folder(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (tmp_path / "secret.env").write_text("TOKEN=1")
    (www / "page.html").write_text("<p>hi</p>")
    os.symlink(tmp_path / "secret.env", www / "notes.txt")  # leads out: never served
    os.symlink(www / "page.html", www / "alias.html")  # stays inside: served
    os.mkfifo(www / "pipe")  # not a regular file: refused, not waited on
    srv, _ = serve_in_background(str(www))
    try:
        port = srv.server_address[1]
        assert _get(port, "/notes.txt")[0] == 404
        assert _get(port, "/notes.txt", {"Range": "bytes=0-3"})[0] == 404
        assert _get(port, "/pipe")[0] == 404
        assert _get(port, "/alias.html")[:1] == (200,)
        assert _get(port, "/../secret.env")[0] == 404
    finally:
        srv.shutdown()


def test_serve_command_says_what_is_wrong_in_one_line(tmp_path, capsys):
    from lorann_wasm.site import serve
    site = tmp_path / "public" / "search"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<p>search</p>")
    (site / "site.json").write_text(json.dumps({"generator": "lorann-wasm site"}))
    # a folder holding a search site below it: served, opening at the search page
    assert serve.find_sites(tmp_path / "public") == ["search/"]
    assert serve.find_sites(site) == [""]
    assert serve.find_sites(tmp_path / "public" / "nothing") == []
    (tmp_path / "empty").mkdir()
    for argv in ([str(site), "--port", "70000"], [str(tmp_path / "missing")],
                 [str(tmp_path / "empty")], [str(site), "--rate-mbit", "0"],
                 [str(site), "--rate-mbit", "nan"], [str(site), "--rate-mbit", "inf"],
                 [str(site), "--latency-ms", "nan"], [str(site), "--latency-ms", "1e300"]):
        capsys.readouterr()
        assert serve.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("serve: error: ") and err.count("\n") == 1, err
