// Dashboard tabs: overview (node panel, totals, charts), connections, channels,
// exchanges (with publish) and queues (sorted, filtered and paged by the API, so a
// broker with 10,000 queues never sends them all to the browser).
"use strict";

import { act, api, confirmAction, dataTable, el, enc, field, fill, fmtArgs, fmtBytes, fmtDuration, fmtNum, fmtRate, notice, rate } from "./lib.js";
import { gauge, lineChart, perSecond } from "./chart.js";

export const HISTORY_QUERY = "lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5";
export const PAGE_SIZE = 100;

function tile(label, value, cls = "") {
  return el("div", { class: "tile" }, el("span", { class: "label" }, label), el("span", { class: `value ${cls}` }, value));
}

export function depthChart(id, totals) {
  return lineChart({ id, title: "Queued messages", unit: "messages", series: [
    { label: "ready", cls: "c-ready", points: gauge(totals.messages_ready_details) },
    { label: "unacked", cls: "c-unacked", points: gauge(totals.messages_unacknowledged_details) },
  ] });
}

export function rateChart(id, stats) {
  return lineChart({ id, title: "Message rates", unit: "messages / s", series: [
    { label: "published/s", cls: "c-publish", points: perSecond(stats.publish_details) },
    { label: "delivered/s", cls: "c-deliver", points: perSecond(stats.deliver_get_details) },
    { label: "acked/s", cls: "c-ack", points: perSecond(stats.ack_details) },
  ] });
}

// ------------------------------------------------------------------ overview
const overview = {
  mount(c) {
    fill(c, el("div", { class: "tiles", id: "totals" }), el("h2", {}, "Node"), el("dl", { class: "facts", id: "node-panel" }),
      el("h2", {}, "History"), el("div", { class: "charts", id: "overview-charts" }), el("h2", {}, "Listeners"), el("div", { id: "listeners" }));
  },
  async refresh(c) {
    const [o, nodes] = await Promise.all([api(`/api/overview?${HISTORY_QUERY}`), api("/api/nodes")]);
    const n = nodes[0] || {};
    const t = o.object_totals;
    const q = o.queue_totals;
    const alarms = [n.mem_alarm && "memory", n.disk_free_alarm && "disk"].filter(Boolean);
    fill(c.querySelector("#totals"),
      tile("published/s", fmtRate(rate(o.message_stats, "publish")), "publish-rate"),
      tile("delivered/s", fmtRate(rate(o.message_stats, "deliver_get")), "deliver-rate"),
      tile("ready", fmtNum(q.messages_ready), "total-ready"), tile("unacked", fmtNum(q.messages_unacknowledged), "total-unacked"),
      tile("connections", fmtNum(t.connections)), tile("channels", fmtNum(t.channels)), tile("queues", fmtNum(t.queues)),
      tile("consumers", fmtNum(t.consumers)), tile("alarms", alarms.join(", ") || "none", alarms.length ? "alarm" : ""));
    const facts = [
      ["node", n.name], ["version", `${o.product_name} ${o.product_version} (RabbitMQ management API ${o.management_version})`],
      ["runtime", o.erlang_version], ["uptime", n.uptime !== undefined ? fmtDuration(n.uptime) : ""],
      ["memory (RSS)", fmtBytes(n.mem_used)], ["queued message bytes", fmtBytes(n.queue_bytes_ready)],
      ["disk free", n.disk_free !== undefined ? fmtBytes(n.disk_free) : "unknown"], ["fsyncs/s", fmtRate(n.io_sync_count_details ? n.io_sync_count_details.rate : 0)],
      ["file descriptors", `${fmtNum(n.fd_used)} / ${fmtNum(n.fd_total)}`], ["alarms", alarms.join(", ") || "none"],
    ];
    fill(c.querySelector("#node-panel"), facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k.replace(/\W+/g, "-") }, v ?? "")]));
    fill(c.querySelector("#overview-charts"), depthChart("overview-depth", q), rateChart("overview-rates", o.message_stats));
    fill(c.querySelector("#listeners"), dataTable({ id: "listener-table", rows: o.listeners, rowName: (l) => `${l.protocol}:${l.port}`, columns: [
      { key: "protocol", label: "protocol" }, { key: "ip_address", label: "address" }, { key: "port", label: "port", num: true }] }));
  },
};

// ------------------------------------------------------------------ lists with paging
// A paged list view: sort and name filter go to the API (page, page_size, sort,
// sort_reverse, name, use_regex), as RabbitMQ's own UI does.
function pagedView({ id, path, columns, sortFields = {}, defaultSort = "name", extra, toolbarExtra }) {
  const state = { page: 1, sort: defaultSort, reverse: false, name: "", regex: false };
  return {
    state,
    mount(c, args, who) {
      const filter = el("input", { id: `${id}-filter`, placeholder: "filter by name", oninput: (e) => { state.name = e.target.value; state.page = 1; this.refresh(c); } });
      const regex = el("input", { type: "checkbox", id: `${id}-regex`, onchange: (e) => { state.regex = e.target.checked; this.refresh(c); } });
      fill(c, el("div", { class: "toolbar" }, field("name", filter), el("label", {}, el("span", {}, "regex"), regex), toolbarExtra ? toolbarExtra(c) : null),
        el("div", { class: "pager", id: `${id}-pager` }), el("div", { id: `${id}-list` }), extra ? extra(c, who) : null);
    },
    async refresh(c) {
      const sortField = sortFields[state.sort] || state.sort;
      let query = `page=${state.page}&page_size=${PAGE_SIZE}&sort=${enc(sortField)}&sort_reverse=${state.reverse}`;
      if (state.name) query += `&name=${enc(state.name)}&use_regex=${state.regex}`;
      let data;
      try {
        data = await api(`${path}?${query}`);
      } catch (error) {
        if (error.status === 400 && state.page > 1) {
          state.page = 1;
          return this.refresh(c);
        }
        throw error;
      }
      const onSort = (key) => {
        state.reverse = state.sort === key ? !state.reverse : false;
        state.sort = key;
        state.page = 1;
        this.refresh(c);
      };
      fill(c.querySelector(`#${id}-list`), dataTable({ id, columns, rows: data.items, sort: { key: state.sort, reverse: state.reverse }, onSort, rowName: (r) => r.name }));
      const pager = c.querySelector(`#${id}-pager`);
      const go = (p) => { state.page = p; this.refresh(c); };
      fill(pager, el("span", { class: "count" }, `${fmtNum(data.filtered_count)} of ${fmtNum(data.total_count)}`),
        el("button", { type: "button", disabled: data.page <= 1, onclick: () => go(data.page - 1) }, "‹ prev"),
        el("span", {}, `page ${data.page} of ${Math.max(1, data.page_count)}`),
        el("button", { type: "button", disabled: data.page >= data.page_count, onclick: () => go(data.page + 1) }, "next ›"));
    },
  };
}

const connections = pagedView({
  id: "connections", path: "/api/connections", defaultSort: "name",
  sortFields: { client: "client_properties.connection_name", product: "client_properties.product",
    recv_rate: "recv_oct_details.rate", send_rate: "send_oct_details.rate" },
  columns: [
    { key: "name", label: "connection" }, { key: "user", label: "user" }, { key: "vhost", label: "vhost" },
    { key: "client", label: "client name", render: (r) => (r.client_properties || {}).connection_name || "" },
    { key: "product", label: "product", render: (r) => { const p = r.client_properties || {}; return [p.product, p.version].filter(Boolean).join(" "); } },
    { key: "channels", label: "channels", num: true }, { key: "state", label: "state" },
    { key: "recv_rate", label: "from client /s", num: true, render: (r) => `${fmtBytes((r.recv_oct_details || {}).rate || 0)}` },
    { key: "send_rate", label: "to client /s", num: true, render: (r) => `${fmtBytes((r.send_oct_details || {}).rate || 0)}` },
    { key: "connected_at", label: "connected", render: (r) => new Date(r.connected_at).toLocaleTimeString() },
    { key: "close", label: "", sort: false, render: (r) => el("button", { type: "button", class: "danger close", onclick: () => act(async () => {
      if (!(await confirmAction(`Close connection ${r.name}? The client gets 320 CONNECTION_FORCED.`, "Close"))) return;
      await api(`/api/connections/${enc(r.name)}`, { method: "DELETE" });
      notice(`closed ${r.name}`);
    }) }, "Close") },
  ],
});

const channels = pagedView({
  id: "channels", path: "/api/channels", defaultSort: "name",
  sortFields: { unacked: "messages_unacknowledged", unconfirmed: "messages_unconfirmed", prefetch: "prefetch_count", consumers: "consumer_count" },
  columns: [
    { key: "name", label: "channel" }, { key: "user", label: "user" }, { key: "vhost", label: "vhost" },
    { key: "mode", label: "mode", sort: false, render: (r) => (r.confirm ? "confirm" : r.transactional ? "transactional" : "") },
    { key: "prefetch", label: "prefetch", num: true, render: (r) => r.prefetch_count },
    { key: "global_prefetch", label: "global prefetch", num: true, sort: false, render: (r) => r.global_prefetch_count },
    { key: "unacked", label: "unacked", num: true, render: (r) => fmtNum(r.messages_unacknowledged) },
    { key: "unconfirmed", label: "unconfirmed", num: true, render: (r) => fmtNum(r.messages_unconfirmed) },
    { key: "consumers", label: "consumers", num: true, render: (r) => r.consumer_count },
    { key: "state", label: "state" },
  ],
});

// ------------------------------------------------------------------ exchanges
const exchangeName = (r) => r.name || "amq.default";
const exchanges = pagedView({
  id: "exchanges", path: "/api/exchanges", defaultSort: "name",
  columns: [
    { key: "vhost", label: "vhost" },
    { key: "name", label: "exchange", render: (r) => el("a", { href: "#", class: "pick", onclick: (e) => { e.preventDefault(); showExchange(r); } }, exchangeName(r)) },
    { key: "type", label: "type" }, { key: "durable", label: "durable", render: (r) => (r.durable ? "D" : "") },
    { key: "auto_delete", label: "auto-delete", render: (r) => (r.auto_delete ? "AD" : "") },
    { key: "internal", label: "internal", render: (r) => (r.internal ? "I" : "") },
    { key: "arguments", label: "arguments", sort: false, render: (r) => fmtArgs(r.arguments) },
    { key: "policy", label: "policy" },
  ],
  extra: () => el("div", { id: "exchange-detail" }),
});

async function showExchange(x) {
  const box = document.getElementById("exchange-detail");
  const base = `/api/exchanges/${enc(x.vhost)}/${enc(exchangeName(x))}`;
  const bindings = x.name ? await api(`${base}/bindings/source`) : [];
  const key = el("input", { id: "publish-key", placeholder: "routing key" });
  const payload = el("textarea", { id: "publish-payload", placeholder: "payload" });
  const persistent = el("input", { type: "checkbox", id: "publish-persistent" });
  fill(box, el("h2", {}, `Exchange ${exchangeName(x)} in ${x.vhost}`),
    el("h3", {}, `Bindings from this exchange (${bindings.length})`),
    dataTable({ id: "exchange-bindings", rows: bindings, rowName: (b) => `${b.destination_type}:${b.destination}:${b.routing_key}`, columns: [
      { key: "destination", label: "to" }, { key: "destination_type", label: "kind" }, { key: "routing_key", label: "routing key" },
      { key: "arguments", label: "arguments", render: (b) => fmtArgs(b.arguments) }] }),
    el("h3", {}, "Publish a message"),
    el("form", { class: "inline", id: "exchange-publish", onsubmit: (e) => { e.preventDefault(); act(async () => {
      const properties = persistent.checked ? { delivery_mode: 2 } : {};
      const out = await api(`${base}/publish`, { method: "POST", body: { properties, routing_key: key.value, payload: payload.value, payload_encoding: "string" } });
      notice(out.routed ? "message published and routed" : "message published but not routed to any queue", !out.routed);
    }); } }, field("routing key", key), field("payload", payload), el("label", {}, el("span", {}, "persistent"), persistent), el("button", { class: "primary" }, "Publish")));
}

// ------------------------------------------------------------------ queues
export function dlxTarget(q) {
  const args = q.arguments || {};
  const policy = q.effective_policy_definition || {};
  const x = args["x-dead-letter-exchange"] ?? policy["dead-letter-exchange"];
  if (x === undefined) return "";
  const key = args["x-dead-letter-routing-key"] ?? policy["dead-letter-routing-key"];
  return `${x || "amq.default"}${key ? ` (${key})` : ""}`;
}

export function features(q) {
  return [q.durable && "D", q.auto_delete && "AD", q.exclusive && "Excl"].filter(Boolean).join(" ");
}

const queues = pagedView({
  id: "queues", path: "/api/queues", defaultSort: "name",
  sortFields: { ready: "messages_ready", unacked: "messages_unacknowledged", total: "messages", publish: "message_stats.publish_details.rate",
    deliver: "message_stats.deliver_get_details.rate", ack: "message_stats.ack_details.rate", utilisation: "consumer_utilisation" },
  columns: [
    { key: "vhost", label: "vhost" },
    { key: "name", label: "queue", render: (q) => el("a", { href: `#queue/${enc(q.vhost)}/${enc(q.name)}` }, q.name) },
    { key: "type", label: "type" }, { key: "features", label: "features", sort: false, render: features },
    { key: "arguments", label: "arguments", sort: false, render: (q) => fmtArgs(q.arguments) },
    { key: "policy", label: "policy" },
    { key: "ready", label: "ready", num: true, render: (q) => fmtNum(q.messages_ready) },
    { key: "unacked", label: "unacked", num: true, render: (q) => fmtNum(q.messages_unacknowledged) },
    { key: "total", label: "total", num: true, render: (q) => fmtNum(q.messages) },
    { key: "publish", label: "in/s", num: true, render: (q) => fmtRate(rate(q.message_stats, "publish")) },
    { key: "deliver", label: "out/s", num: true, render: (q) => fmtRate(rate(q.message_stats, "deliver_get")) },
    { key: "ack", label: "ack/s", num: true, render: (q) => fmtRate(rate(q.message_stats, "ack")) },
    { key: "consumers", label: "consumers", num: true },
    { key: "utilisation", label: "utilisation", num: true, render: (q) => (q.consumer_utilisation === null || q.consumer_utilisation === undefined ? "" : `${Math.round(q.consumer_utilisation * 100)}%`) },
    { key: "dlx", label: "dead letters to", sort: false, render: dlxTarget },
  ],
  extra: (c, who) => addQueueForm(),
});

function addQueueForm() {
  const vhost = el("input", { id: "new-queue-vhost", value: "/" });
  const name = el("input", { id: "new-queue-name", required: true });
  const durable = el("input", { type: "checkbox", id: "new-queue-durable", checked: true });
  const args = el("input", { id: "new-queue-arguments", placeholder: '{"x-max-length": 1000}' });
  return el("form", { class: "inline", id: "add-queue", onsubmit: (e) => { e.preventDefault(); act(async () => {
    const body = { durable: durable.checked, auto_delete: false, arguments: args.value ? JSON.parse(args.value) : {} };
    await api(`/api/queues/${enc(vhost.value)}/${enc(name.value)}`, { method: "PUT", body });
    notice(`queue ${name.value} declared in ${vhost.value}`);
  }); } }, el("strong", {}, "Add a queue"), field("vhost", vhost), field("name", name), el("label", {}, el("span", {}, "durable"), durable), field("arguments (JSON)", args), el("button", { class: "primary" }, "Declare"));
}

export const views = { overview, connections, channels, exchanges, queues };
