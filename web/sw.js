// The service worker of a lorann-wasm site: after the first visit, the site
// loads and searches without the network.
//
// - Installing caches the site's pages and scripts under a cache named by
//   the site's version (a hash of every file); the runtime, the wheel, the
//   model (and a site downloaded whole, its data) join it as the page first
//   fetches them. Activating drops older versions' caches.
// - Pages, scripts and site.json: network first (a redeploy is seen at once),
//   the cache when offline. Everything else: cache first.
// - Range requests (a lazily loaded index and records) go to the network
//   (once the host is known to answer Range, without this worker: see fetch):
//   the search worker keeps what it fetched, and after the first answer it
//   downloads the rest into this same cache (widget.js, cacheName), from
//   which later visits load it whole. A host without Range answers with the
//   whole file; it is kept, and answers later range requests whole too.

const BASE = new URL("./", self.location.href).href;
const VERSION = new URL(self.location.href).searchParams.get("v") || "unversioned";
const PREFIX = `lorann-site ${BASE} `;
const CACHE = PREFIX + VERSION;
const DIRECT = "lorann-range";  // as ranges.js marks its reads (a classic worker: no import)
// the site's own pages and scripts (not the runtime's, under pyodide/)
function mutable(url) {
  const rel = plain(url).slice(BASE.length);
  return rel === "" || (!rel.includes("/") && /\.(html|js|css|json)$/.test(rel));
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const response = await fetch(new URL("site.json", BASE), { cache: "no-store" });
    if (!response.ok) throw new Error(`site.json: HTTP ${response.status}`);
    const cache = await caches.open(CACHE);
    await cache.put(new URL("site.json", BASE).href, response.clone());
    const site = await response.json();
    // the site's own pages and scripts; the runtime, the model and the data are
    // cached as the page first fetches them (cacheFirst): fetched here too, they
    // would cross the network twice on a first visit, and the page would wait
    // for all of them before it could start (WordNet, 40 ms / 20 Mbit/s: ready
    // after 13.8 s that way)
    const files = Object.keys(site.files || {}).filter((f) => mutable(new URL(f, BASE).href));
    await cache.addAll(files.map((f) => new URL(f, BASE).href));
    const page = await cache.match(new URL("index.html", BASE).href);  // the folder's page too
    if (page) await cache.put(BASE, page);
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || !request.url.startsWith(BASE)) return;
  // A Range read of a host known to answer Range (ranges.js: direct): not
  // handled, so the browser fetches it itself instead of through this worker
  // (a cold WordNet query, localhost: rounds 44-50 -> 42 ms; 38 with no
  // service worker at all). A static route (InstallEvent.addRoutes) would skip
  // even this handler, but Chromium 156 applies routes to a page's requests,
  // not to a Web Worker's.
  if (request.url.endsWith(`?${DIRECT}`)) return;
  const range = request.headers.get("Range");
  if (range) event.respondWith(ranged(event));
  else if (request.mode === "navigate" || mutable(request.url)) {
    event.respondWith(networkFirst(request));
  } else event.respondWith(cacheFirst(event));
});

function plain(url) {
  const u = new URL(url);
  u.search = "";
  u.hash = "";
  return u.href;
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const hit = await cache.match(request, { ignoreSearch: request.mode === "navigate" });
    if (hit) return hit;
    throw err;
  }
}

// The page reads the body while the cache stores its copy: waiting for the copy
// first would hold a 13 MB model (and the wasm's streaming compilation) until
// the last byte arrived.
async function cacheFirst(event) {
  const request = event.request;
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.status === 200) event.waitUntil(cache.put(request, response.clone()));
  return response;
}

async function ranged(event) {
  const request = event.request;
  const cache = await caches.open(CACHE);
  const url = plain(request.url);
  const whole = await cache.match(url);
  if (whole) return whole;  // kept from a host without Range: the page loads it whole
  const response = await fetch(request);
  if (response.status === 200) event.waitUntil(cache.put(url, response.clone()));
  return response;
}
