// The queue page (#queue/<vhost>/<name>): facts, depth and rate charts from the
// broker's history, consumers, bindings (add, remove), get messages with an ack mode,
// publish, and purge / delete, each asking first.
"use strict";

import { act, api, confirmAction, dataTable, el, enc, field, fill, fmtArgs, fmtBytes, fmtNum, fmtRate, notice, rate } from "./lib.js";
import { HISTORY_QUERY, depthChart, dlxTarget, features, rateChart } from "./views.js";

const ACKMODES = [
  ["ack_requeue_true", "Nack, requeue (messages stay)"],
  ["reject_requeue_true", "Reject, requeue"],
  ["ack_requeue_false", "Ack (messages are removed)"],
  ["reject_requeue_false", "Reject, no requeue (dead-lettered if the queue has a DLX)"],
];

function base([vhost, name]) {
  return `/api/queues/${enc(vhost)}/${enc(name)}`;
}

function getForm(args) {
  const count = el("input", { id: "get-count", type: "number", min: 1, value: 1 });
  const ackmode = el("select", { id: "get-ackmode" }, ACKMODES.map(([v, label]) => el("option", { value: v }, label)));
  const encoding = el("select", { id: "get-encoding" }, el("option", { value: "auto" }, "auto"), el("option", { value: "base64" }, "base64"));
  const out = el("div", { id: "get-result" });
  const form = el("form", { class: "inline", id: "get-messages", onsubmit: (e) => { e.preventDefault(); act(async () => {
    const msgs = await api(`${base(args)}/get`, { method: "POST", body: { count: Number(count.value), ackmode: ackmode.value, encoding: encoding.value, truncate: 50000 } });
    fill(out, msgs.length ? dataTable({ id: "got", rows: msgs.map((m, i) => ({ ...m, name: String(i + 1) })), columns: [
      { key: "name", label: "#" }, { key: "exchange", label: "exchange", render: (m) => m.exchange || "amq.default" }, { key: "routing_key", label: "routing key" },
      { key: "redelivered", label: "redelivered", render: (m) => (m.redelivered ? "yes" : "") },
      { key: "properties", label: "properties", render: (m) => (Array.isArray(m.properties) ? "" : fmtArgs(m.properties)) },
      { key: "payload", label: "payload", render: (m) => el("pre", { class: "payload" }, `${m.payload_encoding === "base64" ? "(base64) " : ""}${m.payload}`) },
      { key: "payload_bytes", label: "bytes", num: true }] }) : el("p", { class: "empty" }, "the queue is empty"));
  }); } }, el("strong", {}, "Get messages"), field("count", count), field("ack mode", ackmode), field("encoding", encoding), el("button", { class: "primary" }, "Get"));
  return [form, out];
}

function publishForm(args) {
  const payload = el("textarea", { id: "queue-publish-payload", placeholder: "payload" });
  const persistent = el("input", { type: "checkbox", id: "queue-publish-persistent", checked: true });
  const headers = el("input", { id: "queue-publish-headers", placeholder: '{"key": "value"}' });
  return el("form", { class: "inline", id: "queue-publish", onsubmit: (e) => { e.preventDefault(); act(async () => {
    const properties = persistent.checked ? { delivery_mode: 2 } : { delivery_mode: 1 };
    if (headers.value) properties.headers = JSON.parse(headers.value);
    const out = await api(`/api/exchanges/${enc(args[0])}/amq.default/publish`, { method: "POST", body: { properties, routing_key: args[1], payload: payload.value, payload_encoding: "string" } });
    notice(out.routed ? "published to the queue" : "not routed", !out.routed);
  }); } }, el("strong", {}, "Publish (default exchange)"), field("payload", payload), field("headers (JSON)", headers), el("label", {}, el("span", {}, "persistent"), persistent), el("button", { class: "primary" }, "Publish"));
}

function bindForm(args) {
  const source = el("input", { id: "bind-source", placeholder: "exchange", required: true });
  const key = el("input", { id: "bind-key", placeholder: "routing key" });
  return el("form", { class: "inline", id: "add-binding", onsubmit: (e) => { e.preventDefault(); act(async () => {
    await api(`/api/bindings/${enc(args[0])}/e/${enc(source.value)}/q/${enc(args[1])}`, { method: "POST", body: { routing_key: key.value, arguments: {} } });
    notice(`bound ${args[1]} to ${source.value} with key '${key.value}'`);
  }); } }, el("strong", {}, "Add a binding"), field("from exchange", source), field("routing key", key), el("button", { class: "primary" }, "Bind"));
}

function dangerButtons(args) {
  const [vhost, name] = args;
  return el("div", { class: "toolbar" },
    el("button", { type: "button", id: "purge", class: "danger", onclick: () => act(async () => {
      const q = await api(base(args));
      if (!(await confirmAction(`Purge queue '${name}' in vhost '${vhost}'? ${fmtNum(q.messages_ready)} ready messages will be removed.`, "Purge"))) return;
      await api(`${base(args)}/contents`, { method: "DELETE" });
      notice(`purged ${name}`);
    }) }, "Purge"),
    el("button", { type: "button", id: "delete", class: "danger", onclick: () => act(async () => {
      const q = await api(base(args));
      if (!(await confirmAction(`Delete queue '${name}' in vhost '${vhost}' with its ${fmtNum(q.messages)} messages? Its consumers are cancelled.`, "Delete"))) return;
      await api(base(args), { method: "DELETE" });
      location.hash = "#queues";
      notice(`deleted ${name}`);
    }) }, "Delete"));
}

export const queuePage = {
  mount(c, args) {
    fill(c, el("h2", { id: "queue-title" }, `Queue ${args[1]} in vhost ${args[0]}`), el("dl", { class: "facts", id: "queue-facts" }),
      el("div", { class: "tiles", id: "queue-tiles" }), el("div", { class: "charts", id: "queue-charts" }),
      el("h3", {}, "Consumers"), el("div", { id: "queue-consumers" }),
      el("h3", {}, "Bindings"), el("div", { id: "queue-bindings" }), bindForm(args),
      el("h3", {}, "Messages"), ...getForm(args), publishForm(args),
      el("h3", {}, "Purge or delete"), dangerButtons(args));
  },
  async refresh(c, args) {
    let q;
    try {
      q = await api(`${base(args)}?${HISTORY_QUERY}`);
    } catch (error) {
      if (error.status === 404) {
        fill(c.querySelector("#queue-facts"), el("dt", {}, "state"), el("dd", { class: "error" }, "this queue does not exist (any more)"));
        return;
      }
      throw error;
    }
    const bindings = await api(`${base(args)}/bindings`);
    const facts = [["type", q.type], ["features", features(q)], ["state", q.state], ["arguments", fmtArgs(q.arguments)], ["policy", q.policy || ""],
      ["effective policy", fmtArgs(q.effective_policy_definition)], ["dead letters to", dlxTarget(q)], ["ready bytes", fmtBytes(q.message_bytes_ready)]];
    fill(c.querySelector("#queue-facts"), facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k.replace(/\W+/g, "-") }, v ?? "")]));
    const u = q.consumer_utilisation;
    fill(c.querySelector("#queue-tiles"), [["ready", fmtNum(q.messages_ready)], ["unacked", fmtNum(q.messages_unacknowledged)], ["total", fmtNum(q.messages)],
      ["consumers", fmtNum(q.consumers)], ["utilisation", u === null || u === undefined ? "" : `${Math.round(u * 100)}%`],
      ["in/s", fmtRate(rate(q.message_stats, "publish"))], ["out/s", fmtRate(rate(q.message_stats, "deliver_get"))], ["ack/s", fmtRate(rate(q.message_stats, "ack"))]]
      .map(([k, v]) => el("div", { class: "tile" }, el("span", { class: "label" }, k), el("span", { class: `value q-${k.replace(/\W+/g, "-")}` }, v))));
    fill(c.querySelector("#queue-charts"), depthChart("queue-depth", q), rateChart("queue-rates", q.message_stats));
    fill(c.querySelector("#queue-consumers"), dataTable({ id: "consumers", rows: q.consumer_details || [], rowName: (r) => r.consumer_tag, empty: "no consumers", columns: [
      { key: "consumer_tag", label: "tag" }, { key: "channel", label: "channel", render: (r) => r.channel_details.name },
      { key: "ack_required", label: "ack", render: (r) => (r.ack_required ? "manual" : "auto") }, { key: "prefetch_count", label: "prefetch", num: true },
      { key: "exclusive", label: "exclusive", render: (r) => (r.exclusive ? "yes" : "") }, { key: "active", label: "active", render: (r) => (r.active ? "yes" : "no") }] }));
    fill(c.querySelector("#queue-bindings"), dataTable({ id: "bindings", rows: bindings, rowName: (b) => `${b.source}|${b.routing_key}`, columns: [
      { key: "source", label: "from", render: (b) => b.source || "(default exchange)" }, { key: "routing_key", label: "routing key" },
      { key: "arguments", label: "arguments", render: (b) => fmtArgs(b.arguments) },
      { key: "unbind", label: "", render: (b) => (b.source ? el("button", { type: "button", class: "danger unbind", onclick: () => act(async () => {
        if (!(await confirmAction(`Remove the binding from '${b.source}' with key '${b.routing_key}'?`, "Unbind"))) return;
        await api(`/api/bindings/${enc(args[0])}/e/${enc(b.source)}/q/${enc(args[1])}/${enc(decodeURIComponent(b.properties_key))}`, { method: "DELETE" });
        notice("binding removed");
      }) }, "Unbind") : "") }] }));
  },
};
