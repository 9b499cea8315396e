"""Arguments of ``warrenmq dlq inspect|replay`` (run by ``warrenmq.tools.dlq.run``).

Kept apart from ``dlq.py`` so that ``warrenmq serve`` builds its parser without importing
the AMQP client library into the broker process.
"""

from __future__ import annotations

import argparse

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_INSPECT_LIMIT = 100


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
    """Add ``dlq inspect`` and ``dlq replay`` to the ``warrenmq`` command."""
    dlq = sub.add_parser("dlq", help="inspect or replay a dead letter queue (any AMQP broker)")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    inspect = actions.add_parser("inspect", help="list dead-lettered messages, removing none")
    inspect.add_argument("queue")
    inspect.add_argument("--url", default=DEFAULT_URL, help=f"(default {DEFAULT_URL})")
    inspect.add_argument("--limit", type=_positive_int, default=DEFAULT_INSPECT_LIMIT,
                         help=f"messages to show (default {DEFAULT_INSPECT_LIMIT})")
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = actions.add_parser("replay", help="republish dead-lettered messages, with confirms")
    replay.add_argument("queue")
    replay.add_argument("--url", default=DEFAULT_URL, help=f"(default {DEFAULT_URL})")
    target = replay.add_mutually_exclusive_group()
    target.add_argument("--to-original", action="store_true",
                        help="to the exchange and routing key they died from (default)")
    target.add_argument("--exchange", help="to this exchange instead ('' = default exchange)")
    replay.add_argument("--routing-key",
                        help="with --exchange: this routing key (default: the original one)")
    replay.add_argument("--limit", type=_positive_int,
                        help="at most N messages (default: all the queue holds at the start)")
    replay.add_argument("--rate", type=_positive_float, help="at most R messages per second")
