"""Connection admission and login throttling: the bookkeeping behind the limits that
protect a broker from hostile or broken peers.

Owns: the set of connections still in their handshake (bounded by ``max_handshakes``,
so a flood of half-open sockets is refused at accept instead of starving real clients;
each is also closed at ``handshake_timeout``), the failed-login counters per peer
address (after ``failed_login_threshold`` failures within ``failed_login_window``
seconds, each further failure from that address is answered only after
``failed_login_delay`` seconds, with the socket no longer read meanwhile), and the
vhost/user limit checks of connection.open and channel.open (RabbitMQ's vhost and user
limits: 530 NOT_ALLOWED with RabbitMQ's texts). Totals are read by ``/metrics``.
Must not: touch the hot path; everything here runs once per connection or login.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import structlog

from warrenmq.errors import NotAllowed

if TYPE_CHECKING:
    from warrenmq.server.connection import Connection
    from warrenmq.server.settings import ServerSettings

log = structlog.get_logger("warrenmq.guard")
_REFUSAL_LOG_INTERVAL = 5.0  # seconds between handshake_refused lines


class ConnectionGuard:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.handshaking: set[Connection] = set()
        self.refused_handshakes = 0  # sockets closed at accept: too many handshakes
        self.failed_logins = 0
        self.delayed_logins = 0  # failures answered after the delay
        self._failures: dict[str, deque[float]] = {}
        self._refusal_logged = -_REFUSAL_LOG_INTERVAL

    # ----------------------------------------------------------------- handshakes
    def admit(self, conn: Connection) -> bool:
        limit = self.settings.max_handshakes
        if limit and len(self.handshaking) >= limit:
            self.refused_handshakes += 1
            now = conn.loop.time()
            if now - self._refusal_logged >= _REFUSAL_LOG_INTERVAL:
                self._refusal_logged = now
                log.warning("handshake_refused", in_handshake=len(self.handshaking),
                            max_handshakes=limit, refused_total=self.refused_handshakes)
            return False
        self.handshaking.add(conn)
        return True

    def opened(self, conn: Connection) -> None:
        self.handshaking.discard(conn)

    def left(self, conn: Connection) -> None:
        self.handshaking.discard(conn)

    # ----------------------------------------------------------------- logins
    def login_failed(self, address: str, now: float) -> float:
        """Count a failed login from ``address``; the delay before answering it."""
        self.failed_logins += 1
        window = self.settings.failed_login_window
        times = self._failures.setdefault(address, deque())
        times.append(now)
        while times and times[0] < now - window:
            times.popleft()
        if len(self._failures) > 10_000:  # forget the oldest addresses
            for key in list(self._failures)[:1000]:
                del self._failures[key]
        if len(times) > self.settings.failed_login_threshold:
            self.delayed_logins += 1
            return self.settings.failed_login_delay
        return 0.0

    # ----------------------------------------------------------------- limits
    def check_connection_limits(self, conn: Connection, vhost: str, user: str,
                                vhost_limit: int | None, user_limit: int | None) -> None:
        """RabbitMQ's vhost and user max-connections, at connection.open."""
        if vhost_limit is None and user_limit is None:
            return
        running = [c for c in conn.server.connections if c.state == "running" and c is not conn]
        if vhost_limit is not None and sum(
                c.vhost is not None and c.vhost.name == vhost for c in running) >= vhost_limit:
            raise NotAllowed(f"access to vhost '{vhost}' refused for user '{user}': "
                             f"connection limit ({vhost_limit}) is reached")
        if user_limit is not None and sum(
                c.user is not None and c.user.name == user for c in running) >= user_limit:
            raise NotAllowed(f"Connection refused for user '{user}'. User connection limit"
                             f" ({user_limit}) is reached")

    def check_channel_limit(self, conn: Connection) -> None:
        """RabbitMQ's user max-channels, at channel.open (over all the user's connections)."""
        if conn.user is None:
            return
        user = conn.user.name
        limit = conn.server.broker.user_limits.get(user, {}).get("max-channels")
        if limit is None:
            return
        count = sum(len(c.channels) for c in conn.server.connections
                    if c.user is not None and c.user.name == user and c.state == "running")
        if count >= limit:
            raise NotAllowed(f"number of channels opened for user '{user}' has reached the"
                             f" maximum allowed user limit of ({limit})",
                             class_id=20, method_id=10)
