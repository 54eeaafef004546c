// Talking to the server: the REST calls that need the network (sign in, register, forgotten
// PIN) and the sync protocol (docs/sync.md) that carries everything else, online or not.

const API = "/api/v1";
const SCHEMA_VERSION = 1;
const PUSH_MUTATIONS_MAX = 500; // the server's MUTATIONS_PER_PUSH_MAX
const PUSH_ROUNDS_MAX = 20;
const PULL_PAGES_MAX = 200;
const PULL_PAGE_ROWS = 500;
const ACCESS_MARGIN_S = 30; // refresh this long before the access token runs out
const TOKEN_REFUSALS = new Set(["token_expired", "unauthorized"]);
// Mutations the server runs only with the member's PIN (docs/sync.md, section 4): money that
// leaves the wallet, an approval, and where money goes on its own.
export const NEEDS_PIN = new Set(["approve_loan", "repay_loan", "withdraw", "set_preferences"]);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Offline extends Error {
  constructor(cause) {
    super("There is no network. Try again when you are back online.");
    this.cause = cause;
  }
}

async function send(method, path, { body, token, extraHeaders = {} } = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new Offline(error);
  }
  const answer = await response.json().catch(() => null);
  if (response.ok) return answer;
  const error = answer?.error ?? {};
  throw new ApiError(
    response.status,
    error.code ?? `http_${response.status}`,
    error.message ?? "The server could not do that. Please try again.",
  );
}

// Calls that need no session.
export const publicApi = {
  login: (phone, pin) => send("POST", "/auth/login", { body: { phone, pin } }),
  askRegisterCode: (phone, language) =>
    send("POST", "/auth/register/code", { body: { phone, language } }),
  register: (fields) => send("POST", "/auth/register", { body: fields }),
  askPinReset: (phone) => send("POST", "/auth/pin-reset", { body: { phone } }),
  confirmPinReset: (fields) => send("POST", "/auth/pin-reset/confirm", { body: fields }),
  passkeyOptions: () => send("POST", "/auth/passkey/options"),
};

export class Session {
  constructor(store) {
    this.store = store;
    this.accessToken = null;
    this.accessUntilMs = 0;
  }

  async signIn(phone, pin) {
    const answer = await publicApi.login(phone, pin);
    await this.#keep(answer, phone);
    return this.store.begin(answer.user_id);
  }

  // A passkey's answer (js/passkeys.js) instead of the PIN: the same tokens; the number the
  // session is kept under comes from the profile.
  async signInWithPasskey(body) {
    const answer = await send("POST", "/auth/passkey", { body });
    const me = await send("GET", "/me", { token: answer.access_token });
    await this.#keep(answer, me.phone);
    return this.store.begin(answer.user_id);
  }

  async #keep(answer, phone) {
    this.accessToken = answer.access_token;
    this.accessUntilMs = Date.now() + (answer.expires_in - ACCESS_MARGIN_S) * 1000;
    await this.store.saveSession({
      user_id: answer.user_id,
      phone,
      refresh_token: answer.refresh_token,
    });
  }

  // A refresh token works once, and a spent one revokes the whole login: tabs take turns (a
  // Web Lock) and each reads the newest token inside its turn.
  async #refresh() {
    const turn = (work) =>
      navigator.locks ? navigator.locks.request("deni-refresh", work) : work();
    await turn(async () => {
      const saved = await this.store.session();
      if (!saved) throw new ApiError(401, "signed_out", "Please sign in.");
      const answer = await send("POST", "/auth/refresh", {
        body: { refresh_token: saved.refresh_token },
      });
      await this.#keep(answer, saved.phone);
    });
  }

  async call(method, path, body, extraHeaders = {}) {
    if (!this.accessToken || Date.now() >= this.accessUntilMs) await this.#refresh();
    try {
      return await send(method, path, { body, token: this.accessToken, extraHeaders });
    } catch (error) {
      // Only the token's own refusals: a wrong PIN must not be sent twice.
      if (!(error instanceof ApiError) || !TOKEN_REFUSALS.has(error.code)) throw error;
      await this.#refresh(); // expired between the check and the call: once more
      return send(method, path, { body, token: this.accessToken, extraHeaders });
    }
  }
}

// One sync: push what is queued, then pull what changed. The PINs of queued mutations that
// need one live only in `pins` (mutation id -> PIN), in memory, for as long as the page is open.
export class Syncer {
  constructor(store, session) {
    this.store = store;
    this.session = session;
    this.pins = new Map();
    // The server's answer to each mutation pushed from this page (mutation id -> result): a
    // form waits for its own (core.js actNow), an M-PESA action learns its request id here.
    this.outcomes = new Map();
    this.running = null;
    this.rerun = null;
  }

  // One sync at a time. An ask while one runs gets one more run after it (shared by every
  // ask meanwhile): what was queued since must not wait for the next timer.
  sync() {
    if (this.running) {
      this.rerun ??= this.running
        .catch(() => {})
        .then(() => {
          this.rerun = null;
          return this.sync();
        });
      return this.rerun;
    }
    this.running = this.#syncOnce().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async #syncOnce() {
    await this.#push();
    await this.#pull();
  }

  async #push() {
    for (let round = 0; round < PUSH_ROUNDS_MAX; round++) {
      const batch = this.#batch(await this.store.queue());
      if (batch.length === 0) return;
      const { client_id: clientId } = await this.store.syncState();
      const answer = await this.session.call("POST", "/sync/push", {
        client_id: clientId,
        schema_version: SCHEMA_VERSION,
        mutations: batch,
      });
      await this.store.settle(clientId, answer.results, answer.last_mutation_id);
      for (const result of answer.results) {
        this.pins.delete(result.mutation_id);
        this.outcomes.set(result.mutation_id, result);
      }
      if (answer.stopped === null) continue;
      if (answer.stopped.code === "mutation_id_reused") {
        // Never renumber: repay_loan is keyed by (client, id), a new id could pay twice.
        await this.store.markDead(answer.stopped.mutation_id, answer.stopped);
        continue;
      }
      if (answer.stopped.code === "mutation_gap") {
        // The server wants an id below every one waiting here: it lost mutations this phone
        // had counted as done.
        const renumbered = await this.store.restart();
        this.pins = new Map(
          [...this.pins].map(([id, pin]) => [renumbered.get(id), pin]).filter(([id]) => id),
        );
        continue;
      }
      return; // busy: the next sync tries again
    }
  }

  // Oldest first, stopping at a mutation that needs a PIN this page does not hold.
  #batch(queue) {
    const batch = [];
    for (const mutation of queue.sort((a, b) => a.id - b.id)) {
      if (mutation.status !== "queued") continue;
      if (batch.length === PUSH_MUTATIONS_MAX) break;
      if (NEEDS_PIN.has(mutation.name)) {
        const pin = this.pins.get(mutation.id);
        if (pin === undefined) break;
        batch.push({ id: mutation.id, name: mutation.name, args: { ...mutation.args, pin } });
      } else {
        batch.push({ id: mutation.id, name: mutation.name, args: mutation.args });
      }
    }
    return batch;
  }

  async #pull() {
    const state = await this.store.syncState();
    const clientId = state.client_id;
    let cursor = state.cursor;
    let seen = cursor === "" ? new Set() : null; // the first pull is a snapshot
    for (let page = 0; page < PULL_PAGES_MAX; page++) {
      const query = new URLSearchParams({
        client_id: clientId,
        schema_version: String(SCHEMA_VERSION),
        cursor,
        limit: String(PULL_PAGE_ROWS),
      });
      const answer = await this.session.call("GET", `/sync/pull?${query}`);
      if (answer.reset) seen = new Set();
      // During a snapshot the cursor is kept only at its end, with the sweep of what it left
      // out: a snapshot cut short starts again rather than leaving stale rows behind.
      await this.store.applyPage(answer.changes, {
        cursor: seen === null ? answer.cursor : null,
        seen,
      });
      cursor = answer.cursor;
      if (!answer.has_more) {
        if (seen !== null) await this.store.finishSnapshot(seen, cursor);
        return;
      }
    }
  }
}
