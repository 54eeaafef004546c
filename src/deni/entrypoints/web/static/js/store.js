// The device's own copy, in IndexedDB: what the server last sent (records), what the person did
// while offline (the queue of sync mutations) and this install's sync state (meta).
//
// The server stays the only authority on money. Records are replaced whole by pulls; the queue
// holds intentions that the server may still refuse. A PIN is never written here.

const DB_NAME = "deni";
const DB_VERSION = 1;
const RECORDS = "records";
const QUEUE = "queue";
const META = "meta";
const SYNC_KEY = "sync"; // {client_id, user_id, cursor, next_mutation_id}
const SESSION_KEY = "session"; // {user_id, phone, refresh_token}
const BOOK_KEY = "book"; // {user_id, fetched_at, book, history}: the last GET /me/book, /me/history
const MPESA_KEY = "mpesa"; // [{mutation_id, name, amount_cents, request_id, state, ...}]: mpesa.js

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function finished(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

export async function openStore() {
  const request = indexedDB.open(DB_NAME, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore(META);
    db.createObjectStore(RECORDS, { keyPath: ["entity", "id"] }).createIndex("entity", "entity");
    db.createObjectStore(QUEUE, { keyPath: "id" });
  };
  return new Store(await done(request));
}

export class Store {
  constructor(db) {
    this.db = db;
  }

  // One transaction over `names`; `work` gets the object stores and may await their requests.
  async #within(names, mode, work) {
    const transaction = this.db.transaction(names, mode);
    const ending = finished(transaction);
    const stores = names.map((name) => transaction.objectStore(name));
    const result = await work(...stores);
    await ending;
    return result;
  }

  session() {
    return this.#within([META], "readonly", (meta) => done(meta.get(SESSION_KEY)));
  }

  saveSession(session) {
    return this.#within([META], "readwrite", (meta) => done(meta.put(session, SESSION_KEY)));
  }

  // The member's book as the server last answered it, for the book screen offline. Only the
  // signed-in member's: a copy kept for another user is never shown.
  async book(userId) {
    const copy = await this.#within([META], "readonly", (meta) => done(meta.get(BOOK_KEY)));
    return copy && copy.user_id === userId ? copy : null;
  }

  saveBook(copy) {
    return this.#within([META], "readwrite", (meta) => done(meta.put(copy, BOOK_KEY)));
  }

  // The M-PESA actions this phone follows until they settle (js/mpesa.js).
  async mpesaWatches() {
    const kept = await this.#within([META], "readonly", (meta) => done(meta.get(MPESA_KEY)));
    return kept ?? [];
  }

  saveMpesaWatches(watches) {
    return this.#within([META], "readwrite", (meta) => done(meta.put(watches, MPESA_KEY)));
  }

  syncState() {
    return this.#within([META], "readonly", (meta) => done(meta.get(SYNC_KEY)));
  }

  // Signing in as someone else starts a new install: a client id belongs to its first user.
  async begin(userId) {
    const state = await this.syncState();
    if (state && state.user_id === userId) return state;
    const fresh = {
      client_id: crypto.randomUUID(),
      user_id: userId,
      cursor: "",
      next_mutation_id: 1,
    };
    await this.#within([META, RECORDS, QUEUE], "readwrite", async (meta, records, queue) => {
      await done(records.clear());
      await done(queue.clear());
      await done(meta.delete(BOOK_KEY));
      await done(meta.delete(MPESA_KEY));
      await done(meta.put(fresh, SYNC_KEY));
    });
    return fresh;
  }

  forget() {
    return this.#within([META, RECORDS, QUEUE], "readwrite", async (meta, records, queue) => {
      await done(meta.clear());
      await done(records.clear());
      await done(queue.clear());
    });
  }

  async records(entity) {
    const rows = await this.#within([RECORDS], "readonly", (records) =>
      done(records.index("entity").getAll(entity)),
    );
    return rows.map((row) => row.data);
  }

  async record(entity, id) {
    const row = await this.#within([RECORDS], "readonly", (records) =>
      done(records.get([entity, id])),
    );
    return row ? row.data : null;
  }

  // A pulled page, and the cursor after it, land together or not at all. `seen` collects the
  // keys a snapshot put, for dropUnseen.
  applyPage(changes, { cursor, seen }) {
    return this.#within([RECORDS, META], "readwrite", async (records, meta) => {
      for (const change of changes) {
        if (change.op === "put") {
          await done(records.put({ entity: change.entity, id: change.id, data: change.data }));
          seen?.add(JSON.stringify([change.entity, change.id]));
        } else {
          await done(records.delete([change.entity, change.id]));
        }
      }
      if (cursor !== null) {
        const state = await done(meta.get(SYNC_KEY));
        await done(meta.put({ ...state, cursor }, SYNC_KEY));
      }
    });
  }

  // The end of a snapshot: what it did not put is gone on the server ("replacement sync").
  finishSnapshot(seen, cursor) {
    return this.#within([RECORDS, META], "readwrite", async (records, meta) => {
      const keys = await done(records.getAllKeys());
      for (const key of keys) {
        if (!seen.has(JSON.stringify(key))) await done(records.delete(key));
      }
      const state = await done(meta.get(SYNC_KEY));
      await done(meta.put({ ...state, cursor }, SYNC_KEY));
    });
  }

  // Mutation ids are strictly +1 per client: the id is taken in the same transaction as the row.
  enqueue(name, args) {
    return this.#within([META, QUEUE], "readwrite", async (meta, queue) => {
      const state = await done(meta.get(SYNC_KEY));
      console.assert(state, "enqueue needs a signed-in install");
      const mutation = {
        id: state.next_mutation_id,
        name,
        args,
        status: "queued",
        queued_at: new Date().toISOString(),
      };
      await done(queue.add(mutation));
      await done(meta.put({ ...state, next_mutation_id: mutation.id + 1 }, SYNC_KEY));
      return mutation;
    });
  }

  queue() {
    return this.#within([QUEUE], "readonly", (queue) => done(queue.getAll()));
  }

  // The server's answer to a push: applied ones leave the queue, refused ones stay to be read.
  // Only for the install that pushed: another tab or the service worker (sync-sw.js) may have
  // started the install afresh meanwhile (restart: a new client id, the ids renumbered), and
  // an answer about the old ids must not touch the new ones.
  settle(clientId, results, lastMutationId) {
    return this.#within([META, QUEUE], "readwrite", async (meta, queue) => {
      const state = await done(meta.get(SYNC_KEY));
      if (!state || state.client_id !== clientId) return;
      for (const result of results) {
        const mutation = await done(queue.get(result.mutation_id));
        if (!mutation) continue;
        if (result.status === "rejected" || result.status === "dead_letter") {
          await done(queue.put({ ...mutation, status: result.status, outcome: result }));
        } else {
          await done(queue.delete(result.mutation_id));
        }
      }
      // Ids the server already processed (an answer lost on the way) are done too.
      for (const mutation of await done(queue.getAll())) {
        if (mutation.status === "queued" && mutation.id <= lastMutationId) {
          await done(queue.delete(mutation.id));
        }
      }
    });
  }

  // The server has lost mutations this install counts as done (a restore from backup): go on as
  // a new install, the waiting ones renumbered from 1, and pull everything again. Safe for
  // repay_loan, keyed by (client, id): the server never saw the new client's ids. Returns the
  // old id -> new id of each waiting mutation.
  restart() {
    return this.#within([META, QUEUE], "readwrite", async (meta, queue) => {
      const state = await done(meta.get(SYNC_KEY));
      const waiting = (await done(queue.getAll()))
        .filter((mutation) => mutation.status === "queued")
        .sort((a, b) => a.id - b.id);
      await done(queue.clear());
      const renumbered = new Map();
      for (const [index, mutation] of waiting.entries()) {
        renumbered.set(mutation.id, index + 1);
        await done(queue.add({ ...mutation, id: index + 1 }));
      }
      const fresh = {
        ...state,
        client_id: crypto.randomUUID(),
        cursor: "",
        next_mutation_id: waiting.length + 1,
      };
      await done(meta.put(fresh, SYNC_KEY));
      return renumbered;
    });
  }

  markDead(mutationId, outcome) {
    return this.#within([QUEUE], "readwrite", async (queue) => {
      const mutation = await done(queue.get(mutationId));
      if (mutation) await done(queue.put({ ...mutation, status: "dead_letter", outcome }));
    });
  }

  dismiss(mutationId) {
    return this.#within([QUEUE], "readwrite", async (queue) => {
      const mutation = await done(queue.get(mutationId));
      console.assert(!mutation || mutation.status !== "queued", "only settled ones go");
      if (mutation && mutation.status !== "queued") await done(queue.delete(mutationId));
    });
  }
}
