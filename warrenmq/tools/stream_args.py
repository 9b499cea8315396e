"""Arguments of ``warrenmq stream info|replay`` (run by ``warrenmq.tools.stream.run``).

Kept apart from ``stream.py`` so that ``warrenmq serve`` builds its parser without
importing the AMQP client library into the broker process.
"""

from __future__ import annotations

import argparse

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_API = "http://guest:guest@127.0.0.1:15672"


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return number


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stream info`` and ``stream replay`` to the ``warrenmq`` command."""
    stream = sub.add_parser("stream", help="inspect a stream queue or replay part of it")
    actions = stream.add_subparsers(dest="stream_command", required=True)
    info = actions.add_parser("info", help="first/last offset, size, segments and the"
                              " consumers' committed offsets (management API)")
    info.add_argument("stream")
    info.add_argument("--api", default=DEFAULT_API, help=f"management URL (default {DEFAULT_API})")
    info.add_argument("--vhost", default="/", help="virtual host (default /)")
    info.add_argument("--json", action="store_true", help="print the JSON object")
    replay = actions.add_parser(
        "replay", help="copy a range of a stream into a queue, with confirms (resumable)")
    replay.add_argument("stream")
    replay.add_argument("--from", dest="start", required=True,
                        help="first, last, next, an offset, an ISO time"
                             " (2026-12-01T10:00:00Z) or an interval (30m, 2h, 7D)")
    replay.add_argument("--to-queue", required=True, help="the queue to copy into")
    replay.add_argument("--url", default=DEFAULT_URL, help=f"(default {DEFAULT_URL})")
    replay.add_argument("--until", type=int, help="stop after this offset (default: when"
                        " the stream has been idle for --idle seconds)")
    replay.add_argument("--idle", type=_positive_float, default=2.0,
                        help="seconds without a message that mean the end (default 2)")
    replay.add_argument("--batch", type=_positive_int, default=200,
                        help="messages published before waiting for their confirms"
                             " (default 200)")
    replay.add_argument("--state", help="checkpoint file (default:"
                        " .warrenmq-replay-STREAM-QUEUE.json in the current directory)")
    replay.add_argument("--restart", action="store_true",
                        help="ignore a checkpoint and start at --from again")
