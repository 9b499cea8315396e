"""Applying a definitions document to a live broker: check everything, then change it.

The document has the shape ``config.rabbit.declarations`` writes (RabbitMQ's
definitions sections ``vhosts``, ``users``, ``permissions``, ``topic_permissions``,
``policies``,
``exchanges``, ``queues``, ``bindings``; users may carry a plain ``password`` and
``loopback_only``). :func:`apply` first checks every entry against the broker as it is
(an exchange or queue that exists with other settings, a permission for an unknown
user, a policy the broker would refuse), then creates or updates what it may. With
``strict`` (broker start) any problem raises :class:`DefinitionsConflict` before
anything changes; otherwise (reload, import) a conflicting entry is left alone and
reported. Existing entities are never deleted or redeclared with other settings, so no
message is lost. Problems name the entry by section and index, which the caller maps to
the config file's line.

Owns: the dry run, the comparisons (what differs), and the order of application
(vhosts, users, permissions, policies, exchanges, queues, bindings). Must not read
files or the config, and must not await.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from warrenmq.broker.broker import USER_LIMITS, VHOST_LIMITS, Broker, User, VhostMetadata
from warrenmq.broker.permissions import Permission
from warrenmq.broker.policies import EXCHANGE_KEYS, QUEUE_KEYS, Policy
from warrenmq.broker.topic_permissions import TopicPermission
from warrenmq.broker.vhost import VirtualHost
from warrenmq.errors import AMQPError
from warrenmq.exchange import EXCHANGE_TYPES, canonical_arguments
from warrenmq.queues.arguments import parse_arguments

#: Policy keys the broker acts on; RabbitMQ's others (ha-mode, queue-mode...) are noted.
SUPPORTED_POLICY_KEYS = frozenset({*QUEUE_KEYS, *EXCHANGE_KEYS})


@dataclass(frozen=True, slots=True)
class Issue:
    """Why one entry of the document was not (or could not be) applied."""

    section: str
    index: int
    message: str

    def __str__(self) -> str:
        return f"{self.section}[{self.index}]: {self.message}"


class DefinitionsConflict(Exception):
    """Strict application found problems; nothing was changed."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass
class Applied:
    """What :func:`apply` did: created, changed, left alone (issues), noted."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _what(kind: str, name: str, vhost: str | None = None) -> str:
    return f'{kind} "{name}"' + (f' in vhost "{vhost}"' if vhost is not None else "")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "(none)" if value is None else repr(value)


def _differences(fields: list[tuple[str, Any, Any]]) -> list[str]:
    return [f"{name} {_show(wanted)} here, {_show(current)} in the existing one"
            for name, wanted, current in fields if wanted != current]


def _argument_differences(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    if canonical_arguments(wanted) == canonical_arguments(current):
        return []
    keys = sorted(set(wanted) | set(current))
    return [f"argument {key} {_show(wanted.get(key))} here, {_show(current.get(key))} in"
            " the existing one" for key in keys
            if canonical_arguments({key: wanted.get(key)})
            != canonical_arguments({key: current.get(key)})]


class _Plan:
    """The dry run: every entry checked against the broker and the document itself."""

    def __init__(self, broker: Broker, document: Mapping[str, Any]) -> None:
        self.broker = broker
        self.document = document
        self.issues: list[Issue] = []
        self.notes: list[str] = []
        self.vhosts = set(broker.vhosts) | {v["name"] for v in document.get("vhosts", [])}
        self.users = set(broker.users) | {u["name"] for u in document.get("users", [])}
        self.policies: dict[int, Policy] = {}
        self.permissions: dict[int, Permission] = {}
        self.topic_permissions: dict[int, TopicPermission] = {}
        self.skip: set[tuple[str, int]] = set()
        self.new_exchanges: dict[tuple[str, str], str] = {}
        self.new_queues: set[tuple[str, str]] = set()

    def issue(self, section: str, index: int, message: str) -> None:
        self.issues.append(Issue(section, index, message))
        self.skip.add((section, index))

    def host(self, section: str, index: int, name: str) -> VirtualHost | None:
        """The entry's vhost if it exists (or will); None: reported, or to be created."""
        if name not in self.vhosts:
            self.issue(section, index, f'no vhost "{name}"')
        return self.broker.vhosts.get(name)

    def check(self) -> None:
        for index, p in enumerate(self.document.get("permissions", [])):
            self.permission(index, p)
        for index, p in enumerate(self.document.get("topic_permissions", [])):
            self.topic_permission(index, p)
        for index, p in enumerate(self.document.get("policies", [])):
            self.policy(index, p)
        for index, x in enumerate(self.document.get("exchanges", [])):
            self.exchange(index, x)
        for index, q in enumerate(self.document.get("queues", [])):
            self.queue(index, q)
        for index, b in enumerate(self.document.get("bindings", [])):
            self.binding(index, b)

    def permission(self, index: int, p: Mapping[str, Any]) -> None:
        if p["user"] not in self.users:
            self.issue("permissions", index, f'no user "{p["user"]}"')
        self.host("permissions", index, p["vhost"])
        try:
            self.permissions[index] = Permission(p["configure"], p["write"], p["read"])
        except ValueError as exc:
            self.issue("permissions", index, str(exc))

    def topic_permission(self, index: int, p: Mapping[str, Any]) -> None:
        if p["user"] not in self.users:
            self.issue("topic_permissions", index, f'no user "{p["user"]}"')
        self.host("topic_permissions", index, p["vhost"])
        try:
            self.topic_permissions[index] = TopicPermission(p["exchange"], p["write"], p["read"])
        except ValueError as exc:
            self.issue("topic_permissions", index, str(exc))

    def policy(self, index: int, p: Mapping[str, Any]) -> None:
        where = _what("policy", p["name"], p["vhost"])
        self.host("policies", index, p["vhost"])
        definition = {k: v for k, v in p["definition"].items() if k in SUPPORTED_POLICY_KEYS}
        ignored = sorted(set(p["definition"]) - set(definition))
        if ignored:
            self.notes.append(f"policies[{index}] ({where}): WarrenMQ does not act on "
                              + ", ".join(ignored) + "; ignored")
        if not definition:  # harmless: noted above, nothing to set
            self.skip.add(("policies", index))
            return
        try:
            self.policies[index] = Policy(p["name"], p["vhost"], p["pattern"],
                                          p.get("apply-to", "all"), p.get("priority", 0),
                                          definition)
        except ValueError as exc:
            self.issue("policies", index, str(exc))

    def exchange(self, index: int, x: Mapping[str, Any]) -> None:
        vhost = self.host("exchanges", index, x["vhost"])
        where = _what("exchange", x["name"], x["vhost"])
        if x["name"] == "" or x["name"].startswith("amq."):
            self.issue("exchanges", index, f"{where}: the name is reserved")
            return
        if x["type"] not in EXCHANGE_TYPES:
            self.issue("exchanges", index, f'{where}: unknown exchange type "{x["type"]}"')
            return
        existing = vhost.exchanges.get(x["name"]) if vhost is not None else None
        if existing is None:
            self.new_exchanges[(x["vhost"], x["name"])] = x["type"]
            return
        differs = _differences([
            ("type", x["type"], existing.type_name), ("durable", x["durable"], existing.durable),
            ("auto_delete", x["auto_delete"], existing.auto_delete),
            ("internal", x.get("internal", False), existing.internal),
        ]) + _argument_differences(x.get("arguments") or {}, existing.arguments)
        if differs:
            self.issue("exchanges", index, f"{where} exists with other settings: "
                       + "; ".join(differs))

    def queue(self, index: int, q: Mapping[str, Any]) -> None:
        vhost = self.host("queues", index, q["vhost"])
        where = _what("queue", q["name"], q["vhost"])
        arguments = q.get("arguments") or {}
        existing = vhost.queues.get(q["name"]) if vhost is not None else None
        if existing is None:
            try:
                parse_arguments(arguments, where)
            except AMQPError as exc:
                self.issue("queues", index, exc.text)
                return
            self.new_queues.add((q["vhost"], q["name"]))
            return
        if existing.exclusive:
            self.issue("queues", index, f"{where} exists, exclusive to a client connection")
            return
        differs = _differences([
            ("durable", q["durable"], existing.durable),
            ("auto_delete", q["auto_delete"], existing.auto_delete),
        ]) + _argument_differences(arguments, existing.arguments)
        if differs:
            self.issue("queues", index, f"{where} exists with other settings: "
                       + "; ".join(differs))

    def binding(self, index: int, b: Mapping[str, Any]) -> None:
        vhost = self.host("bindings", index, b["vhost"])
        name = b["vhost"]
        source_ok = self._exchange_exists(vhost, name, b["source"]) and b["source"] != ""
        if not source_ok:
            self.issue("bindings", index, f'no exchange "{b["source"]}" in vhost "{name}"')
        if b["destination_type"] == "exchange":
            if not self._exchange_exists(vhost, name, b["destination"]):
                self.issue("bindings", index,
                           f'no exchange "{b["destination"]}" in vhost "{name}"')
        elif not ((name, b["destination"]) in self.new_queues
                  or (vhost is not None and b["destination"] in vhost.queues)):
            self.issue("bindings", index, f'no queue "{b["destination"]}" in vhost "{name}"')
        elif vhost is not None and b["destination"] in vhost.queues \
                and vhost.queues[b["destination"]].exclusive:
            self.issue("bindings", index, f'queue "{b["destination"]}" in vhost "{name}" is'
                       " exclusive to a client connection")

    def _exchange_exists(self, vhost: VirtualHost | None, name: str, exchange: str) -> bool:
        return (name, exchange) in self.new_exchanges or (
            vhost is not None and exchange in vhost.exchanges)


def apply(broker: Broker, document: Mapping[str, Any], *, strict: bool) -> Applied:
    """Check the document against the broker, then apply it (see the module doc)."""
    plan = _Plan(broker, document)
    plan.check()
    if strict and plan.issues:
        raise DefinitionsConflict(plan.issues)
    done = Applied(issues=plan.issues, notes=plan.notes)
    _apply_vhosts(broker, document, done)
    for u in document.get("users", []):
        _upsert(done, _what("user", u["name"]), broker.users.get(u["name"]), _user(u),
                broker.set_user)
    _apply_limits(broker, document, done)
    for index, p in enumerate(document.get("permissions", [])):
        if ("permissions", index) not in plan.skip:
            current = broker.permissions.get((p["user"], p["vhost"]))
            _upsert(done, f'permission of user "{p["user"]}" in vhost "{p["vhost"]}"', current,
                    plan.permissions[index],
                    lambda perm, p=p: broker.set_permission(p["user"], p["vhost"], perm))
    for index, p in enumerate(document.get("topic_permissions", [])):
        if ("topic_permissions", index) not in plan.skip:
            records = broker.topic_permissions.get((p["user"], p["vhost"]), [])
            _upsert(done, f'topic permission of user "{p["user"]}" for exchange'
                          f' "{p["exchange"]}" in vhost "{p["vhost"]}"',
                    next((t for t in records if t.exchange == p["exchange"]), None),
                    plan.topic_permissions[index],
                    lambda t, p=p: broker.set_topic_permission(p["user"], p["vhost"], t))
    for index, policy in plan.policies.items():
        if ("policies", index) not in plan.skip:
            _upsert(done, _what("policy", policy.name, policy.vhost),
                    broker.policies.get((policy.vhost, policy.name)), policy, broker.set_policy)
    _apply_topology(broker, document, plan, done)
    if strict and done.issues:  # refused although the dry run passed: report, stop the start
        raise DefinitionsConflict(done.issues)
    return done


def _apply_vhosts(broker: Broker, document: Mapping[str, Any], done: Applied) -> None:
    """Create the missing vhosts; set description and tags where an entry gives them."""
    for v in document.get("vhosts", []):
        if v["name"] not in broker.vhosts:
            broker.add_vhost(v["name"])
            done.added.append(_what("vhost", v["name"]))
        if "description" in v or "tags" in v:
            wanted = VhostMetadata(v.get("description") or "", tuple(v.get("tags") or ()))
            if broker.vhost_metadata.get(v["name"], VhostMetadata()) != wanted:
                broker.set_vhost_metadata(v["name"], wanted)
                done.changed.append(f'description and tags of vhost "{v["name"]}"')


def _upsert(done: Applied, what: str, current: Any, wanted: Any, setter: Any) -> None:
    if current == wanted:
        return
    setter(wanted)
    (done.added if current is None else done.changed).append(what)


def _apply_limits(broker: Broker, document: Mapping[str, Any], done: Applied) -> None:
    """RabbitMQ's vhost and user limits, where an entry gives ``limits``: each limit it
    names is set (a negative value clears it); limits it does not name are left alone
    (a reload clears those its file dropped). ``user_limits`` entries (``{"user",
    "limits"}``, what the data directory keeps for users the config declares) too."""
    entries = [("vhost", VHOST_LIMITS, e["name"], e.get("limits"))
               for e in document.get("vhosts", [])]
    entries += [("user", USER_LIMITS, e["name"], e.get("limits"))
                for e in document.get("users", [])]
    entries += [("user", USER_LIMITS, e["user"], e.get("limits"))
                for e in document.get("user_limits", []) if e.get("user") in broker.users]
    for kind, known, name, limits in entries:
        if not isinstance(limits, Mapping):
            continue
        table = broker.vhost_limits if kind == "vhost" else broker.user_limits
        for limit in known:
            if limit not in limits:
                continue
            value = limits[limit]
            value = value if isinstance(value, int) and value >= 0 else None
            if table.get(name, {}).get(limit) == value:
                continue
            try:
                broker.set_limit(kind, name, limit, value)
            except ValueError as exc:
                done.notes.append(f"{kind} '{name}': {exc}")
            else:
                done.changed.append(f'{limit} limit of {kind} "{name}"')


def _user(u: Mapping[str, Any]) -> User:
    return User(u["name"], password=u.get("password"), password_hash=u.get("password_hash"),
                tags=tuple(u.get("tags") or ()), loopback_only=bool(u.get("loopback_only")))


def _apply_topology(
    broker: Broker, document: Mapping[str, Any], plan: _Plan, done: Applied
) -> None:
    for index, x in enumerate(document.get("exchanges", [])):
        vhost = broker.vhosts.get(x["vhost"])
        if ("exchanges", index) in plan.skip or vhost is None or x["name"] in vhost.exchanges:
            continue
        try:
            vhost.declare_exchange(
                x["name"], x["type"], durable=x["durable"], auto_delete=x["auto_delete"],
                internal=x.get("internal", False), arguments=x.get("arguments") or {})
        except (AMQPError, ValueError) as exc:
            done.issues.append(Issue("exchanges", index, _text(exc)))
        else:
            done.added.append(_what("exchange", x["name"], x["vhost"]))
    for index, q in enumerate(document.get("queues", [])):
        vhost = broker.vhosts.get(q["vhost"])
        if ("queues", index) in plan.skip or vhost is None or q["name"] in vhost.queues:
            continue
        try:
            vhost.declare_queue(q["name"], owner=None, durable=q["durable"],
                                auto_delete=q["auto_delete"], arguments=q.get("arguments") or {},
                                server_named=q["name"].startswith("amq.gen-"))
        except (AMQPError, ValueError) as exc:
            done.issues.append(Issue("queues", index, _text(exc)))
        else:
            done.added.append(_what("queue", q["name"], q["vhost"]))
    for index, b in enumerate(document.get("bindings", [])):
        vhost = broker.vhosts.get(b["vhost"])
        if ("bindings", index) not in plan.skip and vhost is not None:
            _bind(vhost, index, b, done)


def _bind(vhost: VirtualHost, index: int, b: Mapping[str, Any], done: Applied) -> None:
    before = vhost.generation
    arguments = b.get("arguments") or {}
    try:
        if b["destination_type"] == "exchange":
            vhost.bind_exchange(b["destination"], b["source"], b["routing_key"], arguments)
        else:
            vhost.bind_queue(b["destination"], b["source"], b["routing_key"], arguments, None)
    except (AMQPError, ValueError) as exc:
        done.issues.append(Issue("bindings", index, _text(exc)))
        return
    if vhost.generation != before:
        done.added.append(
            f'binding of {b["destination_type"]} "{b["destination"]}" to exchange'
            f' "{b["source"]}" with routing key "{b["routing_key"]}" in vhost "{b["vhost"]}"')


def _text(exc: Exception) -> str:
    return exc.text if isinstance(exc, AMQPError) else str(exc)
