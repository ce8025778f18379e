"""Serve a static folder on 127.0.0.1, with the right MIME types and HTTP Range.

Usage: lorann-wasm serve [FOLDER] [--port 8000] [--no-range] [--latency-ms MS --rate-mbit R]

Port 0 picks a free port. Prints the URL once it listens. ``Range`` may ask
for one byte range (206) or several (206 ``multipart/byteranges``, as nginx
and Apache answer), or for none that the file holds (416). ``--no-range``
answers every request whole (200), as some static hosts do: to try how a
site behaves there. ``--latency-ms`` and ``--rate-mbit`` emulate a slower
link: every response waits one round trip before its first byte, and all
bodies share one paced rate, so a site can be tried as a visitor far away
would see it (Chromium's own throttling does not slow a service worker's
fetches). Only regular files inside the folder are served: a link that
leads outside it is answered 404. A file asked for whole by a client that
accepts gzip is sent as its sibling ``name.gz`` when there is one (as nginx's
``gzip_static`` does; the site builder writes them, see ``precompress.py``);
a ``Range`` request always gets the plain file's bytes.
"""

import argparse
import functools
import http.server
import os
import re
import secrets
import sys
import threading
import time

from .paths import inside
from .precompress import sibling

MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".json": "application/json", ".whl": "application/zip", ".zip": "application/zip",
        ".lorann": "application/octet-stream", ".bin": "application/octet-stream",
        ".safetensors": "application/octet-stream", ".css": "text/css", ".html": "text/html"}
_RANGES = re.compile(r"bytes=\s*(\d*-\d*(?:\s*,\s*\d*-\d*)*)\s*$")
#: a Range header asking for more ranges is answered whole (Apache's MaxRanges is 200)
MAX_RANGES = 1000
#: digits of a range bound at most; longer is "beyond any file" (and never parsed:
#: Python refuses to read integers of over 4,300 digits)
MAX_DIGITS = 18
#: bytes written at a time when bodies are paced
PACE_CHUNK = 16 << 10
#: the slowest link ``serve`` emulates: a minute per round trip, 1 kbit/s
MAX_LATENCY_MS = 60_000
MIN_RATE_MBIT = 0.001


def parse_ranges(header, size):
    """The byte ranges ``[(start, stop), ...]`` a ``Range`` header asks of a ``size``-byte
    file: None to answer whole (no valid header, or too many ranges), ``[]`` when no
    range overlaps the file (416)."""
    match = _RANGES.match(header.strip()) if header else None
    if not match:
        return None
    specs = [part.strip() for part in match.group(1).split(",")]
    if len(specs) > MAX_RANGES:
        return None
    huge = 10 ** MAX_DIGITS

    def number(text):
        return huge if len(text) > MAX_DIGITS else int(text)

    out = []
    for spec in specs:
        first, last = spec.split("-")
        if not first and not last:
            return None
        if not first:  # suffix: the last N bytes
            n = number(last)
            if n:
                out.append((max(0, size - n), size))
            continue
        if last and _order(last) < _order(first):
            return None  # not a valid range: the header is ignored (RFC 9110, 14.2)
        start, end = number(first), (number(last) if last else huge)
        if start < size:
            out.append((start, min(end + 1, size)))
    return out


def accepts_gzip(header):
    """True if an ``Accept-Encoding`` header accepts gzip (by name or ``*``, q > 0)."""
    quality = {}
    for item in header.lower().split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[name.strip()] = q
    return quality.get("gzip", quality.get("x-gzip", quality.get("*", 0.0))) > 0


def _order(digits):
    """A key that orders decimal strings as their values, however long."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


class Pacer:
    """One link shared by every response: bodies leave at ``rate`` bytes per second,
    in order of arrival."""

    def __init__(self, rate):
        self.rate, self.free_at, self.lock = rate, 0.0, threading.Lock()

    def wait(self, n):
        """Block until ``n`` more bytes may leave."""
        with self.lock:
            now = time.monotonic()
            self.free_at = max(self.free_at, now) + n / self.rate
            delay = self.free_at - now
        if delay > 0:
            time.sleep(delay)


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range`` requests (one range or several), link emulation and
    counters (``server.stats``)."""

    #: seconds a connection may sit idle or half-sent before it is closed
    timeout = 30
    #: keep-alive, and no Nagle: with Nagle's algorithm each kept-alive response
    #: waited for a delayed ACK (300 small Range requests on 6 connections: 2.2 s)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME}

    def log_message(self, fmt, *args):
        if os.environ.get("LORANN_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away, or sat idle past the timeout

    @property
    def ranges(self):
        return getattr(self.server, "ranges", True)

    def end_headers(self):
        if self.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if getattr(self, "_vary", False):
            self.send_header("Vary", "Accept-Encoding")
            self._vary = False
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self):
        start = time.perf_counter()
        self._count_request()
        try:
            super().do_GET()
        finally:
            log = getattr(self.server, "log", None)
            if log is not None:  # (list.append is atomic: no lock)
                log.append((start, time.perf_counter(), self.path.split("?")[0],
                            self.headers.get("Range") is not None))

    def do_HEAD(self):
        self._count_request()
        super().do_HEAD()

    def _count_request(self):
        stats = getattr(self.server, "stats", None)
        if stats is not None:
            with self.server.stats_lock:
                stats["requests"] += 1
                path = self.path.split("?")[0]
                self.server.paths[path] = self.server.paths.get(path, 0) + 1
        latency = getattr(self.server, "latency", 0)
        if latency:
            time.sleep(latency)  # the request's way there and the answer's first byte back

    def _file(self):
        """The regular file inside the served folder that the request names, or None."""
        if "\x00" in self.path or "%00" in self.path:
            return None
        path = self.translate_path(self.path)
        if not inside(path, self.directory):
            return None  # a link out of the folder
        return path

    def send_head(self):
        path = self._file()
        if path is None:
            self.send_error(404, "File not found")
            return None
        if os.path.isdir(path):
            return super().send_head()  # its index.html, or a redirect to add "/"
        if os.path.exists(path) and not os.path.isfile(path):
            self.send_error(404, "File not found")  # a pipe or device is not a page
            return None
        packed = self._sibling(path)
        self._vary = packed is not None or os.path.isfile(sibling(path))
        header = self.headers.get("Range") if self.ranges else None
        if header is None:
            return self._send_packed(path, packed) if packed else super().send_head()
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        ranges = parse_ranges(header, size)
        if ranges is None:
            f.close()
            return self._send_packed(path, packed) if packed else super().send_head()
        if not ranges:
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        ctype = self.guess_type(path)
        self.send_response(206)
        if len(ranges) == 1:
            (start, stop), = ranges
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            return _Parts(f, [(b"", start, stop)], b"")
        boundary = secrets.token_hex(8)
        parts = [((f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes "
                   f"{start}-{stop - 1}/{size}\r\n\r\n").encode(), start, stop)
                 for start, stop in ranges]
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(sum(len(h) + b - a for h, a, b in parts)
                                               + len(tail)))
        self.end_headers()
        return _Parts(f, parts, tail)

    def _sibling(self, path):
        """``path.gz`` when the client accepts gzip and it is a regular file beside
        ``path`` inside the folder (written by the site builder), else None."""
        if not accepts_gzip(self.headers.get("Accept-Encoding", "")) or not os.path.isfile(path):
            return None
        packed = sibling(path)
        if not os.path.isfile(packed) or not inside(packed, self.directory):
            return None
        return packed

    def _send_packed(self, path, packed):
        """Answer 200 with ``packed``'s bytes as ``path`` encoded with gzip."""
        try:
            f = open(packed, "rb")
        except OSError:
            return super().send_head()
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.send_header("Last-Modified", self.date_time_string(int(os.path.getmtime(path))))
        self.end_headers()
        return f

    def copyfile(self, source, outputfile):
        pacer = getattr(self.server, "pacer", None)
        stats = getattr(self.server, "stats", None)
        while True:
            data = source.read(PACE_CHUNK if pacer else 64 << 10)
            if not data:
                break
            if pacer:
                pacer.wait(len(data))
            if stats is not None:  # (counted first: the client may read it at once)
                with self.server.stats_lock:
                    stats["bytes"] += len(data)
            outputfile.write(data)


class _Parts:
    """A file object reading ``parts`` — (header bytes, start, stop) — then ``tail``:
    the body of a 206 answer, one range or several (``multipart/byteranges``)."""

    def __init__(self, f, parts, tail):
        self.f, self.parts, self.tail = f, list(parts), tail
        self.pending, self.remaining = b"", 0

    def read(self, n=-1):
        """Up to ``n`` bytes of the body, across parts: a multipart answer leaves in
        a few large writes, not two per range (each a send of its own, and on an
        emulated link a paced sleep that overshoots). 150 ranges of a WordNet
        query, 184 kB: 6.2 -> 2.3 ms on localhost; 106 -> 80 ms at 20 Mbit/s,
        whose bytes alone take 74 ms."""
        n = 1 << 62 if n is None or n < 0 else n
        out = []
        while n > 0:
            piece = self._next(n)
            if not piece:
                break
            out.append(piece)
            n -= len(piece)
        return b"".join(out)

    def _next(self, n):
        """The next at most ``n`` bytes of one part's header, data, or the tail."""
        while not self.pending and not self.remaining and self.parts:
            head, start, stop = self.parts.pop(0)
            self.pending, self.remaining = head, stop - start
            self.f.seek(start)
        if not self.pending and not self.remaining and not self.parts:
            self.pending, self.tail = self.tail, b""
        if self.pending:
            out, self.pending = self.pending[:n], self.pending[n:]
            return out
        data = self.f.read(min(n, self.remaining)) if self.remaining else b""
        self.remaining -= len(data)
        if self.remaining and not data:
            self.remaining = 0  # the file shrank: end the body early
        return data

    def close(self):
        self.f.close()


class Server(http.server.ThreadingHTTPServer):
    # a page fetches many ranges at once: 5 queued connections (the default)
    # made some of 200 simultaneous requests wait 8-60 s, 128 none over 0.2 s
    request_queue_size = 128
    daemon_threads = True


def make_server(folder, port=0, ranges=True, latency_ms=0, rate_mbit=None):
    """A threading HTTP server for ``folder`` on 127.0.0.1 (not started).

    ``stats`` counts the requests and body bytes it has answered, ``paths`` the
    requests per path; set ``log`` to a list and each GET answered is appended to
    it as ``(start, stop, path, ranged)``, times from ``time.perf_counter``;
    ``latency_ms`` and ``rate_mbit`` emulate a slower link (see the module)."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0-65535, got {port}")
    # (NaN fails both tests; a sleep of inf, or of 1e300 s, raises in every request)
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise ValueError(f"the latency must be 0-{MAX_LATENCY_MS:,} ms, got {latency_ms:g}")
    if rate_mbit is not None and not MIN_RATE_MBIT <= rate_mbit < float("inf"):
        raise ValueError(f"the rate must be at least {MIN_RATE_MBIT:g} Mbit/s "
                         f"(leave it out for no limit), got {rate_mbit:g}")
    handler = functools.partial(Handler, directory=os.path.abspath(folder))
    server = Server(("127.0.0.1", port), handler)
    server.ranges = ranges
    server.latency = latency_ms / 1000
    server.pacer = Pacer(rate_mbit * 1e6 / 8) if rate_mbit else None
    server.stats, server.stats_lock = {"requests": 0, "bytes": 0}, threading.Lock()
    server.paths = {}  # requests per path
    server.log = None
    return server


def serve_in_background(folder, port=0, ranges=True, latency_ms=0, rate_mbit=None):
    """Start serving in a daemon thread; returns ``(server, base_url)``."""
    server = make_server(folder, port, ranges, latency_ms, rate_mbit)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def find_sites(folder, depth=4):
    """Paths (relative, ``/``-separated, ending in ``/``) of the lorann-wasm sites in
    ``folder`` or below it, nearest first; ``""`` is the folder itself."""
    import json

    found = []
    root = os.path.abspath(folder)
    for current, dirs, files in os.walk(root):
        rel = os.path.relpath(current, root)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if level < depth else []
        if "site.json" in files and "index.html" in files:
            try:
                with open(os.path.join(current, "site.json"), encoding="utf-8") as f:
                    made = json.load(f).get("generator") == "lorann-wasm site"
            except (OSError, ValueError, AttributeError):
                made = False
            if made:
                found.append("" if rel == "." else rel.replace(os.sep, "/") + "/")
    return sorted(found, key=lambda p: (p.count("/"), p))


def add_arguments(ap):
    ap.add_argument("folder", nargs="?", default="site",
                    help="the site folder, or a folder holding one (default: site)")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    ap.add_argument("--no-range", dest="ranges", action="store_false",
                    help="ignore HTTP Range requests, as some static hosts do")
    ap.add_argument("--latency-ms", type=float, default=0, metavar="MS",
                    help="emulate a link with this round-trip time (each response waits it)")
    ap.add_argument("--rate-mbit", type=float, default=None, metavar="R",
                    help="emulate a link of this many Mbit/s (all bodies share it)")


def run(args):
    """Serve until Ctrl-C; returns an exit code."""
    if not os.path.isdir(args.folder):
        print(f"serve: error: {args.folder} is not a folder", file=sys.stderr)
        return 1
    page = ""
    if not os.path.isfile(os.path.join(args.folder, "index.html")):
        sites = find_sites(args.folder)
        if not sites:
            print(f"serve: error: {args.folder}/index.html not found and no search site below "
                  "it; build one first (lorann-wasm site ... -o FOLDER)", file=sys.stderr)
            return 1
        page = sites[0]
    try:
        server = make_server(args.folder, args.port, args.ranges, args.latency_ms,
                             args.rate_mbit)
    except ValueError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, OverflowError) as exc:
        print(f"serve: error: cannot listen on 127.0.0.1:{args.port}: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    link = (f" (emulating {args.latency_ms:g} ms round trips"
            + (f", {args.rate_mbit:g} Mbit/s" if args.rate_mbit else "") + ")"
            if args.latency_ms or args.rate_mbit else "")
    print(f"Serving {os.path.abspath(args.folder)} at "
          f"http://127.0.0.1:{server.server_address[1]}/{page}{link} (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
