// What every screen shares: the app's state, how an action is queued and synced, the status
// line, navigation, and the checks and calls several screens make.

import { sendNowAndThen, sendWhenOnline } from "./background.js";
import { Refused, h } from "./dom.js";
import { longDate, kes, normalisePhone, shownPhone } from "./format.js";
import { language, serverMessage, setLanguage, t } from "./i18n.js";
import { ApiError, Offline, Session, Syncer } from "./sync.js";

export const app = {
  store: null,
  session: null,
  syncer: null,
  status: {
    syncing: false,
    offline: !navigator.onLine,
    lastSyncedAt: null,
    problem: null,
    syncs: 0, // completed syncs since the page opened
    waiting: 0, // mutations queued and not yet answered
  },
};

export function date(isoDate) {
  return longDate(isoDate, language());
}

export function describe(mutation) {
  const a = mutation.args;
  const amount = a.amount_cents === undefined ? "" : kes(a.amount_cents);
  if (mutation.name === "request_loan") {
    return t("what.request_loan", {
      phone: shownPhone(a.lender_phone),
      amount: kes(a.principal_cents),
    });
  }
  return t(`what.${mutation.name}`, { amount });
}

// A refusal in the person's language where we have it, else the server's own words.
export function refusal(error) {
  if (error instanceof Offline) return t("error.offline");
  return error instanceof ApiError ? refusalWords(error.code, error.message) : error.message;
}

// Follows the profile when its language changes: one chosen on USSD or another phone shows
// here after a sync. A pull that brings the language this phone saw before changes nothing,
// so a choice made here is not undone by a sync that started before it.
let profileLanguageSeen = null;

export async function followProfileLanguage() {
  const [me] = await app.store.records("user");
  if (!me || me.language === profileLanguageSeen) return;
  profileLanguageSeen = me.language;
  if (me.language !== language()) setLanguage(me.language);
}

// Queues a mutation and syncs. `queued(mutation)` runs before the sync starts.
//
// With `fields` (refusal code -> the form field it is about) and the network up, the form waits
// for the server's answer: a refusal is thrown (as Refused, in the person's words, next to its
// field) and leaves the queue, so it is not found later on Home as "Not done". Offline, or when
// the answer does not come, the mutation stays queued and is sent later, as before.
export async function act(name, args, { pin, queued, fields } = {}) {
  const mutation = await app.store.enqueue(name, args);
  if (pin !== undefined) app.syncer.pins.set(mutation.id, pin);
  if (queued) await queued(mutation);
  await countWaiting();
  if (fields === undefined || !navigator.onLine) {
    syncSoon();
    return mutation;
  }
  await syncNow();
  const outcome = app.syncer?.outcomes.get(mutation.id);
  if (outcome && (outcome.status === "rejected" || outcome.status === "dead_letter")) {
    await app.store.dismiss(mutation.id);
    await countWaiting();
    throw new Refused(refusalWords(outcome.code, outcome.message), fields[outcome.code] ?? null);
  }
  return mutation;
}

// A refusal code and the server's English, as the person reads it: never a bare code.
export function refusalWords(code, message) {
  return serverMessage(code, message && !/^[a-z_]+$/.test(message) ? message : t("queue.refused"));
}

export async function countWaiting() {
  const queue = await app.store.queue();
  app.status.waiting = queue.filter((m) => m.status === "queued").length;
  paintStatus();
}

// A quiet sync (the timer's, the tab shown again) says nothing on the status line unless it
// ends somewhere else than it started: the line is a live region, read out at each change.
export async function syncNow({ quiet = false } = {}) {
  if (!app.syncer) return;
  app.status.quiet = quiet;
  app.status.syncing = true;
  paintStatus();
  try {
    await app.syncer.sync();
    Object.assign(app.status, { offline: false, problem: null, lastSyncedAt: new Date() });
    app.status.syncs += 1;
    await followProfileLanguage();
    for (const hook of afterSync) await hook();
  } catch (error) {
    if (error instanceof Offline) {
      app.status.offline = true;
      await sendWhenOnline(); // the service worker sends the queue then, open or closed
    } else if (error instanceof ApiError && error.status >= 500) {
      app.status.problem = refusal(error);
      await sendWhenOnline();
    } else if (error instanceof ApiError && error.status === 401) {
      app.status.problem = t("status.sign_in_again");
      location.hash = "#/sign-in";
    } else if (error instanceof ApiError && error.code === "client_upgrade_required") {
      app.status.problem = t("status.upgrade");
    } else {
      app.status.problem = refusal(error);
    }
  } finally {
    app.status.syncing = false;
  }
  // The screen first, then the status line: once the line says the sync is over, what is on
  // the screen stays, so nothing typed after it is wiped by a late render.
  if (screen.isLive() && !editing()) await render({ unlessEditing: true });
  if (app.syncer) await countWaiting();
  paintStatus();
}

// Work that follows each good sync (mpesa.js follows its requests); kept here as hooks so this
// module imports no feature.
export const afterSync = [];

export function syncSoon(options = {}) {
  syncNow(options).catch((error) => console.error("sync failed", error));
}

// A fresh sync must not wipe what someone is typing (a PIN, an amount).
export function editing() {
  const inputs = [...document.getElementById("view").querySelectorAll("input")];
  return inputs.some(
    (input) =>
      input.value !== input.defaultValue ||
      input.checked !== input.defaultChecked ||
      input === document.activeElement,
  );
}

// One line says where the phone stands with the server; its data-state says the same to
// scripts (and tests): problem, syncing, offline, waiting, synced or idle.
let saidIn = null; // the language the status line was last written in

export function paintStatus() {
  const line = document.getElementById("status");
  const { syncing, offline, lastSyncedAt, problem, waiting } = app.status;
  const [state, text] = problem
    ? ["problem", problem]
    : syncing
      ? ["syncing", t("status.syncing")]
      : offline
        ? ["offline", t("status.offline")]
        : waiting > 0
          ? ["waiting", t("status.waiting", { count: waiting })]
          : lastSyncedAt
            ? ["synced", t("status.synced", { time: lastSyncedAt.toTimeString().slice(0, 5) })]
            : ["idle", ""];
  Object.assign(line.dataset, { state, syncs: String(app.status.syncs) });
  // Written only when it says something new: a quiet sync from "up to date" to "up to date"
  // (or its "syncing" in between) leaves the words, and their time, as they are.
  const calm = app.status.quiet && (state === "syncing" || state === "synced");
  if (calm && line.dataset.said === "synced" && saidIn === language()) return;
  if (line.textContent !== text) line.textContent = text;
  line.dataset.said = state;
  saidIn = language();
}

// The screens live in app.js (the router) and js/views/; these hooks keep this module free of
// them, so every view can import what it shares from here.
export const screen = {
  render: async (_options) => {},
  isLive: () => false,
};

// With unlessEditing, a screen whose data arrived while someone started typing is dropped.
export function render(options = {}) {
  return screen.render(options);
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function readPhone(text, message = "error.phone") {
  const msisdn = normalisePhone(text);
  if (msisdn === null) throw new Refused(t(message));
  return msisdn;
}

export function requirePin(pin, field = "pin") {
  if (!/^\d{4}$/.test(pin)) throw new Refused(t("error.pin_format"), field);
}

export function twoPins(pin, again) {
  requirePin(pin);
  if (pin !== again) throw new Refused(t("error.pin_mismatch"));
}

// Sends to the server now (no queue): sign-in, registration, PIN changes.
export async function online(work) {
  try {
    return await work();
  } catch (error) {
    throw new Refused(refusal(error));
  }
}

export async function signIn(msisdn, pin) {
  await online(() => app.session.signIn(msisdn, pin));
  app.syncer ??= new Syncer(app.store, app.session);
  app.status.problem = null;
  go("#/home");
  syncSoon();
  sendNowAndThen();
}

export async function leave() {
  await app.store.forget();
  app.syncer = null;
  app.session = new Session(app.store);
  Object.assign(app.status, { waiting: 0, lastSyncedAt: null, problem: null });
  profileLanguageSeen = null;
  go("#/sign-in");
}

export function homeLink() {
  return h("p", {}, h("a", { href: "#/home" }, t("nav.back")));
}

// A button that does `action` and goes home; with `question`, only once the person confirms.
export function button(label, action, question = null) {
  return h(
    "button",
    {
      type: "button",
      onclick: async () => {
        if (question !== null && !confirm(question)) return;
        await action();
        go("#/home");
      },
    },
    label,
  );
}
