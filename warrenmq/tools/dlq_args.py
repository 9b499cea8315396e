"""Arguments of ``warrenmq dlq inspect|replay`` (run by ``warrenmq.tools.dlq.run``).

Kept apart from ``dlq.py`` so that ``warrenmq serve`` builds its parser without importing
the AMQP client library into the broker process.
"""

from __future__ import annotations

import argparse

from warrenmq.config.units import parse_duration
from warrenmq.tools.replay_rules import REASONS

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_INSPECT_LIMIT = 100


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return number


def duration_seconds(value: str) -> int:
    """A duration with a unit, as everywhere in WarrenMQ ("90s", "30m", "2h", "1d")."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; give a duration with a unit: ms, s, m, h or d (\"30m\", \"2h\")"
        ) from None


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq inspect`` and ``dlq replay`` to the ``warrenmq`` command."""
    dlq = sub.add_parser("dlq", help="inspect or replay a dead letter queue (any AMQP broker)")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    inspect = actions.add_parser("inspect", help="list dead-lettered messages, removing none")
    inspect.add_argument("queue")
    inspect.add_argument("--url", default=DEFAULT_URL, help=f"(default {DEFAULT_URL})")
    inspect.add_argument("--limit", type=positive_int, default=DEFAULT_INSPECT_LIMIT,
                         help=f"messages to show (default {DEFAULT_INSPECT_LIMIT})")
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = actions.add_parser("replay", help="republish dead-lettered messages, with confirms")
    replay.add_argument("queue")
    replay.add_argument("--url", default=DEFAULT_URL, help=f"(default {DEFAULT_URL})")
    target = replay.add_mutually_exclusive_group()
    target.add_argument("--to-queue", action="store_true",
                        help="back to the queue each message died in, through the default"
                        " exchange, so no other queue gets a copy (default)")
    target.add_argument("--via-exchange", "--to-original", dest="via_exchange",
                        action="store_true",
                        help="re-route through the exchange and routing key each message was"
                        " first published with: every queue bound there gets a copy again"
                        " (a warning is printed)")
    target.add_argument("--exchange", help="to this exchange instead ('' = default exchange)")
    replay.add_argument("--routing-key",
                        help="with --exchange: this routing key (default: the original one)")
    only = replay.add_argument_group("which messages (default: all)")
    only.add_argument("--from-queue", metavar="QUEUE", help="only those that died in QUEUE")
    only.add_argument("--reason", choices=REASONS, help="only those that died for REASON")
    only.add_argument("--message-id", metavar="ID", help="only the message(s) with this id")
    only.add_argument("--older-than", metavar="DURATION", type=duration_seconds,
                      help="only those that died more than DURATION ago (\"30m\", \"2h\")")
    replay.add_argument("--dry-run", action="store_true",
                        help="publish nothing and remove nothing: print how many messages"
                        " would go to each target")
    replay.add_argument("--limit", type=positive_int,
                        help="at most N messages (default: all the queue holds at the start)")
    replay.add_argument("--rate", type=positive_float, help="at most R messages per second")
