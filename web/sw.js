// The service worker of a lorann-wasm site: after the first visit, the site
// loads and searches without the network.
//
// - Installing caches the pages, the runtime, the wheel, the model (and, for
//   a site downloaded whole, its data) under a cache named by the site's
//   version (a hash of every file), telling the pages its progress;
//   activating drops older versions' caches.
// - Pages, scripts and site.json: network first (a redeploy is seen at once),
//   the cache when offline. Everything else: cache first.
// - Range requests (a lazily loaded index and records) go to the network:
//   the search worker keeps what it fetched, and after the first answer it
//   downloads the rest into this same cache (widget.js, cacheName), from
//   which later visits load it whole. A host without Range answers with the
//   whole file; it is kept, and answers later range requests whole too.

const BASE = new URL("./", self.location.href).href;
const VERSION = new URL(self.location.href).searchParams.get("v") || "unversioned";
const PREFIX = `lorann-site ${BASE} `;
const CACHE = PREFIX + VERSION;
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
    const s = site.search || {};
    // fetched when needed: a lazily loaded site's data, the explorer's indexes
    const lazy = new Set([...(s.whole ? [] : [s.index, s.records, s.offsets, s.tokens]),
                          ...(site.indexes || []).map((entry) => entry.file)]);
    const files = Object.keys(site.files || {}).filter((f) => !lazy.has(f));
    try {
      await fetchAll(cache, files, site.files);
    } catch (err) {
      await caches.delete(CACHE);  // all or nothing, as cache.addAll
      throw err;
    }
    const page = await cache.match(new URL("index.html", BASE).href);  // the folder's page too
    if (page) await cache.put(BASE, page);
    await self.skipWaiting();
  })());
});

// Fetch every file into the cache at once, telling the site's pages how far it
// is ({ lorannInstall: { loaded, total } } in bytes as read, at most 5 times a
// second): on a first visit the page waits for this before it starts.
async function fetchAll(cache, files, sizes) {
  const total = files.reduce((sum, f) => sum + ((sizes[f] || {}).bytes || 0), 0);
  let loaded = 0;
  let told = 0;
  const tell = async (force = false) => {
    const now = Date.now();
    if (!force && now - told < 200) return;
    told = now;
    for (const client of await self.clients.matchAll({ includeUncontrolled: true })) {
      client.postMessage({ lorannInstall: { loaded, total } });
    }
  };
  await Promise.all(files.map(async (f) => {
    const url = new URL(f, BASE).href;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${f}: HTTP ${response.status}`);
    const chunks = [];
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      tell();
    }
    const headers = new Headers(response.headers);
    for (const h of ["Content-Encoding", "Content-Length"]) headers.delete(h);  // body is decoded
    await cache.put(url, new Response(new Blob(chunks), { status: 200, headers }));
  }));
  await tell(true);
}

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
  const range = request.headers.get("Range");
  if (range) event.respondWith(ranged(request));
  else if (request.mode === "navigate" || mutable(request.url)) {
    event.respondWith(networkFirst(request));
  } else event.respondWith(cacheFirst(request));
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

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.status === 200) await cache.put(request, response.clone());
  return response;
}

async function ranged(request) {
  const cache = await caches.open(CACHE);
  const url = plain(request.url);
  const whole = await cache.match(url);
  if (whole) return whole;  // kept from a host without Range: the page loads it whole
  const response = await fetch(request);
  if (response.status === 200) await cache.put(url, response.clone());
  return response;
}
