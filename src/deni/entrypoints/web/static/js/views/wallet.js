// Money in and out through M-PESA, and the wallet's statement.

import { Refused, field, form, h, pinField } from "../dom.js";
import { kes, parseKes, shortTime } from "../format.js";
import { language, t } from "../i18n.js";
import { act, app, go, homeLink, requirePin } from "../core.js";
import { followMpesa } from "../mpesa.js";
import { withdrawButton } from "../passkeys.js";
import { pager } from "./home.js";

const STATEMENT_PAGE_ROWS = 50; // a page of the statement; older lines on the pages after
const MONEY_FIELDS = {
  insufficient_funds: "amount",
  invalid_amount: "amount",
  wrong_pin: "pin",
  wrong_pin_last_try: "pin",
  not_safaricom: "amount",
  account_locked: "pin",
};

export function moneyView(name) {
  const keys = {
    top_up: ["field.top_up", "button.top_up", "money.top_up_note"],
    withdraw: ["field.withdraw", "button.withdraw", "money.withdraw_note"],
  }[name];
  // A top-up is confirmed with the M-PESA PIN on the phone; a withdrawal with Deni's PIN,
  // held in memory until the push and never stored.
  const leaves = name === "withdraw";
  // Or with the passkey, for the amount typed (js/passkeys.js): sent at once, not queued.
  const typedCents = () => {
    const typed = document.getElementById("field-amount")?.value ?? "";
    const amountCents = parseKes(typed, { wholeShillings: true });
    if (amountCents === null) throw new Refused(t("error.whole_shillings"), "amount");
    return amountCents;
  };
  return () =>
    h(
      "div",
      {},
      h("p", {}, t(keys[2])),
      form(
        [
          field(t(keys[0]), "amount", { inputmode: "numeric", required: true }),
          leaves ? pinField(t("field.your_pin")) : null,
        ],
        t(keys[1]),
        async ({ amount, pin }) => {
          const amountCents = parseKes(amount, { wholeShillings: true });
          if (amountCents === null) throw new Refused(t("error.whole_shillings"), "amount");
          if (leaves) requirePin(pin);
          await act(
            name,
            { amount_cents: amountCents },
            { pin: leaves ? pin : undefined, queued: followMpesa, fields: MONEY_FIELDS },
          );
          go("#/home");
        },
      ),
      leaves ? withdrawButton(typedCents) : null,
      homeLink(),
    );
}

// Every line of the wallet: a pull keeps them all on the phone, so every page shows offline too.
export async function statementView(param) {
  const all = (await app.store.records("transaction")).sort(
    (a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id),
  );
  if (all.length === 0) return h("div", {}, h("p", {}, t("statement.empty")), homeLink());
  const pages = Math.ceil(all.length / STATEMENT_PAGE_ROWS);
  const page = Math.min(Math.max(Number.parseInt(param, 10) || 1, 1), pages);
  const first = (page - 1) * STATEMENT_PAGE_ROWS;
  const lines = all.slice(first, first + STATEMENT_PAGE_ROWS);
  const range = t("statement.lines", {
    first: first + 1,
    last: first + lines.length,
    count: all.length,
  });
  return h(
    "div",
    {},
    h(
      "table",
      { class: "statement" },
      h("caption", {}, range),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, t("statement.when")),
          h("th", { scope: "col" }, t("statement.what")),
          h("th", { scope: "col", class: "number" }, t("statement.amount")),
          h("th", { scope: "col", class: "number" }, t("statement.balance")),
        ),
      ),
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
    pager("statement", page, pages, t("statement.newer"), t("statement.older")),
    homeLink(),
  );
}
