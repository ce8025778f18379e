// Offline-first: register the site's service worker (sw.js), versioned by the
// site's content hash. On a first visit this waits until the worker controls
// the page, so everything this visit fetches is cached for the next one; if
// installing fails (a file missing on the host), the page goes on without it.
// Service workers need HTTPS (or localhost): elsewhere the site works online only.

export async function registerOffline(base, version, { waitMs = 60000 } = {}) {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return "unsupported";
  const scope = new URL("./", base);
  if (!location.href.startsWith(scope.href)) return "out of scope";
  const container = navigator.serviceWorker;
  let registration;
  try {  // register() can also never settle (service workers blocked): not forever
    registration = await Promise.race([
      container.register(new URL(`sw.js?v=${encodeURIComponent(version)}`, scope), { scope: scope.href }),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), waitMs))]);
  } catch (err) {
    return `failed: ${err.message}`;
  }
  // a browser or policy that blocks service workers may answer with nothing
  if (!registration) return "failed: no service worker registration";
  if (container.controller) return "controlled";
  return new Promise((resolve) => {
    container.addEventListener("controllerchange", () => resolve("controlled"), { once: true });
    const installing = registration.installing || registration.waiting;
    if (installing) {
      installing.addEventListener("statechange", () => {
        if (installing.state === "redundant") resolve("install failed");
      });
    }
    setTimeout(() => resolve(container.controller ? "controlled" : "timed out"), waitMs);
  });
}
