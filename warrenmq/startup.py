"""Start-up messages for people: what failed and how to fix it, and the banner.

``StartupError`` turns an ``OSError`` raised while taking the data directory or opening
a listener into one sentence naming the part that failed (the data directory, the AMQP
listener on host:port, the management listener on host:port), the reason, and the fix
(the flag or config key to change). ``facts`` collects what an operator needs once the
broker is up (version, AMQP and management URLs, login, data directory, config file, hot
path); ``banner`` lays them out for a terminal; the same facts go into the one
``broker_started`` log event. Composition layer: reads the config and the server's
bound ports; must not start or stop anything.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

import warrenmq
from warrenmq import __version__
from warrenmq.config import BrokerConfig

if TYPE_CHECKING:
    from warrenmq.server.listener import Server

class StartupError(Exception):
    """The broker could not start: ``str()`` is the whole message (what, why, the fix)."""


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def data_dir_error(path: str, exc: OSError) -> StartupError:
    where = Path(path)
    try:
        a_file = where.exists() and not where.is_dir()
    except OSError:  # cannot even look: a parent is not searchable
        a_file = False
    if a_file:
        why = "it is a file, not a directory"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = f" ({exc.filename})" if exc.filename else ""
        why = f"permission denied{what}"
    else:
        why = _reason(exc) + (f" ({exc.filename})" if exc.filename else "")
    return StartupError(
        f"cannot use the data directory {path}: {why}. Give --data-dir a directory this"
        " user can write (or set storage.data_dir in the config file).")


def amqp_listener_error(host: str, port: int, exc: OSError) -> StartupError:
    fix = ("Is another broker (RabbitMQ?) listening there? Choose another port with"
           " --port N (0 = any free port) or listeners: in the config file."
           if exc.errno == errno.EADDRINUSE else
           "Check --host / --port (or listeners: in the config file).")
    return StartupError(f"cannot start the AMQP listener on {host}:{port}: {_reason(exc)}."
                        f" {fix}")


def management_listener_error(host: str, port: int, exc: OSError) -> StartupError:
    fix = ("Is RabbitMQ's management plugin (or another broker) using it? Choose another"
           " port with --management-port N (0 = any free port), or start without the"
           " HTTP listener with --no-management."
           if exc.errno == errno.EADDRINUSE else
           "Check management.host / --management-port, or use --no-management.")
    return StartupError(f"cannot start the management listener on {host}:{port}:"
                        f" {_reason(exc)}. {fix}")


def hot_path() -> tuple[str, str]:
    """``("compiled" | "pure", why)``: what ``warrenmq.hotpath`` selected at import."""
    return str(warrenmq.HOT_PATH), str(warrenmq.HOT_PATH_REASON)


def _url_host(host: str) -> str:
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - display only
    return f"[{host}]" if ":" in host else host


def facts(server: Server, config: BrokerConfig) -> dict[str, Any]:
    """What the banner and the ``broker_started`` event say."""
    hosts = [listener.host for listener in config.listeners]
    amqp = [f"amqp://{_url_host(h)}:{p}/" for h, p in zip(hosts, server.ports, strict=False)]
    management = None
    if server.management_port is not None:
        management = (f"http://{_url_host(config.management.host)}:"
                      f"{server.management_port}/")
    guest = next((u for u in config.users if u.name == "guest" and u.password == "guest"),  # noqa: S105
                 None)
    login = ("guest / guest (from this machine only)" if guest is not None and guest.loopback_only
             else "guest / guest" if guest is not None
             else "the users of the config file")
    source = config.source.file if config.source is not None else None
    return {
        "version": __version__,
        "amqp_urls": amqp,
        "ports": server.ports,
        "management_url": management,
        "management_port": server.management_port,
        "login": login,
        "data_dir": str(Path(config.storage.data_dir).resolve()),
        "config_file": source,
        "hot_path": hot_path()[0],
        "hot_path_reason": hot_path()[1],
    }


def banner(found: dict[str, Any]) -> str:
    """A few aligned lines for a person at a terminal."""
    rows = [
        ("AMQP", "  ".join(found["amqp_urls"])),
        ("management", found["management_url"] or "off (--no-management)"),
        ("login", found["login"]),
        ("data dir", found["data_dir"]),
        ("config", found["config_file"] or "none (built-in defaults; SIGHUP reloads nothing)"),
        ("hot path", f"{found['hot_path']} ({found['hot_path_reason']})"
         if found["hot_path_reason"] else found["hot_path"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"WarrenMQ {found['version']} is running (Ctrl-C or SIGTERM stops it)"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines) + "\n"
