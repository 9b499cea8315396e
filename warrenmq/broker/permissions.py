"""Permissions: RabbitMQ's access control for exchanges and queues inside a vhost.

A user may use a vhost only if it has a permission entry for it (connection.open
answers 530 otherwise). The entry holds three regular expressions, ``configure``,
``write`` and ``read``, matched against the name of the resource an operation touches,
the way RabbitMQ's internal backend matches them (``re:run(Name, Regex)``): a search,
not a full match, so ``.*`` allows everything, ``^amq\\.gen`` allows names with that
prefix, and anchors are the author's to write. The empty string stands for ``^$``
and so matches no resource (names are never empty: the default exchange is checked as
``amq.default``). Which operation needs which permission on what follows RabbitMQ's
access-control table; the server's method handlers ask (``Grant.check``) before acting.

Owns: ``Permission`` (the three compiled regexes) and ``Grant``, the live permission of
one user in one vhost that every connection of that user to that vhost shares, with
the write decisions for basic.publish cached by exchange name so the publish path pays
a set lookup, not a regex. The broker updates a grant in place when the permission is
set or cleared, which empties the cache.

Must not: know about sockets, channels or the config file; decide anything about
authentication (the broker checks passwords).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from warrenmq.broker.topic_permissions import TopicRules
from warrenmq.errors import AccessRefused

Access = Literal["configure", "write", "read"]
ResourceKind = Literal["exchange", "queue"]

#: Largest number of exchange names a grant remembers as writable before it starts over
#: (bounds the memory a client publishing to many names can make it use).
WRITE_CACHE_LIMIT = 1024


def _compile(which: str, pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ValueError(f"{which}: expected a regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern or "^$")
    except re.error as exc:
        raise ValueError(f"{which}: invalid regular expression {pattern!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Permission:
    """The configure / write / read regexes of one user in one vhost (compiled once)."""

    configure: str
    write: str
    read: str
    _compiled: tuple[re.Pattern[str], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        compiled = (
            _compile("configure", self.configure),
            _compile("write", self.write),
            _compile("read", self.read),
        )
        object.__setattr__(self, "_compiled", compiled)

    def allows(self, access: Access, name: str) -> bool:
        """Whether ``access`` to a resource called ``name`` is permitted."""
        index = 0 if access == "configure" else 1 if access == "write" else 2
        return self._compiled[index].search(name) is not None


#: Everything allowed: what RabbitMQ's ``set_permissions ".*" ".*" ".*"`` grants.
FULL_ACCESS = Permission(".*", ".*", ".*")


def named_exchange(value: object) -> str | None:
    """The exchange an argument such as alternate-exchange names (a string or UTF-8
    bytes in a field table), None if it names none."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def resource_name(kind: ResourceKind, name: str) -> str:
    """The name a permission is matched against (RabbitMQ checks "" as amq.default)."""
    return "amq.default" if kind == "exchange" and name == "" else name


class Grant:
    """What one user may do in one vhost right now; shared by its connections there."""

    __slots__ = ("permission", "topics", "user", "vhost", "writable")

    def __init__(self, user: str, vhost: str, permission: Permission | None) -> None:
        self.user = user
        self.vhost = vhost
        self.permission = permission
        #: exchange names basic.publish may write to (positive decisions only)
        self.writable: set[str] = set()
        #: topic permissions (topic_permissions.py); ``topics.rules`` empty: none apply
        self.topics = TopicRules(user, vhost)

    def update(self, permission: Permission | None) -> None:
        """A new permission (None: revoked); cached decisions are forgotten in place,
        so channels holding ``writable`` see the change on their next publish."""
        self.permission = permission
        self.writable.clear()

    def allows(self, access: Access, kind: ResourceKind, name: str) -> bool:
        permission = self.permission
        return permission is not None and permission.allows(access, resource_name(kind, name))

    def check(self, access: Access, kind: ResourceKind, name: str) -> None:
        """Raise 403 ACCESS_REFUSED worded as RabbitMQ's unless ``access`` is allowed."""
        if not self.allows(access, kind, name):
            raise AccessRefused(
                f"access to {kind} '{resource_name(kind, name)}' in vhost '{self.vhost}'"
                f" refused for user '{self.user}'"
            )

    def check_publish(self, exchange: str, exists: bool) -> None:
        """basic.publish's write check (cold: the caller looked in ``writable`` first).

        Only existing exchanges are remembered, so publishing to made-up names cannot
        grow the cache; a publish to a missing exchange fails with 404 anyway."""
        self.check("write", "exchange", exchange)
        if exists:
            if len(self.writable) >= WRITE_CACHE_LIMIT:
                self.writable.clear()
            self.writable.add(exchange)
