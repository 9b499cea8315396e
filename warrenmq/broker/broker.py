"""Broker: the virtual hosts, users, permissions and policies of one WarrenMQ node.

Built by the composition root (from the config) and changed at run time through its
methods (a config reload, definitions import, the management API); nothing below it
reads the config. Authentication checks the users' passwords (PLAIN/AMQPLAIN
credentials; a plain password or RabbitMQ's salted SHA-256 hash) and RabbitMQ's
loopback-only rule for users such as the default guest. Authorisation is RabbitMQ's:
a user may open a vhost only with a permission entry for it, and each operation on an
exchange or queue is checked against that entry's regexes (``permissions.py``).

Owns: the vhost, user, permission and policy tables and the live ``Grant`` objects the
connections hold; ``on_user_deleted`` callbacks let the server close a deleted user's
connections (320 CONNECTION_FORCED, as RabbitMQ) without this layer knowing about
connections. Must not: touch sockets or await.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import structlog

from warrenmq.broker import delays
from warrenmq.broker.permissions import FULL_ACCESS, Grant, Permission
from warrenmq.broker.policies import Policy
from warrenmq.broker.topic_permissions import TopicPermission
from warrenmq.broker.vhost import VirtualHost

log = structlog.get_logger("warrenmq.broker")
VHOST_LIMITS = ("max-connections", "max-queues")
_DUMMY_HASH = base64.b64encode(bytes(36)).decode()
USER_LIMITS = ("max-connections", "max-channels")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str | None = None
    password_hash: str | None = None
    tags: tuple[str, ...] = ()
    loopback_only: bool = False

    def check_password(self, password: str) -> bool:
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), password.encode())
        if self.password_hash is not None:
            return _check_rabbit_hash(self.password_hash, password)
        return False


@dataclass(frozen=True, slots=True)
class VhostMetadata:
    """A vhost's description and tags (RabbitMQ's vhost metadata); kept, shown, saved."""

    description: str = ""
    tags: tuple[str, ...] = ()


def _check_rabbit_hash(encoded: str, password: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) + sha256(salt + pw))."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(hashlib.sha256(salt + password.encode()).digest(), digest)


class Broker:
    """Holds vhosts, users, permissions and policies; shared by every connection.

    ``permissions`` maps (user, vhost) to a ``Permission``; None (the default) gives
    every user given here full permission on every vhost given here, which is what
    callers that do not care about access control want.
    """

    def __init__(
        self,
        vhosts: list[str] | None = None,
        users: list[User] | None = None,
        permissions: Mapping[tuple[str, str], Permission] | None = None,
        topic_permissions: Mapping[tuple[str, str], list[TopicPermission]] | None = None,
    ) -> None:
        self.vhosts: dict[str, VirtualHost] = {
            name: VirtualHost(name) for name in (vhosts if vhosts is not None else ["/"])
        }
        self.users: dict[str, User] = {
            u.name: u for u in (users if users is not None else [default_guest()])
        }
        self._permissions: dict[tuple[str, str], Permission] = {}
        self._grants: dict[tuple[str, str], Grant] = {}
        #: bumped by every permission change (set, clear, a user deleted)
        self.permission_generation = 0
        #: RabbitMQ's vhost limits (max-connections, max-queues) and user limits
        #: (max-connections, max-channels): name -> {limit: value}; see set_limit
        self.vhost_limits: dict[str, dict[str, int]] = {}
        self.user_limits: dict[str, dict[str, int]] = {}
        #: description and tags of the vhosts that have any (set_vhost_metadata)
        self.vhost_metadata: dict[str, VhostMetadata] = {}
        #: called with a user's name after ``delete_user`` (the server closes connections)
        self.on_user_deleted: list[Callable[[str], None]] = []
        if permissions is None:
            permissions = {(u, v): FULL_ACCESS for u in self.users for v in self.vhosts}
        for (user, vhost), permission in permissions.items():
            self.set_permission(user, vhost, permission)
        #: (user, vhost) -> exchange -> TopicPermission (topic_permissions.py)
        self._topic_permissions: dict[tuple[str, str], dict[str, TopicPermission]] = {}
        for (user, vhost), records in (topic_permissions or {}).items():
            for record in records:
                self.set_topic_permission(user, vhost, record)

    # ----------------------------------------------------------------- authentication
    def authenticate(self, username: str, password: str, *, loopback: bool) -> User | None:
        user = self.users.get(username)
        if user is None:
            # the same work as a real check, so timing does not tell which names exist
            _check_rabbit_hash(_DUMMY_HASH, password)
            return None
        if not user.check_password(password):  # hmac.compare_digest: constant time
            return None
        if user.loopback_only and not loopback:
            return None
        return user

    def vhost_for(self, user: User, name: str) -> VirtualHost | None:
        """The vhost ``user`` may open (connection.open), or None: no such vhost, or the
        user has no permission entry for it."""
        vhost = self.vhosts.get(name)
        if vhost is None or (user.name, name) not in self._permissions:
            return None
        return vhost

    def grant(self, user: str, vhost: str) -> Grant:
        """The live permission of ``user`` in ``vhost``, shared by its connections."""
        key = (user, vhost)
        grant = self._grants.get(key)
        if grant is None:
            grant = self._grants[key] = Grant(user, vhost, self._permissions.get(key))
            grant.topics.replace(list(self._topic_permissions.get(key, {}).values()))
        return grant

    # ----------------------------------------------------------------- vhosts and users
    def add_vhost(self, name: str) -> VirtualHost:
        """Create a vhost (or return the existing one). A new vhost journals durable
        queues to the same message store as the others."""
        vhost = self.vhosts.get(name)
        if vhost is not None:
            return vhost
        if not isinstance(name, str) or not name:
            raise ValueError(f"vhost name: expected a non-empty string, got {name!r}")
        vhost = VirtualHost(name)
        template = next((v for v in self.vhosts.values() if v.store is not None), None)
        if template is not None and template.store is not None:
            vhost.attach_store(template.store, template.msg_ids, template.queue_memory_limit)
        vhost.streams = next((v.streams for v in self.vhosts.values() if v.streams), None)
        self.vhosts[name] = vhost
        log.info("vhost_added", vhost=name)
        return vhost

    def delete_vhost(self, name: str) -> VirtualHost | None:
        """Remove a vhost with its queues (their messages dropped from the store),
        exchanges, policies and permissions; returns it (None if there was none). Its
        connections are the caller's to close: this layer knows none."""
        vhost = self.vhosts.pop(name, None)
        if vhost is None:
            return None
        self.vhost_metadata.pop(name, None)
        self.vhost_limits.pop(name, None)
        for key in [key for key in self._permissions if key[1] == name]:
            self.clear_permission(*key)
        for key in [key for key in self._grants if key[1] == name]:
            self._grants.pop(key).update(None)
        for queue in list(vhost.queues.values()):
            vhost.remove_queue(queue, reason="vhost_deleted")
        for exchange in list(vhost.delayed):  # held delayed messages go too
            delays.discard(vhost, exchange)
        self.permission_generation += 1
        log.info("vhost_deleted", vhost=name)
        return vhost

    def set_vhost_metadata(self, name: str, metadata: VhostMetadata) -> None:
        """Set a vhost's description and tags (ValueError for an unknown vhost)."""
        if name not in self.vhosts:
            raise ValueError(f"no vhost '{name}'")
        if metadata == VhostMetadata():
            self.vhost_metadata.pop(name, None)
        else:
            self.vhost_metadata[name] = metadata

    def set_user(self, user: User) -> None:
        """Add a user or replace one (its open connections keep running)."""
        self.users[user.name] = user

    def delete_user(self, name: str) -> bool:
        """Remove a user and its permissions; its connections are closed by whoever
        listens on ``on_user_deleted``. False if there was no such user."""
        if self.users.pop(name, None) is None:
            return False
        self.user_limits.pop(name, None)
        for key in [key for key in self._permissions if key[0] == name]:
            self.clear_permission(*key)
        for key in [key for key in self._topic_permissions if key[0] == name]:
            self.clear_topic_permission(*key)
        for key in [key for key in self._grants if key[0] == name]:
            self._grants.pop(key).update(None)
        self.permission_generation += 1
        log.info("user_deleted", user=name)
        for callback in list(self.on_user_deleted):
            callback(name)
        return True

    # ----------------------------------------------------------------- limits
    def set_limit(self, kind: str, name: str, limit: str, value: int | None) -> None:
        """Set (or with None clear) a vhost or user limit; a negative value clears it
        too (RabbitMQ: -1 is "no limit"). Existing connections and queues stay."""
        allowed = VHOST_LIMITS if kind == "vhost" else USER_LIMITS
        if limit not in allowed:
            raise ValueError(f"unknown {kind} limit '{limit}' (known: {', '.join(allowed)})")
        table = self.vhost_limits if kind == "vhost" else self.user_limits
        known = self.vhosts if kind == "vhost" else self.users
        if name not in known:
            raise ValueError(f"no {kind} '{name}'")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"limit '{limit}': expected an integer, got {value!r}")
        entry = table.setdefault(name, {})
        if value is None or value < 0:
            entry.pop(limit, None)
        else:
            entry[limit] = value
        if not entry:
            del table[name]
        if kind == "vhost" and limit == "max-queues":
            self.vhosts[name].max_queues = entry.get(limit) if entry else None
        log.info("limit_set", kind=kind, name=name, limit=limit, value=value)

    # ----------------------------------------------------------------- permissions
    @property
    def permissions(self) -> Mapping[tuple[str, str], Permission]:
        """(user, vhost) -> Permission, read-only: change it with set/clear_permission."""
        return MappingProxyType(self._permissions)

    def set_permission(self, user: str, vhost: str, permission: Permission) -> None:
        """Give ``user`` ``permission`` in ``vhost`` (replacing any), effective at once."""
        if user not in self.users:
            raise ValueError(f"cannot set permissions: no user '{user}'")
        if vhost not in self.vhosts:
            raise ValueError(f"cannot set permissions: no vhost '{vhost}'")
        if not isinstance(permission, Permission):
            raise ValueError(f"expected a Permission, got {permission!r}")
        self._permissions[(user, vhost)] = permission
        grant = self._grants.get((user, vhost))
        if grant is not None:
            grant.update(permission)
        self.permission_generation += 1

    def clear_permission(self, user: str, vhost: str) -> bool:
        """Remove ``user``'s permission in ``vhost``: new connections there are refused
        and every operation of open ones is (403). False if there was none."""
        if self._permissions.pop((user, vhost), None) is None:
            return False
        grant = self._grants.get((user, vhost))
        if grant is not None:
            grant.update(None)
        self.permission_generation += 1
        return True

    # ----------------------------------------------------------------- topic permissions
    @property
    def topic_permissions(self) -> Mapping[tuple[str, str], list[TopicPermission]]:
        """(user, vhost) -> its topic permissions, one per exchange (a copy)."""
        return {key: list(records.values())
                for key, records in self._topic_permissions.items() if records}

    def set_topic_permission(self, user: str, vhost: str, record: TopicPermission) -> None:
        """Add or replace ``user``'s topic permission for ``record.exchange`` in ``vhost``;
        open connections are checked against it from their next publish or bind."""
        if user not in self.users:
            raise ValueError(f"cannot set topic permissions: no user '{user}'")
        if vhost not in self.vhosts:
            raise ValueError(f"cannot set topic permissions: no vhost '{vhost}'")
        if not isinstance(record, TopicPermission):
            raise ValueError(f"expected a TopicPermission, got {record!r}")
        self._topic_permissions.setdefault((user, vhost), {})[record.exchange] = record
        self._topics_changed(user, vhost)

    def clear_topic_permission(self, user: str, vhost: str, exchange: str | None = None
                               ) -> bool:
        """Remove ``user``'s topic permission for ``exchange`` in ``vhost`` (None: all of
        them there). False if there was none."""
        records = self._topic_permissions.get((user, vhost))
        if not records:
            return False
        if exchange is None:
            records.clear()
        elif records.pop(exchange, None) is None:
            return False
        self._topics_changed(user, vhost)
        return True

    def _topics_changed(self, user: str, vhost: str) -> None:
        grant = self._grants.get((user, vhost))
        if grant is not None:
            grant.topics.replace(list(self._topic_permissions.get((user, vhost), {}).values()))
        self.permission_generation += 1

    # ----------------------------------------------------------------- policies
    @property
    def policies(self) -> Mapping[tuple[str, str], Policy]:
        """(vhost, name) -> Policy, read-only: change it with set/clear_policy."""
        return MappingProxyType({
            (vhost.name, policy.name): policy
            for vhost in self.vhosts.values() for policy in vhost.policies.values()
        })

    def set_policy(self, policy: Policy) -> None:
        """Add or replace a policy; it applies to existing queues and exchanges at once."""
        vhost = self.vhosts.get(policy.vhost)
        if vhost is None:
            raise ValueError(f"cannot set policy '{policy.name}': no vhost '{policy.vhost}'")
        vhost.set_policy(policy)

    def clear_policy(self, vhost: str, name: str) -> bool:
        """Remove a policy (entities fall back to another match or to their own
        arguments at once). False if there was none."""
        host = self.vhosts.get(vhost)
        return host is not None and host.clear_policy(name)


def default_guest() -> User:
    # RabbitMQ's well-known default account, usable from loopback only.
    return User("guest", password="guest", tags=("administrator",), loopback_only=True)  # noqa: S106
