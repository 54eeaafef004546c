// Passkeys (docs/passkeys.md): this phone's fingerprint or face instead of the PIN, to sign in
// and to approve money out. Deni keeps only a public key; the phone keeps the private one
// behind its own lock. Every use answers a fresh challenge from Deni, and a challenge for money
// out names the action and amount, so these calls go to the server at once (no queue): a
// passkey needs the network, the PIN keeps working offline as before.

import { Refused, h } from "./dom.js";
import { kes } from "./format.js";
import { t } from "./i18n.js";
import { Syncer, publicApi } from "./sync.js";
import { app, date, go, online, refusal, syncNow, syncSoon } from "./core.js";

// Whether this phone holds a passkey for Deni: remembered here when one is added or used, so
// money forms offer it only where it can work. Never a secret: a key id, no key.
const HELD_KEY = "deni.passkey";

export function supported() {
  return Boolean(window.PublicKeyCredential && navigator.credentials && window.isSecureContext);
}

export function heldHere() {
  try {
    return supported() && localStorage.getItem(HELD_KEY) === "1";
  } catch {
    return false;
  }
}

function remember(held) {
  try {
    if (held) localStorage.setItem(HELD_KEY, "1");
    else localStorage.removeItem(HELD_KEY);
  } catch {
    // Storage refused (a private window): the forms will not offer the passkey.
  }
}

// --- WebAuthn's binary fields as base64url text, both ways -----------------------------------

function bytes(text) {
  const plain = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = plain + "=".repeat((4 - (plain.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
}

function text(buffer) {
  let binary = "";
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(options) {
  return {
    ...options,
    challenge: bytes(options.challenge),
    user: { ...options.user, id: bytes(options.user.id) },
    excludeCredentials: (options.excludeCredentials ?? []).map((c) => ({ ...c, id: bytes(c.id) })),
  };
}

function requestOptions(options) {
  return {
    ...options,
    challenge: bytes(options.challenge),
    allowCredentials: (options.allowCredentials ?? []).map((c) => ({ ...c, id: bytes(c.id) })),
  };
}

function credentialJson(credential) {
  const r = credential.response;
  const response = { clientDataJSON: text(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = text(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = text(r.authenticatorData);
    response.signature = text(r.signature);
    if (r.userHandle) response.userHandle = text(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: text(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
  };
}

// The phone's prompt. A person who cancels it (or a phone without a passkey for Deni) is told
// so in plain words; nothing was sent.
async function prompt(work) {
  if (!supported()) throw new Refused(t("passkey.unsupported"));
  try {
    const credential = await work();
    if (!credential) throw new Refused(t("passkey.cancelled"));
    return credentialJson(credential);
  } catch (error) {
    if (error instanceof Refused) throw error;
    if (!(error instanceof DOMException)) throw error;
    // InvalidStateError: this phone's passkey is one of those excluded, already added.
    // SecurityError: this address is not the one Deni's passkeys are made for.
    const said = {
      InvalidStateError: "passkey.already",
      SecurityError: "passkey.unsupported",
      NotSupportedError: "passkey.unsupported",
    };
    throw new Refused(t(said[error.name] ?? "passkey.cancelled"));
  }
}

async function answer(options) {
  return prompt(() => navigator.credentials.get({ publicKey: requestOptions(options) }));
}

// --- Adding, listing, removing (Settings) ----------------------------------------------------

export async function addPasskey(pin) {
  const ceremony = await online(() => app.session.call("POST", "/me/passkeys/options", { pin }));
  const credential = await prompt(() =>
    navigator.credentials.create({ publicKey: creationOptions(ceremony.options) }),
  );
  await online(() =>
    app.session.call("POST", "/me/passkeys", {
      challenge_id: ceremony.challenge_id,
      credential,
      name: t("passkey.default_name"),
    }),
  );
  remember(true);
}

// The Settings card: the member's passkeys with their dates, one tap removes one, and a PIN
// adds this phone's. `pinField` and `form` come from the caller, so this card looks like the
// others. The list fills in when the server answers: the screen itself never waits for it.
export function passkeysCard({ form, pinField, requirePin }) {
  const said = h("p", { role: "status", id: "passkeys-said" });
  const list = h("ul", { class: "passkeys", id: "passkeys", "aria-busy": "true" });
  const paint = async () => {
    let found;
    try {
      found = (await app.session.call("GET", "/me/passkeys")).passkeys;
    } catch (error) {
      list.removeAttribute("aria-busy");
      list.replaceChildren(h("li", {}, refusal(error)));
      return;
    }
    if (found.length === 0) remember(false);
    list.removeAttribute("aria-busy");
    list.replaceChildren(
      ...(found.length === 0
        ? [h("li", {}, t("passkey.none"))]
        : found.map((passkey) =>
            h(
              "li",
              { dataset: { passkey: passkey.id } },
              `${passkey.name} · ${t("passkey.added_on", { date: day(passkey.created_at) })}`,
              passkey.last_used_at
                ? ` · ${t("passkey.used_on", { date: day(passkey.last_used_at) })}`
                : "",
              " ",
              h(
                "button",
                {
                  type: "button",
                  class: "small link",
                  onclick: async () => {
                    try {
                      await online(() =>
                        app.session.call("DELETE", `/me/passkeys/${passkey.id}`),
                      );
                      said.textContent = t("passkey.removed");
                    } catch (error) {
                      said.textContent = error.message;
                    }
                    await paint();
                  },
                },
                t("passkey.remove"),
              ),
            ),
          )),
    );
  };
  paint();
  const add = supported()
    ? form([pinField(t("field.pin_to_add"), "passkey_pin")], t("passkey.add"), async (values) => {
        requirePin(values.passkey_pin, "passkey_pin");
        await addPasskey(values.passkey_pin);
        said.textContent = t("passkey.added");
        await paint();
      })
    : h("p", {}, t("passkey.unsupported"));
  return h(
    "section",
    { class: "card", id: "passkeys-card" },
    h("h2", {}, t("passkey.title")),
    h("p", {}, t("passkey.note")),
    list,
    add,
    said,
  );
}

function day(timestamp) {
  return date(timestamp.slice(0, 10));
}

// --- Signing in ------------------------------------------------------------------------------

export function signInButton() {
  if (!supported()) return null;
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const button = h(
    "button",
    {
      type: "button",
      id: "passkey-sign-in",
      onclick: async () => {
        problem.hidden = true;
        button.disabled = true;
        try {
          await signInWithPasskey();
        } catch (error) {
          problem.textContent = error.message;
          problem.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    t("passkey.sign_in"),
  );
  return h("div", { class: "passkey-sign-in" }, button, problem);
}

async function signInWithPasskey() {
  const ceremony = await online(() => publicApi.passkeyOptions());
  const credential = await answer(ceremony.options);
  await online(() =>
    app.session.signInWithPasskey({ challenge_id: ceremony.challenge_id, credential }),
  );
  remember(true);
  app.syncer ??= new Syncer(app.store, app.session);
  app.status.problem = null;
  go("#/home");
  syncSoon();
}

// --- Money out -------------------------------------------------------------------------------

// A button that approves one action with the passkey: `ask()` says what (the action, the loan,
// the amount) or throws Refused; `send(passkey)` sends the command with the passkey's answer.
export function approveButton(label, { ask, send, id }) {
  if (!heldHere()) return null;
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const button = h(
    "button",
    {
      type: "button",
      class: "passkey",
      id,
      onclick: async () => {
        problem.hidden = true;
        button.disabled = true;
        try {
          const action = ask();
          const ceremony = await online(() =>
            app.session.call("POST", "/me/passkeys/approval", action),
          );
          const credential = await answer(ceremony.options);
          await send({ challenge_id: ceremony.challenge_id, credential });
        } catch (error) {
          problem.textContent = error instanceof Refused ? error.message : refusal(error);
          problem.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    label,
  );
  return h("div", { class: "passkey-approve" }, button, problem);
}

export function approveLoanButton(loan) {
  return approveButton(t("passkey.approve", { amount: kes(loan.principal_cents) }), {
    id: "passkey-approve",
    ask: () => ({ action: "approve_loan", loan_id: loan.id, amount_cents: loan.principal_cents }),
    send: async (passkey) => {
      await online(() =>
        app.session.call(
          "POST",
          `/loans/${loan.id}/approve`,
          { passkey, base_version: loan.version },
          { "Idempotency-Key": crypto.randomUUID() },
        ),
      );
      await syncNow();
      go("#/home");
    },
  });
}

// `amountCents()` reads the form's amount (or throws Refused); the withdrawal is then followed
// on Home like one sent from the queue.
export function withdrawButton(amountCents) {
  return approveButton(t("passkey.withdraw"), {
    id: "passkey-withdraw",
    ask: () => ({ action: "withdraw", amount_cents: amountCents() }),
    send: async (passkey) => {
      const amount = amountCents();
      const request = await online(() =>
        app.session.call(
          "POST",
          "/mpesa/withdrawals",
          { amount_cents: amount, passkey },
          { "Idempotency-Key": crypto.randomUUID() },
        ),
      );
      const watches = await app.store.mpesaWatches();
      watches.push({
        mutation_id: `passkey-${request.id}`, // no queued mutation: the request is known
        name: "withdraw",
        amount_cents: amount,
        request_id: request.id,
        state: "asked",
        receipt: null,
      });
      await app.store.saveMpesaWatches(watches);
      await syncNow();
      go("#/home");
    },
  });
}
