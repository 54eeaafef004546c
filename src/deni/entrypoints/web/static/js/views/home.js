// Home: the wallet, what waits for a choice or for the network, and the loans either way.

import { form, h, pinField } from "../dom.js";
import { kes, shortTime } from "../format.js";
import { language, t } from "../i18n.js";
import {
  act,
  app,
  date,
  describe,
  homeLink,
  refusalWords,
  render,
  requirePin,
  syncNow,
} from "../core.js";
import { mpesaSection } from "../mpesa.js";
import { NEEDS_PIN } from "../sync.js";
import { counterpart } from "./loan.js";

export const OPEN_STATES = new Set(["requested", "approved", "disbursing", "active"]);

const NOTIFICATIONS_SHOWN = 5;

export async function homeView() {
  const [wallets, loans, queue, notifications, users, conflicts, mpesa] = await Promise.all([
    app.store.records("wallet"),
    app.store.records("loan"),
    app.store.queue(),
    app.store.records("notification"),
    app.store.records("user"),
    app.store.records("conflict"),
    mpesaSection(),
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
        { class: "actions", "aria-label": t("home.actions") },
        h("a", { href: "#/request", class: "button" }, t("home.ask")),
        h("a", { href: "#/top-up", class: "button" }, t("home.top_up")),
        h("a", { href: "#/withdraw", class: "button" }, t("home.withdraw")),
        h("a", { href: "#/statement", class: "button" }, t("home.statement")),
      ),
    ),
    mpesa,
    conflictSection(conflicts, loans, queue),
    queueSection(queue),
    loanSection(
      t("home.asks"),
      "asks",
      open.filter((l) => l.role === "lender" && l.state === "requested"),
    ),
    loanSection(
      t("home.owe"),
      "owe",
      open.filter((l) => l.role === "borrower" && l.state !== "requested").sort(byDue),
    ),
    // Asked, not approved yet: nothing is owed until the lender says yes.
    loanSection(
      t("home.waiting_lender"),
      "waiting-lender",
      open.filter((l) => l.role === "borrower" && l.state === "requested").sort(byDue),
    ),
    loanSection(
      t("home.lent"),
      "lent",
      open.filter((l) => l.role === "lender" && l.state !== "requested").sort(byDue),
    ),
    notificationSection(notifications, queue),
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
            choiceButton(t("button.keep_server"), choose(conflict, "server")),
            choiceButton(t("button.keep_client"), choose(conflict, "client")),
          ),
        );
      }),
    ),
  );
}

function choiceButton(label, onclick) {
  return h("button", { type: "button", class: "small", onclick }, label);
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
  const reason = refusalWords(outcome.code, outcome.message);
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
  const needsPin = NEEDS_PIN.has(mutation.name) && !app.syncer.pins.has(mutation.id);
  if (!needsPin) return h("li", {}, describe(mutation));
  // The PIN is never stored: after a reload, an approval, a repayment, a withdrawal or a
  // change of M-PESA settings waits for it to be typed again.
  const label = mutation.name === "approve_loan" ? "button.send_approval" : "button.send_queued";
  return h(
    "li",
    {},
    t("queue.needs_pin", { what: describe(mutation) }),
    form([pinField(t("field.pin"))], t(label), async ({ pin }) => {
      requirePin(pin);
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
      loan.overdue
        ? h("span", { class: "late" }, t("loan.late", { days: loan.days_overdue }))
        : null,
    ),
  );
}

function notificationSection(notifications, queue) {
  if (notifications.length === 0) return null;
  const read = markedRead(queue);
  const newest = notifications
    .sort((a, b) => b.created_at.localeCompare(a.created_at))
    .slice(0, NOTIFICATIONS_SHOWN);
  const unread = notifications.filter((n) => isUnread(n, read)).length;
  return h(
    "section",
    { class: "card", id: "messages" },
    h("h2", {}, t("home.messages")),
    h(
      "ul",
      { class: "messages" },
      newest.map((n) => h("li", { class: isUnread(n, read) ? "unread" : "" }, n.body)),
    ),
    h(
      "p",
      {},
      h("a", { href: "#/messages", id: "all-messages" }, t("home.all_messages", { count: unread })),
    ),
  );
}

// --- Messages: every notification the phone keeps (a pull brings them all), a page at a time,
// marked read one by one or all at once with the sync mutation mark_notification_read, so it
// works offline too and reaches Deni at the next sync.

const MESSAGES_PAGE_ROWS = 20;
const MARK_IDS_MAX = 100; // ids in one mark_notification_read (docs/sync.md)

// Ids a queued mark_notification_read will mark: read here already.
function markedRead(queue) {
  return new Set(
    queue
      .filter((m) => m.name === "mark_notification_read" && m.status === "queued")
      .flatMap((m) => m.args.notification_ids),
  );
}

function isUnread(notification, read) {
  return !notification.read_at && !read.has(notification.id);
}

export async function messagesView(param) {
  const [notifications, queue] = await Promise.all([
    app.store.records("notification"),
    app.store.queue(),
  ]);
  if (notifications.length === 0) return h("div", {}, h("p", {}, t("messages.empty")), homeLink());
  const read = markedRead(queue);
  const all = notifications.sort(
    (a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id),
  );
  const unread = all.filter((n) => isUnread(n, read));
  const pages = Math.ceil(all.length / MESSAGES_PAGE_ROWS);
  const page = Math.min(Math.max(Number.parseInt(param, 10) || 1, 1), pages);
  const shown = all.slice((page - 1) * MESSAGES_PAGE_ROWS, page * MESSAGES_PAGE_ROWS);
  const mark = async (ids) => {
    for (let at = 0; at < ids.length; at += MARK_IDS_MAX) {
      await act("mark_notification_read", { notification_ids: ids.slice(at, at + MARK_IDS_MAX) });
    }
    await render();
  };
  return h(
    "div",
    {},
    h("p", { id: "unread-count" }, t("messages.unread_count", { count: unread.length })),
    unread.length > 0
      ? h(
          "p",
          {},
          h(
            "button",
            { type: "button", id: "mark-all-read", onclick: () => mark(unread.map((n) => n.id)) },
            t("button.mark_all_read"),
          ),
        )
      : null,
    h(
      "ul",
      { class: "messages all", id: "message-list" },
      shown.map((n) => messageLine(n, isUnread(n, read), () => mark([n.id]))),
    ),
    pager("messages", page, pages, t("messages.newer"), t("messages.older")),
    homeLink(),
  );
}

function messageLine(notification, unread, markRead) {
  return h(
    "li",
    { class: unread ? "unread" : "", dataset: { id: notification.id } },
    unread ? h("strong", { class: "badge" }, `${t("messages.unread")}: `) : null,
    h("span", {}, notification.body),
    h("span", { class: "when" }, shortTime(notification.created_at, language())),
    unread
      ? h("button", { type: "button", class: "small", onclick: markRead }, t("button.mark_read"))
      : null,
  );
}

// Newer and older pages of a long list (#/<route>/<page>), and where this one stands.
export function pager(routeName, page, pages, newerLabel, olderLabel) {
  if (pages <= 1) return null;
  return h(
    "nav",
    { class: "pager", "aria-label": t("messages.page", { page, pages }) },
    page > 1 ? h("a", { href: `#/${routeName}/${page - 1}`, rel: "prev" }, newerLabel) : null,
    h("span", { "aria-current": "page" }, t("messages.page", { page, pages })),
    page < pages ? h("a", { href: `#/${routeName}/${page + 1}`, rel: "next" }, olderLabel) : null,
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
