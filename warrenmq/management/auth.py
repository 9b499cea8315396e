"""HTTP basic authentication and RabbitMQ's management tags.

A request authenticates with one of the broker's users (``Broker.authenticate``) and
must carry a management tag, as RabbitMQ's management plugin requires
(rabbit_web_dispatch_access_control): ``management`` sees the vhosts it may open and
its own connections; ``monitoring`` sees every vhost and connection; ``administrator``
may also close others' connections and export/import definitions (``policymaker`` is
treated as ``management`` here). The loopback-only rule applies to HTTP as to AMQP.
Failures are ``HttpError``s with RabbitMQ 3.10.8's bodies and codes (checked against a
node): no credentials get 401 with ``WWW-Authenticate`` and an empty body; bad ones
(wrong password, unknown user, another scheme) 401 ``not_authorized`` "Login failed"
with ``WWW-Authenticate``; undecodable Basic credentials 400; a user without a
management tag 401 ``not_authorised`` "Not management user". Owns nothing; must not
cache credentials.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from warrenmq.broker.broker import Broker, User
from warrenmq.broker.vhost import VirtualHost

REALM = 'Basic realm="RabbitMQ Management"'
MANAGEMENT_TAGS = frozenset({"administrator", "monitoring", "policymaker", "management"})


class HttpError(Exception):
    """An error answered as RabbitMQ's ``{"error": ..., "reason": ...}`` JSON."""

    def __init__(self, status: int, error: str, reason: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}


def not_authorised(reason: str) -> HttpError:
    return HttpError(401, "not_authorised", reason)


def not_found(reason: str = "Not Found") -> HttpError:
    return HttpError(404, "Object Not Found", reason)


def bad_request(reason: str) -> HttpError:
    return HttpError(400, "bad_request", reason)


#: bad credentials, as RabbitMQ 3.10.8 words it
LOGIN_FAILED = HttpError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of one request and what its tags allow."""

    user: User
    broker: Broker

    @property
    def admin(self) -> bool:
        return "administrator" in self.user.tags

    @property
    def monitor(self) -> bool:
        return self.admin or "monitoring" in self.user.tags

    def require_admin(self) -> None:
        if not self.admin:
            raise not_authorised("Not administrator user")

    def sees_vhost(self, name: str) -> bool:
        return self.monitor or self.broker.vhost_for(self.user, name) is not None

    def visible_vhosts(self) -> list[VirtualHost]:
        return [v for v in self.broker.vhosts.values() if self.sees_vhost(v.name)]

    def vhost(self, name: str, *, write: bool = False) -> VirtualHost:
        """The named vhost if this user may see it (or act in it, with ``write``:
        administrators anywhere, others where they may open the vhost)."""
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise not_found()
        allowed = self.admin or self.broker.vhost_for(self.user, name) is not None
        if not allowed and not (self.monitor and not write):
            raise not_authorised("User not authorised to access virtual host")
        return vhost

    def sees_user_object(self, owner: str | None, *, delete: bool = False) -> bool:
        """Connections and channels: your own, or everyone's as monitoring (to read)
        or administrator (to close), as RabbitMQ's is_authorized_user."""
        if owner is not None and owner == self.user.name:
            return True
        return self.admin if delete else self.monitor


def authenticate(broker: Broker, header: str | None, *, loopback: bool) -> Principal:
    """The request's user from its ``Authorization: Basic`` header, or an HttpError."""
    if not header:  # RabbitMQ: the challenge alone, no body
        raise HttpError(401, "", "", {"WWW-Authenticate": REALM})
    credentials = _basic(header)
    if credentials is None:
        raise LOGIN_FAILED
    username, password = credentials
    user = broker.authenticate(username, password, loopback=True)
    if user is None:
        raise LOGIN_FAILED
    if user.loopback_only and not loopback:
        raise not_authorised("User can only log in via localhost")
    if not MANAGEMENT_TAGS.intersection(user.tags):
        raise not_authorised("Not management user")
    return Principal(user, broker)


def _basic(header: str) -> tuple[str, str] | None:
    """(user, password) of Basic credentials; None for another scheme (Login failed);
    400 for Basic credentials that do not decode (RabbitMQ 3.10.8: 400 too)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise bad_request("malformed Basic credentials in the Authorization header: expected"
                          " base64 of user:password") from None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None
