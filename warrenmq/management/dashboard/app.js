// WarrenMQ dashboard entry: sign in and out, tabs by URL hash (#queues,
// #queue/<vhost>/<name>...), and a refresh timer that asks the current view for fresh
// data every REFRESH_MS. Each view builds its forms once (mount) and redraws only its
// data (refresh), so typing into a form survives the refresh.
"use strict";

import { api, el, fill, notice, session } from "./lib.js";
import { views } from "./views.js";
import { queuePage } from "./queue.js";
import { adminView, dlqView } from "./admin.js";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
const ALL = { ...views, dlq: dlqView, admin: adminView };
let timer = null;
let current = null;
let whoami = null;

function signOut(reason) {
  session.auth = null;
  sessionStorage.removeItem("warrenmq-auth");
  clearInterval(timer);
  timer = null;
  current = null;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("password").value = "";
  $("login-error").textContent = reason || "";
  $("status").textContent = "not signed in";
  $("node").textContent = "";
  fill($("view"));
}
session.onSignOut = signOut;

async function signIn() {
  whoami = await api("/api/whoami", { noSignOut: true });
  $("login").hidden = true;
  $("password").value = "";
  $("login-error").textContent = "";
  $("app").hidden = false;
  $("signout").hidden = false;
  $("status").textContent = `${whoami.name} (${whoami.tags.join(", ") || "no tags"})`;
  api("/api/overview").then((o) => { $("node").textContent = `${o.node} · ${o.product_name} ${o.product_version}`; }).catch(() => {});
  route();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  session.auth = btoa(unescape(encodeURIComponent(`${$("username").value}:${$("password").value}`)));
  try {
    await signIn();
    sessionStorage.setItem("warrenmq-auth", session.auth);
  } catch (error) {
    session.auth = null;
    $("login-error").textContent = error.status === 401 ? "wrong user name or password, or not a management user" : error.message;
  }
});

$("signout").addEventListener("click", () => {
  signOut("signed out");
  history.replaceState(null, "", "#overview");
});

function parseHash() {
  const parts = location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  return { tab: parts[0] || "overview", args: parts.slice(1) };
}

async function route() {
  if (!session.auth) return;
  const { tab, args } = parseHash();
  const view = tab === "queue" ? queuePage : ALL[tab] || ALL.overview;
  const active = tab === "queue" ? "queues" : ALL[tab] ? tab : "overview";
  for (const a of document.querySelectorAll("nav#tabs a")) a.classList.toggle("active", a.dataset.tab === active);
  notice("");
  const container = el("section", { id: `tab-${active}`, class: "tab" });
  fill($("view"), container);
  current = { view, container, args };
  try {
    await view.mount(container, args, whoami);
    await refresh();
  } catch (error) {
    notice(error.message, true);
  }
}

async function refresh() {
  if (!current || document.hidden) return;
  const { view, container, args } = current;
  try {
    await view.refresh(container, args, whoami);
  } catch (error) {
    if (error.status !== 401) notice(error.message, true);
  }
}

window.addEventListener("hashchange", route);

if (session.auth) {
  signIn().catch(() => signOut(""));
}
