// WarrenMQ dashboard, shared helpers: the API call (basic auth held in sessionStorage),
// DOM building, number formats, sortable tables and the confirmation dialog.
// No build step, no libraries: plain ES modules served by the broker.
"use strict";

export const session = { auth: sessionStorage.getItem("warrenmq-auth"), onSignOut: null };

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

export const enc = encodeURIComponent;

export async function api(path, options = {}) {
  const init = {
    method: options.method || "GET",
    credentials: "omit", // our own Authorization header; never the browser's login prompt
    headers: { Authorization: "Basic " + session.auth },
  };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401 && session.onSignOut && !options.noSignOut) {
    session.onSignOut("not authorised: sign in again");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.reason || response.statusText);
  }
  if (response.status === 204 || response.status === 201) return null;
  return response.json();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "";
  return Number(n).toLocaleString("en-US");
}

export function fmtRate(n) {
  if (n === null || n === undefined) return "";
  return Number(n).toFixed(n >= 100 ? 0 : 1);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let value = Number(n);
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtDuration(ms) {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${s}s` : `${s}s`;
}

export function fmtArgs(args) {
  if (!args || (typeof args === "object" && !Object.keys(args).length)) return "";
  return Object.entries(args).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

export function rate(stats, name) {
  const details = stats && stats[name + "_details"];
  return details ? details.rate : 0;
}

// A table whose header cells sort (server side when onSort is given). columns:
// [{key, label, num, render(row) -> text|Node, sort: false}]; every cell has the column
// key as its class and every row data-name (and data-vhost) for tests and styling.
export function dataTable({ id, columns, rows, sort, onSort, rowName, empty }) {
  const head = el("tr", {}, columns.map((c) => {
    const sortable = onSort && c.sort !== false;
    const mark = sort && sort.key === c.key ? (sort.reverse ? " ▼" : " ▲") : "";
    return el("th", {
      class: (c.num ? "num " : "") + (sortable ? "sortable" : ""),
      dataset: { key: c.key },
      onclick: sortable ? () => onSort(c.key) : undefined,
    }, c.label + mark);
  }));
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", { dataset: { name: rowName ? rowName(row) : row.name ?? "", vhost: row.vhost ?? "" } });
    for (const c of columns) {
      const value = c.render ? c.render(row) : row[c.key];
      tr.append(el("td", { class: c.key + (c.num ? " num" : "") }, value ?? ""));
    }
    body.append(tr);
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty || "nothing here")));
  return el("div", { class: "scroll" }, el("table", { id }, el("thead", {}, head), body));
}

// Replace the contents of a container keeping its identity (so tests can hold on to it).
export function fill(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// The page's confirmation dialog: resolves true when the user confirms.
export function confirmAction(text, confirmLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener("close", onClose);
      resolve(answer);
    };
    const onClose = () => done(dialog.returnValue === "ok");
    dialog.returnValue = "";
    dialog.addEventListener("close", onClose);
    dialog.showModal();
  });
}

export function notice(text, isError = false) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = isError ? "error" : "ok";
  box.hidden = !text;
}

// Run an action from a button: errors go to the notice line, never to the console only.
export async function act(fn) {
  try {
    await fn();
  } catch (error) {
    notice(error.message || String(error), true);
  }
}

export function field(label, input) {
  return el("label", {}, el("span", {}, label), input);
}

export function vhostSelect(vhosts, selected, id) {
  return el("select", { id }, vhosts.map((v) => el("option", { value: v.name, selected: v.name === selected }, v.name)));
}
