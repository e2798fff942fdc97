// The console's service worker: the grid report form opens without a network (it is an installable
// app for the field, docs/console.md "Offline"). The build injects the release's files
// (__PRECACHE__) and a version naming them, so a new release installs a new cache.
//
// - The page (a navigation): the network first, so an online screen always gets the current
//   release; the cached copy when the network is gone.
// - The release's own files (content-named script and stylesheet, icons, manifest): from the cache.
// - Everything else, gRPC-web calls above all, goes to the network untouched: reports queued
//   offline live in IndexedDB (src/outbox.ts), never in a cache.
/* global __PRECACHE__, __VERSION__ */
const CACHE = `whistle-${__VERSION__}`;
const FILES = __PRECACHE__;
const PAGE = "./";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll([PAGE, ...FILES]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("whistle-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok) {
            const copy = response.clone();
            caches.open(CACHE).then((cache) => cache.put(PAGE, copy));
          }
          return response;
        })
        .catch(() => caches.match(PAGE, { cacheName: CACHE }).then((cached) => cached || Response.error())),
    );
    return;
  }
  const path = url.pathname.replace(/^\//, "");
  if (FILES.includes(path)) {
    event.respondWith(caches.match(request, { cacheName: CACHE }).then((cached) => cached || fetch(request)));
  }
});
