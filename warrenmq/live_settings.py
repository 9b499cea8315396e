"""Settings a SIGHUP reload applies to a running broker: ``limits`` and ``auth``.

Composition-layer logic (it reads two configs and swaps the server's ``ServerSettings``,
which its connection guard reads too). Every field of ``limits`` and ``auth`` is live:
connections accepted after the reload get the new values -- what connection.tune offers
(frame_max, channel_max, heartbeat), max_message_size (checked per channel, as RabbitMQ
reads it when a channel opens), the node's max_connections, handshake_timeout -- while
open connections keep what they negotiated; max_handshakes and the failed-login
throttling apply at once. One exception is reported rather than applied: the TLS
handshake deadline of an amqps listener is fixed when the listener starts, so a changed
handshake_timeout reaches the TLS handshake only after a restart (the AMQP handshake
uses the new value at once). Must not touch sockets or await.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from warrenmq.config import BrokerConfig
from warrenmq.server.listener import Server

#: (config section, field) -> ServerSettings field (same name unless given)
LIVE: tuple[tuple[str, str], ...] = (
    ("limits", "frame_max"), ("limits", "channel_max"), ("limits", "heartbeat"),
    ("limits", "max_message_size"), ("limits", "max_connections"),
    ("limits", "handshake_timeout"), ("limits", "max_handshakes"),
    ("auth", "ssl_cert_login_from"), ("auth", "failed_login_threshold"),
    ("auth", "failed_login_window"), ("auth", "failed_login_delay"),
)
#: ServerSettings fields that hold seconds as floats
_SECONDS = frozenset({"handshake_timeout", "failed_login_window", "failed_login_delay"})


def _value(name: str, raw: Any) -> Any:
    return float(raw) if name in _SECONDS else raw


def apply_live_settings(server: Server, old: BrokerConfig, new: BrokerConfig
                        ) -> tuple[list[str], list[str]]:
    """Swap in the new ``limits``/``auth`` values; returns (changed, not applied live),
    each change as ``limits.max_message_size: 134217728 -> 1048576``."""
    changes: dict[str, Any] = {}
    changed: list[str] = []
    for section, name in LIVE:
        before = getattr(getattr(old, section), name)
        after = getattr(getattr(new, section), name)
        if before != after:
            changes[name] = _value(name, after)
            changed.append(f"{section}.{name}: {before} -> {after}")
    not_live: list[str] = []
    if "handshake_timeout" in changes and server.tls_ports:
        not_live.append("limits.handshake_timeout for the TLS handshake of the amqps"
                        " listeners (restart to apply; the AMQP handshake uses it now)")
    if changes:
        server.apply_settings(dataclasses.replace(server.settings, **changes))
    return changed, not_live
