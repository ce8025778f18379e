// The search page of a lorann-wasm site: offline-first, then the search box.
import { mount, siteConfig } from "./widget.js";
import { registerOffline } from "./offline.js";

const app = document.querySelector("#app");
const title = document.querySelector("#title");

async function main() {
  const site = await siteConfig(document.baseURI);
  title.textContent = site.search.title;
  document.title = site.search.title;
  for (const link of site.links || []) {
    document.querySelector("#links").append(Object.assign(document.createElement("a"),
                                                          { href: link.href, textContent: link.text }));
  }
  app.querySelector(".lorann-status").textContent = "Preparing offline use…";
  const offline = await registerOffline(document.baseURI, site.version);
  document.body.dataset.offline = offline;
  const handle = await mount(app, { base: "./", placeholder: "Describe what you are looking for…" });
  if (offline.startsWith("failed") || offline === "unsupported") {
    const notice = app.querySelector(".lorann-notice");
    notice.textContent = [notice.textContent, "This browser keeps no offline copy of the site " +
      `(${offline === "unsupported" ? "service workers need HTTPS" : offline.slice(8)}): ` +
      "search works while online."].filter(Boolean).join(" ");
    notice.hidden = false;
  }
  window.lorannSite = handle;
  document.body.dataset.ready = "true";
  const q = new URLSearchParams(location.search).get("q");
  const input = app.querySelector("input");
  if (q && handle.search) {
    input.value = q;
    handle.search(q);
  }
  input.focus();
}

main().catch((err) => {
  document.body.dataset.ready = "error";
  const status = app.querySelector(".lorann-status");
  status.textContent = `Could not start: ${err.message}`;
});
