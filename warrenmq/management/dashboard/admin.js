// Dead-letter queues (replay: a dry run first, then a confirmation naming how many
// messages go where, then the replay) and admin (users, vhosts, permissions, policies).
"use strict";

import { act, api, confirmAction, dataTable, el, enc, field, fill, fmtNum, notice } from "./lib.js";

// ------------------------------------------------------------------ dead letters
function targetsText(targets) {
  const entries = Object.entries(targets || {});
  return entries.length ? entries.map(([t, n]) => `${t}: ${fmtNum(n)}`).join(", ") : "none";
}

async function replay(q, target) {
  const path = `/api/queues/${enc(q.vhost)}/${enc(q.name)}/replay`;
  const plan = await api(path, { method: "POST", body: { dry_run: true, target } });
  const result = document.getElementById("replay-result");
  if (!plan.replayed) {
    result.textContent = `${q.name}: nothing to replay${plan.skipped ? ` (${plan.skipped} messages have no origin to go back to)` : ""}`;
    return;
  }
  const warnings = (plan.warnings || []).length ? ` Warnings: ${plan.warnings.join("; ")}` : "";
  const question = `Replay ${fmtNum(plan.replayed)} messages from '${q.name}'? They go to ${targetsText(plan.targets)}.` +
    `${plan.skipped ? ` ${fmtNum(plan.skipped)} stay (no origin).` : ""}${warnings}`;
  if (!(await confirmAction(question, "Replay"))) {
    result.textContent = `${q.name}: replay cancelled`;
    return;
  }
  const done = await api(path, { method: "POST", body: { dry_run: false, target } });
  result.textContent = `${q.name}: ${done.replayed} replayed, ${done.skipped} skipped, ${done.failed} failed` +
    ` (${targetsText(done.targets)})${(done.errors || []).length ? ` — ${done.errors.join("; ")}` : ""}`;
}

export const dlqView = {
  mount(c) {
    const target = el("select", { id: "replay-target" }, el("option", { value: "queue" }, "to the queue each message died in"),
      el("option", { value: "exchange" }, "through the exchange it was first published to"));
    fill(c, el("p", {}, "Queues that other queues dead-letter into (by argument or policy). Replay puts their messages back; you see how many go where before anything moves."),
      el("div", { class: "toolbar" }, field("replay", target)), el("div", { id: "dlq-list" }), el("p", { id: "replay-result" }));
  },
  async refresh(c) {
    const rows = await api("/api/warrenmq/dead-letter-queues");
    const target = () => c.querySelector("#replay-target").value;
    fill(c.querySelector("#dlq-list"), dataTable({ id: "dlqs", rows, empty: "no dead-letter queues", columns: [
      { key: "vhost", label: "vhost" },
      { key: "name", label: "queue", render: (q) => el("a", { href: `#queue/${enc(q.vhost)}/${enc(q.name)}` }, q.name) },
      { key: "ready", label: "ready", num: true, render: (q) => fmtNum(q.messages_ready) },
      { key: "messages", label: "total", num: true, render: (q) => fmtNum(q.messages) },
      { key: "sources", label: "dead letters from", render: (q) => q.sources.join(", ") },
      { key: "replay", label: "", render: (q) => el("button", { type: "button", class: "replay", dataset: { name: q.name },
        disabled: !q.messages_ready, onclick: () => act(() => replay(q, target())) }, "Replay…") },
    ] }));
  },
};

// ------------------------------------------------------------------ admin
function form(id, title, inputs, submit, label) {
  return el("form", { class: "inline", id, onsubmit: (e) => { e.preventDefault(); act(submit); } },
    el("strong", {}, title), ...inputs, el("button", { class: "primary" }, label));
}

function removeButton(text, path, what) {
  return el("button", { type: "button", class: "danger remove", onclick: () => act(async () => {
    if (!(await confirmAction(text, "Delete"))) return;
    await api(path, { method: "DELETE" });
    notice(`${what} deleted`);
  }) }, "Delete");
}

export const adminView = {
  mount(c, args, who) {
    if (!who.tags.includes("administrator") && !who.tags.includes("policymaker")) {
      fill(c, el("p", { class: "empty" }, "Users, vhosts, permissions and policies need the administrator tag (policies: policymaker)."));
      return;
    }
    const user = { name: el("input", { id: "user-name", required: true }), password: el("input", { id: "user-password", type: "password", autocomplete: "new-password" }),
      tags: el("input", { id: "user-tags", placeholder: "administrator, monitoring, management" }) };
    const vhost = el("input", { id: "vhost-name", required: true });
    const perm = { user: el("input", { id: "perm-user", required: true }), vhost: el("input", { id: "perm-vhost", value: "/" }),
      configure: el("input", { id: "perm-configure", value: ".*" }), write: el("input", { id: "perm-write", value: ".*" }), read: el("input", { id: "perm-read", value: ".*" }) };
    const pol = { vhost: el("input", { id: "policy-vhost", value: "/" }), name: el("input", { id: "policy-name", required: true }),
      pattern: el("input", { id: "policy-pattern", required: true }), applyTo: el("select", { id: "policy-apply-to" }, ["all", "queues", "exchanges"].map((v) => el("option", { value: v }, v))),
      priority: el("input", { id: "policy-priority", type: "number", value: 0 }), definition: el("input", { id: "policy-definition", placeholder: '{"max-length": 1000}', required: true }) };
    fill(c,
      el("h2", {}, "Users"), el("div", { id: "users-list" }),
      form("add-user", "Add or change a user", [field("name", user.name), field("password", user.password), field("tags", user.tags)], async () => {
        await api(`/api/users/${enc(user.name.value)}`, { method: "PUT", body: { password: user.password.value, tags: user.tags.value } });
        notice(`user ${user.name.value} saved`);
        user.password.value = "";
      }, "Save"),
      el("h2", {}, "Virtual hosts"), el("div", { id: "vhosts-list" }),
      form("add-vhost", "Add a vhost", [field("name", vhost)], async () => {
        await api(`/api/vhosts/${enc(vhost.value)}`, { method: "PUT", body: {} });
        notice(`vhost ${vhost.value} added`);
      }, "Add"),
      el("h2", {}, "Permissions"), el("div", { id: "permissions-list" }),
      form("set-permission", "Set a permission", [field("user", perm.user), field("vhost", perm.vhost), field("configure", perm.configure), field("write", perm.write), field("read", perm.read)], async () => {
        await api(`/api/permissions/${enc(perm.vhost.value)}/${enc(perm.user.value)}`, { method: "PUT", body: { configure: perm.configure.value, write: perm.write.value, read: perm.read.value } });
        notice(`permission of ${perm.user.value} in ${perm.vhost.value} saved`);
      }, "Set"),
      el("h2", {}, "Policies"), el("div", { id: "policies-list" }),
      form("set-policy", "Add or change a policy", [field("vhost", pol.vhost), field("name", pol.name), field("pattern", pol.pattern), field("apply to", pol.applyTo), field("priority", pol.priority), field("definition (JSON)", pol.definition)], async () => {
        await api(`/api/policies/${enc(pol.vhost.value)}/${enc(pol.name.value)}`, { method: "PUT", body: {
          pattern: pol.pattern.value, "apply-to": pol.applyTo.value, priority: Number(pol.priority.value), definition: JSON.parse(pol.definition.value) } });
        notice(`policy ${pol.name.value} saved`);
      }, "Save"));
  },
  async refresh(c, args, who) {
    if (!c.querySelector("#users-list")) return;
    const admin = who.tags.includes("administrator");
    const [users, vhosts, permissions, policies] = await Promise.all([
      admin ? api("/api/users") : [], api("/api/vhosts"), admin ? api("/api/permissions") : [], api("/api/policies")]);
    fill(c.querySelector("#users-list"), dataTable({ id: "users", rows: users, columns: [
      { key: "name", label: "user" }, { key: "tags", label: "tags", render: (u) => u.tags.join(", ") },
      { key: "password", label: "password", render: (u) => (u.password_hash ? "set" : "none (cannot log in with a password)") },
      { key: "delete", label: "", render: (u) => (u.name === who.name ? "(you)" : removeButton(`Delete user '${u.name}'? Their connections are closed.`, `/api/users/${enc(u.name)}`, `user ${u.name}`)) }] }));
    fill(c.querySelector("#vhosts-list"), dataTable({ id: "vhosts", rows: vhosts, columns: [
      { key: "name", label: "vhost" }, { key: "messages", label: "messages", num: true, render: (v) => fmtNum(v.messages) },
      { key: "delete", label: "", render: (v) => removeButton(`Delete vhost '${v.name}' with all its queues, exchanges and messages? Its connections are closed.`, `/api/vhosts/${enc(v.name)}`, `vhost ${v.name}`) }] }));
    fill(c.querySelector("#permissions-list"), dataTable({ id: "permissions", rows: permissions, rowName: (p) => `${p.user}@${p.vhost}`, columns: [
      { key: "user", label: "user" }, { key: "vhost", label: "vhost" }, { key: "configure", label: "configure" }, { key: "write", label: "write" }, { key: "read", label: "read" },
      { key: "delete", label: "", render: (p) => removeButton(`Remove ${p.user}'s permission in '${p.vhost}'?`, `/api/permissions/${enc(p.vhost)}/${enc(p.user)}`, "permission") }] }));
    fill(c.querySelector("#policies-list"), dataTable({ id: "policies", rows: policies, columns: [
      { key: "vhost", label: "vhost" }, { key: "name", label: "policy" }, { key: "pattern", label: "pattern" }, { key: "apply-to", label: "apply to" },
      { key: "priority", label: "priority", num: true }, { key: "definition", label: "definition", render: (p) => JSON.stringify(p.definition) },
      { key: "delete", label: "", render: (p) => removeButton(`Delete policy '${p.name}' in '${p.vhost}'?`, `/api/policies/${enc(p.vhost)}/${enc(p.name)}`, `policy ${p.name}`) }] }));
  },
};
