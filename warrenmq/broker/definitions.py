"""Durable definitions: the broker's durable exchanges, queues and bindings as a document.

The document has the shape of RabbitMQ's definitions JSON (``exchanges``, ``queues``,
``bindings`` lists with ``vhost``, ``name``, ``durable``, ``arguments``...), so the same
shape later serves export and import. ``snapshot`` takes only what survives a restart in
RabbitMQ: durable, non-exclusive entities, and bindings whose both ends are durable.
``restore`` recreates them in a fresh broker before any client connects. Argument values
that JSON cannot carry (bytes, Decimal, timestamps) are tagged, never dropped.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from warrenmq.broker.broker import Broker
from warrenmq.broker.vhost import STANDARD_EXCHANGES
from warrenmq.exchange import Exchange
from warrenmq.queues.queue import Queue

_SYSTEM = {name for name, _ in STANDARD_EXCHANGES} | {""}


def _to_json(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"__decimal__": str(value)}
    if isinstance(value, datetime):
        return {"__timestamp__": int(value.timestamp())}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        if set(value) == {"__decimal__"}:
            return Decimal(value["__decimal__"])
        if set(value) == {"__timestamp__"}:
            return datetime.fromtimestamp(value["__timestamp__"], tz=UTC)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def snapshot(broker: Broker) -> dict[str, Any]:
    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in broker.vhosts.values():
        for x in vhost.exchanges.values():
            if x.durable and x.name not in _SYSTEM:
                exchanges.append({
                    "vhost": vhost.name, "name": x.name, "type": x.type_name,
                    "durable": True, "auto_delete": x.auto_delete, "internal": x.internal,
                    "arguments": _to_json(x.arguments),
                })
        for q in vhost.queues.values():
            if q.durable and not q.exclusive:
                queues.append({
                    "vhost": vhost.name, "name": q.name, "durable": True,
                    "auto_delete": q.auto_delete, "arguments": _to_json(q.arguments),
                })
        for x in vhost.exchanges.values():
            if not x.durable or not x.name:
                continue
            for destination, key, args in x.bindings():
                if isinstance(destination, Queue):
                    if not destination.durable or destination.exclusive:
                        continue
                    kind = "queue"
                elif isinstance(destination, Exchange) and destination.durable:
                    kind = "exchange"
                else:
                    continue
                bindings.append({
                    "vhost": vhost.name, "source": x.name, "destination": destination.name,
                    "destination_type": kind, "routing_key": key, "arguments": _to_json(args),
                })
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def restore(broker: Broker, document: dict[str, Any]) -> None:
    """Recreate the document's entities; vhosts that no longer exist are skipped."""
    for x in document.get("exchanges", []):
        vhost = broker.vhosts.get(x["vhost"])
        if vhost is not None:
            vhost.declare_exchange(
                x["name"], x["type"], durable=True, auto_delete=x.get("auto_delete", False),
                internal=x.get("internal", False), arguments=_from_json(x.get("arguments", {})),
            )
    for q in document.get("queues", []):
        vhost = broker.vhosts.get(q["vhost"])
        if vhost is not None:
            vhost.declare_queue(
                q["name"], owner=None, durable=True, auto_delete=q.get("auto_delete", False),
                arguments=_from_json(q.get("arguments", {})),
            )
    for b in document.get("bindings", []):
        vhost = broker.vhosts.get(b["vhost"])
        if vhost is None:
            continue
        arguments = _from_json(b.get("arguments", {}))
        if b.get("destination_type") == "exchange":
            vhost.bind_exchange(b["destination"], b["source"], b["routing_key"], arguments)
        else:
            vhost.bind_queue(b["destination"], b["source"], b["routing_key"], arguments, None)
