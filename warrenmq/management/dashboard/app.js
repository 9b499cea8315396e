// WarrenMQ dashboard: polls the management API every second and draws queue depth.
// No build step, no libraries. Depth history lives here in the page (HISTORY points).
"use strict";

const REFRESH_MS = 1000;
const HISTORY = 300; // one point a second: the last five minutes
const history = new Map(); // "vhost/name" -> [{ready, unacked}]
let auth = sessionStorage.getItem("warrenmq-auth");
let timer = null;

const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    credentials: "omit", // our own Authorization header; never the browser's login prompt
    headers: { Authorization: "Basic " + auth, "Content-Type": "application/json" },
  });
  if (response.status === 401) {
    signOut("not authorised");
    throw new Error("401");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.reason || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function signOut(reason) {
  auth = null;
  sessionStorage.removeItem("warrenmq-auth");
  clearInterval(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = reason || "";
  $("status").textContent = "not signed in";
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  auth = btoa(unescape(encodeURIComponent($("username").value + ":" + $("password").value)));
  try {
    await api("/api/whoami");
    sessionStorage.setItem("warrenmq-auth", auth);
    start();
  } catch (error) {
    if (auth) signOut(String(error.message));
  }
});

function rate(stats, name) {
  const details = stats && stats[name + "_details"];
  return details ? details.rate : 0;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function sparkline(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 32`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...points.map((p) => Math.max(p.ready, p.unacked)));
  for (const series of ["ready", "unacked"]) {
    const line = document.createElementNS(ns, "polyline");
    const offset = HISTORY - points.length;
    line.setAttribute("class", series);
    line.setAttribute("points", points
      .map((p, i) => `${offset + i},${(31 - (p[series] / top) * 30).toFixed(1)}`).join(" "));
    svg.appendChild(line);
  }
  return svg;
}

function remember(queues) {
  const seen = new Set();
  for (const q of queues) {
    const key = q.vhost + "/" + q.name;
    seen.add(key);
    const points = history.get(key) || [];
    points.push({ ready: q.messages_ready, unacked: q.messages_unacknowledged });
    if (points.length > HISTORY) points.shift();
    history.set(key, points);
  }
  for (const key of [...history.keys()]) if (!seen.has(key)) history.delete(key);
}

function drawQueues(queues) {
  const body = $("queues").tBodies[0];
  body.replaceChildren();
  for (const q of queues) {
    const row = body.insertRow();
    row.dataset.vhost = q.vhost;
    row.dataset.name = q.name;
    cell(row, q.vhost);
    cell(row, q.name, "name");
    cell(row, q.messages_ready, "num ready");
    cell(row, q.messages_unacknowledged, "num unacked");
    row.insertCell().appendChild(sparkline(history.get(q.vhost + "/" + q.name) || []));
    cell(row, rate(q.message_stats, "publish").toFixed(1), "num in");
    cell(row, rate(q.message_stats, "deliver_get").toFixed(1), "num out");
    cell(row, q.consumers, "num consumers");
  }
}

function drawDlqs(dlqs) {
  const body = $("dlqs").tBodies[0];
  body.replaceChildren();
  for (const d of dlqs) {
    const row = body.insertRow();
    row.dataset.vhost = d.vhost;
    row.dataset.name = d.name;
    cell(row, d.vhost);
    cell(row, d.name, "name");
    cell(row, d.messages_ready, "num ready");
    cell(row, d.sources.join(", ") || "(by name)");
    const button = document.createElement("button");
    button.className = "replay";
    button.textContent = "Replay";
    button.dataset.vhost = d.vhost;
    button.dataset.name = d.name;
    button.disabled = d.messages_ready === 0;
    button.addEventListener("click", () => replay(d.vhost, d.name, button));
    row.insertCell().appendChild(button);
  }
}

async function replay(vhost, name, button) {
  button.disabled = true;
  const out = $("replay-result");
  out.textContent = `replaying ${name} ...`;
  try {
    const path = `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}/replay`;
    const r = await api(path, { method: "POST", body: "{}" });
    out.textContent = `${name}: ${r.replayed} replayed, ${r.skipped} skipped, ` +
      `${r.failed} failed` + (r.errors.length ? ` (${r.errors[0]})` : "");
  } catch (error) {
    out.textContent = `${name}: replay failed: ${error.message}`;
  }
  refresh();
}

async function refresh() {
  if (!auth) return;
  try {
    const [overview, queues, dlqs] = await Promise.all([
      api("/api/overview"), api("/api/queues"), api("/api/warrenmq/dead-letter-queues"),
    ]);
    $("node").textContent = overview.node;
    $("publish-rate").textContent = rate(overview.message_stats, "publish").toFixed(1);
    $("deliver-rate").textContent = rate(overview.message_stats, "deliver_get").toFixed(1);
    $("total-ready").textContent = overview.queue_totals.messages_ready;
    $("total-unacked").textContent = overview.queue_totals.messages_unacknowledged;
    $("connections").textContent = overview.object_totals.connections;
    $("consumers").textContent = overview.object_totals.consumers;
    const alarms = Object.entries(overview.alarms).filter(([, on]) => on).map(([k]) => k);
    $("alarms").textContent = alarms.length ? alarms.join(", ") : "none";
    $("alarms").className = alarms.length ? "alarm" : "";
    remember(queues);
    drawQueues(queues);
    drawDlqs(dlqs);
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("status").textContent = "refresh failed: " + error.message;
  }
}

$("window").textContent = HISTORY / 60;
if (auth) start();
