"""The management commands, like rabbitmqctl / rabbitmqadmin, against a running broker's
management HTTP API (RabbitMQ's documented paths, so they work against RabbitMQ too).

``list`` prints a table (or ``--json``) with a few useful columns per kind, sorted and
filtered on the client (``--sort``, ``--reverse``, ``--filter COLUMN=GLOB``; any
field, nested ones as ``a.b``); the other commands change one thing and say what they
did. Each command first says on stderr which broker it talks to and as whom.
Exit status: 0 done; 1 the broker refused (the HTTP status and its reason on stderr),
or ``ping`` got no healthy answer; 2 usage errors or an unreachable broker.
Owns nothing; must not import the broker.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from warrenmq.tools.mgmt_client import Api, ApiError, q

#: Default columns per list (RabbitMQ field names).
COLUMNS: dict[str, tuple[str, ...]] = {
    "queues": ("name", "messages_ready", "messages_unacknowledged", "consumers", "durable"),
    "exchanges": ("name", "type", "durable", "auto_delete", "internal"),
    # x-delayed-message exchanges only: what waits in each (management/delayed.py)
    "delayed": ("name", "delayed_type", "messages_delayed", "messages_delayed_bytes",
                "next_delayed_due"),
    "bindings": ("source", "destination", "destination_type", "routing_key"),
    "connections": ("name", "user", "vhost", "channels", "state"),
    "channels": ("name", "user", "vhost", "consumer_count", "messages_unacknowledged",
                 "prefetch_count"),
    "consumers": ("queue.name", "consumer_tag", "channel_details.name", "ack_required",
                  "prefetch_count"),
    "users": ("name", "tags"),
    "vhosts": ("name", "messages"),
    "policies": ("name", "pattern", "apply-to", "priority", "definition"),
    "permissions": ("user", "vhost", "configure", "write", "read"),
}
PER_VHOST = ("queues", "exchanges", "bindings", "consumers", "policies", "delayed")


class UsageError(Exception):
    """Bad arguments argparse cannot see: exit 2."""


def dig(item: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(item, dict) and part in item:
            item = item[part]
        elif isinstance(item, dict) and path in item:  # a key with a dot in it
            return item[path]
        else:
            return None
    return item


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    cells = [list(columns), *([cell(dig(row, c)) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
            for line in cells]


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, cell(value))


def select(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    for column, pattern in args.filter:
        rows = [r for r in rows if fnmatch.fnmatchcase(cell(dig(r, column)), pattern)]
    if args.sort:
        rows = sorted(rows, key=lambda r: _sort_key(dig(r, args.sort)), reverse=args.reverse)
    elif args.reverse:
        rows = list(reversed(rows))
    return rows


def _list_path(what: str, vhost: str | None) -> str:
    if what == "delayed":
        what = "exchanges"
    if vhost is None:
        return f"/api/{what}"
    if what in PER_VHOST:
        return f"/api/{what}/{q(vhost)}"
    if what == "permissions":
        return f"/api/vhosts/{q(vhost)}/permissions"
    return f"/api/{what}"


def do_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    rows = api.get(_list_path(args.what, args.vhost))
    if not isinstance(rows, list):
        raise ApiError(f"unexpected answer for {args.what} (not a list)")
    if args.what == "delayed":
        rows = [r for r in rows if isinstance(r, dict) and r.get("type") == "x-delayed-message"]
    if args.vhost is not None and args.what not in PER_VHOST and args.what != "permissions":
        key = "name" if args.what == "vhosts" else "vhost"
        rows = [r for r in rows if r.get(key) == args.vhost]
    rows = select(rows, args)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True), file=out)
        return 0
    columns = tuple(args.columns.split(",")) if args.columns else COLUMNS[args.what]
    if args.vhost is None and args.what in PER_VHOST and not args.columns:
        columns = ("queue.vhost" if args.what == "consumers" else "vhost", *columns)
    for line in table(rows, columns):
        print(line, file=out)
    return 0


def _argument(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def do_declare(api: Api, args: argparse.Namespace) -> str:
    arguments = {k: _argument(v) for k, v in args.argument}
    vhost = q(args.vhost)
    if args.kind == "binding":
        if not args.source or not args.destination:
            raise UsageError("declare binding needs --source EXCHANGE and --destination NAME")
        kind = "q" if args.destination_type == "queue" else "e"
        api.request("POST", f"/api/bindings/{vhost}/e/{q(args.source)}/{kind}/"
                    f"{q(args.destination)}",
                    {"routing_key": args.routing_key, "arguments": arguments})
        return (f"bound {args.destination_type} '{args.destination}' to exchange"
                f" '{args.source}' with routing key '{args.routing_key}'")
    if not args.name:
        raise UsageError(f"declare {args.kind} needs a NAME")
    body: dict[str, Any] = {"durable": not args.transient, "auto_delete": args.auto_delete,
                            "arguments": arguments}
    if args.kind == "exchange":
        body.update(type=args.type, internal=args.internal)
    api.request("PUT", f"/api/{args.kind}s/{vhost}/{q(args.name)}", body)
    return f"declared {args.kind} '{args.name}' in vhost '{args.vhost}'"


def do_delete(api: Api, args: argparse.Namespace) -> str:
    if args.kind == "user":
        api.request("DELETE", f"/api/users/{q(args.name)}")
        return f"deleted user '{args.name}'"
    conditions = [name for name, on in (("if-unused", args.if_unused),
                                        ("if-empty", args.if_empty)) if on]
    query = "?" + "&".join(f"{c}=true" for c in conditions) if conditions else ""
    api.request("DELETE", f"/api/{args.kind}s/{q(args.vhost)}/{q(args.name)}{query}")
    return f"deleted {args.kind} '{args.name}' in vhost '{args.vhost}'"


def do_publish(api: Api, args: argparse.Namespace) -> str:
    payload = args.payload if args.payload is not None else sys.stdin.read()
    properties: dict[str, Any] = {k: _argument(v) for k, v in args.property}
    if args.header:
        properties["headers"] = {k: _argument(v) for k, v in args.header}
    exchange = q(args.exchange or "amq.default")
    answer = api.request("POST", f"/api/exchanges/{q(args.vhost)}/{exchange}/publish",
                         {"properties": properties, "routing_key": args.routing_key,
                          "payload": payload, "payload_encoding": "string"})
    routed = isinstance(answer, dict) and answer.get("routed")
    where = f"exchange '{args.exchange}'" if args.exchange else "the default exchange"
    if routed:
        return f"published to {where} with routing key '{args.routing_key}': routed"
    return (f"published to {where} with routing key '{args.routing_key}': NOT routed (no"
            " queue bound with that key; the message was dropped)")


def do_get(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    mode = "ack_requeue_false" if args.remove else "ack_requeue_true"
    messages = api.request("POST", f"/api/queues/{q(args.vhost)}/{q(args.queue)}/get",
                           {"count": args.count, "ackmode": mode, "encoding": "auto",
                            "truncate": 50000})
    if args.json:
        print(json.dumps(messages, indent=2, sort_keys=True), file=out)
    else:
        columns = ("routing_key", "exchange", "message_count", "redelivered", "payload_bytes",
                   "payload")
        for line in table(messages or [], columns):
            print(line, file=out)
    return 0


def _status(api: Api) -> dict[str, Any]:
    overview = api.get("/api/overview")
    nodes = api.get("/api/nodes")
    node = nodes[0] if isinstance(nodes, list) and nodes else {}
    totals = overview.get("queue_totals") or {}
    return {
        "product": overview.get("product_name", "RabbitMQ"),
        "version": overview.get("product_version") or overview.get("rabbitmq_version"),
        "node": overview.get("node"),
        "uptime_seconds": int(node.get("uptime", 0)) // 1000,
        "memory_bytes": node.get("mem_used"),
        "disk_free_bytes": node.get("disk_free"),
        "alarms": [a for a, on in (("memory", node.get("mem_alarm")),
                                   ("disk", node.get("disk_free_alarm"))) if on],
        "listeners": [f"{entry.get('protocol')} {entry.get('ip_address')}:{entry.get('port')}"
                      for entry in overview.get("listeners") or []],
        "messages": totals.get("messages", 0),
        "messages_ready": totals.get("messages_ready", 0),
        "messages_unacknowledged": totals.get("messages_unacknowledged", 0),
        "objects": overview.get("object_totals") or {},
    }


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}h {minutes}m {seconds}s"


def do_status(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    found = _status(api)
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True), file=out)
        return 0
    objects = found["objects"]
    lines = [
        ("version", f"{found['product']} {found['version']} (node {found['node']})"),
        ("uptime", _duration(found["uptime_seconds"])),
        ("memory", f"{found['memory_bytes']} bytes" if found["memory_bytes"] is not None
         else "unknown"),
        ("disk free", f"{found['disk_free_bytes']} bytes"
         if found["disk_free_bytes"] is not None else "not reported"),
        ("alarms", ", ".join(found["alarms"]) or "none"),
        ("listeners", ", ".join(found["listeners"]) or "none"),
        ("messages", f"{found['messages']} ({found['messages_ready']} ready,"
                     f" {found['messages_unacknowledged']} unacked)"),
        ("objects", ", ".join(f"{v} {k}" for k, v in sorted(objects.items()))),
    ]
    for label, value in lines:
        print(f"{label + ':':<11} {value}", file=out)
    return 0


def _change(action: Callable[[Api, argparse.Namespace], str]) -> Callable[..., int]:
    def run(api: Api, args: argparse.Namespace, out: TextIO) -> int:
        done = action(api, args)
        print(json.dumps({"ok": True, "done": done}) if args.json else done, file=out)
        return 0
    return run


def _purge(api: Api, args: argparse.Namespace) -> str:
    api.request("DELETE", f"/api/queues/{q(args.vhost)}/{q(args.name)}/contents")
    return f"purged queue '{args.name}' in vhost '{args.vhost}'"


def _add_user(api: Api, args: argparse.Namespace) -> str:
    api.request("PUT", f"/api/users/{q(args.name)}",
                {"password": args.new_password, "tags": args.tags})
    return f"added user '{args.name}'" + (f" with tags {args.tags}" if args.tags else "")


def _set_permissions(api: Api, args: argparse.Namespace) -> str:
    api.request("PUT", f"/api/permissions/{q(args.vhost)}/{q(args.name)}",
                {"configure": args.configure, "write": args.write, "read": args.read})
    return (f"set permissions of '{args.name}' in vhost '{args.vhost}': configure"
            f" '{args.configure}' write '{args.write}' read '{args.read}'")


def _close(api: Api, args: argparse.Namespace) -> str:
    api.request("DELETE", f"/api/connections/{q(args.name)}", headers={"X-Reason": args.reason})
    return f"closed connection '{args.name}'"


def _ping(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    api.get("/api/overview")
    print(f"pong from {api.base} in {(time.monotonic() - started) * 1000:.0f} ms", file=out)
    return 0


COMMANDS: dict[str, Callable[[Api, argparse.Namespace, TextIO], int]] = {
    "list": do_list,
    "purge": _change(_purge),
    "delete": _change(do_delete),
    "declare": _change(do_declare),
    "add": _change(_add_user),
    "set": _change(_set_permissions),
    "close": _change(_close),
    "publish": _change(do_publish),
    "get": do_get,
    "status": do_status,
    "ping": _ping,
}


def _not_found(args: argparse.Namespace) -> str:
    """A 404 in words: which entity of which vhost."""
    kind = getattr(args, "kind", None)
    if args.command == "get":
        kind, name = "queue", args.queue
    elif args.command == "publish":
        kind, name = "exchange", args.exchange or "amq.default"
    elif args.command == "list":
        return f"vhost '{args.vhost}' not found"
    else:
        name = getattr(args, "name", None)
    if kind == "permissions":
        return f"user '{name}' or vhost '{args.vhost}' not found"
    if kind in ("user", "connection"):
        return f"{kind} '{name}' not found"
    if kind == "binding":
        return (f"exchange '{args.source}' or {args.destination_type} '{args.destination}' not"
                f" found in vhost '{args.vhost}'")
    return f"{kind} '{name}' not found in vhost '{getattr(args, 'vhost', '/')}'"


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    name = f"warrenmq {args.command}"
    try:
        api = Api.from_args(args.url, args.user, args.password)
        print(f"{name}: talking to {api.describe()}", file=err)
        return COMMANDS[args.command](api, args, out)
    except UsageError as exc:
        print(f"{name}: {exc}", file=err)
        return 2
    except ApiError as exc:
        print(f"{name}: {_not_found(args) if exc.status == 404 else exc}", file=err)
        if args.command == "ping":
            return 1
        return 1 if exc.status is not None else 2
    except KeyboardInterrupt:
        return 130
