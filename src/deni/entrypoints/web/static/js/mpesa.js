// M-PESA money on its way: after a top-up or a repayment from the loan screen (an STK push:
// M-PESA asks for the M-PESA PIN on the phone) or a withdrawal (a B2C payout), Home shows a
// card saying what to do or what is under way. The app asks Deni about the request every few
// seconds for a while (GET /mpesa/requests), then at each sync, until it settles, and says the
// outcome in plain words.
// What is followed is kept in IndexedDB (meta "mpesa"), so a reload keeps following it.

import { h } from "./dom.js";
import { kes } from "./format.js";
import { t } from "./i18n.js";
import { Offline } from "./sync.js";
import { afterSync, app, editing, render, screen, syncSoon } from "./core.js";

export const MPESA_ACTIONS = new Set(["top_up", "withdraw", "repay_by_mpesa"]);
const PURPOSES = { top_up: "top_up", withdraw: "withdrawal", repay_by_mpesa: "repayment" };
const CHECK_EVERY_MS = 2_500;
const FAST_CHECKS_MAX = 48; // two minutes of quick checks; then one at each sync
const REQUESTS_READ = 20; // the newest requests: what was just asked is among them
const OPEN_STATES = new Set(["queued", "sending", "sent", "unknown"]);

let fastChecks = 0;
let timer = null;

export async function followMpesa(mutation) {
  const watches = await app.store.mpesaWatches();
  watches.push({
    mutation_id: mutation.id,
    name: mutation.name,
    amount_cents: mutation.args.amount_cents,
    request_id: null,
    state: "asked",
    receipt: null,
  });
  await app.store.saveMpesaWatches(watches);
  fastChecks = 0;
}

// Called after each good sync, and every CHECK_EVERY_MS while something is open.
async function check() {
  if (!app.syncer) return;
  const watches = await app.store.mpesaWatches();
  if (!watches.some(isOpen)) return;
  const queue = await app.store.queue();
  let changed = false;
  const followed = [];
  for (const watch of watches) {
    if (watch.request_id === null) {
      const outcome = app.syncer.outcomes.get(watch.mutation_id);
      if (outcome?.status === "applied" && outcome.entity_id) {
        watch.request_id = outcome.entity_id;
        changed = true;
      } else if (outcome && outcome.status !== "applied") {
        changed = true; // refused: the form or "Not done" says why; nothing to follow
        continue;
      } else if (!outcome) {
        const queued = queue.find((m) => m.id === watch.mutation_id);
        if (queued && queued.status !== "queued") {
          changed = true; // refused before this page opened: "Not done" says why
          continue;
        }
        if (!queued) watch.state = "lost"; // sent by an earlier page: matched by what it asked
      }
    }
    followed.push(watch);
  }
  const asking = followed.filter((w) => isOpen(w) && (w.request_id !== null || w.state === "lost"));
  if (asking.length > 0) {
    try {
      const answer = await app.session.call("GET", `/mpesa/requests?limit=${REQUESTS_READ}`);
      changed = settle(followed, answer.requests) || changed;
    } catch (error) {
      if (!(error instanceof Offline)) console.warn("M-PESA requests not read", error);
    }
  }
  if (changed) {
    await app.store.saveMpesaWatches(followed);
    if (followed.some((w) => !isOpen(w) && w.shown !== true)) {
      for (const watch of followed) if (!isOpen(watch)) watch.shown = true;
      await app.store.saveMpesaWatches(followed);
      syncSoon(); // the wallet's new balance
    }
    if (screen.isLive() && !editing()) await render({ unlessEditing: true });
  }
}

function settle(watches, requests) {
  let changed = false;
  const claimed = new Set(watches.map((w) => w.request_id).filter(Boolean));
  for (const watch of watches) {
    if (!isOpen(watch)) continue;
    let request = requests.find((r) => r.id === watch.request_id);
    if (!request && watch.state === "lost") {
      // The push's answer never reached this page: the newest request of the same kind and
      // amount that no other line follows is this one.
      request = requests.find(
        (r) =>
          !claimed.has(r.id) &&
          r.purpose === PURPOSES[watch.name] &&
          r.amount_cents === watch.amount_cents,
      );
      if (request) {
        watch.request_id = request.id;
        claimed.add(request.id);
      }
    }
    if (!request) continue;
    const state = OPEN_STATES.has(request.state) ? "open" : request.state;
    if (state !== watch.state || request.receipt !== watch.receipt) {
      Object.assign(watch, { state, receipt: request.receipt });
      changed = true;
    }
  }
  return changed;
}

function isOpen(watch) {
  return watch.state !== "succeeded" && watch.state !== "failed";
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    fastChecks += 1;
    try {
      await check();
    } finally {
      const watches = app.syncer ? await app.store.mpesaWatches() : [];
      if (watches.some(isOpen) && fastChecks < FAST_CHECKS_MAX) schedule();
    }
  }, CHECK_EVERY_MS);
}

afterSync.push(async () => {
  try {
    await check();
  } catch (error) {
    console.warn("M-PESA not followed", error);
  }
  const watches = await app.store.mpesaWatches();
  if (watches.some(isOpen) && fastChecks < FAST_CHECKS_MAX) schedule();
});

// Home's card: one line per M-PESA action followed, until the person taps OK on its outcome.
export async function mpesaSection() {
  const watches = await app.store.mpesaWatches();
  if (watches.length === 0) return null;
  const slow = fastChecks >= FAST_CHECKS_MAX;
  return h(
    "section",
    { class: "card mpesa", id: "mpesa", role: "status" },
    h("h2", {}, "M-PESA"),
    h(
      "ul",
      {},
      watches.map((watch) =>
        h(
          "li",
          { dataset: { state: watch.state } },
          h("p", {}, said(watch)),
          isOpen(watch) && slow ? h("p", { class: "muted" }, t("mpesa.slow")) : null,
          isOpen(watch)
            ? null
            : h(
                "button",
                { type: "button", class: "small", onclick: () => forget(watch) },
                t("button.ok"),
              ),
        ),
      ),
    ),
  );
}

function said(watch) {
  const amount = kes(watch.amount_cents);
  const receipt = watch.receipt ? t("mpesa.receipt", { receipt: watch.receipt }) : "";
  if (watch.state === "succeeded") return t(`mpesa.${watch.name}.done`, { amount }) + receipt;
  if (watch.state === "failed") return t(`mpesa.${watch.name}.failed`, { amount });
  return t(`mpesa.${watch.name}.waiting`, { amount });
}

async function forget(watch) {
  const watches = await app.store.mpesaWatches();
  await app.store.saveMpesaWatches(watches.filter((w) => w.mutation_id !== watch.mutation_id));
  render();
}
