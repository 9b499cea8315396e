"""JSON shapes of the management API, as RabbitMQ's management plugin spells them.

Pure functions from broker/server objects to dicts: queues, exchanges, bindings,
connections, channels, consumers and the overview. Field names are RabbitMQ's for
every field we fill (``messages_ready``, ``message_stats.publish_details.rate``...);
fields we cannot know (Erlang memory, reductions) are left out rather than faked.
Owns no state; must not mutate what it reads.
"""

from __future__ import annotations

import base64
import hashlib
import platform
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from warrenmq import __version__
from warrenmq.broker.delays import is_delayed
from warrenmq.broker.vhost import VirtualHost
from warrenmq.exchange import Exchange
from warrenmq.exchange.registry import exchange_types_listing
from warrenmq.management.dedup import exchange_fields as dedup_exchange_fields
from warrenmq.management.dedup import queue_fields as dedup_queue_fields
from warrenmq.management.delayed import delayed_json
from warrenmq.management.edge import ChannelView, ConnectionView, ServerView
from warrenmq.management.stats import Stats
from warrenmq.queues.queue import Queue
from warrenmq.queues.stream import stream_fields

MANAGEMENT_VERSION = "3.10.8"  # the RabbitMQ management API release whose shapes we follow


def jsonable(value: Any) -> Any:
    """An AMQP field value as RabbitMQ's API shows it (bytes as text, times as seconds)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def _details(value: float) -> dict[str, float]:
    return {"rate": round(value, 2)}


def message_stats(counts: Mapping[str, int], rates: Mapping[str, float]) -> dict[str, Any]:
    """RabbitMQ's message_stats object: each counter with its ``_details.rate``."""
    fields = {
        "publish": "published",
        "deliver_get": "delivered",
        "ack": "acked",
        "redeliver": "redelivered",
        "get": "gets",
    }
    out: dict[str, Any] = {}
    for name, counter in fields.items():
        out[name] = counts[counter]
        out[f"{name}_details"] = _details(rates[counter])
    out["deliver"] = counts["delivered"] - counts["gets"]
    out["deliver_details"] = _details(max(0.0, rates["delivered"] - rates["gets"]))
    return out


# --------------------------------------------------------------------------- queues
def queue_json(queue: Queue, stats: Stats, node: str) -> dict[str, Any]:
    counts = {c: getattr(queue, c) for c in ("published", "delivered", "gets", "acked",
                                             "redelivered", "dead_lettered")}
    ready, unacked = queue.message_count, queue.unacked
    head = queue.head_enqueued_at()
    utilisation = stats.utilisation(queue)
    return {
        "name": queue.name,
        "vhost": queue.vhost,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive,
        "arguments": jsonable(queue.arguments),
        "node": node,
        "type": "classic",
        "state": "running",
        "policy": queue.policy,
        "effective_policy_definition": jsonable(queue.effective_policy_definition),
        "consumers": queue.consumer_count,
        "single_active_consumer_tag": queue.single_active_consumer_tag,
        "consumer_utilisation": utilisation,
        "consumer_capacity": utilisation if utilisation is not None else 0.0,
        "messages": ready + unacked,
        "messages_details": _details(0.0),
        "messages_ready": ready,
        "messages_ready_details": _details(0.0),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": _details(0.0),
        "message_bytes_ready": queue.ready_bytes,
        "message_bytes_ram": queue.resident_bytes,
        "head_message_timestamp": None if head is None else int(head),
        "message_stats": message_stats(counts, stats.queue_rates((queue.vhost, queue.name))),
        **stream_fields(queue),  # issue 14: type "stream", its offsets
        **dedup_queue_fields(queue),  # issue 13: its deduplication cache
    }


# --------------------------------------------------------------------------- exchanges
def exchange_json(vhost: VirtualHost, exchange: Exchange) -> dict[str, Any]:
    out = {
        "name": exchange.name,
        "vhost": vhost.name,
        "type": exchange.type_name,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": jsonable(exchange.arguments),
        "policy": exchange.policy,
        "user_who_performed_action": "",
        **dedup_exchange_fields(vhost, exchange),  # issue 13: its deduplication cache
    }
    if is_delayed(exchange):
        out.update(delayed_json(exchange))
    return out


def properties_key(routing_key: str, arguments: Mapping[str, Any]) -> str:
    """RabbitMQ's name for a binding in URLs: the quoted key, ``~`` and a hash of the
    arguments when there are any, or just ``~`` for an empty key without arguments."""
    if not arguments:
        return quote(routing_key, safe="") if routing_key else "~"
    digest = hashlib.md5(repr(sorted(jsonable(arguments).items())).encode(),
                         usedforsecurity=False).digest()
    return quote(routing_key, safe="") + "~" + base64.urlsafe_b64encode(digest).decode()[:22]


def bindings_json(vhost: VirtualHost) -> Iterator[dict[str, Any]]:
    """Every binding, the default exchange's implicit ones first (as RabbitMQ lists)."""
    for queue in vhost.queues.values():
        yield _binding(vhost, "", queue.name, "queue", queue.name, {})
    for exchange in vhost.exchanges.values():
        if not exchange.name:
            continue
        for destination, key, arguments in exchange.bindings():
            if isinstance(destination, Queue | Exchange):
                kind = "queue" if isinstance(destination, Queue) else "exchange"
                yield _binding(vhost, exchange.name, destination.name, kind, key, arguments)


def _binding(vhost: VirtualHost, source: str, destination: str, kind: str, key: str,
             arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": vhost.name,
        "destination": destination,
        "destination_type": kind,
        "routing_key": key,
        "arguments": jsonable(arguments),
        "properties_key": properties_key(key, arguments),
    }


# --------------------------------------------------------------------------- connections
def connection_name(conn: ConnectionView) -> str:
    """RabbitMQ's "peer -> local" name, e.g. ``127.0.0.1:50412 -> 127.0.0.1:5672``."""
    local = _address(conn, "sockname")
    return f"{conn.peer} -> {local[0]}:{local[1]}"


def _address(conn: ConnectionView, which: str) -> tuple[str, int]:
    transport = conn.transport
    found = transport.get_extra_info(which) if transport is not None else None
    return (str(found[0]), int(found[1])) if found else ("?", 0)


def connection_json(conn: ConnectionView, node: str, stats: Stats | None = None
                    ) -> dict[str, Any]:
    peer = _address(conn, "peername")
    local = _address(conn, "sockname")
    state = "blocked" if conn.blocked else ("running" if conn.state == "running" else
                                            conn.state)
    user = conn.user.name if conn.user is not None else ""
    return {
        "name": connection_name(conn),
        "node": node,
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": state,
        "user": user,
        "user_who_performed_action": user,
        "vhost": conn.vhost.name if conn.vhost is not None else None,
        "channels": len(conn.channels),
        "peer_host": peer[0],
        "peer_port": peer[1],
        "host": local[0],
        "port": local[1],
        **_tls(conn),
        "auth_mechanism": "PLAIN",
        "frame_max": conn.frame_max,
        "channel_max": conn.channel_max,
        "timeout": conn.heartbeat,
        "connected_at": int(conn.connected_at * 1000),
        "client_properties": jsonable(conn.client_properties),
        **_traffic(conn, stats),
    }


def listeners_json(server: ServerView, management_port: int | None) -> list[dict[str, Any]]:
    """The node's listeners as RabbitMQ lists them: ``amqp``, ``amqp/ssl``, ``http``,
    ``https``."""
    node = server.cluster_name
    tls = {c.port: c.protocol for c in server.tls_contexts}
    out = [{"node": node, "protocol": tls.get(p, "amqp"), "ip_address": "127.0.0.1",
            "port": p} for p in server.ports]
    if management_port is not None:
        out.append({"node": node, "protocol": tls.get(management_port, "http"),
                    "ip_address": "127.0.0.1", "port": management_port})
    return out


def _tls(conn: ConnectionView) -> dict[str, Any]:
    """``ssl`` and ``ssl_protocol`` as RabbitMQ names them (``tlsv1.3``)."""
    transport = conn.transport
    found = transport.get_extra_info("ssl_object") if transport is not None else None
    version = found.version() if found is not None else None
    return {"ssl": found is not None,
            "ssl_protocol": version.lower() if isinstance(version, str) else None}


def _traffic(conn: ConnectionView, stats: Stats | None) -> dict[str, Any]:
    """RabbitMQ's byte and packet counters of a connection, with rates over the last
    ~5 s (``stats``' samples); ``send_pend`` is what waits in the socket's buffer."""
    rates = stats.connection_rates(conn) if stats is not None else {}
    transport = conn.transport
    pending = transport.get_write_buffer_size() if transport is not None else 0
    return {
        "recv_oct": conn.recv_oct, "recv_cnt": conn.recv_cnt,
        "recv_oct_details": {"rate": rates.get("recv_oct", 0.0)},
        "send_oct": conn.send_oct, "send_cnt": conn.send_cnt,
        "send_oct_details": {"rate": rates.get("send_oct", 0.0)},
        "send_pend": pending,
    }


def _connection_details(conn: ConnectionView) -> dict[str, Any]:
    peer = _address(conn, "peername")
    return {"name": connection_name(conn), "peer_host": peer[0], "peer_port": peer[1]}


def channel_name(conn: ConnectionView, channel: ChannelView) -> str:
    return f"{connection_name(conn)} ({channel.number})"


def channel_json(conn: ConnectionView, channel: ChannelView, node: str) -> dict[str, Any]:
    user = conn.user.name if conn.user is not None else ""
    state = "running" if channel.state == "open" else channel.state
    if state == "running" and not channel.active:
        state = "flow"
    return {
        "name": channel_name(conn, channel),
        "number": channel.number,
        "node": node,
        "user": user,
        "user_who_performed_action": user,
        "vhost": conn.vhost.name if conn.vhost is not None else None,
        "state": state,
        "connection_details": _connection_details(conn),
        "consumer_count": len(channel.consumers),
        "messages_unacknowledged": len(channel.unacked),
        "messages_unconfirmed": len(channel.unsynced),
        "prefetch_count": channel.prefetch_count,
        "global_prefetch_count": channel.global_prefetch,
        "confirm": channel.confirm,
        "transactional": channel.tx is not None,
        "messages_uncommitted": channel.tx.messages_uncommitted if channel.tx else 0,
        "acks_uncommitted": channel.tx.acks_uncommitted if channel.tx else 0,
    }


def consumers_json(conn: ConnectionView, channel: ChannelView) -> Iterator[dict[str, Any]]:
    details = {
        "name": channel_name(conn, channel),
        "number": channel.number,
        "connection_name": connection_name(conn),
        "peer_host": _address(conn, "peername")[0],
        "peer_port": _address(conn, "peername")[1],
        "user": conn.user.name if conn.user is not None else "",
    }
    for consumer in list(channel.consumers.values()):
        queue = consumer.queue
        activity = queue.consumer_activity(consumer)  # up, single_active or waiting
        yield {
            "consumer_tag": consumer.tag,
            "queue": {"name": queue.name, "vhost": queue.vhost},
            "channel_details": details,
            "ack_required": not consumer.no_ack,
            "exclusive": consumer.exclusive,
            "prefetch_count": consumer.prefetch,
            "arguments": jsonable(consumer.arguments),
            "active": activity != "waiting",
            "activity_status": activity,
        }


# --------------------------------------------------------------------------- overview
def overview_json(server: ServerView, stats: Stats, management_port: int | None,
                  totals: Mapping[str, int], visible: list[VirtualHost]) -> dict[str, Any]:
    rates = stats.total_rates()
    queues = [q for v in visible for q in v.queues.values()]
    ready = sum(q.message_count for q in queues)
    unacked = sum(q.unacked for q in queues)
    mstats = message_stats(totals, rates)
    mstats["publish"] = totals["received"]
    mstats["publish_details"] = _details(rates["received"])
    node = server.cluster_name
    listeners = listeners_json(server, management_port)
    connections = list(server.connections)
    return {
        "management_version": MANAGEMENT_VERSION,
        "rates_mode": "basic",
        "product_name": "WarrenMQ",
        "product_version": __version__,
        "rabbitmq_version": MANAGEMENT_VERSION,
        "erlang_version": f"Python {platform.python_version()}",
        "cluster_name": node,
        "node": node,
        "exchange_types": exchange_types_listing(),
        "message_stats": mstats,
        "queue_totals": {
            "messages": ready + unacked,
            "messages_details": _details(0.0),
            "messages_ready": ready,
            "messages_ready_details": _details(0.0),
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": _details(0.0),
        },
        "object_totals": {
            "connections": len(connections),
            "channels": sum(len(c.channels) for c in connections),
            "exchanges": sum(len(v.exchanges) for v in visible),
            "queues": len(queues),
            "consumers": sum(q.consumer_count for q in queues),
        },
        "listeners": listeners,
        "alarms": {"memory": server.memory_alarm, "disk": server.disk_alarm},
    }
