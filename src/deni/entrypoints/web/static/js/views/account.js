// Before sign-in: sign in, open an account, a forgotten PIN. These need the network.

import { field, form, h, pinField } from "../dom.js";
import { LANGUAGES, language, setLanguage, t } from "../i18n.js";
import { publicApi } from "../sync.js";
import { online, readPhone, render, requirePin, signIn, twoPins } from "../core.js";
import { signInButton } from "../passkeys.js";

export function languagePicker() {
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

export function signInView() {
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
      ({ phone, pin }) => {
        const msisdn = readPhone(phone);
        requirePin(pin); // a PIN is 4 digits: anything else is not sent, so never counted
        return signIn(msisdn, pin);
      },
    ),
    signInButton(),
    h(
      "p",
      { class: "links" },
      h("a", { href: "#/register" }, t("link.register")),
      " · ",
      h("a", { href: "#/forgot-pin" }, t("link.forgot")),
    ),
  );
}

// Two steps: the number first, which Deni texts a code to (it proves the number is yours);
// then the code with a name, a PIN and a language.
export function registerView() {
  const second = h("div", { hidden: true });
  const first = form(
    [field(t("field.phone"), "phone", { type: "tel", inputmode: "tel", required: true })],
    t("button.send_code"),
    async ({ phone }) => {
      const msisdn = readPhone(phone);
      await online(() => publicApi.askRegisterCode(msisdn, language()));
      first.hidden = true;
      second.replaceChildren(h("p", { id: "code-sent" }, t("register.code_sent")), details(msisdn));
      second.hidden = false;
    },
  );
  return h("div", {}, first, second);
}

function details(msisdn) {
  const picker = h(
    "select",
    { id: "field-language", name: "language" },
    Object.entries(LANGUAGES).map(([code, name]) =>
      h("option", { value: code, selected: code === language() }, name),
    ),
  );
  return form(
    [
      field(t("field.code"), "code", { inputmode: "numeric", required: true }),
      field(t("field.name"), "name", { required: true, maxlength: "60", autocomplete: "name" }),
      pinField(t("field.new_pin")),
      pinField(t("field.pin_again"), "pin_again"),
      h(
        "div",
        { class: "field" },
        h("label", { for: "field-language" }, t("field.language")),
        picker,
      ),
    ],
    t("button.register"),
    async ({ code, name, pin, pin_again: again, language: chosen }) => {
      twoPins(pin, again);
      await online(() =>
        publicApi.register({
          phone: msisdn,
          code: code.trim(),
          name: name.trim(),
          pin,
          language: chosen,
        }),
      );
      setLanguage(chosen);
      await signIn(msisdn, pin);
    },
  );
}

export function forgotPinView() {
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
