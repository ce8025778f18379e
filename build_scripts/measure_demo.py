"""Measure a site made by `lorann-wasm site` in headless Chromium.

Serves the site (default ``site/``) on 127.0.0.1 and counts the bytes the
server sends. A first visit (cold: no cache): time to ready and to the
first answer, bytes downloaded, and per typed query the bytes fetched and
the embed and search times. Then a second visit (the service worker
answers) and a visit with the server stopped. Saves a screenshot.

Usage: python -m build_scripts.measure_demo [--site site] [--page PATH] [--queries Q...]
                                           [--facet NAME=VALUE]... [--screenshot docs/demo.png]
``--page`` is the search page's path under the served folder (for a search
site inside a built site, e.g. ``--site public --page search/``); each
``--facet`` is chosen on the page before the queries are typed (a site made
with ``--facet-field NAME``), so the queries are filtered searches.
"""

import argparse
import json
import os
import sys
import threading
import time

from build_scripts.browser import chromium
from lorann_wasm.site import serve

QUERIES = ["a large domestic cat", "musical instrument with strings", "to run quickly",
           "a machine that flies", "feeling of great happiness", "the study of stars"]


class Counter:
    """Bytes the server has sent (bodies), across threads."""

    def __init__(self):
        self.bytes, self.lock = 0, threading.Lock()

    def install(self):
        counter, copy = self, serve.Handler.copyfile

        def copyfile(handler, source, dest):
            class Counting:
                def write(self, data):
                    with counter.lock:
                        counter.bytes += len(data)
                    return dest.write(data)
            return copy(handler, source, Counting())
        serve.Handler.copyfile = copyfile


def _ask(page, query, n):
    page.fill("#app input", query)
    page.wait_for_function(f"Number(document.querySelector('#app').dataset.answers || 0) >= {n} "
                           "|| document.querySelector('.lorann-status').textContent.startsWith('Search failed')",
                           timeout=60_000)
    status = page.inner_text(".lorann-status")
    if status.startswith("Search failed"):
        raise RuntimeError(f"{query!r}: {status}")
    return (float(status.split("embed ")[1].split(" ms")[0]),
            float(status.split("search ")[1].split(" ms")[0]))


def _ready(page, url):
    page.goto(url)
    page.wait_for_function("['ready', 'error'].includes(document.querySelector('#app').dataset.state)",
                           timeout=300_000)
    if page.evaluate("document.querySelector('#app').dataset.state") != "ready":
        raise RuntimeError(page.inner_text("#app"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="site")
    ap.add_argument("--page", default="", help="the search page's path under --site")
    ap.add_argument("--queries", nargs="*", default=QUERIES)
    ap.add_argument("--screenshot", default=os.path.join("docs", "demo.png"))
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--facet", action="append", default=[], metavar="NAME=VALUE",
                    help="choose this facet's value before the queries (repeatable)")
    args = ap.parse_args(argv)
    os.environ["LORANN_SERVE_QUIET"] = "1"
    counter = Counter()
    counter.install()
    server, root = serve.serve_in_background(args.site)
    url = root + args.page
    out = {}
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        t0 = time.perf_counter()
        _ready(page, url)
        out["cold_ready_s"] = time.perf_counter() - t0
        out["cold_bytes"] = counter.bytes
        for facet in args.facet:
            name, _, value = facet.partition("=")
            page.select_option(f"select[data-facet='{name}']", value)
        rows = []
        for i, query in enumerate(args.queries):
            before = counter.bytes
            t = time.perf_counter()
            embed, search = _ask(page, query, i + 1)
            if args.facet and "filtered" not in page.inner_text(".lorann-status"):
                raise RuntimeError(f"{query!r} was not filtered: {page.inner_text('.lorann-status')}")
            if i == 0:
                out["cold_first_answer_s"] = time.perf_counter() - t0
            rows.append((query, embed, search, counter.bytes - before, time.perf_counter() - t))
        out["queries"] = rows
        page.wait_for_timeout(1000)
        os.makedirs(os.path.dirname(args.screenshot) or ".", exist_ok=True)
        page.screenshot(path=args.screenshot, full_page=True)
        before, t = counter.bytes, time.perf_counter()
        _ready(page, url)  # a second visit: the service worker answers
        _ask(page, args.queries[0], 1)
        out["warm_first_answer_s"], out["warm_bytes"] = time.perf_counter() - t, counter.bytes - before
        server.shutdown()
        server.server_close()
        context.set_offline(True)
        t = time.perf_counter()
        _ready(page, url)
        _ask(page, args.queries[0], 1)
        out["offline_first_answer_s"] = time.perf_counter() - t
        context.close()
    print(f"first visit: ready {out['cold_ready_s']:.1f} s, first answer {out['cold_first_answer_s']:.1f} s "
          f"(query typed as soon as ready), {out['cold_bytes'] / 1e6:.1f} MB downloaded")
    print(f"{'query':36} {'embed ms':>9} {'search ms':>10} {'fetched kB':>11}")
    for q, e, s, b, _ in rows:
        print(f"{q[:36]:36} {e:9.0f} {s:10.0f} {b / 1e3:11.1f}")
    print(f"second visit: first answer {out['warm_first_answer_s']:.1f} s, "
          f"{out['warm_bytes'] / 1e3:.1f} kB downloaded")
    print(f"server stopped, browser offline: first answer {out['offline_first_answer_s']:.1f} s")
    print(f"screenshot: {args.screenshot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
