// Deni's web app: the whole service from a browser or an Android home screen, online or not.
// Screens read the device's copy (store.js); everything a person does becomes a sync mutation
// (docs/sync.md) that reaches the server now, or when the network comes back.

import { Refused, field, form, h, pinField } from "./dom.js";
import {
  addDays,
  kes,
  longDate,
  nairobiToday,
  normalisePhone,
  parseKes,
  shortTime,
  shownPhone,
} from "./format.js";
import {
  LANGUAGES,
  chosenLanguage,
  language,
  serverMessage,
  setLanguage,
  t,
} from "./i18n.js";
import { openStore } from "./store.js";
import { ApiError, Offline, Session, Syncer, publicApi } from "./sync.js";

const SYNC_EVERY_MS = 30_000;
const OPEN_STATES = new Set(["requested", "approved", "disbursing", "active"]);
const NOTIFICATIONS_SHOWN = 5;
const STATEMENT_LINES_SHOWN = 50;

const app = {
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

// --- words ---------------------------------------------------------------------------------

function date(isoDate) {
  return longDate(isoDate, language());
}

function describe(mutation) {
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
function refusal(error) {
  if (error instanceof Offline) return t("error.offline");
  return error instanceof ApiError ? serverMessage(error.code, error.message) : error.message;
}

// Follows the profile: a language changed on USSD or another phone shows here after a sync;
// not while this phone's own change of language is still on its way.
async function followProfileLanguage() {
  const [[me], queue] = await Promise.all([app.store.records("user"), app.store.queue()]);
  const changing = queue.some((m) => m.status === "queued" && m.name === "update_profile");
  if (me && !changing && me.language !== language()) setLanguage(me.language);
}

async function act(name, args, { pin } = {}) {
  const mutation = await app.store.enqueue(name, args);
  if (pin !== undefined) app.syncer.pins.set(mutation.id, pin);
  await countWaiting();
  syncSoon();
  return mutation;
}

async function countWaiting() {
  const queue = await app.store.queue();
  app.status.waiting = queue.filter((m) => m.status === "queued").length;
  paintStatus();
}

// --- sync ----------------------------------------------------------------------------------

async function syncNow() {
  if (!app.syncer) return;
  app.status.syncing = true;
  paintStatus();
  try {
    await app.syncer.sync();
    Object.assign(app.status, { offline: false, problem: null, lastSyncedAt: new Date() });
    app.status.syncs += 1;
    await followProfileLanguage();
  } catch (error) {
    if (error instanceof Offline) {
      app.status.offline = true;
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
  if (app.syncer) await countWaiting();
  paintStatus();
  if (currentView()?.live && !editing()) await render();
}

function syncSoon() {
  syncNow().catch((error) => console.error("sync failed", error));
}

// A fresh sync must not wipe what someone is typing (a PIN, an amount).
function editing() {
  const inputs = [...document.getElementById("view").querySelectorAll("input")];
  return inputs.some(
    (input) => input.value !== input.defaultValue || input === document.activeElement,
  );
}

// One line says where the phone stands with the server; its data-state says the same to
// scripts (and tests): problem, syncing, offline, waiting, synced or idle.
function paintStatus() {
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
  line.textContent = text;
  Object.assign(line.dataset, { state, syncs: String(app.status.syncs) });
}

// --- screens -------------------------------------------------------------------------------

const views = {
  "sign-in": { render: signInView },
  register: { render: registerView },
  "forgot-pin": { render: forgotPinView },
  home: { render: homeView, live: true, private: true },
  loan: { render: loanView, live: true, private: true },
  request: { render: requestView, private: true },
  "top-up": { render: moneyView("top_up"), private: true },
  withdraw: { render: moneyView("withdraw"), private: true },
  statement: { render: statementView, live: true, private: true },
  settings: { render: settingsView, private: true },
};

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name in views ? name : "home", param: rest.join("/") };
}

function currentView() {
  return views[route().name];
}

async function render() {
  const { name, param } = route();
  const view = views[name];
  if (view.private && !app.syncer) {
    location.hash = "#/sign-in";
    return;
  }
  const content = await view.render(param);
  const title = name === "home" ? "Deni" : t(`title.${name}`);
  document.title = title === "Deni" ? "Deni" : `${title} · Deni`;
  document.getElementById("view").replaceChildren(h("h1", {}, title), content);
  const signedIn = Boolean(app.syncer);
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("sign-out").textContent = t("nav.sign_out");
  document.getElementById("settings").hidden = !signedIn;
  document.getElementById("settings").textContent = t("nav.settings");
  paintStatus(); // in the language just chosen
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function readPhone(text, message = "error.phone") {
  const msisdn = normalisePhone(text);
  if (msisdn === null) throw new Refused(t(message));
  return msisdn;
}

function requirePin(pin) {
  if (!/^\d{4}$/.test(pin)) throw new Refused(t("error.pin_format"));
}

function twoPins(pin, again) {
  requirePin(pin);
  if (pin !== again) throw new Refused(t("error.pin_mismatch"));
}

// Sends to the server now (no queue): sign-in, registration, PIN changes.
async function online(work) {
  try {
    return await work();
  } catch (error) {
    throw new Refused(refusal(error));
  }
}

function languagePicker() {
  return h(
    "p",
    { class: "languages" },
    Object.entries(LANGUAGES).map(([code, name]) =>
      h(
        "button",
        {
          type: "button",
          class: "small link",
          "aria-pressed": String(code === language()),
          onclick: () => {
            setLanguage(code);
            render();
          },
        },
        name,
      ),
    ),
  );
}

function signInView() {
  return h(
    "div",
    {},
    languagePicker(),
    form(
      [
        field(t("field.phone"), "phone", { type: "tel", inputmode: "tel", required: true }),
        pinField(t("field.pin")),
      ],
      t("button.sign_in"),
      ({ phone, pin }) => signIn(readPhone(phone), pin),
    ),
    h(
      "p",
      { class: "links" },
      h("a", { href: "#/register" }, t("link.register")),
      " · ",
      h("a", { href: "#/forgot-pin" }, t("link.forgot")),
    ),
  );
}

async function signIn(msisdn, pin) {
  await online(() => app.session.signIn(msisdn, pin));
  app.syncer ??= new Syncer(app.store, app.session);
  app.status.problem = null;
  go("#/home");
  syncSoon();
}

function registerView() {
  const picker = h(
    "select",
    { id: "field-language", name: "language" },
    Object.entries(LANGUAGES).map(([code, name]) =>
      h("option", { value: code, selected: code === language() }, name),
    ),
  );
  return form(
    [
      field(t("field.name"), "name", { required: true, maxlength: "60", autocomplete: "name" }),
      field(t("field.phone"), "phone", { type: "tel", inputmode: "tel", required: true }),
      pinField(t("field.new_pin")),
      pinField(t("field.pin_again"), "pin_again"),
      h("div", { class: "field" }, h("label", { for: "field-language" }, t("field.language")), picker),
    ],
    t("button.register"),
    async ({ name, phone, pin, pin_again: again, language: chosen }) => {
      const msisdn = readPhone(phone);
      twoPins(pin, again);
      await online(() =>
        publicApi.register({ name: name.trim(), phone: msisdn, pin, language: chosen }),
      );
      setLanguage(chosen);
      await signIn(msisdn, pin);
    },
  );
}

function forgotPinView() {
  const second = h("div", { hidden: true });
  const first = form(
    [field(t("field.phone"), "phone", { type: "tel", inputmode: "tel", required: true })],
    t("button.send_code"),
    async ({ phone }) => {
      const msisdn = readPhone(phone);
      const answer = await online(() => publicApi.askPinReset(msisdn));
      first.hidden = true;
      second.replaceChildren(
        h("p", {}, answer.message),
        form(
          [
            field(t("field.code"), "code", { inputmode: "numeric", required: true }),
            pinField(t("field.reset_pin")),
            pinField(t("field.pin_again"), "pin_again"),
          ],
          t("button.set_pin"),
          async ({ code, pin, pin_again: again }) => {
            twoPins(pin, again);
            await online(() =>
              publicApi.confirmPinReset({ phone: msisdn, code: code.trim(), new_pin: pin }),
            );
            await signIn(msisdn, pin);
          },
        ),
      );
      second.hidden = false;
    },
  );
  return h("div", {}, first, second);
}

async function homeView() {
  const [wallets, loans, queue, notifications, users, conflicts] = await Promise.all([
    app.store.records("wallet"),
    app.store.records("loan"),
    app.store.queue(),
    app.store.records("notification"),
    app.store.records("user"),
    app.store.records("conflict"),
  ]);
  const wallet = wallets[0];
  const me = users[0];
  const open = loans.filter((loan) => OPEN_STATES.has(loan.state));
  const byDue = (a, b) => a.due_date.localeCompare(b.due_date);
  return h(
    "div",
    {},
    me ? h("p", { class: "greeting" }, t("home.hello", { name: me.name })) : null,
    h(
      "section",
      { class: "card balance" },
      h("p", {}, t("home.wallet")),
      h("p", { class: "amount", id: "balance" }, wallet ? kes(wallet.balance_cents) : "—"),
      wallet?.held_cents ? h("p", {}, t("home.held", { amount: kes(wallet.held_cents) })) : null,
      wallet && leaving(queue)
        ? h(
            "p",
            { id: "available" },
            t("home.available", { amount: kes(wallet.balance_cents - leaving(queue)) }),
          )
        : null,
      h(
        "nav",
        { class: "actions" },
        h("a", { href: "#/request", class: "button" }, t("home.ask")),
        h("a", { href: "#/top-up", class: "button" }, t("home.top_up")),
        h("a", { href: "#/withdraw", class: "button" }, t("home.withdraw")),
        h("a", { href: "#/statement", class: "button" }, t("home.statement")),
      ),
    ),
    conflictSection(conflicts, loans, queue),
    queueSection(queue),
    loanSection(
      t("home.asks"),
      "asks",
      open.filter((l) => l.role === "lender" && l.state === "requested"),
    ),
    loanSection(t("home.owe"), "owe", open.filter((l) => l.role === "borrower").sort(byDue)),
    loanSection(
      t("home.lent"),
      "lent",
      open.filter((l) => l.role === "lender" && l.state !== "requested").sort(byDue),
    ),
    notificationSection(notifications),
    pastLoans(loans.filter((loan) => !OPEN_STATES.has(loan.state))),
  );
}

// Two versions of a loan request (edited on two phones): the person keeps one. A choice already
// queued hides the question until the server has taken it.
function conflictSection(conflicts, loans, queue) {
  const chosen = new Set(
    queue.filter((m) => m.name === "resolve_conflict").map((m) => m.args.conflict_id),
  );
  const open = conflicts.filter((c) => c.entity === "loan" && !chosen.has(c.id));
  if (open.length === 0) return null;
  const terms = (version) =>
    t("choice.terms", {
      amount: kes(version.principal_cents),
      fee: kes(version.fee_cents),
      due: date(version.due_date),
    });
  const choose = (conflict, choice) => async () => {
    await act("resolve_conflict", { conflict_id: conflict.id, choice });
    render();
  };
  return h(
    "section",
    { class: "card queue", id: "choices" },
    h("h2", {}, t("home.choices")),
    h(
      "ul",
      {},
      open.map((conflict) => {
        const loan = loans.find((l) => l.id === conflict.entity_id);
        return h(
          "li",
          {},
          t("choice.text", {
            code: loan?.code ?? "",
            name: loan?.lender_name ?? "",
            server: terms(conflict.server_version),
            client: terms(conflict.client_version),
          }),
          h(
            "p",
            { class: "languages" },
            h("button", { type: "button", class: "small", onclick: choose(conflict, "server") }, t("button.keep_server")),
            h("button", { type: "button", class: "small", onclick: choose(conflict, "client") }, t("button.keep_client")),
          ),
        );
      }),
    ),
  );
}

// Money that queued repayments and withdrawals will take once they reach the server.
function leaving(queue) {
  const outgoing = queue.filter(
    (m) => m.status === "queued" && (m.name === "repay_loan" || m.name === "withdraw"),
  );
  return outgoing.reduce((sum, m) => sum + m.args.amount_cents, 0);
}

function queueSection(queue) {
  if (queue.length === 0) return null;
  const waiting = queue.filter((m) => m.status === "queued").sort((a, b) => a.id - b.id);
  const refused = queue.filter((m) => m.status !== "queued");
  return h(
    "section",
    { class: "card queue", id: "queue" },
    waiting.length ? h("h2", {}, t("queue.waiting", { count: waiting.length })) : null,
    h("ul", {}, waiting.map(waitingLine)),
    refused.length ? h("h2", {}, t("queue.not_done")) : null,
    h("ul", {}, refused.map(refusedLine)),
  );
}

function refusedLine(mutation) {
  const outcome = mutation.outcome ?? {};
  const reason = serverMessage(outcome.code, outcome.message ?? t("queue.refused"));
  return h(
    "li",
    { class: "refused" },
    `${describe(mutation)}: ${reason} `,
    h(
      "button",
      {
        type: "button",
        class: "small",
        onclick: async () => {
          await app.store.dismiss(mutation.id);
          render();
        },
      },
      t("button.ok"),
    ),
  );
}

function waitingLine(mutation) {
  const needsPin = mutation.name === "approve_loan" && !app.syncer.pins.has(mutation.id);
  if (!needsPin) return h("li", {}, describe(mutation));
  // The PIN is never stored: after a reload, an approval waits for it to be typed again.
  return h(
    "li",
    {},
    t("queue.needs_pin", { what: describe(mutation) }),
    form([pinField(t("field.pin"))], t("button.send_approval"), async ({ pin }) => {
      app.syncer.pins.set(mutation.id, pin);
      await syncNow();
      await render(); // the PIN field is filled in, so the sync did not redraw the screen
    }),
  );
}

function loanSection(title, id, loans) {
  if (loans.length === 0) return null;
  return h(
    "section",
    { class: "card", id },
    h("h2", {}, title),
    h("ul", { class: "loans" }, loans.map(loanLine)),
  );
}

function counterpart(loan) {
  return loan.role === "borrower" ? loan.lender_name : loan.borrower_name;
}

function loanLine(loan) {
  const state = t(`state.${loan.state}`);
  const what =
    loan.state === "active"
      ? t("loan.line_due", { amount: kes(loan.owed_cents), state, due: date(loan.due_date) })
      : t("loan.line", { amount: kes(loan.total_cents), state });
  return h(
    "li",
    {},
    h(
      "a",
      { href: `#/loan/${loan.id}` },
      h("span", { class: "who" }, counterpart(loan)),
      h("span", { class: "what" }, what),
      loan.overdue ? h("span", { class: "late" }, t("loan.late", { days: loan.days_overdue })) : null,
    ),
  );
}

function notificationSection(notifications) {
  if (notifications.length === 0) return null;
  const newest = notifications
    .sort((a, b) => b.created_at.localeCompare(a.created_at))
    .slice(0, NOTIFICATIONS_SHOWN);
  return h(
    "section",
    { class: "card" },
    h("h2", {}, t("home.messages")),
    h(
      "ul",
      { class: "messages" },
      newest.map((n) => h("li", { class: n.read_at ? "" : "unread" }, n.body)),
    ),
  );
}

function pastLoans(loans) {
  if (loans.length === 0) return null;
  return h(
    "details",
    { class: "card" },
    h("summary", {}, t("home.past", { count: loans.length })),
    h("ul", { class: "loans" }, loans.map(loanLine)),
  );
}

async function loanView(loanId) {
  const loan = await app.store.record("loan", loanId);
  if (!loan) return h("p", {}, t("loan.not_here"), " ", homeLink());
  const queue = await app.store.queue();
  const pending = queue.filter((m) => m.status === "queued" && m.args.loan_id === loan.id);
  const borrowing = loan.role === "borrower";
  const themPhone = borrowing ? loan.lender_phone : loan.borrower_phone;
  const rows = [
    [t("loan.code"), loan.code],
    [t("loan.state"), t(`state.${loan.state}`)],
    [
      t(borrowing ? "loan.lender" : "loan.borrower"),
      `${counterpart(loan)} ${themPhone ? `(${shownPhone(themPhone)})` : ""}`,
    ],
    [t("loan.principal"), kes(loan.principal_cents)],
    [t("loan.fee"), kes(loan.fee_cents)],
    [t("loan.total"), kes(loan.total_cents)],
    [t("loan.due"), date(loan.due_date)],
  ];
  if (loan.state === "active") rows.push([t("loan.owed"), kes(loan.owed_cents)]);
  if (loan.overdue) rows.push([t("loan.late_label"), t("loan.late_days", { days: loan.days_overdue })]);
  return h(
    "div",
    {},
    h(
      "dl",
      { class: "card details" },
      rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
    ),
    pending.length
      ? h("p", { class: "pending" }, t("loan.pending", { what: pending.map(describe).join(", ") }))
      : loanActions(loan),
    homeLink(),
  );
}

function homeLink() {
  return h("p", {}, h("a", { href: "#/home" }, t("nav.back")));
}

function loanActions(loan) {
  const mine = loan.role === "borrower";
  if (mine && loan.state === "active") {
    return form(
      [
        field(t("field.repay"), "amount", {
          inputmode: "decimal",
          value: (loan.owed_cents / 100).toFixed(loan.owed_cents % 100 ? 2 : 0),
        }),
      ],
      t("button.repay"),
      async ({ amount }) => {
        const amountCents = parseKes(amount);
        if (amountCents === null) throw new Refused(t("error.amount"));
        await act("repay_loan", { loan_id: loan.id, amount_cents: amountCents });
        go("#/home");
      },
    );
  }
  if (mine && loan.state === "requested") {
    return h(
      "div",
      {},
      editTerms(loan),
      button(t("button.cancel_request"), () => act("cancel_loan", { loan_id: loan.id })),
    );
  }
  if (!mine && loan.state === "active") return lenderActions(loan);
  if (!mine && loan.state === "requested") {
    const amount = kes(loan.principal_cents);
    return h(
      "div",
      {},
      h(
        "p",
        {},
        t("loan.asks_you", {
          name: loan.borrower_name,
          amount,
          total: kes(loan.total_cents),
          due: date(loan.due_date),
        }),
      ),
      form([pinField(t("field.your_pin"))], t("button.approve", { amount }), ({ pin }) =>
        approve(loan, pin),
      ),
      button(t("button.decline"), () => act("decline_loan", { loan_id: loan.id })),
    );
  }
  return null;
}

// base_version: if the loan changed since this phone saw it (an edit from another phone), the
// server keeps both versions and the person chooses (conflictSection).
function editTerms(loan) {
  const shillings = (cents) => (cents / 100).toFixed(cents % 100 ? 2 : 0);
  return form(
    [
      field(t("field.amount"), "amount", { inputmode: "decimal", value: shillings(loan.principal_cents) }),
      field(t("field.fee"), "fee", { inputmode: "decimal", value: shillings(loan.fee_cents) }),
      field(t("field.due_date"), "due", { type: "date", value: loan.due_date, required: true }),
    ],
    t("button.edit"),
    async ({ amount, fee, due }) => {
      const principalCents = parseKes(amount);
      if (principalCents === null) throw new Refused(t("error.amount"));
      const feeCents = readFee(fee);
      if (!/^\d{4}-\d{2}-\d{2}$/.test(due)) throw new Refused(t("error.due_date"));
      await act("edit_loan_request", {
        loan_id: loan.id,
        base_version: loan.version,
        principal_cents: principalCents,
        fee_cents: feeCents,
        due_date: due,
      });
      go("#/home");
    },
  );
}

// A reminder and a write-off go to the server at once (REST), so they need the network.
function lenderActions(loan) {
  const said = h("p", { role: "status", id: "reminded" });
  const post = (action, body) =>
    online(() =>
      app.session.call("POST", `/loans/${loan.id}/${action}`, body, {
        "Idempotency-Key": crypto.randomUUID(),
      }),
    );
  const remind = form([], t("button.remind", { name: loan.borrower_name }), async () => {
    await post("remind", {});
    said.textContent = t("loan.reminded", { name: loan.borrower_name });
  });
  const forgive = form(
    [h("p", {}, t("loan.write_off_note")), pinField(t("field.your_pin"))],
    t("button.write_off", { amount: kes(loan.owed_cents) }),
    async ({ pin }) => {
      await post("write-off", { pin });
      await syncNow();
      go("#/home");
    },
  );
  return h("div", {}, remind, said, forgive);
}

async function approve(loan, pin) {
  requirePin(pin);
  // base_version: if the borrower changed the terms since this phone saw them, it is refused.
  await act("approve_loan", { loan_id: loan.id, base_version: loan.version }, { pin });
  go("#/home");
}

function button(label, action) {
  return h(
    "button",
    {
      type: "button",
      onclick: async () => {
        await action();
        go("#/home");
      },
    },
    label,
  );
}

function requestView() {
  const today = nairobiToday();
  const quote = h("p", { class: "quote", id: "quote" });
  const element = form(
    [
      field(t("field.lender"), "lender", { type: "tel", inputmode: "tel", required: true }),
      field(t("field.amount"), "amount", { inputmode: "decimal", required: true }),
      field(t("field.days"), "days", { inputmode: "numeric", value: "30", required: true }),
      field(t("field.fee"), "fee", { inputmode: "decimal", value: "0" }),
      quote,
    ],
    t("button.send_request"),
    async (values) => {
      const terms = readTerms(values);
      await act("request_loan", {
        loan_id: crypto.randomUUID(),
        lender_phone: terms.lender,
        principal_cents: terms.principalCents,
        fee_cents: terms.feeCents,
        term_days: terms.days,
      });
      go("#/home");
    },
  );
  element.addEventListener("input", () => {
    try {
      const terms = readTerms(Object.fromEntries(new FormData(element)));
      quote.textContent = t("request.quote", {
        total: kes(terms.principalCents + terms.feeCents),
        due: date(addDays(today, terms.days)),
      });
    } catch {
      quote.textContent = "";
    }
  });
  return element;
}

function readTerms({ lender, amount, days, fee }) {
  const msisdn = readPhone(lender, "error.lender_phone");
  const principalCents = parseKes(amount);
  if (principalCents === null) throw new Refused(t("error.amount"));
  const feeCents = readFee(fee);
  const termDays = Number(days);
  if (!Number.isInteger(termDays) || termDays < 1 || termDays > 365) {
    throw new Refused(t("error.days"));
  }
  return { lender: msisdn, principalCents, feeCents, days: termDays };
}

function readFee(text) {
  const feeCents = String(text).trim() === "" || Number(text) === 0 ? 0 : parseKes(text);
  if (feeCents === null) throw new Refused(t("error.fee"));
  return feeCents;
}

function moneyView(name) {
  const keys = {
    top_up: ["field.top_up", "button.top_up", "money.top_up_note"],
    withdraw: ["field.withdraw", "button.withdraw", "money.withdraw_note"],
  }[name];
  return () =>
    h(
      "div",
      {},
      h("p", {}, t(keys[2])),
      form(
        [field(t(keys[0]), "amount", { inputmode: "numeric", required: true })],
        t(keys[1]),
        async ({ amount }) => {
          const amountCents = parseKes(amount, { wholeShillings: true });
          if (amountCents === null) throw new Refused(t("error.whole_shillings"));
          await act(name, { amount_cents: amountCents });
          go("#/home");
        },
      ),
      homeLink(),
    );
}

async function statementView() {
  const lines = (await app.store.records("transaction"))
    .sort((a, b) => b.created_at.localeCompare(a.created_at))
    .slice(0, STATEMENT_LINES_SHOWN);
  if (lines.length === 0) return h("div", {}, h("p", {}, t("statement.empty")), homeLink());
  return h(
    "div",
    {},
    h(
      "table",
      { class: "statement" },
      h(
        "tbody",
        {},
        lines.map((line) =>
          h(
            "tr",
            {},
            h("td", {}, shortTime(line.created_at, language())),
            h("td", {}, t(`tx.${line.kind}`)),
            h("td", { class: "number" }, kes(line.amount_cents)),
            h("td", { class: "number" }, kes(line.balance_after_cents)),
          ),
        ),
      ),
    ),
    homeLink(),
  );
}

async function settingsView() {
  const [[me], [preferences]] = await Promise.all([
    app.store.records("user"),
    app.store.records("preferences"),
  ]);
  const saved = h("p", { role: "status", id: "saved" });
  const done = (message) => {
    saved.textContent = message;
  };
  const languages = Object.entries(LANGUAGES).map(([code, name]) =>
    h(
      "button",
      {
        type: "button",
        class: "small link",
        "aria-pressed": String(code === language()),
        disabled: !me,
        onclick: async () => {
          setLanguage(code);
          // Last writer wins per field on the server (docs/sync.md, update_profile).
          await act("update_profile", { base_version: me.version, language: code });
          await render();
        },
      },
      name,
    ),
  );
  const toggle = (key, label) =>
    h(
      "label",
      { class: "toggle" },
      h("input", {
        type: "checkbox",
        name: key,
        checked: Boolean(preferences?.[key]),
        disabled: !preferences,
        onchange: async (event) => {
          await act("set_preferences", { [key]: event.target.checked });
          done(t("settings.saved"));
        },
      }),
      ` ${label}`,
    );
  return h(
    "div",
    {},
    h("section", { class: "card" }, h("h2", {}, t("settings.language")), h("p", {}, languages)),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "M-PESA"),
      toggle("disburse_to_mpesa", t("settings.disburse")),
      toggle("auto_payout", t("settings.auto_payout")),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("settings.pin")),
      form(
        [
          pinField(t("field.old_pin"), "old_pin"),
          pinField(t("field.new_pin"), "new_pin"),
          pinField(t("field.pin_again"), "pin_again"),
        ],
        t("button.change_pin"),
        async ({ old_pin: oldPin, new_pin: newPin, pin_again: again }) => {
          twoPins(newPin, again);
          await online(() =>
            app.session.call(
              "POST",
              "/me/pin",
              { old_pin: oldPin, new_pin: newPin },
              { "Idempotency-Key": crypto.randomUUID() },
            ),
          );
          done(t("settings.pin_changed"));
        },
      ),
    ),
    saved,
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("settings.data")),
      form([], t("button.export"), downloadMyData),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, t("settings.close")),
      form(
        [h("p", {}, t("settings.close_note")), pinField(t("field.your_pin"))],
        t("button.close"),
        closeAccount,
      ),
    ),
    homeLink(),
  );
}

// The Data Protection Act's right of access: the server's export, saved as a file.
async function downloadMyData() {
  const data = await online(() => app.session.call("GET", "/me/export"));
  const file = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const link = h("a", {
    href: URL.createObjectURL(file),
    download: `deni-data-${nairobiToday()}.json`,
  });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

async function closeAccount({ pin }) {
  requirePin(pin);
  await online(() => app.session.call("POST", "/me/close", { pin }));
  await leave(); // nothing of the account stays on this phone either
  app.status.problem = t("status.closed");
  paintStatus();
}

// --- start ---------------------------------------------------------------------------------

async function signOut() {
  const waiting = (await app.store.queue()).filter((m) => m.status === "queued").length;
  if (waiting > 0 && !confirm(t("confirm.sign_out", { count: waiting }))) return;
  await leave();
}

async function leave() {
  await app.store.forget();
  app.syncer = null;
  app.session = new Session(app.store);
  Object.assign(app.status, { waiting: 0, lastSyncedAt: null, problem: null });
  go("#/sign-in");
}

async function start() {
  setLanguage(chosenLanguage());
  app.store = await openStore();
  app.session = new Session(app.store);
  if (await app.store.syncState()) {
    app.syncer = new Syncer(app.store, app.session);
    await followProfileLanguage();
  }
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("settings").addEventListener("click", () => go("#/settings"));
  window.addEventListener("hashchange", render);
  window.addEventListener("online", syncSoon);
  window.addEventListener("offline", () => {
    app.status.offline = true;
    paintStatus();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") syncSoon();
  });
  setInterval(() => document.visibilityState === "visible" && syncSoon(), SYNC_EVERY_MS);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch((error) => console.warn("no offline", error));
  }
  await render();
  if (app.syncer) syncSoon();
}

start();
