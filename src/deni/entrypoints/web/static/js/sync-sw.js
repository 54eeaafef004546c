// Background sync, in the service worker: what waits in the queue goes to the server when the
// network comes back, even with the app closed (docs/web.md, "Background sync"). sw.js loads
// this file with importScripts; everything of it is here, inside one function scope, so it
// shares no name with the rest of the worker.
//
// - A page whose sync finds no network asks the browser for a one-off sync (tag "deni-queue",
//   js/background.js). The browser wakes this worker with a `sync` event once it is online, and
//   tries again later (with its own backoff) if the push fails.
// - An installed app also asks for a periodic sync ("deni-queue-periodic"), where the browser
//   has it: the same push, every so often, in case a one-off sync was used up.
//
// It pushes exactly what an open page would push (js/sync.js): the install's client id, the
// queued mutations' own ids and args, oldest first, and it stops at the first mutation that
// needs a PIN. A PIN lives only in an open page's memory, never in IndexedDB, so a mutation
// needing one, and everything queued after it, waits for the page. The server keeps one result
// per (client id, mutation id): a push from here and one from a page at the same moment, or a
// push retried after a lost answer, apply each mutation once, and the later one gets the stored
// result. This worker only pushes; the app pulls when it opens.

(() => {
  const SYNC_TAG = "deni-queue"; // js/background.js
  const PERIODIC_TAG = "deni-queue-periodic";
  const API = "/api/v1";
  // The same as js/sync.js (tests/web/test_web_static.py compares them).
  const SCHEMA_VERSION = 1;
  const PUSH_MUTATIONS_MAX = 500; // the server's MUTATIONS_PER_PUSH_MAX
  const PUSH_ROUNDS_MAX = 20;
  const NEEDS_PIN = new Set(["approve_loan", "repay_loan", "withdraw", "set_preferences"]);
  // js/store.js: the database, its stores and keys.
  const DB_NAME = "deni";
  const META = "meta";
  const QUEUE = "queue";
  const SYNC_KEY = "sync";
  const SESSION_KEY = "session";
  const SETTLED = new Set(["applied", "conflict", "forgotten"]);
  const FETCH_TIMEOUT_MS = 15_000; // a call that hangs ends; the browser tries the sync later
  // A refresh whose answer is lost spends the token; the server swaps the spent one again only
  // within 30 s (docs/api.md), and the browser's next try of a failed sync is minutes away.
  // So a lost refresh is tried again now, within that grace: after these waits, then no more.
  const REFRESH_RETRY_WAITS_MS = [1_000, 3_000];

  // A failure worth another try later: the browser retries a sync event whose work fails.
  class TryLater extends Error {}

  function done(request) {
    return new Promise((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function within(db, names, mode, work) {
    const transaction = db.transaction(names, mode);
    const ending = new Promise((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
    });
    const result = await work(...names.map((name) => transaction.objectStore(name)));
    await ending;
    return result;
  }

  // The app's database as the page made it, or null: this worker never creates it (an empty
  // one would be taken by the page for its own).
  function openExisting() {
    return new Promise((resolve) => {
      const request = indexedDB.open(DB_NAME);
      request.onupgradeneeded = () => request.transaction.abort(); // nobody signed in here
      request.onerror = () => resolve(null);
      request.onsuccess = () => {
        const db = request.result;
        db.onversionchange = () => db.close(); // a newer page upgrades it: step aside
        if (db.objectStoreNames.contains(META) && db.objectStoreNames.contains(QUEUE)) {
          resolve(db);
        } else {
          db.close();
          resolve(null);
        }
      };
    });
  }

  // What one push would carry, read in one transaction: the install, its signed-in person and
  // the queue, all from the same moment.
  function readPending(db) {
    return within(db, [META, QUEUE], "readonly", async (meta, queue) => {
      const state = await done(meta.get(SYNC_KEY));
      const session = await done(meta.get(SESSION_KEY));
      const mutations = await done(queue.getAll());
      // A sign-in as someone else saves the session before it empties the queue: another
      // person's queue is never pushed with this person's token.
      if (!state || !session || session.user_id !== state.user_id) return null;
      return { clientId: state.client_id, batch: batch(mutations) };
    });
  }

  // Oldest first, up to the first mutation that needs a PIN (none is held here).
  function batch(mutations) {
    const out = [];
    for (const mutation of mutations.sort((a, b) => a.id - b.id)) {
      if (mutation.status !== "queued") continue;
      if (NEEDS_PIN.has(mutation.name) || out.length === PUSH_MUTATIONS_MAX) break;
      out.push({ id: mutation.id, name: mutation.name, args: mutation.args });
    }
    return out;
  }

  async function post(path, body, token) {
    const headers = { Accept: "application/json", "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(API + path, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        cache: "no-store",
        signal: AbortSignal.timeout ? AbortSignal.timeout(FETCH_TIMEOUT_MS) : undefined,
      });
    } catch (error) {
      throw new TryLater(`no network: ${error}`);
    }
    if (response.status === 429 || response.status >= 500) {
      throw new TryLater(`the server answered ${response.status}`);
    }
    return { status: response.status, answer: await response.json().catch(() => null) };
  }

  // A fresh access token from the kept refresh token, taking turns with the pages (the same
  // Web Lock as js/sync.js): a refresh token works once. The access token stays in this
  // worker's memory for this one sync; the new refresh token replaces the old one in
  // IndexedDB, where the page keeps it, unless the person signed out meanwhile.
  async function accessToken(db) {
    const turn = (work) =>
      self.navigator.locks ? self.navigator.locks.request("deni-refresh", work) : work();
    return turn(async () => {
      const saved = await within(db, [META], "readonly", (meta) => done(meta.get(SESSION_KEY)));
      if (!saved) return null;
      const { status, answer } = await refreshed(saved.refresh_token);
      if (status !== 200 || !answer || answer.user_id !== saved.user_id) return null; // sign in
      await within(db, [META], "readwrite", async (meta) => {
        const now = await done(meta.get(SESSION_KEY));
        if (now && now.refresh_token === saved.refresh_token) {
          await done(meta.put({ ...now, refresh_token: answer.refresh_token }, SESSION_KEY));
        }
      });
      return answer.access_token;
    });
  }

  async function refreshed(refreshToken) {
    for (const waitMs of [...REFRESH_RETRY_WAITS_MS, null]) {
      try {
        return await post("/auth/refresh", { refresh_token: refreshToken });
      } catch (error) {
        if (!(error instanceof TryLater) || waitMs === null) throw error;
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    }
    throw new Error("unreachable: the last try returns or throws");
  }

  // The server's answer, as js/store.js settles it: applied ones leave the queue, refused
  // ones stay for the person to read. Only for the install that pushed: a page that started
  // the install afresh meanwhile (new client id, ids renumbered) must not lose its queue.
  function settle(db, clientId, results, lastMutationId) {
    return within(db, [META, QUEUE], "readwrite", async (meta, queue) => {
      const state = await done(meta.get(SYNC_KEY));
      if (!state || state.client_id !== clientId) return;
      for (const result of results) {
        const mutation = await done(queue.get(result.mutation_id));
        if (!mutation || mutation.status !== "queued") continue;
        if (SETTLED.has(result.status)) {
          await done(queue.delete(result.mutation_id));
        } else {
          await done(queue.put({ ...mutation, status: result.status, outcome: result }));
        }
      }
      for (const mutation of await done(queue.getAll())) {
        if (mutation.status === "queued" && mutation.id <= lastMutationId) {
          await done(queue.delete(mutation.id));
        }
      }
    });
  }

  // Open pages pull what the push changed.
  async function tellPages(pushed) {
    const pages = await self.clients.matchAll({ type: "window" });
    for (const page of pages) page.postMessage({ type: "deni-queue-sent", pushed });
  }

  // Push rounds until nothing is left that this worker may send. Returns how many mutations
  // the server answered. Throws TryLater when the network or the server should be tried again.
  async function pushQueued() {
    const db = await openExisting();
    if (db === null) return 0;
    let answered = 0;
    try {
      let token = null;
      for (let round = 0; round < PUSH_ROUNDS_MAX; round++) {
        const pending = await readPending(db);
        if (pending === null || pending.batch.length === 0) break;
        token ??= await accessToken(db);
        if (token === null) break; // signed out, or the login ended: the page asks to sign in
        const { status, answer } = await post(
          "/sync/push",
          { client_id: pending.clientId, schema_version: SCHEMA_VERSION, mutations: pending.batch },
          token,
        );
        // 401, 403, 422, 426: nothing was processed; the page says why when it opens.
        if (status !== 200 || !answer) break;
        await settle(db, pending.clientId, answer.results, answer.last_mutation_id);
        answered += answer.results.length;
        if (answer.stopped === null) continue;
        if (answer.stopped.code === "busy") throw new TryLater("the server is busy");
        break; // a gap or a reused id: the page starts afresh or marks it, as it does now
      }
    } finally {
      db.close();
      if (answered > 0) await tellPages(answered).catch(() => {});
    }
    return answered;
  }

  self.addEventListener("sync", (event) => {
    if (event.tag === SYNC_TAG) event.waitUntil(pushQueued());
  });

  self.addEventListener("periodicsync", (event) => {
    // A periodic sync is not retried: a failure waits for the next period, or the app.
    if (event.tag === PERIODIC_TAG) event.waitUntil(pushQueued().catch(() => {}));
  });
})();
