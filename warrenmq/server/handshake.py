"""Channel 0: the connection handshake (start/tune/open) and connection.close.

AMQP 0-9-1 §2.2.4 with RabbitMQ's negotiation rules: the server proposes channel_max,
frame_max and heartbeat in connection.tune; the client's tune-ok may lower channel_max and
frame_max (0 meaning "no limit" takes the server's), never raise them (530 NOT_ALLOWED),
and its heartbeat value is final. Authentication failures answer 403 ACCESS_REFUSED with
connection.close (the authentication_failure_close capability); a vhost the user has no
permission entry for answers 530 NOT_ALLOWED, as RabbitMQ. connection.open binds the user
and vhost into the connection's logging context and logs ``connection_opened``.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

import structlog

from warrenmq import __version__
from warrenmq.errors import AccessRefused, CommandInvalid, NotAllowed, UnexpectedFrame
from warrenmq.protocol.fields import FieldError, decode_table
from warrenmq.protocol.methods import Method, method_class, method_frame
from warrenmq.server.tls import peer_identity

if TYPE_CHECKING:
    from warrenmq.server.connection import Connection

log = structlog.get_logger("warrenmq.connection")

FRAME_MIN_SIZE = 4096

Start = method_class("ConnectionStart")
StartOk = method_class("ConnectionStartOk")
SecureOk = method_class("ConnectionSecureOk")
Tune = method_class("ConnectionTune")
TuneOk = method_class("ConnectionTuneOk")
Open = method_class("ConnectionOpen")
OpenOk = method_class("ConnectionOpenOk")
Close = method_class("ConnectionClose")
CloseOk = method_class("ConnectionCloseOk")
UpdateSecret = method_class("ConnectionUpdateSecret")

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "consumer_priorities": False,
    "direct_reply_to": False,
}


def mechanisms(conn: Connection) -> list[str]:
    """PLAIN and AMQPLAIN; EXTERNAL first on a verify_peer TLS listener whose client
    presented a certificate (RabbitMQ's rabbitmq_auth_mechanism_ssl)."""
    if conn.tls is not None and conn.tls.verify_peer and conn.transport is not None \
            and conn.transport.get_extra_info("peercert"):
        return ["EXTERNAL", "PLAIN", "AMQPLAIN"]
    return ["PLAIN", "AMQPLAIN"]


def start_method(conn: Connection) -> Method:
    server = conn.server
    properties: dict[str, Any] = {
        "capabilities": CAPABILITIES,
        "product": "WarrenMQ",
        "version": __version__,
        "platform": f"Python {platform.python_version()}",
        "cluster_name": server.cluster_name,
        "copyright": "WarrenMQ contributors",
        "information": "Licensed under the Apache License 2.0",
    }
    return Start(0, 9, properties, " ".join(mechanisms(conn)).encode(), b"en_US")


def _credentials(mechanism: str, response: bytes) -> tuple[str, str]:
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise AccessRefused("malformed PLAIN response")
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        try:
            table, _ = decode_table(len(response).to_bytes(4, "big") + response, 0)
        except FieldError as exc:
            raise AccessRefused("malformed AMQPLAIN response") from exc
        login, password = table.get("LOGIN", ""), table.get("PASSWORD", "")
        return str(login), str(password)
    raise CommandInvalid(f"unknown authentication mechanism '{mechanism}'")


def _on_start_ok(conn: Connection, method: Method) -> None:
    conn.client_properties = dict(method.client_properties)
    caps = conn.client_properties.get("capabilities")
    conn.client_capabilities = dict(caps) if isinstance(caps, dict) else {}
    if method.mechanism not in mechanisms(conn):
        if method.mechanism not in ("PLAIN", "AMQPLAIN", "EXTERNAL"):
            raise CommandInvalid(f"unknown authentication mechanism '{method.mechanism}'")
        _refuse(conn, method.mechanism, "", "mechanism not offered on this listener")
        return
    if method.mechanism == "EXTERNAL":
        assert conn.transport is not None
        username = peer_identity(conn.transport, conn.settings.ssl_cert_login_from) or ""
        user = conn.server.broker.users.get(username)
        if user is not None and user.loopback_only and not conn.loopback:
            user = None
    else:
        username, password = _credentials(method.mechanism, method.response)
        user = conn.server.broker.authenticate(username, password, loopback=conn.loopback)
    if user is None:
        _refuse(conn, method.mechanism, username, "invalid credentials")
        return
    conn.user = user
    conn.state = "tune"
    settings = conn.settings
    conn.write(method_frame(0, Tune(settings.channel_max, settings.frame_max, settings.heartbeat)))


def _refuse(conn: Connection, mechanism: str, username: str, reason: str) -> None:
    """403 for a failed login, logged with the peer and counted; after repeated failures
    from one address the answer waits (the socket is not read meanwhile)."""
    log.warning("authentication_failed", user=username, mechanism=mechanism, reason=reason)
    error = AccessRefused(
        f"Login was refused using authentication mechanism {mechanism}."
        " For details see the broker logfile.", class_id=10, method_id=11)
    delay = conn.server.guard.login_failed(conn.peer.rpartition(":")[0], conn.loop.time())
    if not delay:
        raise error
    assert conn.transport is not None
    conn.transport.pause_reading()
    conn.state = "secure"  # nothing more is read; the close goes out after the delay
    conn.loop.call_later(delay, conn.context.run, conn.close_with, error)


def _on_tune_ok(conn: Connection, method: Method) -> None:
    settings = conn.settings
    channel_max = method.channel_max or settings.channel_max
    if channel_max > settings.channel_max:
        raise NotAllowed(
            f"negotiated channel_max = {channel_max} is higher than the maximum allowed"
            f" value ({settings.channel_max})"
        )
    frame_max = method.frame_max or settings.frame_max
    if frame_max < FRAME_MIN_SIZE:
        raise NotAllowed(f"frame_max={frame_max} < {FRAME_MIN_SIZE} min size")
    if frame_max > settings.frame_max:
        raise NotAllowed(f"frame_max={frame_max} > {settings.frame_max} max size")
    conn.channel_max = channel_max
    conn.frame_max = frame_max
    conn.reader.frame_max = frame_max
    conn.heartbeat = method.heartbeat
    conn.state = "open"


def _on_open(conn: Connection, method: Method) -> None:
    assert conn.user is not None
    name = method.virtual_host or conn.settings.default_vhost  # config: default_vhost
    vhost = conn.server.broker.vhost_for(conn.user, name)
    if vhost is None:
        if name in conn.server.broker.vhosts:
            raise NotAllowed(
                f"access to vhost '{name}' refused for user '{conn.user.name}'"
            )
        raise NotAllowed(f"vhost {name} not found")
    limit = conn.settings.max_connections
    if limit and sum(c.state == "running" for c in conn.server.connections) >= limit:
        raise NotAllowed(f"connection refused: node connection limit ({limit}) is reached")
    broker = conn.server.broker
    conn.server.guard.check_connection_limits(
        conn, vhost.name, conn.user.name,
        broker.vhost_limits.get(vhost.name, {}).get("max-connections"),
        broker.user_limits.get(conn.user.name, {}).get("max-connections"))
    conn.server.guard.opened(conn)
    conn.vhost = vhost
    conn.grant = conn.server.broker.grant(conn.user.name, vhost.name)
    conn.state = "running"
    conn.opened_at = conn.loop.time()
    conn.write(method_frame(0, OpenOk("")))
    conn.start_heartbeat()
    # runs inside the connection's context (data_received): bound for what follows
    structlog.contextvars.bind_contextvars(user=conn.user.name, vhost=vhost.name)
    props = conn.client_properties
    log.info("connection_opened", client_product=props.get("product"),
             client_version=props.get("version"), client_platform=props.get("platform"),
             connection_name=props.get("connection_name"), heartbeat=conn.heartbeat,
             frame_max=conn.frame_max, channel_max=conn.channel_max)


_EXPECTED = {
    "start": StartOk,
    "tune": TuneOk,
    "open": Open,
}
_HANDLERS = {StartOk: _on_start_ok, TuneOk: _on_tune_ok, Open: _on_open}


def on_connection_method(conn: Connection, method: Method) -> None:
    """Handle a method on channel 0 in the connection's current state."""
    cls = type(method)
    if cls is Close:
        log.debug("connection_close_by_client", reply_code=method.reply_code)
        if conn.close_reason is None:
            conn.close_reason = f"{method.reply_code} {method.reply_text}"
            conn.closed_by = "client"
        conn.closed_by_client()
        return
    if cls is CloseOk:
        return
    if conn.state == "running":
        if cls is UpdateSecret:
            conn.write(method_frame(0, method_class("ConnectionUpdateSecretOk")()))
            return
        raise CommandInvalid(f"unexpected method {method.NAME} on channel 0")
    expected = _EXPECTED.get(conn.state)
    if expected is None or cls is not expected:
        raise UnexpectedFrame(
            f"expected {expected.NAME if expected else 'nothing'} during handshake,"
            f" got {method.NAME}"
        )
    _HANDLERS[cls](conn, method)
