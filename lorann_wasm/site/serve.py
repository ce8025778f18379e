"""Serve a static folder on 127.0.0.1, with the right MIME types and HTTP Range.

Usage: lorann-wasm serve [FOLDER] [--port 8000] [--no-range]
Port 0 picks a free port. Prints the URL once it listens. ``--no-range``
answers every request whole (200), as some static hosts do: to try how a
site behaves there.
"""

import argparse
import functools
import http.server
import os
import re
import sys
import threading

MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".json": "application/json", ".whl": "application/zip", ".zip": "application/zip",
        ".lorann": "application/octet-stream", ".bin": "application/octet-stream",
        ".safetensors": "application/octet-stream", ".css": "text/css", ".html": "text/html"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range`` requests (206 / 416)."""

    #: seconds a connection may sit idle or half-sent before it is closed
    timeout = 30
    #: keep-alive, and no Nagle: a lazy search makes a few hundred small Range
    #: requests; with Nagle's algorithm each kept-alive response waited for a
    #: delayed ACK (300 requests on 6 connections: 2.2 s)
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

    #: False: ignore Range headers, like a host without Range support
    ranges = True

    def end_headers(self):
        if self.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def send_head(self):
        if "\x00" in self.path or "%00" in self.path:
            self.send_error(404, "File not found")
            return None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        match = _RANGE.match(header.strip()) if header is not None else None
        start, end = match.groups() if match else ("", "")
        if (header is None or not self.ranges or os.path.isdir(path) or not (start or end)
                or (start and end and int(end) < int(start))):
            # no Range, or not one valid byte range (several ranges, reversed, empty):
            # ignored, as RFC 9110 (section 14.2) lets a server do: the whole file, 200
            return super().send_head()
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        if start == "":  # suffix range: the last N bytes
            start, end = max(0, size - int(end)), size - 1
        else:
            start, end = int(start), (int(end) if end else size - 1)
        end = min(end, size - 1)
        if start > end or start >= size:
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        return _Limited(f, end - start + 1)


class _Limited:
    """A file object that reads at most ``remaining`` bytes, for copyfile()."""

    def __init__(self, f, remaining):
        self.f, self.remaining = f, remaining

    def read(self, n=-1):
        if self.remaining <= 0:
            return b""
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self.f.read(n)
        self.remaining -= len(data)
        return data

    def close(self):
        self.f.close()


class Server(http.server.ThreadingHTTPServer):
    # a page fetches many ranges at once: 5 queued connections (the default)
    # made some of 200 simultaneous requests wait 8-60 s, 128 none over 0.2 s
    request_queue_size = 128


class NoRangeHandler(Handler):
    ranges = False


def make_server(folder, port=0, ranges=True):
    """A threading HTTP server for ``folder`` on 127.0.0.1 (not started)."""
    handler = functools.partial(Handler if ranges else NoRangeHandler,
                                directory=os.path.abspath(folder))
    server = Server(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def serve_in_background(folder, port=0, ranges=True):
    """Start serving in a daemon thread; returns ``(server, base_url)``."""
    server = make_server(folder, port, ranges)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def add_arguments(ap):
    ap.add_argument("folder", nargs="?", default="site", help="the site folder (default: site)")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    ap.add_argument("--no-range", dest="ranges", action="store_false",
                    help="ignore HTTP Range requests, as some static hosts do")


def run(args):
    """Serve until Ctrl-C; returns an exit code."""
    if not os.path.isfile(os.path.join(args.folder, "index.html")):
        print(f"serve: error: {args.folder}/index.html not found; build the site first "
              "(lorann-wasm site ... -o FOLDER)", file=sys.stderr)
        return 1
    try:
        server = make_server(args.folder, args.port, args.ranges)
    except OSError as exc:
        print(f"serve: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    print(f"Serving {os.path.abspath(args.folder)} at http://127.0.0.1:{server.server_address[1]}/ "
          "(Ctrl-C to stop)", flush=True)
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
