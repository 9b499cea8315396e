"""Arguments of the management commands (run by ``warrenmq.tools.admin.run``):
``warrenmq list|purge|delete|declare|add|set|close|publish|get|status|ping``.

Every command takes ``--url``, ``--user``, ``--password`` (defaults from
``WARRENMQ_URL`` / ``WARRENMQ_USER`` / ``WARRENMQ_PASSWORD``) and ``--json``. Kept apart
from ``admin.py`` so that the ``warrenmq`` parser stays cheap to build.
"""

from __future__ import annotations

import argparse
from typing import Any

from warrenmq.exchange.registry import exchange_type_names

LISTS = ("queues", "exchanges", "delayed", "bindings", "connections", "channels", "consumers",
         "users", "vhosts", "policies", "permissions")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("broker (management API)")
    group.add_argument("--url", help="management URL (default: $WARRENMQ_URL, else"
                       " http://127.0.0.1:15672)")
    group.add_argument("--user", help="login (default: $WARRENMQ_USER, else guest)")
    group.add_argument("--password", help="password (default: $WARRENMQ_PASSWORD, else guest)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


def _vhost(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vhost", default="/", help="virtual host (default /)")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return number


def add_subparsers(sub: Any) -> None:
    common = _common()

    def add(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=text + " (through the management HTTP API)",
            parents=[common])
        return parser

    listing = add("list", "list queues, exchanges, bindings, ... of a running broker")
    listing.add_argument("what", choices=LISTS)
    listing.add_argument("--vhost", help="only this virtual host (default: all)")
    listing.add_argument("--sort", metavar="COLUMN", help="sort by this column")
    listing.add_argument("--reverse", action="store_true", help="sort in descending order")
    listing.add_argument("--filter", metavar="COLUMN=GLOB", type=_key_value, action="append",
                         default=[], help="only rows whose COLUMN matches GLOB (repeatable)")
    listing.add_argument("--columns", metavar="A,B,...",
                         help="columns to show (any field of the API's objects, a.b for"
                         " nested ones)")

    purge = add("purge", "remove every ready message of a queue")
    purge.add_argument("kind", choices=("queue",))
    purge.add_argument("name")
    _vhost(purge)

    delete = add("delete", "delete a queue, an exchange or a user")
    delete.add_argument("kind", choices=("queue", "exchange", "user"))
    delete.add_argument("name")
    _vhost(delete)
    delete.add_argument("--if-unused", action="store_true", help="only if it has no consumers"
                        " (queue) or no bindings (exchange)")
    delete.add_argument("--if-empty", action="store_true", help="queue: only if it is empty")

    declare = add("declare", "declare a queue, an exchange or a binding")
    declare.add_argument("kind", choices=("queue", "exchange", "binding"))
    declare.add_argument("name", nargs="?", help="queue or exchange name (not for binding)")
    _vhost(declare)
    declare.add_argument("--type", default="direct", metavar="TYPE",
                         help="exchange type: " + ", ".join(exchange_type_names()) +
                         " or a plugin's type on the broker (it checks; default direct)")
    declare.add_argument("--transient", action="store_true", help="not durable")
    declare.add_argument("--auto-delete", action="store_true")
    declare.add_argument("--internal", action="store_true", help="exchange: internal")
    declare.add_argument("--argument", metavar="KEY=VALUE", type=_key_value, action="append",
                         default=[], help="an x-argument; VALUE is read as JSON if it can be"
                         " (numbers, true/false), else as a string (repeatable)")
    declare.add_argument("--source", help="binding: the exchange")
    declare.add_argument("--destination", help="binding: the queue or exchange")
    declare.add_argument("--destination-type", choices=("queue", "exchange"), default="queue")
    declare.add_argument("--routing-key", default="", help="binding key (default empty)")

    adding = add("add", "add (or update) a user")
    adding.add_argument("kind", choices=("user",))
    adding.add_argument("name")
    adding.add_argument("--new-password", required=True, metavar="PASSWORD",
                        help="the user's password")
    adding.add_argument("--tags", default="", help="comma-separated, e.g. administrator")

    setting = add("set", "set a user's permissions in a virtual host")
    setting.add_argument("kind", choices=("permissions",))
    setting.add_argument("name", metavar="USER")
    _vhost(setting)
    for what in ("configure", "write", "read"):
        setting.add_argument(f"--{what}", default=".*", metavar="REGEX",
                             help=f"{what} permission regex (default .*)")

    close = add("close", "close a client connection")
    close.add_argument("kind", choices=("connection",))
    close.add_argument("name", help="the connection's name, as list connections shows it")
    close.add_argument("--reason", default="closed by an operator (warrenmq close connection)")

    publish = add("publish", "publish one message (for debugging)")
    _vhost(publish)
    publish.add_argument("--exchange", default="", help="exchange (default: the default one)")
    publish.add_argument("--routing-key", required=True)
    publish.add_argument("--payload", help="message body (default: standard input)")
    publish.add_argument("--property", metavar="KEY=VALUE", type=_key_value, action="append",
                         default=[], help="a basic property, e.g. content_type=text/plain")
    publish.add_argument("--header", metavar="KEY=VALUE", type=_key_value, action="append",
                         default=[], help="a header (repeatable)")

    getting = add("get", "fetch messages from a queue (for debugging)")
    getting.add_argument("queue")
    _vhost(getting)
    getting.add_argument("--count", type=_count, default=1, help="messages (default 1)")
    getting.add_argument("--remove", action="store_true",
                         help="ack them (default: they go back to the queue)")

    add("status", "version, uptime, memory, disk, alarms, listeners, message counts")
    add("ping", "exit 0 when the broker answers, 1 otherwise")
