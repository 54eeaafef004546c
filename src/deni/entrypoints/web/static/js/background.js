// Sending the queue with the app closed: the page asks the browser to wake the service worker
// when the network is back (Background Sync), and an installed app also asks to be woken every
// so often (Periodic Background Sync). The worker's side is sync-sw.js. Where a browser has
// neither, nothing changes: the page syncs when it opens, comes online or is shown again.

export const SYNC_TAG = "deni-queue"; // js/sync-sw.js
const PERIODIC_TAG = "deni-queue-periodic";
const PERIODIC_EVERY_MS = 12 * 60 * 60 * 1000; // a hint: the browser decides, often less often

async function activeRegistration() {
  if (!("serviceWorker" in navigator)) return null;
  const registration = await navigator.serviceWorker.getRegistration();
  return registration?.active ? registration : null;
}

// After a sync that found no network (or a failing server): the worker pushes the queue when
// the browser is online again, whether or not this page is still open. Asking twice is one ask.
export async function sendWhenOnline() {
  try {
    const registration = await activeRegistration();
    if (!registration || !("sync" in registration)) return false;
    await registration.sync.register(SYNC_TAG);
    return true;
  } catch (error) {
    console.warn("no background sync", error); // refused by the browser: the page syncs itself
    return false;
  }
}

// Once per start, signed in: where the browser grants it (an installed app, on Chromium), the
// worker also pushes now and then by itself.
export async function sendNowAndThen() {
  try {
    const registration = await activeRegistration();
    if (!registration || !("periodicSync" in registration)) return false;
    const status = await navigator.permissions.query({ name: "periodic-background-sync" });
    if (status.state !== "granted") return false;
    await registration.periodicSync.register(PERIODIC_TAG, { minInterval: PERIODIC_EVERY_MS });
    return true;
  } catch (error) {
    console.warn("no periodic sync", error);
    return false;
  }
}

// The worker pushed while this page was open: `pulled` runs a sync, so the screen shows it.
export function whenWorkerPushed(pulled) {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data?.type === "deni-queue-sent") pulled();
  });
}
