"""Measure a site made by `lorann-wasm site` as a visitor meets it, in headless Chromium.

Usage: python -m build_scripts.measure.measure_demo --site SITE [--page PATH] [--queries wordnet|python]
           [--latency-ms 40 --rate-mbit 20] [--cold 20] [--typing-ms 150] [--json OUT]
           [--screenshot PNG] [--timeline]

The site is served by `lorann-wasm serve`, which counts every request and
byte it answers (the service worker's and the search worker's included)
and, with ``--latency-ms`` / ``--rate-mbit``, emulates a slower link (one
round trip before each answer, one shared paced rate). Measured:

1. First visit: navigation to ready, bytes; the first query typed at once:
   navigation to its results, bytes before them (``--timeline``: when each
   request began and ended, seconds from navigation).
2. Cold queries (``--cold``): each on a new page once it is ready, nothing of
   the index fetched yet: typed -> results shown (ms), and per network round
   the requests, bytes and ms the worker saw, and the requests and bytes the
   server answered.
3. Background completion: after a page's first answer, how long the rest of
   index and records takes and how many bytes; then new queries (requests
   must be 0) and their latency; then the server is stopped, and new
   queries and a reload must still answer, with the ids CPython gives.
"""

import argparse
import json
import os
import statistics
import sys
import time

from build_scripts.browser import chromium
from lorann_wasm.site import serve

QUERIES = {
    "wordnet": [
        "a large domestic cat", "musical instrument with strings", "to run quickly",
        "a machine that flies", "feeling of great happiness", "the study of stars",
        "a place where books are kept", "to cook food in an oven", "a young dog",
        "sweet food made from sugar", "a person who writes poems", "very cold weather",
        "to speak in a quiet voice", "the top of a mountain", "a building for worship",
        "money paid for work", "a tool for cutting wood", "fear of closed spaces",
        "a soft yellow fruit", "the organ that pumps blood", "to move through water",
        "a small boat with oars", "light from the sun", "an animal that eats meat",
        "a disease of the lungs", "a story with a moral", "to join two pieces of metal",
        "the act of buying things", "a room under a house", "a bird that cannot fly",
        "loud unpleasant noise", "to laugh quietly", "a large body of salt water",
        "someone who steals", "a game played with a ball and bat", "the science of numbers",
        "a device that measures temperature", "a sudden shaking of the ground",
        "to make something clean", "a drink made from leaves", "the leader of a country",
        "a wound on the skin", "clothing for the feet", "a period of ten years",
        "to refuse to believe", "a woman who rules a kingdom", "a long narrow road",
        "the seed of an oak", "a container for liquids", "extreme tiredness",
        "a journey by sea", "to shine brightly", "an insect that makes honey",
        "a sharp pain in the head", "the edge of a river", "written rules of a country",
        "to grow old", "a building where films are shown", "a tall grass like plant",
        "to draw a picture with paint"],
    "python": [
        "how do I read a file line by line", "sort a list of dictionaries by a key",
        "format a number with two decimals", "run a shell command and get its output",
        "parse command line arguments", "what is a generator", "handle an exception",
        "create a virtual environment", "convert a string to a date", "read a csv file",
        "serialize an object to json", "make an http request", "regular expression groups",
        "difference between a list and a tuple", "default argument values",
        "copy a dictionary", "iterate over two lists at once", "write unit tests",
        "start a thread", "measure how long code takes", "random number in a range",
        "join paths on any operating system", "list the files in a folder",
        "remove duplicates from a list", "count the words in a text", "what is a decorator",
        "read environment variables", "compress a file with gzip", "log messages to a file",
        "compare floating point numbers", "define a class with properties",
        "what does the with statement do", "unpack a tuple", "lambda functions",
        "string methods to split and join", "working with dates and time zones",
        "run code when a module is executed as a script", "type hints for functions",
        "an ordered dictionary", "queue between threads", "read a file in binary mode",
        "check if a key is in a dictionary", "add an element to a set", "exit the program",
        "read input from the user", "pretty print nested data", "sum of a list of numbers",
        "call a function with keyword arguments", "the global interpreter lock",
        "asynchronous functions with async and await", "memory used by an object",
        "unicode strings and encodings", "copy a file", "temporary files",
        "enumerate items with their index", "integer division and remainder",
        "reverse a string", "infinite loops and break", "import a module from a folder",
        "data classes"],
}


def _ready(page, url):
    page.goto(url)
    page.wait_for_function("['ready', 'error'].includes(document.querySelector('#app')?.dataset.state)",
                           timeout=600_000)
    if page.evaluate("document.querySelector('#app').dataset.state") != "ready":
        raise RuntimeError(page.inner_text("#app"))


def _forget_completion(context, url):
    """Drop what pages so far completed in the background (the worker's chunks in the
    site's cache), so the next page's query is cold: on localhost a small site
    completes between an answer and the page's close. The runtime stays cached."""
    page = context.new_page()
    page.goto(url + "site.json")
    page.evaluate("""async () => {
      for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        for (const request of await cache.keys()) {
          if (/[?&]lorann-(chunk=|complete)/.test(request.url)) await cache.delete(request);
        }
      }
    }""")
    page.close()


def _ask(page, query):
    """Type ``query`` at once; the widget's own measurements of its answer."""
    n = int(page.evaluate("Number(document.querySelector('#app').dataset.answers || 0)"))
    page.fill("#app input", query)
    page.wait_for_function(f"Number(document.querySelector('#app').dataset.answers || 0) > {n} "
                           "|| document.querySelector('.lorann-status').textContent.includes('failed')",
                           timeout=120_000)
    status = page.inner_text(".lorann-status")
    if "Search failed" in status:
        raise RuntimeError(f"{query!r}: {status}")
    data = page.evaluate("({...document.querySelector('#app').dataset})")
    return {"query": query, "ms": float(data["latency"]), "rounds": json.loads(data["rounds"]),
            "python_ms": json.loads(data["python"]),
            # (a site built before the widget kept it has none)
            "embed_ms": float(data["embed"]) if "embed" in data else None,
            "ids": [int(i) for i in data["ids"].split()] if data.get("ids") else []}


def _type(page, query, delay_ms):
    """Type ``query`` key by key, ``delay_ms`` apart; then wait for its own results.
    Returns the widget's last key -> results shown (ms) and its answers meanwhile."""
    n = int(page.evaluate("Number(document.querySelector('#app').dataset.answers || 0)"))
    page.type("#app input", query, delay=delay_ms)
    page.wait_for_function(f"document.querySelector('#app').dataset.query === {json.dumps(query)}"
                           " || document.querySelector('.lorann-status').textContent"
                           ".includes('failed')", timeout=120_000)
    data = page.evaluate("({...document.querySelector('#app').dataset})")
    if data.get("query") != query:
        raise RuntimeError(f"{query!r}: {page.inner_text('.lorann-status')}")
    return {"query": query, "ms": float(data["latency"]), "answers": int(data["answers"]) - n}


def _embedding(rows, label):
    """``label`` and the median embedding of ``rows``, or "" if the site reports none."""
    ms = [r["embed_ms"] for r in rows if r["embed_ms"] is not None]
    return f"{label} median {statistics.median(ms):.0f} ms" if ms else ""


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _reference(site, queries):
    """CPython's ids for ``queries``, as the site's page asks for them."""
    from lorann_wasm import LorannIndex
    from lorann_wasm.site.bundle import site_encoder

    manifest = json.load(open(os.path.join(site, "site.json")))
    s = manifest["search"]
    index = LorannIndex.load(os.path.join(site, s["index"]))
    model = site_encoder(site, s)
    k = min(10 if s["documents"] == s["passages"] else 30, s["n"])
    return {q: [int(i) for i in index.search(model.encode(q), k)] for q in queries}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="site", help="the folder to serve")
    ap.add_argument("--page", default="", help="the search page's path under --site")
    ap.add_argument("--queries", choices=sorted(QUERIES), default="wordnet")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--rate-mbit", type=float, default=None)
    ap.add_argument("--cold", type=int, default=20, help="cold queries, each on a new page")
    ap.add_argument("--typing-ms", type=float, default=0,
                    help="also type each cold query key by key, this far apart, on a new page")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--screenshot", help="save the first visit's page here")
    ap.add_argument("--timeline", action="store_true",
                    help="print when each request of the first visit began and ended")
    args = ap.parse_args(argv)
    os.environ["LORANN_SERVE_QUIET"] = "1"
    site_dir = os.path.join(args.site, args.page)
    queries = QUERIES[args.queries]
    cold_q = queries[:args.cold]
    after_q = queries[args.cold:args.cold + 20]
    offline_q = queries[args.cold + 20:args.cold + 40]
    want = _reference(site_dir, queries)
    server, root = serve.serve_in_background(args.site, latency_ms=args.latency_ms,
                                             rate_mbit=args.rate_mbit)
    url = root + args.page
    stats = server.stats
    out = {"link": {"latency_ms": args.latency_ms, "rate_mbit": args.rate_mbit}}
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        # 1. first visit
        page = context.new_page()
        server.log = [] if args.timeline else None
        t0 = time.perf_counter()
        _ready(page, url)
        out["first_visit"] = {"ready_s": time.perf_counter() - t0, "ready_bytes": stats["bytes"],
                              "ready_requests": stats["requests"]}
        first = _ask(page, queries[0])
        out["first_visit"].update(first_answer_s=time.perf_counter() - t0,
                                  first_answer_bytes=stats["bytes"])
        if server.log is not None:
            out["first_visit"]["timeline"] = [(a - t0, b - t0, path, ranged)
                                              for a, b, path, ranged in sorted(server.log)]
            server.log = None
        if args.screenshot:
            page.wait_for_timeout(500)
            page.screenshot(path=args.screenshot, full_page=True)
        page.close()
        # 2. cold queries, each on a new page, nothing completed before it
        cold = []
        for q in cold_q:
            _forget_completion(context, url)
            page = context.new_page()
            _ready(page, url)
            before = dict(stats)
            row = _ask(page, q)
            row["server"] = {k: stats[k] - before[k] for k in before}
            cold.append(row)
            page.close()
        out["cold"] = cold
        typed = []
        for q in cold_q if args.typing_ms > 0 else []:
            _forget_completion(context, url)
            page = context.new_page()
            _ready(page, url)
            before = dict(stats)
            row = _type(page, q, args.typing_ms)
            row["server"] = {k: stats[k] - before[k] for k in before}
            typed.append(row)
            page.close()
        out["typed"] = typed
        # 3. background completion, then new queries with no request, then offline
        page = context.new_page()
        _ready(page, url)
        _ask(page, queries[1])
        t, before = time.perf_counter(), dict(stats)
        page.wait_for_function("document.querySelector('#app').dataset.offline === 'done'",
                               timeout=1_800_000)
        out["completion"] = {"s": time.perf_counter() - t, "bytes": stats["bytes"] - before["bytes"],
                             "requests": stats["requests"] - before["requests"]}
        before = dict(stats)
        after = [_ask(page, q) for q in after_q]
        out["after_completion"] = {"queries": after,
                                   "requests": stats["requests"] - before["requests"]}
        server.shutdown()
        server.server_close()
        offline = [_ask(page, q) for q in offline_q]
        page.reload()
        page.wait_for_function("['ready', 'error'].includes(document.querySelector('#app')?.dataset.state)",
                               timeout=600_000)
        reloaded = _ask(page, offline_q[0]) if page.evaluate(
            "document.querySelector('#app').dataset.state") == "ready" else None
        out["offline"] = {"queries": offline, "reload_answered": reloaded is not None}
        context.close()
    same = [r["ids"] == want[r["query"]] for r in cold + after + offline]
    out["ids_equal_cpython"] = f"{sum(same)} of {len(same)}"
    _report(out, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def _report(out, args):
    link = (f"{args.latency_ms:g} ms, {args.rate_mbit:g} Mbit/s" if args.rate_mbit
            else "localhost")
    f = out["first_visit"]
    print(f"link: {link}")
    print(f"first visit: ready {f['ready_s']:.1f} s ({f['ready_bytes'] / 1e6:.1f} MB, "
          f"{f['ready_requests']} requests); first answer {f['first_answer_s']:.1f} s "
          f"({f['first_answer_bytes'] / 1e6:.1f} MB)")
    for start, stop, path, ranged in f.get("timeline", []):
        print(f"  {start:6.2f} -> {stop:6.2f} s  {'Range ' if ranged else ''}{path}")
    cold = out["cold"]
    ms = [r["ms"] for r in cold]
    print(f"cold queries ({len(cold)}): typed -> shown p50 {statistics.median(ms):.0f} ms, "
          f"p90 {_pct(ms, 90):.0f} ms")
    print(f"  rounds per query: at most {max(len(r['rounds']) for r in cold)}")
    # a word-piece round (rows the model file lacks) comes first; the search's own after it
    words = [r["rounds"][0] for r in cold if r["rounds"] and r["rounds"][0].get("wordPieces")]
    own = [[g for g in r["rounds"] if not g.get("wordPieces")] for r in cold]
    labelled = [(f"round {i + 1}", [r[i] for r in own if len(r) > i])
                for i in range(max(map(len, own)))]
    if words:
        labelled.insert(0, (f"word pieces first ({len(words)} of {len(cold)})", words))
    for label, got in labelled:
        print(f"  {label}: requests median {statistics.median(g['requests'] for g in got):.0f} "
              f"(max {max(g['requests'] for g in got)}), kB median "
              f"{statistics.median(g['bytes'] for g in got) / 1e3:.1f} (max "
              f"{max(g['bytes'] for g in got) / 1e3:.1f}), ms median "
              f"{statistics.median(g['ms'] for g in got):.0f}")
    srv = [r["server"] for r in cold]
    print(f"  at the server per query: requests median {statistics.median(s['requests'] for s in srv):.0f} "
          f"(max {max(s['requests'] for s in srv)}), kB median "
          f"{statistics.median(s['bytes'] for s in srv) / 1e3:.0f} (max {max(s['bytes'] for s in srv) / 1e3:.0f})")
    py = [sum(r["python_ms"]) for r in cold]
    embedding = _embedding(cold, "; embedding (word pieces' rows included):")
    print(f"  in Python (plan, supplies, finish): median {statistics.median(py):.0f} ms{embedding}")
    if out["typed"]:
        t = out["typed"]
        ms = [r["ms"] for r in t]
        print(f"typed key by key, {args.typing_ms:g} ms apart: last key -> shown p50 "
              f"{statistics.median(ms):.0f} ms, p90 {_pct(ms, 90):.0f} ms; answers on the way "
              f"median {statistics.median(r['answers'] for r in t):.0f}; at the server per "
              f"query: requests median {statistics.median(r['server']['requests'] for r in t):.0f}, "
              f"kB median {statistics.median(r['server']['bytes'] for r in t) / 1e3:.0f}")
    c = out["completion"]
    print(f"background completion: {c['s']:.1f} s, {c['bytes'] / 1e6:.1f} MB in {c['requests']} requests")
    a = out["after_completion"]
    ms = [r["ms"] for r in a["queries"]]
    print(f"after it, {len(ms)} new queries: {a['requests']} requests; p50 "
          f"{statistics.median(ms):.0f} ms, max {max(ms):.0f} ms"
          + _embedding(a["queries"], "; embedding"))
    o = out["offline"]
    ms = [r["ms"] for r in o["queries"]]
    print(f"server stopped: {len(ms)} new queries answered, p50 {statistics.median(ms):.0f} ms; "
          f"a reload answers: {o['reload_answered']}")
    print(f"ids equal CPython's: {out['ids_equal_cpython']}")


if __name__ == "__main__":
    sys.exit(main())
