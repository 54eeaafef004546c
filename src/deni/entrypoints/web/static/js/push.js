// Web Push on this phone (docs/notifications.md): the Settings screen's "Notifications" card.
// A member turns pushes on for this browser (the browser asks permission, subscribes with
// Deni's VAPID key and the server keeps the subscription), off again, and chooses which
// events reach the phone. The service worker shows what arrives (push-sw.js). Everything here
// needs the network: a choice is saved on the server, never queued.

import { Refused, h } from "./dom.js";
import { t } from "./i18n.js";
import { app, online } from "./core.js";

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

// The VAPID public key arrives as base64url; PushManager wants its bytes.
function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

// Whether the browser's subscription was made with this key (a browser that does not say is
// believed).
function sameKey(subscription, key) {
  const made = subscription.options?.applicationServerKey;
  if (!made) return true;
  const [a, b] = [new Uint8Array(made), keyBytes(key)];
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

async function browserSubscription() {
  const registration = await navigator.serviceWorker.ready;
  return { registration, subscription: await registration.pushManager.getSubscription() };
}

async function turnOn() {
  if ((await Notification.requestPermission()) !== "granted") {
    throw new Refused(t("push.denied"));
  }
  const { public_key: key } = await online(() => app.session.call("GET", "/push/key"));
  const { registration, subscription: old } = await browserSubscription();
  let subscription = old;
  if (subscription && !sameKey(subscription, key)) {
    await subscription.unsubscribe(); // made with a key Deni no longer signs with
    subscription = null;
  }
  if (!subscription) {
    try {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(key),
      });
    } catch (error) {
      console.warn("push subscribe failed", error);
      throw new Refused(t("push.unavailable"));
    }
  }
  return online(() => app.session.call("PUT", "/me/push/subscription", subscription.toJSON()));
}

async function turnOff() {
  const { subscription } = await browserSubscription();
  if (!subscription) return online(() => app.session.call("GET", "/me/push"));
  const endpoint = subscription.endpoint;
  await subscription.unsubscribe();
  return online(() => app.session.call("POST", "/me/push/unsubscribe", { endpoint }));
}

function kindsForm(settings, say) {
  const chosen = new Set(settings.kinds);
  const groups = settings.groups.map(({ group, kinds }) =>
    h(
      "fieldset",
      { class: "push-group" },
      h("legend", {}, t(`push.group.${group}`)),
      kinds.map((kind) =>
        h(
          "label",
          { class: "toggle" },
          h("input", { type: "checkbox", name: "kind", value: kind, checked: chosen.has(kind) }),
          ` ${t(`push.kind.${kind}`)}`,
        ),
      ),
    ),
  );
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const element = h(
    "form",
    { novalidate: true, id: "push-kinds" },
    groups,
    problem,
    h("button", { type: "submit" }, t("push.save")),
  );
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    element.dataset.busy = "true";
    const kinds = [...element.querySelectorAll("input[name=kind]:checked")].map((i) => i.value);
    try {
      await online(() => app.session.call("PUT", "/me/push/kinds", { kinds }));
      say(t("push.saved"));
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
    } finally {
      delete element.dataset.busy;
    }
  });
  // Folded: two dozen boxes would bury the rest of Settings on a phone.
  return h("details", { id: "push-choices" }, h("summary", {}, t("push.choose")), element);
}

export function pushSection() {
  const title = h("h2", {}, t("push.title"));
  const status = h("p", { role: "status", id: "push-status" });
  const section = h("section", { class: "card", id: "push" }, title, status);
  const say = (text) => {
    status.textContent = text;
  };
  const draw = async () => {
    if (!pushSupported()) return section.replaceChildren(title, h("p", {}, t("push.unsupported")));
    let settings;
    try {
      settings = await online(() => app.session.call("GET", "/me/push"));
    } catch {
      return section.replaceChildren(title, h("p", {}, t("push.offline")));
    }
    const { subscription } = await browserSubscription();
    const on = Boolean(subscription) && Notification.permission === "granted";
    const problem = h("p", { class: "problem", role: "alert", hidden: true });
    const toggle = h(
      "button",
      {
        type: "button",
        id: "push-toggle",
        "aria-pressed": String(on),
        onclick: async () => {
          problem.hidden = true;
          toggle.disabled = true;
          try {
            await (on ? turnOff() : turnOn());
            await draw();
            say(on ? t("push.off") : t("push.on"));
          } catch (error) {
            problem.textContent = error.message;
            problem.hidden = false;
            toggle.disabled = false;
          }
        },
      },
      on ? t("push.turn_off") : t("push.turn_on"),
    );
    section.replaceChildren(
      title,
      h("p", {}, on ? t("push.this_phone_on") : t("push.this_phone_off")),
      toggle,
      problem,
      kindsForm(settings, say),
      status,
    );
  };
  draw();
  return section;
}
