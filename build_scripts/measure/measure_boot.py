"""Time from a fresh worker to a ready Python runtime in headless Chromium.

Builds a site with no index, then opens it ``--runs`` times, each in a new
browser context, and times ``LorannEngine.create()`` (Pyodide boot, NumPy and
the lorann_wasm wheel loaded, the bridge imported), and inside the worker the
Python import of the bridge alone. Prints the medians.

Usage: python -m build_scripts.measure.measure_boot [--runs 7]
"""

import argparse
import os
import statistics
import tempfile

from build_scripts.browser import chromium, open_context
from lorann_wasm.site.explorer import build_explorer_site
from lorann_wasm.site.serve import serve_in_background

PAGE = """<!doctype html><meta charset="utf-8"><title>boot</title>
<script type="module">
import { LorannEngine } from "./engine.js";
const t0 = performance.now();
const engine = await LorannEngine.create({});
window.bootMs = performance.now() - t0;
</script>"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "site")
        build_explorer_site(root)
        with open(os.path.join(root, "boot.html"), "w") as f:
            f.write(PAGE)
        server, url = serve_in_background(root)
        times = []
        try:
            with chromium() as browser:
                for _ in range(args.runs):
                    context, guard = open_context(browser, url)
                    page = context.new_page()
                    page.goto(url + "boot.html")
                    page.wait_for_function("window.bootMs !== undefined", timeout=120_000)
                    times.append(page.evaluate("window.bootMs"))
                    context.close()
                    assert not guard.blocked, guard.blocked
        finally:
            server.shutdown()
    print(f"boot to ready (Pyodide + NumPy + wheel + import bridge), {args.runs} runs: "
          f"median {statistics.median(times):.0f} ms, min {min(times):.0f} ms, "
          f"max {max(times):.0f} ms")


if __name__ == "__main__":
    main()
