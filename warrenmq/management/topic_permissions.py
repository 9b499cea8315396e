"""``/api/topic-permissions``: RabbitMQ's management endpoints for topic authorisation.

``GET /api/topic-permissions`` lists every record; ``GET``, ``PUT`` and ``DELETE`` on
``/api/topic-permissions/{vhost}/{user}`` read, set (one exchange per PUT, body
``{"exchange", "write", "read"}``) and clear (every exchange, or one with
``?exchange=``) a user's records in a vhost; ``/api/users/{user}/topic-permissions`` and
``/api/vhosts/{vhost}/topic-permissions`` list by user and by vhost. Administrators only,
as in RabbitMQ. A change takes effect on open connections at their next publish or bind
and is saved with the definitions. Owns nothing: the records live in the ``Broker``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq.broker import definitions
from warrenmq.broker.topic_permissions import TopicPermission
from warrenmq.management.app import read_json
from warrenmq.management.auth import Principal, bad_request, not_found

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer


def add_topic_permission_routes(app: web.Application, mgmt: ManagementServer) -> None:
    h = TopicPermissionHandlers(mgmt)
    r = app.router
    r.add_get("/api/topic-permissions", h.list_all)
    r.add_get("/api/topic-permissions/{vhost}/{user}", h.get)
    r.add_put("/api/topic-permissions/{vhost}/{user}", h.put)
    r.add_delete("/api/topic-permissions/{vhost}/{user}", h.delete)
    r.add_get("/api/users/{user}/topic-permissions", h.of_user)
    r.add_get("/api/vhosts/{vhost}/topic-permissions", h.of_vhost)


class TopicPermissionHandlers:
    def __init__(self, mgmt: ManagementServer) -> None:
        self.mgmt = mgmt

    def _admin(self, request: web.Request) -> Principal:
        p = self.mgmt.principal(request)
        p.require_admin()
        return p

    def _items(self, user: str | None = None, vhost: str | None = None
               ) -> Iterator[dict[str, Any]]:
        for (u, v), records in sorted(self.mgmt.broker.topic_permissions.items()):
            if (user is None or u == user) and (vhost is None or v == vhost):
                for t in sorted(records, key=lambda t: t.exchange):
                    yield {"user": u, "vhost": v, "exchange": t.exchange, "write": t.write,
                           "read": t.read}

    def _target(self, request: web.Request) -> tuple[str, str]:
        """The path's vhost and user; 404 when either does not exist."""
        vhost, user = request.match_info["vhost"], request.match_info["user"]
        broker = self.mgmt.broker
        if vhost not in broker.vhosts or user not in broker.users:
            raise not_found()
        return vhost, user

    def _changed(self) -> None:
        definitions.mark_changed(self.mgmt.broker)
        self.mgmt.server.definitions_changed()

    async def list_all(self, request: web.Request) -> web.Response:
        self._admin(request)
        return web.json_response(list(self._items()))

    async def get(self, request: web.Request) -> web.Response:
        self._admin(request)
        vhost, user = self._target(request)
        items = list(self._items(user, vhost))
        if not items:
            raise not_found()
        return web.json_response(items)

    async def of_user(self, request: web.Request) -> web.Response:
        self._admin(request)
        user = request.match_info["user"]
        if user not in self.mgmt.broker.users:
            raise not_found()
        return web.json_response(list(self._items(user=user)))

    async def of_vhost(self, request: web.Request) -> web.Response:
        self._admin(request)
        vhost = request.match_info["vhost"]
        if vhost not in self.mgmt.broker.vhosts:
            raise not_found()
        return web.json_response(list(self._items(vhost=vhost)))

    async def put(self, request: web.Request) -> web.Response:
        self._admin(request)
        body = await read_json(request)
        vhost, user = self._target(request)
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        exchange, write, read = (body.get(key) for key in ("exchange", "write", "read"))
        if not (isinstance(exchange, str) and isinstance(write, str) and isinstance(read, str)):
            raise bad_request("exchange, write and read are required strings")
        try:
            record = TopicPermission(exchange, write, read)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        broker = self.mgmt.broker
        existed = any(t.exchange == record.exchange
                      for t in broker.topic_permissions.get((user, vhost), []))
        broker.set_topic_permission(user, vhost, record)
        self._changed()
        return web.Response(status=204 if existed else 201)

    async def delete(self, request: web.Request) -> web.Response:
        self._admin(request)
        vhost, user = self._target(request)
        exchange = request.query.get("exchange")
        if not self.mgmt.broker.clear_topic_permission(user, vhost, exchange):
            raise not_found()
        self._changed()
        return web.Response(status=204)
