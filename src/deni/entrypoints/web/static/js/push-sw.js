// Web Push in the service worker (imported by sw.js): show what Deni pushed, and open the app
// at the screen the notification is about when it is tapped. A push carries the notification's
// own text (never a code or a PIN) and the app path to open; anything else is ignored.

function appPath(url) {
  return typeof url === "string" && url.startsWith("/app/") && !url.startsWith("/app//")
    ? url
    : "/app/";
}

async function showPush(event) {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = {}; // not JSON: still say that something happened
  }
  const text = (value, fallback) => (typeof value === "string" && value ? value : fallback);
  await self.registration.showNotification(text(message.title, "Deni"), {
    body: text(message.body, ""),
    tag: text(message.id, "deni"), // the same notification again replaces, never doubles
    lang: text(message.lang, ""),
    icon: "icon-192.png",
    data: { url: appPath(message.url), kind: text(message.kind, "") },
  });
}

async function openApp(url) {
  const target = new URL(appPath(url), self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((w) => new URL(w.url).pathname.startsWith("/app/"));
  if (!open) return self.clients.openWindow(target);
  const shown = await open.navigate(target).catch(() => open);
  await (shown ?? open).focus().catch(() => {}); // focusing needs the tap's activation
  return shown;
}

self.addEventListener("push", (event) => event.waitUntil(showPush(event)));

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openApp(event.notification.data?.url));
});
