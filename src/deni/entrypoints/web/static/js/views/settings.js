// Settings: language, M-PESA preferences, PIN, and the person's data rights.

import { Refused, field, form, h, pinField } from "../dom.js";
import { nairobiToday } from "../format.js";
import { LANGUAGES, language, setLanguage, t } from "../i18n.js";
import { pushSection } from "../push.js";
import {
  act,
  app,
  homeLink,
  leave,
  online,
  paintStatus,
  render,
  requirePin,
  syncSoon,
  twoPins,
} from "../core.js";
import { passkeysCard } from "../passkeys.js";

const PREFERENCES = ["disburse_to_mpesa", "auto_payout"];

export async function settingsView() {
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
      }),
      ` ${label}`,
    );
  // These send money to M-PESA without asking each time, so a change needs the PIN (held in
  // memory until the push, never stored). Only what the person changed is sent.
  const savePreferences = async (values) => {
    const changed = {};
    for (const key of PREFERENCES) {
      const wanted = values[key] === "on";
      if (wanted !== Boolean(preferences?.[key])) changed[key] = wanted;
    }
    if (Object.keys(changed).length === 0) throw new Refused(t("settings.unchanged"));
    requirePin(values.pin);
    await act("set_preferences", changed, { pin: values.pin });
    done(t("settings.saved"));
  };
  return h(
    "div",
    {},
    me?.phone_proven === false ? proveNumber() : null,
    me ? nameSection(me, done) : null,
    h("section", { class: "card" }, h("h2", {}, t("settings.language")), h("p", {}, languages)),
    pushSection(),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "M-PESA"),
      form(
        [
          toggle("disburse_to_mpesa", t("settings.disburse")),
          toggle("auto_payout", t("settings.auto_payout")),
          pinField(t("field.pin_to_save"), "mpesa_pin"),
        ],
        t("button.save"),
        ({ mpesa_pin: pin, ...rest }) => savePreferences({ ...rest, pin }),
      ),
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
    passkeysCard({ form, pinField, requirePin }),
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

// An account opened before Deni checked numbers proves its number with a code by SMS before it
// may lend or borrow: the server refuses those until then (phone_not_proven).
function proveNumber() {
  const title = h("h2", {}, t("settings.prove"));
  const section = h("section", { class: "card", id: "prove-number" }, title);
  const confirm = form(
    [field(t("field.code"), "code", { inputmode: "numeric", required: true })],
    t("button.confirm_number"),
    async ({ code }) => {
      await online(() => app.session.call("POST", "/me/phone/confirm", { code: code.trim() }));
      section.replaceChildren(title, h("p", { role: "status" }, t("settings.proven")));
      syncSoon(); // brings the confirmed profile to this phone
    },
  );
  const ask = form([h("p", {}, t("settings.prove_note"))], t("button.send_code"), async () => {
    await online(() => app.session.call("POST", "/me/phone/code"));
    section.replaceChildren(title, h("p", {}, t("settings.code_sent")), confirm);
  });
  section.append(ask);
  return section;
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
  if (!confirm(t("confirm.close"))) return;
  await online(() => app.session.call("POST", "/me/close", { pin }));
  await leave(); // nothing of the account stays on this phone either
  app.status.problem = t("status.closed");
  paintStatus();
}

// A change of name: the sync mutation update_profile (last writer wins per field, as for the
// language), so it works offline too. Its length is checked here (domain/users.py
// require_name: 2 to 60 characters, spaces squeezed); online, the server's own refusal (a
// character that cannot be printed) shows at the field too, in the member's language.
const NAME_CHARS_MIN = 2;
const NAME_CHARS_MAX = 60;

function nameSection(me, done) {
  return h(
    "section",
    { class: "card", id: "change-name" },
    h("h2", {}, t("settings.name")),
    form(
      [
        field(t("field.name"), "name", {
          value: me.name,
          required: true,
          maxlength: String(NAME_CHARS_MAX),
          autocomplete: "name",
        }),
      ],
      t("button.save_name"),
      async ({ name }) => {
        const cleaned = String(name).split(/\s+/).filter(Boolean).join(" ");
        if (cleaned.length < NAME_CHARS_MIN || cleaned.length > NAME_CHARS_MAX) {
          throw new Refused(t("error.name"), "name");
        }
        if (cleaned === me.name) throw new Refused(t("error.name_same"), "name");
        await act(
          "update_profile",
          { base_version: me.version, name: cleaned },
          { fields: { invalid_name: "name" } },
        );
        done(t("settings.name_saved"));
      },
    ),
  );
}
