// Deni's service worker: the app's own files come from the network when it answers and from
// this cache when it does not, so the app opens offline. API calls are never cached: the
// device's data lives in IndexedDB (js/store.js), and money answers must never be stale.
//
// Bump VERSION when the list of files changes; a changed sw.js makes browsers install it anew.

const VERSION = "deni-app-4";
const SHELL = [
  "./",
  "index.html",
  "app.css",
  "manifest.webmanifest",
  "icon.svg",
  "icon-192.png",
  "icon-512.png",
  "js/app.js",
  "js/core.js",
  "js/dom.js",
  "js/format.js",
  "js/i18n.js",
  "js/store.js",
  "js/sync.js",
  "js/views/account.js",
  "js/views/book.js",
  "js/views/home.js",
  "js/views/loan.js",
  "js/views/settings.js",
  "js/views/wallet.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n !== VERSION).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

// Network first, so an update shows at once; the cache answers when the network cannot.
async function fromNetworkElseCache(request) {
  const cache = await caches.open(VERSION);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    // Any page of the app is the same shell; its screens are routed in the page itself.
    if (request.mode === "navigate") return cache.match("./");
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const ours = url.origin === self.location.origin && url.pathname.startsWith("/app/");
  if (event.request.method !== "GET" || !ours) return; // the browser handles it, uncached
  event.respondWith(fromNetworkElseCache(event.request));
});
