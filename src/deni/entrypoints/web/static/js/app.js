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
import { openStore } from "./store.js";
import { ApiError, Offline, Session, Syncer, publicApi } from "./sync.js";

const SYNC_EVERY_MS = 30_000;
const OPEN_STATES = new Set(["requested", "approved", "disbursing", "active"]);
const STATE_NAMES = {
  requested: "Waiting for approval",
  approved: "Approved",
  disbursing: "Being paid out",
  active: "Active",
  repaid: "Repaid",
  declined: "Declined",
  cancelled: "Cancelled",
  expired: "Expired",
  written_off: "Written off",
};
const TRANSACTION_NAMES = {
  deposit: "Top up",
  transfer: "Transfer",
  loan_disbursement: "Loan",
  loan_repayment: "Repayment",
  payout_hold: "Withdrawal",
  payout_post: "Withdrawal",
  payout_void: "Withdrawal returned",
  reversal: "Reversal",
};
const NOTIFICATIONS_SHOWN = 5;
const STATEMENT_LINES_SHOWN = 50;

const app = {
  store: null,
  session: null,
  syncer: null,
  status: { syncing: false, offline: !navigator.onLine, lastSyncedAt: null, problem: null },
};

// --- what mutations mean to people ---------------------------------------------------------

function describe(mutation) {
  const a = mutation.args;
  switch (mutation.name) {
    case "request_loan":
      return `Ask ${shownPhone(a.lender_phone)} for a loan of ${kes(a.principal_cents)}`;
    case "approve_loan":
      return "Approve a loan request";
    case "decline_loan":
      return "Decline a loan request";
    case "cancel_loan":
      return "Cancel your loan request";
    case "repay_loan":
      return `Repay ${kes(a.amount_cents)}`;
    case "top_up":
      return `Top up ${kes(a.amount_cents)} from M-PESA`;
    case "withdraw":
      return `Withdraw ${kes(a.amount_cents)} to M-PESA`;
    default:
      return mutation.name;
  }
}

async function act(name, args, { pin } = {}) {
  const mutation = await app.store.enqueue(name, args);
  if (pin !== undefined) app.syncer.pins.set(mutation.id, pin);
  syncSoon();
  return mutation;
}

// --- sync ----------------------------------------------------------------------------------

async function syncNow() {
  if (!app.syncer) return;
  app.status.syncing = true;
  paintStatus();
  try {
    await app.syncer.sync();
    Object.assign(app.status, { offline: false, problem: null, lastSyncedAt: new Date() });
  } catch (error) {
    if (error instanceof Offline) {
      app.status.offline = true;
    } else if (error instanceof ApiError && error.status === 401) {
      app.status.problem = "Please sign in again.";
      location.hash = "#/sign-in";
    } else if (error instanceof ApiError && error.code === "client_upgrade_required") {
      app.status.problem = "A newer Deni is out: reload the page to update.";
    } else {
      app.status.problem = error.message;
    }
  } finally {
    app.status.syncing = false;
  }
  paintStatus();
  if (currentView()?.live && !editing()) await render();
}

// A fresh sync must not wipe what someone is typing (a PIN, an amount).
function editing() {
  const inputs = [...document.getElementById("view").querySelectorAll("input")];
  return inputs.some((input) => input.value !== input.defaultValue || input === document.activeElement);
}

function syncSoon() {
  syncNow().catch((error) => console.error("sync failed", error));
}

function paintStatus() {
  const line = document.getElementById("status");
  const { syncing, offline, lastSyncedAt, problem } = app.status;
  let text = "";
  if (problem) text = problem;
  else if (syncing) text = "Syncing…";
  else if (offline) text = "Offline: what you do is kept and sent when you are back online.";
  else if (lastSyncedAt) text = `Up to date, ${lastSyncedAt.toTimeString().slice(0, 5)}`;
  line.textContent = text;
  line.dataset.state = problem ? "problem" : offline ? "offline" : "online";
}

// --- screens -------------------------------------------------------------------------------

const views = {
  "sign-in": { title: "Sign in", render: signInView },
  register: { title: "Open an account", render: registerView },
  "forgot-pin": { title: "Forgot PIN", render: forgotPinView },
  home: { title: "Deni", render: homeView, live: true, private: true },
  loan: { title: "Loan", render: loanView, live: true, private: true },
  request: { title: "Ask for a loan", render: requestView, private: true },
  "top-up": { title: "Top up", render: moneyView("top_up"), private: true },
  withdraw: { title: "Withdraw", render: moneyView("withdraw"), private: true },
  statement: { title: "Statement", render: statementView, live: true, private: true },
};

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name || "home", param: rest.join("/") };
}

function currentView() {
  return views[route().name];
}

async function render() {
  const { name, param } = route();
  const view = views[name] ?? views.home;
  if (view.private && !app.syncer) {
    location.hash = "#/sign-in";
    return;
  }
  const main = document.getElementById("view");
  const content = await view.render(param);
  document.title = view.title === "Deni" ? "Deni" : `${view.title} · Deni`;
  main.replaceChildren(h("h1", {}, view.title), content);
  document.getElementById("sign-out").hidden = !app.syncer;
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function signInView() {
  return h(
    "div",
    {},
    form(
      [
        field("Phone number", "phone", { type: "tel", inputmode: "tel", required: true }),
        pinField("PIN"),
      ],
      "Sign in",
      async ({ phone, pin }) => {
        const msisdn = normalisePhone(phone);
        if (msisdn === null) throw new Refused("Enter a Safaricom number, like 0712 345 678.");
        await signIn(msisdn, pin);
      },
    ),
    h(
      "p",
      { class: "links" },
      h("a", { href: "#/register" }, "Open an account"),
      " · ",
      h("a", { href: "#/forgot-pin" }, "Forgot PIN?"),
    ),
  );
}

async function signIn(msisdn, pin) {
  await app.session.signIn(msisdn, pin);
  app.syncer ??= new Syncer(app.store, app.session);
  app.status.problem = null;
  go("#/home");
  syncSoon();
}

function twoPins(pin, again) {
  if (!/^\d{4}$/.test(pin)) throw new Refused("A PIN is 4 digits.");
  if (pin !== again) throw new Refused("The two PINs differ. Type the same PIN twice.");
}

function registerView() {
  const language = h(
    "select",
    { id: "field-language", name: "language" },
    h("option", { value: "en" }, "English"),
    h("option", { value: "sw" }, "Kiswahili"),
  );
  return form(
    [
      field("Your name", "name", { required: true, maxlength: "60", autocomplete: "name" }),
      field("Phone number", "phone", { type: "tel", inputmode: "tel", required: true }),
      pinField("Choose a PIN (4 digits)"),
      pinField("The same PIN again", "pin_again"),
      h("div", { class: "field" }, h("label", { for: "field-language" }, "Language"), language),
    ],
    "Open my account",
    async ({ name, phone, pin, pin_again: again, language: lang }) => {
      const msisdn = normalisePhone(phone);
      if (msisdn === null) throw new Refused("Enter a Safaricom number, like 0712 345 678.");
      twoPins(pin, again);
      await publicApi.register({ name: name.trim(), phone: msisdn, pin, language: lang });
      await signIn(msisdn, pin);
    },
  );
}

function forgotPinView() {
  const second = h("div", { hidden: true });
  const first = form(
    [field("Phone number", "phone", { type: "tel", inputmode: "tel", required: true })],
    "Send me a code",
    async ({ phone }) => {
      const msisdn = normalisePhone(phone);
      if (msisdn === null) throw new Refused("Enter a Safaricom number, like 0712 345 678.");
      const answer = await publicApi.askPinReset(msisdn);
      first.hidden = true;
      second.replaceChildren(
        h("p", {}, answer.message),
        form(
          [
            field("Code from the SMS", "code", { inputmode: "numeric", required: true }),
            pinField("New PIN"),
            pinField("The same PIN again", "pin_again"),
          ],
          "Set my PIN",
          async ({ code, pin, pin_again: again }) => {
            twoPins(pin, again);
            await publicApi.confirmPinReset({ phone: msisdn, code: code.trim(), new_pin: pin });
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
  const [wallets, loans, queue, notifications, users] = await Promise.all([
    app.store.records("wallet"),
    app.store.records("loan"),
    app.store.queue(),
    app.store.records("notification"),
    app.store.records("user"),
  ]);
  const wallet = wallets[0];
  const me = users[0];
  const open = loans.filter((loan) => OPEN_STATES.has(loan.state));
  const byDue = (a, b) => a.due_date.localeCompare(b.due_date);
  return h(
    "div",
    {},
    me ? h("p", { class: "greeting" }, `Hello, ${me.name}`) : null,
    h(
      "section",
      { class: "card balance" },
      h("p", {}, "Wallet"),
      h("p", { class: "amount", id: "balance" }, wallet ? kes(wallet.balance_cents) : "—"),
      wallet?.held_cents ? h("p", {}, `${kes(wallet.held_cents)} on its way to M-PESA`) : null,
      wallet && leaving(queue) ? h("p", { id: "available" }, availableLine(wallet, queue)) : null,
      h(
        "nav",
        { class: "actions" },
        h("a", { href: "#/request", class: "button" }, "Ask for a loan"),
        h("a", { href: "#/top-up", class: "button" }, "Top up"),
        h("a", { href: "#/withdraw", class: "button" }, "Withdraw"),
        h("a", { href: "#/statement", class: "button" }, "Statement"),
      ),
    ),
    queueSection(queue),
    loanSection(
      "Asks waiting for you",
      "asks",
      open.filter((l) => l.role === "lender" && l.state === "requested"),
    ),
    loanSection("You owe", "owe", open.filter((l) => l.role === "borrower").sort(byDue)),
    loanSection(
      "You lent",
      "lent",
      open.filter((l) => l.role === "lender" && l.state !== "requested").sort(byDue),
    ),
    notificationSection(notifications),
    pastLoans(loans.filter((loan) => !OPEN_STATES.has(loan.state))),
  );
}

// Money that queued repayments and withdrawals will take once they reach the server.
function leaving(queue) {
  const outgoing = queue.filter(
    (m) => m.status === "queued" && (m.name === "repay_loan" || m.name === "withdraw"),
  );
  return outgoing.reduce((sum, m) => sum + m.args.amount_cents, 0);
}

function availableLine(wallet, queue) {
  return `${kes(wallet.balance_cents - leaving(queue))} after what is waiting to sync`;
}

function queueSection(queue) {
  if (queue.length === 0) return null;
  const waiting = queue.filter((m) => m.status === "queued").sort((a, b) => a.id - b.id);
  const refused = queue.filter((m) => m.status !== "queued");
  return h(
    "section",
    { class: "card queue", id: "queue" },
    waiting.length ? h("h2", {}, `Waiting to sync (${waiting.length})`) : null,
    h("ul", {}, waiting.map(waitingLine)),
    refused.length ? h("h2", {}, "Not done") : null,
    h(
      "ul",
      {},
      refused.map((m) =>
        h(
          "li",
          { class: "refused" },
          `${describe(m)}: ${m.outcome?.message ?? "refused"} `,
          h(
            "button",
            {
              type: "button",
              class: "small",
              onclick: async () => {
                await app.store.dismiss(m.id);
                render();
              },
            },
            "OK",
          ),
        ),
      ),
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
    `${describe(mutation)}: it needs your PIN to be sent.`,
    form([pinField("PIN")], "Send approval", async ({ pin }) => {
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
  const due = loan.state === "active" ? `, due ${longDate(loan.due_date)}` : "";
  const amount = loan.state === "active" ? loan.owed_cents : loan.total_cents;
  return h(
    "li",
    {},
    h(
      "a",
      { href: `#/loan/${loan.id}` },
      h("span", { class: "who" }, counterpart(loan)),
      h("span", { class: "what" }, `${kes(amount)} · ${STATE_NAMES[loan.state]}${due}`),
      loan.overdue ? h("span", { class: "late" }, `${loan.days_overdue} days late`) : null,
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
    h("h2", {}, "Messages"),
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
    h("summary", {}, `Past loans (${loans.length})`),
    h("ul", { class: "loans" }, loans.map(loanLine)),
  );
}

async function loanView(loanId) {
  const loan = await app.store.record("loan", loanId);
  if (!loan) return h("p", {}, "This loan is not on this phone (yet). ", homeLink());
  const queue = await app.store.queue();
  const pending = queue.filter((m) => m.status === "queued" && m.args.loan_id === loan.id);
  const them = loan.role === "borrower" ? "Lender" : "Borrower";
  const themPhone = loan.role === "borrower" ? loan.lender_phone : loan.borrower_phone;
  const rows = [
    ["Loan", loan.code],
    ["State", STATE_NAMES[loan.state]],
    [them, `${counterpart(loan)} ${themPhone ? `(${shownPhone(themPhone)})` : ""}`],
    ["Amount", kes(loan.principal_cents)],
    ["Fee", kes(loan.fee_cents)],
    ["Total to repay", kes(loan.total_cents)],
    ["Due", longDate(loan.due_date)],
  ];
  if (loan.state === "active") rows.push(["Still owed", kes(loan.owed_cents)]);
  if (loan.overdue) rows.push(["Late", `${loan.days_overdue} days`]);
  return h(
    "div",
    {},
    h(
      "dl",
      { class: "card details" },
      rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
    ),
    pending.length
      ? h("p", { class: "pending" }, `Waiting to sync: ${pending.map(describe).join(", ")}`)
      : loanActions(loan),
    homeLink(),
  );
}

function homeLink() {
  return h("p", {}, h("a", { href: "#/home" }, "Back"));
}

function loanActions(loan) {
  const mine = loan.role === "borrower";
  if (mine && loan.state === "active") {
    return form(
      [
        field("Amount to repay (KES)", "amount", {
          inputmode: "decimal",
          value: (loan.owed_cents / 100).toFixed(loan.owed_cents % 100 ? 2 : 0),
        }),
      ],
      "Repay from my wallet",
      async ({ amount }) => {
        const amountCents = parseKes(amount);
        if (amountCents === null) throw new Refused("Enter an amount, like 500.");
        await act("repay_loan", { loan_id: loan.id, amount_cents: amountCents });
        go("#/home");
      },
    );
  }
  if (mine && loan.state === "requested") {
    return button("Cancel my request", () => act("cancel_loan", { loan_id: loan.id }));
  }
  if (!mine && loan.state === "requested") {
    return h(
      "div",
      {},
      h(
        "p",
        {},
        `${loan.borrower_name} asks you for ${kes(loan.principal_cents)}, to repay ` +
          `${kes(loan.total_cents)} by ${longDate(loan.due_date)}.`,
      ),
      form([pinField("Your PIN")], `Approve and send ${kes(loan.principal_cents)}`, ({ pin }) =>
        approve(loan, pin),
      ),
      button("Decline", () => act("decline_loan", { loan_id: loan.id })),
    );
  }
  return null;
}

async function approve(loan, pin) {
  if (!/^\d{4}$/.test(pin)) throw new Refused("A PIN is 4 digits.");
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
      field("Lender's phone number", "lender", { type: "tel", inputmode: "tel", required: true }),
      field("Amount (KES)", "amount", { inputmode: "decimal", required: true }),
      field("Days until it is due", "days", { inputmode: "numeric", value: "30", required: true }),
      field("Fee you offer (KES)", "fee", { inputmode: "decimal", value: "0" }),
      quote,
    ],
    "Send my request",
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
      quote.textContent =
        `You will repay ${kes(terms.principalCents + terms.feeCents)} ` +
        `by ${longDate(addDays(today, terms.days))}.`;
    } catch {
      quote.textContent = "";
    }
  });
  return element;
}

function readTerms({ lender, amount, days, fee }) {
  const msisdn = normalisePhone(lender);
  if (msisdn === null) throw new Refused("Enter the lender's Safaricom number.");
  const principalCents = parseKes(amount);
  if (principalCents === null) throw new Refused("Enter an amount, like 1,500.");
  const feeCents = String(fee).trim() === "" || Number(fee) === 0 ? 0 : parseKes(fee);
  if (feeCents === null) throw new Refused("Enter the fee in shillings, or 0.");
  const termDays = Number(days);
  if (!Number.isInteger(termDays) || termDays < 1 || termDays > 365) {
    throw new Refused("A loan runs from 1 to 365 days.");
  }
  return { lender: msisdn, principalCents, feeCents, days: termDays };
}

function moneyView(name) {
  const words = {
    top_up: ["Amount to add from M-PESA (KES)", "Top up", "M-PESA will ask for your M-PESA PIN."],
    withdraw: ["Amount to send to M-PESA (KES)", "Withdraw", "The money goes to this number."],
  }[name];
  return () =>
    h(
      "div",
      {},
      h("p", {}, words[2]),
      form(
        [field(words[0], "amount", { inputmode: "numeric", required: true })],
        words[1],
        async ({ amount }) => {
          const amountCents = parseKes(amount, { wholeShillings: true });
          if (amountCents === null) throw new Refused("Enter whole shillings, like 500.");
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
  if (lines.length === 0) return h("div", {}, h("p", {}, "Nothing yet."), homeLink());
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
            h("td", {}, shortTime(line.created_at)),
            h("td", {}, TRANSACTION_NAMES[line.kind] ?? line.kind),
            h("td", { class: "number" }, kes(line.amount_cents)),
            h("td", { class: "number" }, kes(line.balance_after_cents)),
          ),
        ),
      ),
    ),
    homeLink(),
  );
}

// --- start ---------------------------------------------------------------------------------

async function signOut() {
  const waiting = (await app.store.queue()).filter((m) => m.status === "queued").length;
  const question = `${waiting} change(s) have not reached Deni yet and will be lost. Sign out?`;
  if (waiting > 0 && !confirm(question)) return;
  await app.store.forget();
  app.syncer = null;
  app.session = new Session(app.store);
  go("#/sign-in");
}

async function start() {
  app.store = await openStore();
  app.session = new Session(app.store);
  if (await app.store.syncState()) app.syncer = new Syncer(app.store, app.session);
  document.getElementById("sign-out").addEventListener("click", signOut);
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
  paintStatus();
  if (app.syncer) syncSoon();
}

start();
