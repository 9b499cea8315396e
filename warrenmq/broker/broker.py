"""Broker: the virtual hosts and users of one WarrenMQ node.

Built from a ``BrokerConfig`` by the composition root; nothing below it reads the config.
Authentication checks the configured users (PLAIN/AMQPLAIN credentials) and RabbitMQ's
loopback-only rule for users such as the default guest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from warrenmq.broker.vhost import VirtualHost


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str | None = None
    password_hash: str | None = None
    tags: tuple[str, ...] = ()
    loopback_only: bool = False
    vhosts: frozenset[str] | None = field(default=None)  # None: every vhost

    def check_password(self, password: str) -> bool:
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), password.encode())
        if self.password_hash is not None:
            return _check_rabbit_hash(self.password_hash, password)
        return False


def _check_rabbit_hash(encoded: str, password: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) + sha256(salt + pw))."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(hashlib.sha256(salt + password.encode()).digest(), digest)


class Broker:
    """Holds vhosts and users; shared by every connection of the node."""

    def __init__(
        self, vhosts: list[str] | None = None, users: list[User] | None = None
    ) -> None:
        self.vhosts: dict[str, VirtualHost] = {
            name: VirtualHost(name) for name in (vhosts if vhosts is not None else ["/"])
        }
        self.users: dict[str, User] = {
            u.name: u for u in (users if users is not None else [default_guest()])
        }

    def authenticate(self, username: str, password: str, *, loopback: bool) -> User | None:
        user = self.users.get(username)
        if user is None or not user.check_password(password):
            return None
        if user.loopback_only and not loopback:
            return None
        return user

    def vhost_for(self, user: User, name: str) -> VirtualHost | None:
        vhost = self.vhosts.get(name)
        if vhost is None:
            return None
        if user.vhosts is not None and name not in user.vhosts:
            return None
        return vhost


def default_guest() -> User:
    # RabbitMQ's well-known default account, usable from loopback only.
    return User("guest", password="guest", tags=("administrator",), loopback_only=True)  # noqa: S106
