"""Measure the semantic demo in headless Chromium and take its screenshot.

Serves a built site (default ``site/``) on 127.0.0.1, opens ``index.html``
cold, types queries as a person would, and reports: time from page open to
the first answer, per-query embed and search latency, and bytes
transferred. Saves a screenshot (default ``docs/demo.png``).

Usage: python -m build_scripts.measure_demo [--site site] [--screenshot docs/demo.png]
"""

import argparse
import json
import os
import sys
import time

from build_scripts.browser import chromium, open_context
from lorann_wasm.site.serve import serve_in_background

QUERIES = ["a large domestic cat", "musical instrument with strings", "to run quickly",
           "a machine that flies", "feeling of great happiness", "the study of stars"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="site")
    ap.add_argument("--screenshot", default=os.path.join("docs", "demo.png"))
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args(argv)
    os.environ["LORANN_SERVE_QUIET"] = "1"
    server, url = serve_in_background(args.site)
    sizes = []
    with chromium() as browser:
        context, guard = open_context(browser, url)
        context.on("requestfinished", lambda r: sizes.append(r.sizes()["responseBodySize"]))
        page = context.new_page()
        page.set_viewport_size({"width": 1100, "height": 900})
        t0 = time.perf_counter()
        page.goto(url + "index.html")
        page.wait_for_function("document.body.dataset.ready", timeout=180_000)
        if page.evaluate("document.body.dataset.ready") != "true":
            print(f"measure-demo: the page failed: {page.inner_text('#error')}", file=sys.stderr)
            return 1
        ready_ms = int(page.evaluate("document.body.dataset.readyMs"))
        timings = []
        for i, query in enumerate(QUERIES):
            page.fill("#q", query)
            page.wait_for_function(f"Number(document.body.dataset.answers || 0) >= {i + 1}")
            status = page.inner_text("#status")
            embed = float(status.split("embed ")[1].split(" ms")[0])
            search = float(status.split("search ")[1].split(" ms")[0])
            timings.append((query, embed, search))
            if i == 0:
                first_ms = int(page.evaluate("document.body.dataset.firstAnswerMs"))
        page.fill("#q", QUERIES[1])
        page.wait_for_function(f"Number(document.body.dataset.answers) >= {len(QUERIES) + 1}")
        page.evaluate("document.querySelector('#about').open = true")
        os.makedirs(os.path.dirname(args.screenshot) or ".", exist_ok=True)
        page.screenshot(path=args.screenshot, full_page=True)
        wall = time.perf_counter() - t0
        context.close()
    server.shutdown()
    if guard.blocked:
        print(f"measure-demo: requests left localhost: {guard.blocked}", file=sys.stderr)
        return 1
    total = sum(sizes)
    print(f"page open -> ready: {ready_ms / 1000:.2f} s; -> first answer: {first_ms / 1000:.2f} s "
          f"(query typed as soon as ready); bytes transferred {total / 1e6:.1f} MB")
    print(f"{'query':36} {'embed ms':>9} {'search ms':>10}")
    for q, e, s in timings:
        print(f"{q:36} {e:9.1f} {s:10.1f}")
    embeds, searches = [e for _, e, _ in timings], [s for _, _, s in timings]
    print(f"{'mean':36} {sum(embeds) / len(embeds):9.1f} {sum(searches) / len(searches):10.1f}")
    print(f"screenshot: {args.screenshot} (wall {wall:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ready_ms": ready_ms, "first_answer_ms": first_ms, "bytes": total,
                       "queries": timings}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
