"""``warrenmq migrate``: move a running WarrenMQ's topology and messages into RabbitMQ.

1. Topology: WarrenMQ's definitions (``GET /api/definitions?format=warrenmq`` on
   ``--from-api``) become RabbitMQ's JSON with ``warrenmq definitions export``'s loss
   notes (``note: ...`` on stderr), durable queues get their type (``--queue-type``),
   and every entity is compared with the target's export (``--to-api``): a different
   one is a conflict and the run stops before changing anything (exit 2); identical
   ones are skipped; the rest is loaded with ``POST /api/definitions``.
2. Messages, queue by queue (``migrate_move``): at-least-once, acked on WarrenMQ only
   after the target confirmed; ``--rate`` caps messages per second; progress per queue
   and overall on stderr. A second run moves what is left.
3. A final check: each queue's messages left on WarrenMQ and held by the target.

``--dry-run`` does step 1's reading and comparing and lists what would move. Exit
status: 0 done and checked, 1 the check found messages left or a queue failed, 2 usage,
connection or conflict, 130 interrupted. Must not import the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from warrenmq.config.rabbit import notes_text
from warrenmq.protocol.methods import method_class
from warrenmq.tools.migrate_move import MigrateProgress, MoveError, Mover
from warrenmq.tools.migrate_topology import QUEUE_TYPES, Plan, entity_count, plan
from warrenmq.tools.progress import Pacer
from warrenmq.tools.wire import Client, Url, WireError

TIMEOUT = 15.0
PASSES = 3  # a queue still filling after this many passes: its publishers still run
_DECLARE = method_class("QueueDeclare")


class ToolError(Exception):
    """Usage, connection, HTTP or conflict: one line on stderr, exit status 2."""


def add_subparser(sub: Any) -> None:
    p = sub.add_parser(
        "migrate", help="move topology and messages into RabbitMQ",
        description="Move a running WarrenMQ's definitions and messages into a RabbitMQ"
        " (cluster) through its management API and AMQP, losing nothing.")
    p.add_argument("--from", dest="source", required=True, metavar="AMQP_URL",
                   help="this WarrenMQ, e.g. amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--to", dest="target", required=True, metavar="AMQP_URL",
                   help="a RabbitMQ node of the target cluster")
    p.add_argument("--from-api", metavar="HTTP_URL",
                   help="WarrenMQ's management URL (default: --from's host, port 15672,"
                   " its credentials)")
    p.add_argument("--to-api", metavar="HTTP_URL",
                   help="the target's management URL (default: like --from-api)")
    p.add_argument("--queue-type", choices=QUEUE_TYPES, default="auto",
                   help="type of durable queues that do not declare x-queue-type: auto"
                   " (quorum if it has a delivery limit, else classic; default), quorum,"
                   " classic")
    p.add_argument("--rate", type=float, metavar="MSG/S",
                   help="at most this many messages per second (default: no limit)")
    p.add_argument("--window", type=int, default=1000, metavar="N",
                   help="messages in flight per queue (prefetch; default 1000)")
    p.add_argument("--dry-run", action="store_true",
                   help="compare and list what would move; change nothing")


@dataclass(frozen=True)
class Http:
    base: str
    auth: str

    @classmethod
    def of(cls, api: str | None, amqp: Url) -> Http:
        if api is None:
            return cls(f"http://{amqp.host}:15672", _basic(amqp.user, amqp.password))
        parts = urlsplit(api)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ToolError(f"not an http(s) URL: {api!r}")
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
        user = parts.username if parts.username is not None else amqp.user
        password = parts.password if parts.password is not None else amqp.password
        return cls(f"{parts.scheme}://{host}{parts.path.rstrip('/')}", _basic(user, password))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,  # noqa: S310
                                     headers={"Authorization": self.auth,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ToolError(f"{method} {self.base}{path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ToolError(f"cannot reach {self.base} ({reason}); is the management"
                            " listener on? give its URL with --from-api/--to-api") from None
        return json.loads(text) if text.strip() else None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if (args.rate is not None and args.rate <= 0) or args.window < 1:
            raise ToolError("--rate and --window must be greater than 0")
        try:
            source, target = Url.parse(args.source), Url.parse(args.target)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return asyncio.run(_main(args, source, target, out, err))
    except ToolError as exc:
        print(f"warrenmq migrate: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("\nwarrenmq migrate: interrupted; nothing unconfirmed was acked: run it again"
              " to move what is left", file=err)
        return 130


async def _main(args: argparse.Namespace, source: Url, target: Url, out: TextIO,
                err: TextIO) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await _migrate(args, source, target, out, err)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    except WireError as exc:
        raise ToolError(str(exc)) from None


async def _migrate(args: argparse.Namespace, source: Url, target: Url, out: TextIO,
                   err: TextIO) -> int:
    src_api, dst_api = Http.of(args.from_api, source), Http.of(args.to_api, target)
    ours = await asyncio.to_thread(src_api.request, "GET", "/api/definitions?format=warrenmq")
    theirs = await asyncio.to_thread(dst_api.request, "GET", "/api/definitions")
    result = plan(ours, theirs, args.queue_type,
                  sorted({source.password, target.password}))
    if result.notes:
        err.write(notes_text(result.notes))
    if result.conflicts:
        for conflict in result.conflicts:
            print(f"conflict: {conflict}", file=err)
        raise ToolError(f"refusing: {len(result.conflicts)} entit"
                        f"{'y' if len(result.conflicts) == 1 else 'ies'} on the target"
                        " differ from this broker's (listed above); nothing was changed")
    counts = await _depths(source, result.queues())
    total = sum(counts.values())
    if args.dry_run:
        _print_plan(result, counts, out)
        return 0
    uploaded = entity_count(result.upload)
    if uploaded:
        await asyncio.to_thread(dst_api.request, "POST", "/api/definitions", result.upload)
    print(f"topology: {uploaded} definition(s) loaded into the target, {result.present}"
          " already there", file=out)
    await _not_moved(src_api, set(result.queues()), err)
    before = await _depths(target, result.queues())
    progress = MigrateProgress(err, total)
    moved, failed = await _move_all(source, target, result.queues(), counts, args, progress)
    return await _final_check(target, src_api, result.queues(), before, moved, failed, out)


def _print_plan(result: Plan, counts: dict[tuple[str, str], int], out: TextIO) -> None:
    print(f"dry run: {entity_count(result.upload)} definition(s) would be loaded,"
          f" {result.present} already on the target", file=out)
    for (vhost, name), count in counts.items():
        kind = next((q.get("arguments", {}).get("x-queue-type", "classic")
                     for q in result.document["queues"]
                     if (q["vhost"], q["name"]) == (vhost, name)), "classic")
        print(f"  queue {name!r} in vhost {vhost!r} ({kind}): {count} message(s) would move",
              file=out)
    print(f"dry run: {sum(counts.values())} message(s) in {len(counts)} queue(s); nothing"
          " was changed", file=out)


async def _depth(client: Client, queue: str) -> int:
    ok = await client.call(_DECLARE(0, queue, True, False, False, False, False, {}))
    return int(ok.message_count)


async def _depths(url: Url, queues: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for vhost in dict.fromkeys(v for v, _ in queues):
        client = await Client.connect(url.with_vhost(vhost), TIMEOUT)
        try:
            for v, name in queues:
                if v == vhost:
                    out[(v, name)] = await _depth(client, name)
        finally:
            await client.close()
    return out


async def _not_moved(api: Http, moving: set[tuple[str, str]], err: TextIO) -> None:
    """Queues with messages whose messages do not move (transient, exclusive, streams)."""
    queues = await asyncio.to_thread(api.request, "GET", "/api/queues")
    for q in queues or []:
        if (q.get("vhost"), q.get("name")) not in moving and q.get("messages"):
            why = ("exclusive; its declarer recreates it" if q.get("exclusive") else
                   "not durable; its declarer recreates it" if not q.get("durable") else
                   "a stream: consuming it does not empty it")
            print(f"not moved: queue {q['name']!r} in vhost {q['vhost']!r}:"
                  f" {q['messages']} message(s) ({why})", file=err)


async def _move_all(source: Url, target: Url, queues: list[tuple[str, str]],
                    counts: dict[tuple[str, str], int], args: argparse.Namespace,
                    progress: MigrateProgress) -> tuple[dict[tuple[str, str], int], list[str]]:
    moved: dict[tuple[str, str], int] = {}
    failed: list[str] = []
    pacer = Pacer(args.rate)
    for vhost in dict.fromkeys(v for v, _ in queues):
        src = await Client.connect(source.with_vhost(vhost), TIMEOUT)
        dst = await Client.connect(target.with_vhost(vhost), TIMEOUT)
        try:
            mover = Mover(src, dst, pacer, progress, args.window)
            await mover.start()
            for v, name in queues:
                if v != vhost:
                    continue
                started, expected = time.monotonic(), counts[(v, name)]
                moved[(v, name)] = 0
                for _ in range(PASSES):
                    if expected <= 0:
                        break
                    try:
                        moved[(v, name)] += await mover.move(name, expected)
                    except MoveError as exc:
                        failed.append(f"queue {name!r} in vhost {vhost!r}: {exc}")
                        raise
                    expected = await _depth(src, name)
                progress.queue_done(vhost, name, moved[(v, name)], time.monotonic() - started)
        except MoveError:
            src.abort()  # unacked messages go back to the source queue
            break
        finally:
            await src.close()
            await dst.close()
    return moved, failed


async def _final_check(target: Url, api: Http, queues: list[tuple[str, str]],
                       before: dict[tuple[str, str], int], moved: dict[tuple[str, str], int],
                       failed: list[str], out: TextIO) -> int:
    left = {(q["vhost"], q["name"]): int(q.get("messages") or 0)
            for q in await asyncio.to_thread(api.request, "GET", "/api/queues") or []}
    there = await _depths(target, queues)
    print(f"{'VHOST':<10} {'QUEUE':<24} {'MOVED':>9} {'LEFT':>9} {'TARGET':>9}", file=out)
    problems = list(failed)
    for key in queues:
        vhost, name = key
        print(f"{vhost:<10} {name:<24} {moved.get(key, 0):>9} {left.get(key, 0):>9}"
              f" {there[key]:>9}", file=out)
        if left.get(key, 0):
            problems.append(f"queue {name!r} in vhost {vhost!r} still holds {left[key]}"
                            " message(s) here (held unacked by a consumer, waiting out a"
                            " retry delay, or still being published): run again")
        if there[key] < before[key] + moved.get(key, 0):
            problems.append(f"queue {name!r} in vhost {vhost!r} holds {there[key]} message(s)"
                            f" on the target, expected {before[key]} + {moved.get(key, 0)}"
                            " moved (did a consumer there take some already?)")
    for problem in problems:
        print(f"check: {problem}", file=out)
    total = sum(moved.values())
    if problems:
        print(f"migrate: moved {total} message(s); NOT complete", file=out)
        return 1
    print(f"migrate: moved {total} message(s); every migrated queue is empty here and the"
          " target holds its messages", file=out)
    return 0

