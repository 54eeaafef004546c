// One loan, and asking for one.

import { Refused, field, form, h, pinField } from "../dom.js";
import { addDays, amountText, kes, nairobiToday, parseKes, shownPhone } from "../format.js";
import { t } from "../i18n.js";
import {
  act,
  app,
  button,
  date,
  describe,
  go,
  homeLink,
  online,
  readPhone,
  requirePin,
  syncNow,
} from "../core.js";
import { approveLoanButton } from "../passkeys.js";
import { followMpesa } from "../mpesa.js";

const LOAN_CENTS_MIN = 1_000; // KES 10, the least the server lends (domain/money.py)
// Which field each of the server's refusals is about, for act's answer next to the field.
const MONEY_FIELDS = {
  insufficient_funds: "amount",
  wrong_pin: "pin",
  wrong_pin_last_try: "pin",
  account_locked: "pin",
};
// An STK push for a loan: the server checks the loan and the amount (services/mpesa/requests.py
// record_stk, the rule the API and USSD share).
const MPESA_REPAY_FIELDS = {
  invalid_amount: "mpesa_amount",
  more_than_owed: "mpesa_amount",
  loan_not_active: "mpesa_amount",
  mpesa_off: "mpesa_amount",
  not_safaricom: "mpesa_amount",
};
const TERMS_FIELDS = { invalid_amount: "amount", invalid_due_date: "days" };
const LENDER_FIELDS = {
  user_not_found: "lender",
  self_lending: "lender",
  other_party_not_proven: "lender",
};

export function counterpart(loan) {
  return loan.role === "borrower" ? loan.lender_name : loan.borrower_name;
}

export async function loanView(loanId) {
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
  if (loan.overdue) {
    rows.push([t("loan.late_label"), t("loan.late_days", { days: loan.days_overdue })]);
  }
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

function loanActions(loan) {
  const mine = loan.role === "borrower";
  if (mine && loan.state === "active") return h("div", {}, repayFromWallet(loan), repayByMpesa(loan));
  if (mine && loan.state === "requested") {
    return h(
      "div",
      {},
      editTerms(loan),
      button(
        t("button.cancel_request"),
        () => act("cancel_loan", { loan_id: loan.id }),
        t("confirm.cancel", { amount: kes(loan.principal_cents), name: loan.lender_name }),
      ),
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
      approveLoanButton(loan),
      button(t("button.decline"), () => act("decline_loan", { loan_id: loan.id })),
    );
  }
  return null;
}

function repayFromWallet(loan) {
  return form(
    [
      field(t("field.repay"), "amount", {
        inputmode: "decimal",
        value: amountText(loan.owed_cents),
      }),
      pinField(t("field.your_pin")),
    ],
    t("button.repay"),
    async ({ amount, pin }) => {
      const amountCents = parseKes(amount);
      if (amountCents === null) throw new Refused(t("error.amount"), "amount");
      requirePin(pin);
      // The PIN goes with the push from memory; the queued repayment never holds it.
      await act(
        "repay_loan",
        { loan_id: loan.id, amount_cents: amountCents },
        { pin, fields: MONEY_FIELDS },
      );
      go("#/home");
    },
  );
}

// Repay straight from M-PESA: an STK push whose payment repays this loan (M-PESA asks for its
// own PIN on the phone, so Deni's PIN is not asked). M-PESA takes whole shillings: what is owed,
// rounded up (the server allows less than a shilling over). Home's M-PESA card follows it.
function repayByMpesa(loan) {
  const owedShillings = Math.ceil(loan.owed_cents / 100);
  return h(
    "section",
    { class: "card", id: "repay-mpesa", "aria-labelledby": "repay-mpesa-title" },
    h("h2", { id: "repay-mpesa-title" }, t("loan.mpesa_title")),
    h("p", {}, t("money.top_up_note")),
    form(
      [
        field(t("field.mpesa_repay"), "mpesa_amount", {
          inputmode: "numeric",
          value: String(owedShillings),
          required: true,
        }),
      ],
      t("button.repay_mpesa"),
      async ({ mpesa_amount: amount }) => {
        const amountCents = parseKes(amount, { wholeShillings: true });
        if (amountCents === null) throw new Refused(t("error.whole_shillings"), "mpesa_amount");
        if (amountCents > owedShillings * 100) {
          throw new Refused(
            t("error.more_than_owed", { amount: kes(loan.owed_cents) }),
            "mpesa_amount",
          );
        }
        await act(
          "repay_by_mpesa",
          { loan_id: loan.id, amount_cents: amountCents },
          { queued: followMpesa, fields: MPESA_REPAY_FIELDS },
        );
        go("#/home");
      },
    ),
  );
}

// base_version: if the loan changed since this phone saw it (an edit from another phone), the
// server keeps both versions and the person chooses (conflictSection).
function editTerms(loan) {
  return form(
    [
      field(t("field.amount"), "amount", {
        inputmode: "decimal",
        value: amountText(loan.principal_cents),
      }),
      field(t("field.fee"), "fee", { inputmode: "decimal", value: amountText(loan.fee_cents) }),
      field(t("field.due_date"), "due", { type: "date", value: loan.due_date, required: true }),
    ],
    t("button.edit"),
    async ({ amount, fee, due }) => {
      const principalCents = readPrincipal(amount);
      const feeCents = readFee(fee, principalCents);
      if (!/^\d{4}-\d{2}-\d{2}$/.test(due)) throw new Refused(t("error.due_date"), "due");
      await act(
        "edit_loan_request",
        {
          loan_id: loan.id,
          base_version: loan.version,
          principal_cents: principalCents,
          fee_cents: feeCents,
          due_date: due,
        },
        { fields: TERMS_FIELDS },
      );
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
      requirePin(pin);
      const question = t("confirm.write_off", {
        amount: kes(loan.owed_cents),
        name: loan.borrower_name,
      });
      if (!confirm(question)) return;
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
  await act(
    "approve_loan",
    { loan_id: loan.id, base_version: loan.version },
    { pin, fields: MONEY_FIELDS },
  );
  go("#/home");
}

export function requestView() {
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
      const me = await app.store.session();
      if (me && terms.lender === me.phone) throw new Refused(t("refusal.self"), "lender");
      await act(
        "request_loan",
        {
          loan_id: crypto.randomUUID(),
          lender_phone: terms.lender,
          principal_cents: terms.principalCents,
          fee_cents: terms.feeCents,
          term_days: terms.days,
        },
        { fields: { ...TERMS_FIELDS, ...LENDER_FIELDS } },
      );
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
  let msisdn;
  try {
    msisdn = readPhone(lender, "error.lender_phone");
  } catch (error) {
    throw new Refused(error.message, "lender");
  }
  const principalCents = readPrincipal(amount);
  const feeCents = readFee(fee, principalCents);
  const termDays = Number(days);
  if (!Number.isInteger(termDays) || termDays < 1 || termDays > 365) {
    throw new Refused(t("error.days"), "days");
  }
  return { lender: msisdn, principalCents, feeCents, days: termDays };
}

function readPrincipal(text) {
  const principalCents = parseKes(text);
  if (principalCents === null) throw new Refused(t("error.amount"), "amount");
  if (principalCents < LOAN_CENTS_MIN) throw new Refused(t("error.amount_min"), "amount");
  return principalCents;
}

// A fee above the amount lent is refused by the server (domain/loans.py make_terms): say so
// here, naming the fee's own limit.
export function readFee(text, principalCents) {
  const feeCents = String(text).trim() === "" || Number(text) === 0 ? 0 : parseKes(text);
  if (feeCents === null) throw new Refused(t("error.fee"), "fee");
  if (feeCents > principalCents) {
    throw new Refused(t("error.fee_max", { amount: kes(principalCents) }), "fee");
  }
  return feeCents;
}
