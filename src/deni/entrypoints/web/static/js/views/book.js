// My book: as lender, what I lent adds up to, in all and per borrower; as borrower, every loan
// I took. Online, it is asked of the server (GET /me/book, /me/history: sums the server makes
// over every loan) and the answer is kept on the phone; offline, the copy kept last is shown,
// with when it was fetched. A page of each list is shown, the server's bound.

import { h } from "../dom.js";
import { kes, shortTime } from "../format.js";
import { language, t } from "../i18n.js";
import { app, date, homeLink, refusal } from "../core.js";
import { Offline } from "../sync.js";

const BORROWERS_SHOWN = 50;
const LOANS_SHOWN = 50;

async function fetchBook(userId) {
  // One after the other: the first may refresh the access token, which the second then uses.
  const book = await app.session.call("GET", `/me/book?limit=${BORROWERS_SHOWN}`);
  const history = await app.session.call("GET", `/me/history?limit=${LOANS_SHOWN}`);
  const copy = { user_id: userId, fetched_at: new Date().toISOString(), book, history };
  await app.store.saveBook(copy);
  return copy;
}

export async function bookView() {
  const { user_id: userId } = await app.store.syncState();
  let copy = null;
  let note = null;
  let fresh = false; // the server answered just now
  try {
    copy = await fetchBook(userId);
    fresh = true;
  } catch (error) {
    copy = await app.store.book(userId);
    if (!(error instanceof Offline)) note = refusal(error);
  }
  if (copy === null) {
    return h("div", {}, h("p", { id: "book-note" }, note ?? t("book.none_offline")), homeLink());
  }
  const fetched = shortTime(copy.fetched_at, language());
  return h(
    "div",
    {},
    h(
      "p",
      { id: "book-as-of", class: fresh ? null : "late" },
      fresh ? t("book.as_of", { time: fetched }) : t("book.offline_copy", { time: fetched }),
    ),
    note ? h("p", { class: "problem" }, note) : null,
    lenderSection(copy.book),
    borrowerSection(copy.history),
    homeLink(),
  );
}

function figure(label, value, id) {
  return [h("dt", {}, label), h("dd", { id }, value)];
}

function lenderSection(book) {
  const totals = book.totals;
  return h(
    "section",
    { class: "card", id: "lender-book" },
    h("h2", {}, t("book.lender")),
    h(
      "dl",
      { class: "details" },
      figure(t("book.lent"), kes(totals.lent_cents), "book-lent"),
      figure(t("book.outstanding"), kes(totals.outstanding_cents), "book-outstanding"),
      figure(t("book.repaid"), kes(totals.repaid_cents), "book-repaid"),
      figure(t("book.fees_earned"), kes(totals.fees_earned_cents), "book-fees-earned"),
      figure(t("book.fees_due"), kes(totals.fees_due_cents), "book-fees-due"),
      figure(
        t("book.overdue"),
        t("book.overdue_value", { amount: kes(totals.overdue_cents), count: totals.overdue_count }),
        "book-overdue",
      ),
      totals.written_off_count > 0
        ? figure(t("book.written_off"), kes(totals.written_off_cents), "book-written-off")
        : null,
    ),
    book.borrowers.length > 0 ? h("h2", {}, t("book.by_borrower")) : null,
    h(
      "ul",
      { class: "messages", id: "book-borrowers" },
      book.borrowers.map((b) =>
        h(
          "li",
          {},
          h("strong", {}, `${b.name} `),
          h("span", { class: "phone" }, b.phone_masked),
          h(
            "div",
            { class: b.figures.overdue_count > 0 ? "late" : null },
            t("book.borrower_line", {
              count: b.figures.loans_count,
              lent: kes(b.figures.lent_cents),
              owed: kes(b.figures.outstanding_cents),
              repaid: kes(b.figures.repaid_cents),
              overdue: kes(b.figures.overdue_cents),
            }),
          ),
        ),
      ),
    ),
    book.next_offset !== null
      ? h(
          "p",
          {},
          t("book.more_borrowers", { shown: book.borrowers.length, count: book.borrowers_count }),
        )
      : null,
  );
}

function borrowerSection(history) {
  return h(
    "section",
    { class: "card", id: "borrower-history" },
    h("h2", {}, t("book.borrower")),
    h(
      "dl",
      { class: "details" },
      figure(t("book.borrowed"), kes(history.borrowed_cents), "history-borrowed"),
      figure(t("book.you_repaid"), kes(history.repaid_cents), "history-repaid"),
      figure(t("book.you_owe"), kes(history.outstanding_cents), "history-outstanding"),
    ),
    history.loans.length === 0 ? h("p", {}, t("book.no_loans")) : null,
    h(
      "ul",
      { class: "messages", id: "history-loans" },
      history.loans.map((loan) =>
        h(
          "li",
          { dataset: { punctuality: loan.punctuality } },
          h(
            "div",
            {},
            t("book.loan_line", {
              amount: kes(loan.total_cents),
              name: loan.lender.name,
              due: date(loan.due_date),
              state: t(`state.${loan.state}`),
              repaid: kes(loan.repaid_cents),
            }),
          ),
          h(
            "div",
            { class: loan.punctuality === "late" ? "late" : null },
            t(`punctuality.${loan.punctuality}`),
          ),
        ),
      ),
    ),
    history.next_offset !== null
      ? h("p", {}, t("book.more_loans", { shown: history.loans.length }))
      : null,
  );
}
