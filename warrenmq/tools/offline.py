"""Offline tools, for a stopped broker: ``warrenmq data delete-queue|delete-exchange`` and
``warrenmq hash-password``.

``data delete-queue NAME`` / ``data delete-exchange NAME`` remove a durable queue or
exchange (and every binding to or from it) from a data directory's saved definitions,
holding the directory's lock (so never under a running broker). A deleted queue's
messages are dropped when the broker next starts (recovery drops the messages of queues
it has no definition for). This is the way out when the config file declares an entity
that conflicts with the durable one the data directory holds (exit 2 at start-up)
without the old config. The data directory defaults as in ``definitions export``.

``hash-password`` prints RabbitMQ's salted SHA-256 hash of a password (the password
from the argument, else one line of standard input, else a prompt on a terminal), for
a user's ``password_hash`` in the YAML config or a definitions file.

Exit status: 0 done, 2 for bad input, an unknown entity or a locked directory (one line
on stderr). Must not talk to a broker.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from warrenmq.config import BrokerConfig, ConfigError, load_config
from warrenmq.config.rabbit import hash_password
from warrenmq.storage import DataDirLock, DefinitionsStore, StorageError
from warrenmq.tools.definitions import data_dir_problem


class OfflineError(Exception):
    """One line for the operator, exit status 2."""


def add_subparsers(sub: Any) -> None:
    data = sub.add_parser("data", help="change a stopped broker's data directory")
    actions = data.add_subparsers(dest="data_command", required=True)
    for kind in ("queue", "exchange"):
        p = actions.add_parser(f"delete-{kind}", help=f"delete a durable {kind} (and its"
                               " bindings) from a data directory, broker stopped")
        p.add_argument("name")
        p.add_argument("--vhost", default="/", help="virtual host (default /)")
        p.add_argument("--data-dir", help="data directory (default: the config's"
                       " storage.data_dir, ./warrenmq-data without --config)")
        p.add_argument("--config", help="config file naming the data directory")
    hashing = sub.add_parser("hash-password", help="print RabbitMQ's salted SHA-256 hash of"
                             " a password, for password_hash")
    hashing.add_argument("password", nargs="?",
                         help="the password (default: a line of standard input, or a prompt)")


def _data_dir(args: argparse.Namespace) -> Path:
    config = load_config(args.config) if args.config else BrokerConfig()
    path = Path(args.data_dir or config.storage.data_dir)
    problem = data_dir_problem(path)
    if problem is not None:
        raise OfflineError(f"{problem}. Give --data-dir the directory the broker ran with.")
    return path


def _delete(document: dict[str, Any], kind: str, vhost: str, name: str) -> tuple[int, int]:
    """Remove the entity and its bindings; (entities, bindings) removed."""
    section = f"{kind}s"
    entries = document.get(section) or []
    kept = [e for e in entries if not (e.get("vhost") == vhost and e.get("name") == name)]
    removed = len(entries) - len(kept)

    def touches(b: dict[str, Any]) -> bool:
        if b.get("vhost") != vhost:
            return False
        if kind == "exchange" and b.get("source") == name:
            return True
        return b.get("destination_type") == kind and b.get("destination") == name

    bindings = document.get("bindings") or []
    kept_bindings = [b for b in bindings if not touches(b)]
    document[section] = kept
    document["bindings"] = kept_bindings
    return removed, len(bindings) - len(kept_bindings)


def _known(document: dict[str, Any], kind: str, vhost: str) -> str:
    names = sorted(str(e.get("name")) for e in document.get(f"{kind}s") or []
                   if e.get("vhost") == vhost)
    return ", ".join(names) if names else "none"


def delete(args: argparse.Namespace) -> int:
    kind = args.data_command.removeprefix("delete-")
    data_dir = _data_dir(args)
    lock = DataDirLock(data_dir)
    lock.acquire()  # DataDirLocked while a broker runs on it
    try:
        store = DefinitionsStore(data_dir)
        document = store.load()
        removed, bindings = _delete(document, kind, args.vhost, args.name)
        if not removed:
            raise OfflineError(
                f"no durable {kind} '{args.name}' in vhost '{args.vhost}' in {data_dir}"
                f" (durable {kind}s there: {_known(document, kind, args.vhost)})")
        store.save(document)
    finally:
        lock.release()
    dropped = "; its messages are dropped when the broker next starts" if kind == "queue" else ""
    print(f"deleted {kind} '{args.name}' in vhost '{args.vhost}' from {data_dir}"  # noqa: T201
          f" ({bindings} binding(s) removed){dropped}")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise OfflineError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise OfflineError("no password: give it as an argument or on standard input")
    return line.rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    name = "warrenmq hash-password" if args.command == "hash-password" else \
        f"warrenmq data {args.data_command}"
    try:
        if args.command == "hash-password":
            password = _password(args)
            if not password:
                raise OfflineError("the password is empty")
            print(hash_password(password))  # noqa: T201
            return 0
        return delete(args)
    except OfflineError as exc:
        print(f"{name}: {exc}", file=sys.stderr)  # noqa: T201
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201
    except StorageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)  # noqa: T201
    except OSError as exc:
        print(f"{name}: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)  # noqa: T201
    return 2
