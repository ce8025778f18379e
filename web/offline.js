// Offline-first: register the site's service worker (sw.js), versioned by the
// site's content hash. On a first visit this waits until the worker controls
// the page, so everything this visit fetches is cached for the next one.

export async function registerOffline(base, version, { waitMs = 60000 } = {}) {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return "unsupported";
  const scope = new URL("./", base);
  if (!location.href.startsWith(scope.href)) return "out of scope";
  const container = navigator.serviceWorker;
  await container.register(new URL(`sw.js?v=${encodeURIComponent(version)}`, scope), { scope: scope.href });
  if (container.controller) return "controlled";
  await new Promise((resolve) => {
    container.addEventListener("controllerchange", resolve, { once: true });
    setTimeout(resolve, waitMs);
  });
  return container.controller ? "controlled" : "not yet";
}
