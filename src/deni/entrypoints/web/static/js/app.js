// Deni's web app: the whole service from a browser or an Android home screen, online or not.
// Screens read the device's copy (store.js); everything a person does becomes a sync mutation
// (docs/sync.md) that reaches the server now, or when the network comes back. This module is
// the router and the start; the screens are in views/, what they share in core.js.

import { sendNowAndThen, whenWorkerPushed } from "./background.js";
import { h } from "./dom.js";
import { chosenLanguage, setLanguage, t } from "./i18n.js";
import { openStore } from "./store.js";
import { Session, Syncer } from "./sync.js";
import {
  app,
  editing,
  followProfileLanguage,
  go,
  leave,
  paintStatus,
  screen,
  syncSoon,
} from "./core.js";
import { forgotPinView, registerView, signInView } from "./views/account.js";
import { bookView } from "./views/book.js";
import { homeView, messagesView } from "./views/home.js";
import { loanView, requestView } from "./views/loan.js";
import { settingsView } from "./views/settings.js";
import { moneyView, statementView } from "./views/wallet.js";

const SYNC_EVERY_MS = 30_000;

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
  book: { render: bookView, private: true },
  messages: { render: messagesView, live: true, private: true },
};

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name in views ? name : "home", param: rest.join("/") };
}

let shownRoute = null; // the screen on show; a new one moves the focus to its heading

async function show({ unlessEditing = false } = {}) {
  const { name, param } = route();
  const view = views[name];
  if (view.private && !app.syncer) {
    location.hash = "#/sign-in";
    return;
  }
  const content = await view.render(param);
  if (unlessEditing && editing()) return; // typed while the data loaded: keep what is there
  const title = name === "home" ? "Deni" : t(`title.${name}`);
  document.title = title === "Deni" ? "Deni" : `${title} · Deni`;
  const heading = h("h1", { tabindex: "-1" }, title);
  document.getElementById("view").replaceChildren(heading, content);
  // A new screen: keyboard and screen-reader users start at its heading, not at the link
  // they left. A screen drawn again by a sync keeps the focus where it is.
  const now = `${name}/${param}`;
  if (shownRoute !== null && now !== shownRoute) heading.focus();
  shownRoute = now;
  const signedIn = Boolean(app.syncer);
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("sign-out").textContent = t("nav.sign_out");
  document.getElementById("settings").hidden = !signedIn;
  document.getElementById("settings").textContent = t("nav.settings");
  document.getElementById("book").hidden = !signedIn;
  document.getElementById("book").textContent = t("nav.book");
  paintStatus(); // in the language just chosen
  if (performance.getEntriesByName("deni-shown").length === 0) performance.mark("deni-shown");
}

async function signOut() {
  const waiting = (await app.store.queue()).filter((m) => m.status === "queued").length;
  if (waiting > 0 && !confirm(t("confirm.sign_out", { count: waiting }))) return;
  await leave();
}

async function start() {
  screen.render = show;
  screen.isLive = () => views[route().name].live === true;
  setLanguage(chosenLanguage());
  app.store = await openStore();
  app.session = new Session(app.store);
  if (await app.store.syncState()) {
    app.syncer = new Syncer(app.store, app.session);
    await followProfileLanguage();
  }
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("settings").addEventListener("click", () => go("#/settings"));
  window.addEventListener("hashchange", show);
  window.addEventListener("online", syncSoon);
  window.addEventListener("offline", () => {
    app.status.offline = true;
    paintStatus();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") syncSoon({ quiet: true });
  });
  setInterval(
    () => document.visibilityState === "visible" && syncSoon({ quiet: true }),
    SYNC_EVERY_MS,
  );
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch((error) => console.warn("no offline", error));
  }
  // The service worker pushed the queue (sync-sw.js): a pull shows what that changed.
  whenWorkerPushed(() => syncSoon({ quiet: true }));
  await show();
  if (app.syncer) {
    syncSoon();
    sendNowAndThen();
  }
}

start();
