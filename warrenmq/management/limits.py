"""RabbitMQ's vhost and user limits over HTTP, and the security counters in /metrics.

Routes (as RabbitMQ's management API): ``GET /api/vhost-limits``,
``GET /api/vhost-limits/{vhost}``, ``PUT|DELETE /api/vhost-limits/{vhost}/{name}``
with ``{"value": N}`` (names ``max-connections``, ``max-queues``; -1 clears), and the
same under ``/api/user-limits/{user}/{name}`` (``max-connections``, ``max-channels``).
Reading needs ``monitoring``, changing needs ``administrator``. Also registers the
failed-login and refused-handshake counters with the /metrics registry. Owns no
state (the limits live in ``Broker``); must not touch connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warrenmq.management.admin import persist
from warrenmq.management.app import read_json
from warrenmq.management.auth import HttpError, bad_request, not_authorised, not_found

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer
    from warrenmq.server.guard import ConnectionGuard


class Guarded(Protocol):
    """What the security counters read of the server."""

    @property
    def guard(self) -> ConnectionGuard: ...


def add_limit_routes(app: web.Application, mgmt: ManagementServer) -> None:
    limits = Limits(mgmt)
    r = app.router
    for kind in ("vhost", "user"):
        r.add_get(f"/api/{kind}-limits", limits.list_all)
        r.add_get(f"/api/{kind}-limits/{{name}}", limits.list_all)
        r.add_put(f"/api/{kind}-limits/{{name}}/{{limit}}", limits.put)
        r.add_delete(f"/api/{kind}-limits/{{name}}/{{limit}}", limits.delete)
    mgmt.registry.register(SecurityCollector(cast("Guarded", mgmt.server)))


def _kind(request: web.Request) -> str:
    return "vhost" if request.path.startswith("/api/vhost-limits") else "user"


class Limits:
    def __init__(self, mgmt: ManagementServer) -> None:
        self.mgmt = mgmt
        self.broker = mgmt.server.broker

    def _table(self, kind: str) -> dict[str, dict[str, int]]:
        return self.broker.vhost_limits if kind == "vhost" else self.broker.user_limits

    async def list_all(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        if not p.monitor:
            raise not_authorised("Not monitor user")
        kind = _kind(request)
        name = request.match_info.get("name")
        table = self._table(kind)
        if name is not None and name not in (self.broker.vhosts if kind == "vhost"
                                             else self.broker.users):
            raise not_found()
        return web.json_response([
            {kind: key, "value": dict(value)} for key, value in sorted(table.items())
            if name is None or key == name])

    async def put(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request).require_admin()
        body = await read_json(request)
        if not isinstance(body, dict) or "value" not in body:
            raise bad_request('expected {"value": <integer>}')
        self._set(request, body["value"])
        return web.Response(status=204)

    async def delete(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request).require_admin()
        self._set(request, None)
        return web.Response(status=204)

    def _set(self, request: web.Request, value: Any) -> None:
        kind, name = _kind(request), request.match_info["name"]
        if name not in (self.broker.vhosts if kind == "vhost" else self.broker.users):
            raise not_found()
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad_request(f"limit value must be an integer, got {value!r}")
        try:
            self.broker.set_limit(kind, name, request.match_info["limit"], value)
        except ValueError as exc:
            raise HttpError(400, "bad_request", str(exc)) from None
        persist(self.mgmt.server)  # in the data directory before the answer


class SecurityCollector:
    """Failed logins, delayed logins, refused handshakes and handshakes in progress."""

    def __init__(self, server: Guarded) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        guard = self.server.guard
        for name, value, text in (
            ("warrenmq_auth_failed_logins", guard.failed_logins,
             "Logins refused (bad credentials, unknown user, loopback-only user)"),
            ("warrenmq_auth_delayed_logins", guard.delayed_logins,
             "Failed logins answered only after the failed-login delay"),
            ("warrenmq_handshakes_refused", guard.refused_handshakes,
             "Sockets closed at accept: too many connections in handshake"),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
        gauge = GaugeMetricFamily("warrenmq_connections_in_handshake",
                                  "Connections accepted but not yet open")
        gauge.add_metric([], len(guard.handshaking))
        yield gauge
