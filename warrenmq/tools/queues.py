"""``warrenmq queues``: a table of queues from the management HTTP API, like
``rabbitmqctl list_queues``.

One GET of ``/api/queues/{vhost}`` (or ``/api/queues`` with ``--vhost ''``) per refresh
with the standard library's HTTP client and basic auth from the URL; prints name,
ready, unacked, consumers and the publish and deliver rates (messages per second over
the broker's last few seconds). ``--watch`` refreshes in place every ``--interval``
seconds until Ctrl-C (or ``--count`` refreshes). Works against RabbitMQ's management
plugin as well. Exit status: 0, or 2 for usage, connection and HTTP errors (one line on
stderr). Owns nothing; must not import the broker.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_URL = "http://guest:guest@127.0.0.1:15672"
TIMEOUT = 10.0
COLUMNS = ("NAME", "READY", "UNACKED", "CONSUMERS", "PUBLISH/S", "DELIVER/S")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


class ToolError(Exception):
    """A usage, connection or HTTP problem: reported in one line, exit status 2."""


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
        return number
    return parse


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``queues`` to the ``warrenmq`` command."""
    p = sub.add_parser("queues", help="list queues with depth, rates and consumers",
                       description="List queues from the management HTTP API.")
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"management URL with credentials (default {DEFAULT_URL})")
    p.add_argument("--vhost", default="/", help="virtual host ('' for all; default /)")
    p.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    p.add_argument("--interval", type=_positive(float), default=1.0,
                   help="seconds between refreshes with --watch (default 1)")
    p.add_argument("--count", type=_positive(int), default=None,
                   help="with --watch, stop after this many refreshes")


def _request(url: str, path: str) -> Any:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"not an http URL: {url!r}")
    host = parts.netloc.rpartition("@")[2]
    target = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + path, "", ""))
    request = urllib.request.Request(target)  # noqa: S310 - the scheme is checked above
    if parts.username is not None:
        credentials = f"{parts.username}:{parts.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        reason = exc.reason
        try:
            reason = json.loads(exc.read()).get("reason", reason)
        except (ValueError, AttributeError):
            pass
        raise ToolError(f"{target}: HTTP {exc.code} {reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        raise ToolError(f"cannot reach {target}: {why}") from exc


def _rate(queue: dict[str, Any], name: str) -> float:
    stats = queue.get("message_stats") or {}
    details = stats.get(f"{name}_details") or {}
    rate = details.get("rate", 0.0)
    return float(rate) if isinstance(rate, int | float) else 0.0


def rows(queues: list[dict[str, Any]], all_vhosts: bool) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for q in sorted(queues, key=lambda q: (str(q.get("vhost")), str(q.get("name")))):
        name = str(q.get("name", ""))
        if all_vhosts:
            name = f"{q.get('vhost', '')}:{name}"
        out.append((name, str(q.get("messages_ready", 0)),
                    str(q.get("messages_unacknowledged", 0)), str(q.get("consumers", 0)),
                    f"{_rate(q, 'publish'):.1f}", f"{_rate(q, 'deliver_get'):.1f}"))
    return out


def table(queues: list[dict[str, Any]], all_vhosts: bool) -> list[str]:
    lines = [COLUMNS, *rows(queues, all_vhosts)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in lines]


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    path = "/api/queues" + (f"/{quote(args.vhost, safe='')}" if args.vhost else "")
    refreshes = 0
    try:
        while True:
            queues = _request(args.url, path)
            if not isinstance(queues, list):
                raise ToolError("unexpected answer from the API (not a list)")
            if args.watch and out.isatty():
                out.write(CLEAR)
            stamp = time.strftime("%H:%M:%S")
            print(f"Listing queues for vhost {args.vhost or '(all)'} at {stamp} ...", file=out)
            for line in table(queues, not args.vhost):
                print(line, file=out)
            out.flush()
            refreshes += 1
            if not args.watch or (args.count is not None and refreshes >= args.count):
                return 0
            print(file=out)
            time.sleep(args.interval)
    except ToolError as exc:
        print(f"warrenmq queues: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        return 0
