"""``POST /api/queues/{vhost}/{name}/get``: fetch messages in-process, as RabbitMQ's
management "get messages" does over an internal channel.

Takes up to ``count`` messages with the queue's own basic.get path (so they count as
delivered and unacked meanwhile), renders each as RabbitMQ's JSON (``payload``,
``payload_encoding``, ``payload_bytes``, ``properties``, ``redelivered``,
``message_count``...), then settles them all by ``ackmode``: ``ack_requeue_true`` and
``reject_requeue_true`` return them to their original positions (marked redelivered,
as any requeue), ``ack_requeue_false`` acks them, ``reject_requeue_false`` rejects them
(dead-lettered when the queue has a DLX). No await happens in between, so no consumer
sees a message while it is held. Owns nothing; must not be used on the hot path.
"""

from __future__ import annotations

import base64
from typing import Any

from warrenmq.broker.vhost import VirtualHost
from warrenmq.management.api import jsonable
from warrenmq.management.auth import bad_request
from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import decode_properties
from warrenmq.queues.queue import Queue
from warrenmq.queues.ready import QueuedMessage

ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
            "reject_requeue_false")
ENCODINGS = ("auto", "base64")
MAX_COUNT = 10_000  # one request never holds more messages than this


def _int(body: dict[str, Any], key: str, default: int | None) -> int:
    value = body.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():  # rabbitmqadmin sends strings
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(f"{key} must be a non-negative integer")
    return value


def parse_request(body: Any) -> tuple[int, str, str, int | None]:
    """(count, ackmode, encoding, truncate) from the request body, or a 400."""
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    count = min(_int(body, "count", None), MAX_COUNT)
    ackmode = body.get("ackmode")
    if ackmode not in ACKMODES:
        raise bad_request("ackmode must be one of " + ", ".join(ACKMODES))
    encoding = body.get("encoding", "auto")
    if encoding not in ENCODINGS:
        raise bad_request("encoding must be auto or base64")
    truncate = _int(body, "truncate", 0) if body.get("truncate") is not None else None
    return count, str(ackmode), str(encoding), truncate


def message_json(qm: QueuedMessage, remaining: int, encoding: str,
                 truncate: int | None) -> dict[str, Any]:
    message = qm.message
    body = message.load_body()
    payload = body[:truncate] if truncate is not None else body
    text: str | None = None
    if encoding == "auto":
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    try:
        properties = decode_properties(qm.properties)
    except FieldError:
        properties = {}
    return {
        "payload_bytes": len(body),
        "redelivered": qm.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "message_count": remaining,
        "properties": jsonable(properties) if properties else [],  # RabbitMQ's empty list
        "payload": text if text is not None else base64.b64encode(payload).decode(),
        "payload_encoding": "string" if text is not None else "base64",
    }


def get_messages(vhost: VirtualHost, queue: Queue, count: int, ackmode: str,
                 encoding: str, truncate: int | None) -> list[dict[str, Any]]:
    taken: list[QueuedMessage] = []
    out: list[dict[str, Any]] = []
    try:
        for _ in range(count):
            qm = queue.get()
            if qm is None:
                break
            queue.track_unacked()
            taken.append(qm)
            out.append(message_json(qm, queue.message_count, encoding, truncate))
    finally:
        settle(vhost, queue, taken, ackmode)
    return out


def settle(vhost: VirtualHost, queue: Queue, taken: list[QueuedMessage], ackmode: str) -> None:
    if not taken:
        return
    if ackmode == "ack_requeue_false":
        queue.ack(taken)
    elif ackmode == "reject_requeue_false":
        queue.discard(taken)
    else:
        queue.requeue(taken)
    if queue.dead:
        vhost.route_dead_letters([queue])
    queue.dispatch()
