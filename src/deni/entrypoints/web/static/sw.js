// Deni's service worker: the app's own files come from this cache at once, and are fetched
// again in the background to refresh it (stale-while-revalidate), so the installed app opens in
// a blink on a slow network and offline, and a new release shows from the next opening. API
// calls are never cached: the device's data lives in IndexedDB (js/store.js), and money answers
// must never be stale.
//
// Bump VERSION with every release: a changed sw.js makes browsers install it anew, which fetches
// every file of the release together (no page mixing two releases' modules).

const VERSION = "deni-app-8";
const SHELL = [
  "./",
  "index.html",
  "app.css",
  "manifest.webmanifest",
  "icon.svg",
  "icon-192.png",
  "icon-512.png",
  "js/app.js",
  "js/background.js",
  "js/core.js",
  "js/dom.js",
  "js/format.js",
  "js/i18n.js",
  "js/mpesa.js",
  "js/passkeys.js",
  "js/push.js",
  "js/push-sw.js",
  "js/store.js",
  "js/sync.js",
  "js/sync-sw.js",
  "js/views/account.js",
  "js/views/book.js",
  "js/views/home.js",
  "js/views/loan.js",
  "js/views/settings.js",
  "js/views/wallet.js",
];

importScripts("js/push-sw.js"); // Web Push: showing a push, opening the app on a tap
importScripts("js/sync-sw.js"); // Background sync: the queue sent with the app closed

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

// Cache first: what is kept answers at once, and the network refreshes it for the next
// opening. What is not kept yet (or a cache emptied by the browser) comes from the network.
async function fromCacheThenRefresh(event) {
  const request = event.request;
  const cache = await caches.open(VERSION);
  const fresh = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(request, response.clone());
    return response;
  });
  let cached = await cache.match(request, { ignoreSearch: true });
  // Any page of the app is the same shell; its screens are routed in the page itself.
  if (!cached && request.mode === "navigate") cached = await cache.match("./");
  if (!cached) return fresh;
  event.waitUntil(fresh.catch(() => {})); // offline: what is kept stays
  return cached;
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const ours = url.origin === self.location.origin && url.pathname.startsWith("/app/");
  if (event.request.method !== "GET" || !ours) return; // the browser handles it, uncached
  event.respondWith(fromCacheThenRefresh(event));
});
