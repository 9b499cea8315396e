"""The ``/api/*`` routes: RabbitMQ's management API subset, as request handlers.

Lists (``/api/queues``, ``/api/exchanges``, ``/api/bindings``, ``/api/connections``,
``/api/channels``, ``/api/consumers``, ``/api/vhosts``) honour RabbitMQ's ``columns``,
``sort`` and ``sort_reverse`` query parameters; single objects are addressed as
``/api/queues/{vhost}/{name}`` with the vhost URL-encoded (``/`` is ``%2F``). Actions
go through the domain (``VirtualHost`` methods, the broker's permission grants) and are
followed by the server's hooks (definitions saved, store commit kicked). Each handler
authenticates first, reads its body, then reads and changes broker state with no await
in between. Owns nothing; must not hold broker objects across requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq.broker import definitions
from warrenmq.broker.vhost import VirtualHost
from warrenmq.management import api
from warrenmq.management.admin import add_admin_routes, persist, vhost_json
from warrenmq.management.app import read_json
from warrenmq.management.auth import Principal, bad_request, not_authorised, not_found
from warrenmq.management.delayed import add_delayed_routes
from warrenmq.management.edge import ConnectionView
from warrenmq.management.health import add_health_routes
from warrenmq.management.listing import arrange, arrange_lazy
from warrenmq.management.messages import get_messages, parse_request
from warrenmq.management.replay import Replay, ReplayOptions, dead_letter_queues
from warrenmq.management.stats import Stats, broker_totals
from warrenmq.management.topic_permissions import add_topic_permission_routes
from warrenmq.management.topology import add_topology_routes
from warrenmq.queues.queue import Queue

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

CONNECTION_FORCED = 320
#: queue list fields read straight off the queue, so a page sorted by them renders
#: only its own items
QUEUE_KEYS: dict[str, Callable[[Queue], Any]] = {
    "name": lambda q: q.name, "vhost": lambda q: q.vhost,
    "messages_ready": lambda q: q.message_count,
    "messages_unacknowledged": lambda q: q.unacked,
    "messages": lambda q: q.message_count + q.unacked,
    "consumers": lambda q: q.consumer_count,
}


def add_api_routes(app: web.Application, mgmt: ManagementServer) -> None:
    h = Handlers(mgmt)
    r = app.router
    r.add_get("/api/overview", h.overview)
    r.add_get("/api/whoami", h.whoami)
    r.add_get("/api/vhosts", h.vhosts)
    r.add_get("/api/queues", h.queues)
    r.add_get("/api/queues/{vhost}", h.queues)
    r.add_get("/api/queues/{vhost}/{name}", h.queue)
    r.add_put("/api/queues/{vhost}/{name}", h.declare_queue)
    r.add_delete("/api/queues/{vhost}/{name}", h.delete_queue)
    r.add_delete("/api/queues/{vhost}/{name}/contents", h.purge)
    r.add_post("/api/queues/{vhost}/{name}/get", h.get_messages)
    r.add_post("/api/queues/{vhost}/{name}/replay", h.replay)
    r.add_get("/api/exchanges", h.exchanges)
    r.add_get("/api/exchanges/{vhost}", h.exchanges)
    r.add_get("/api/exchanges/{vhost}/{name}", h.exchange)
    r.add_put("/api/exchanges/{vhost}/{name}", h.declare_exchange)
    r.add_delete("/api/exchanges/{vhost}/{name}", h.delete_exchange)
    r.add_get("/api/bindings", h.bindings)
    r.add_get("/api/bindings/{vhost}", h.bindings)
    r.add_get("/api/connections", h.connections)
    r.add_get("/api/connections/{name}", h.connection)
    r.add_delete("/api/connections/{name}", h.close_connection)
    r.add_get("/api/channels", h.channels)
    r.add_get("/api/channels/{channel}", h.channel)
    r.add_get("/api/vhosts/{vhost}/channels", h.channels)
    r.add_get("/api/vhosts/{vhost}/connections", h.vhost_connections)
    r.add_get("/api/connections/{name}/channels", h.channels)
    r.add_get("/api/consumers", h.consumers)
    r.add_get("/api/consumers/{vhost}", h.consumers)
    r.add_get("/api/definitions", h.export_definitions)
    r.add_post("/api/definitions", h.import_definitions)
    r.add_get("/api/warrenmq/dead-letter-queues", h.dead_letter_queues)
    add_topic_permission_routes(app, mgmt)
    add_admin_routes(app, mgmt)
    add_health_routes(app, mgmt, mgmt.data_dir)
    add_topology_routes(app, mgmt)
    add_delayed_routes(app, mgmt)


# --------------------------------------------------------------------------- listing
def listing(request: web.Request, items: Iterable[dict[str, Any]]) -> web.Response:
    """A list answer with RabbitMQ's sort, columns and (opt-in) pagination."""
    return web.json_response(arrange(request.query, items))


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean field; rabbitmqadmin sends "true"/"false" strings."""
    value = body.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false")
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    return body


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be a JSON object")
    return arguments


def _exchange_name(name: str) -> str:
    return "" if name == "amq.default" else name  # RabbitMQ's URL name of the default


# --------------------------------------------------------------------------- handlers
class Handlers:
    def __init__(self, mgmt: ManagementServer) -> None:
        self.mgmt = mgmt
        self.server = mgmt.server
        self.broker = mgmt.broker

    @property
    def node(self) -> str:
        return self.server.cluster_name

    def _vhosts(self, request: web.Request, p: Principal) -> list[VirtualHost]:
        name = request.match_info.get("vhost")
        return [p.vhost(name)] if name is not None else p.visible_vhosts()

    def _queue(self, request: web.Request, p: Principal, *, write: bool = False
               ) -> tuple[VirtualHost, Queue]:
        vhost = p.vhost(request.match_info["vhost"], write=write)
        queue = vhost.queues.get(request.match_info["name"])
        if queue is None:
            raise not_found()
        return vhost, queue

    def _check(self, p: Principal, vhost: VirtualHost, access: str, kind: str,
               name: str) -> None:
        """The user's AMQP permission in the vhost, as RabbitMQ's management applies it."""
        self.broker.grant(p.user.name, vhost.name).check(
            access, kind, name)  # type: ignore[arg-type]

    def _changed(self) -> None:
        persist(self.server)

    # ----------------------------------------------------------------- overview
    async def overview(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        self.mgmt.stats.refresh()
        out = api.overview_json(self.server, self.mgmt.stats, self.mgmt.port,
                                broker_totals(self.broker), p.visible_vhosts())
        if p.monitor:  # the history is broker-wide: only for those who see every vhost
            self.mgmt.history.decorate_overview(out, request.query)
        return web.json_response(out)

    async def whoami(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        return web.json_response({"name": p.user.name, "tags": list(p.user.tags)})

    async def vhosts(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        return listing(request, (vhost_json(v.name, self.server) for v in p.visible_vhosts()))

    # ----------------------------------------------------------------- queues
    async def queues(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        self.mgmt.stats.refresh()
        stats = self.mgmt.stats
        queues = [q for v in self._vhosts(request, p) for q in list(v.queues.values())]
        return web.json_response(arrange_lazy(
            request.query, queues, lambda q: api.queue_json(q, stats, self.node),
            name=lambda q: q.name, vhost=lambda q: q.vhost, keys=QUEUE_KEYS))

    async def queue(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        _, queue = self._queue(request, p)
        self.mgmt.stats.refresh()
        out = api.queue_json(queue, self.mgmt.stats, self.node)
        out["consumer_details"] = [
            item for c in list(self.server.connections) if c.vhost is not None
            for ch in list(c.channels.values()) for item in api.consumers_json(c, ch)
            if item["queue"] == {"name": queue.name, "vhost": queue.vhost}]
        self.mgmt.history.decorate_queue(out, queue, request.query)
        return web.json_response(out)

    async def declare_queue(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        body = _object(await read_json(request))
        vhost = p.vhost(request.match_info["vhost"], write=True)
        name = request.match_info["name"]
        self._check(p, vhost, "configure", "queue", name)
        existed = name in vhost.queues
        vhost.declare_queue(name, owner=None, durable=_flag(body, "durable", True),
                            auto_delete=_flag(body, "auto_delete", False),
                            arguments=_arguments(body))
        self._changed()
        return web.Response(status=204 if existed else 201)

    async def delete_queue(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost, queue = self._queue(request, p, write=True)
        self._check(p, vhost, "configure", "queue", queue.name)
        _, consumers = vhost.delete_queue(
            queue.name, owner=queue.exclusive_owner,
            if_unused=request.query.get("if-unused") == "true",
            if_empty=request.query.get("if-empty") == "true")
        for consumer in consumers:
            cancel = getattr(consumer, "cancelled_by_server", None)
            if cancel is not None:
                cancel()  # basic.cancel to consumers that asked for it
        self._changed()
        return web.Response(status=204)

    async def purge(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost, queue = self._queue(request, p, write=True)
        self._check(p, vhost, "read", "queue", queue.name)
        queue.purge()
        self.server.kick_commit()
        return web.Response(status=204)

    async def get_messages(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        count, ackmode, encoding, truncate = parse_request(await read_json(request))
        vhost, queue = self._queue(request, p, write=True)
        self._check(p, vhost, "read", "queue", queue.name)
        out = get_messages(vhost, queue, count, ackmode, encoding, truncate)
        self.server.kick_commit()
        return web.json_response(out)

    async def replay(self, request: web.Request) -> web.Response:
        """WarrenMQ's own: ``warrenmq dlq replay QUEUE`` for the dashboard (see replay.py:
        body {"dry_run", "target": "queue"|"exchange", "from_queue", "reason",
        "message_id", "older_than" (seconds), "count"})."""
        p = self.mgmt.principal(request)
        body = _object(await read_json(request))
        try:
            options = ReplayOptions.parse(body)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        vhost, queue = self._queue(request, p, write=True)
        self._check(p, vhost, "read", "queue", queue.name)
        result = await Replay(vhost, queue, options=options, writable=lambda x: self._writable(
            p, vhost, x)).run()
        self.server.kick_commit()
        return web.json_response(result.json())

    def _writable(self, p: Principal, vhost: VirtualHost, exchange: str) -> bool:
        grant = self.broker.grant(p.user.name, vhost.name)
        return grant.allows("write", "exchange", exchange)

    async def dead_letter_queues(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        out = []
        for vhost in p.visible_vhosts():
            for name, sources in sorted(dead_letter_queues(vhost).items()):
                queue = vhost.queues[name]
                out.append({"vhost": vhost.name, "name": name, "sources": sorted(sources),
                            "messages": queue.message_count + queue.unacked,
                            "messages_ready": queue.message_count})
        return web.json_response(out)

    # ----------------------------------------------------------------- exchanges
    async def exchanges(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        return listing(request, (api.exchange_json(v, x) for v in self._vhosts(request, p)
                                 for x in list(v.exchanges.values())))

    async def exchange(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"])
        exchange = vhost.exchanges.get(_exchange_name(request.match_info["name"]))
        if exchange is None:
            raise not_found()
        return web.json_response(api.exchange_json(vhost, exchange))

    async def declare_exchange(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        body = _object(await read_json(request))
        vhost = p.vhost(request.match_info["vhost"], write=True)
        name = _exchange_name(request.match_info["name"])
        kind = body.get("type")
        if not isinstance(kind, str):
            raise bad_request("type is required")
        self._check(p, vhost, "configure", "exchange", name)
        existed = name in vhost.exchanges
        vhost.declare_exchange(name, kind, durable=_flag(body, "durable", True),
                               auto_delete=_flag(body, "auto_delete", False),
                               internal=_flag(body, "internal", False),
                               arguments=_arguments(body))
        self._changed()
        return web.Response(status=204 if existed else 201)

    async def delete_exchange(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"], write=True)
        name = _exchange_name(request.match_info["name"])
        if name not in vhost.exchanges:
            raise not_found()
        self._check(p, vhost, "configure", "exchange", name)
        vhost.delete_exchange(name, if_unused=request.query.get("if-unused") == "true")
        self._changed()
        return web.Response(status=204)

    async def bindings(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        return listing(request, (b for v in self._vhosts(request, p)
                                 for b in api.bindings_json(v)))

    # ----------------------------------------------------------------- connections
    def _connections(self, p: Principal, *, delete: bool = False) -> list[ConnectionView]:
        return [c for c in list(self.server.connections)
                if c.vhost is not None and c.user is not None
                and p.sees_user_object(c.user.name, delete=delete)]

    def _find(self, request: web.Request, p: Principal, *, delete: bool = False
              ) -> ConnectionView:
        name = request.match_info["name"]
        for conn in list(self.server.connections):
            if conn.user is not None and api.connection_name(conn) == name:
                if not p.sees_user_object(conn.user.name, delete=delete):
                    raise not_authorised("User not authorised to access object")
                return conn
        raise not_found()

    def _stats(self) -> Stats:
        self.mgmt.stats.refresh()
        return self.mgmt.stats

    async def connections(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        stats = self._stats()
        return listing(request, (api.connection_json(c, self.node, stats)
                                 for c in self._connections(p)))

    async def connection(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        return web.json_response(api.connection_json(self._find(request, p), self.node,
                                                     self._stats()))

    async def close_connection(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        conn = self._find(request, p, delete=True)
        reason = request.headers.get("X-Reason", "Closed via management plugin")
        conn.close(CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}")
        return web.Response(status=204)

    async def channels(self, request: web.Request) -> web.Response:
        """All channels, or those of ``{vhost}`` or of connection ``{name}``."""
        p = self.mgmt.principal(request)
        if "name" in request.match_info:
            conns = [self._find(request, p)]
        else:
            vhost = request.match_info.get("vhost")
            conns = [c for c in self._connections(p) if vhost is None
                     or (c.vhost is not None and c.vhost.name == p.vhost(vhost).name)]
        return listing(request, (api.channel_json(c, ch, self.node) for c in conns
                                 for ch in list(c.channels.values())))

    async def channel(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        for conn in self._connections(p):
            for ch in list(conn.channels.values()):
                if api.channel_name(conn, ch) == request.match_info["channel"]:
                    return web.json_response(api.channel_json(conn, ch, self.node))
        raise not_found()

    async def vhost_connections(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        name = p.vhost(request.match_info["vhost"]).name
        stats = self._stats()
        return listing(request, (api.connection_json(c, self.node, stats)
                                 for c in self._connections(p)
                                 if c.vhost is not None and c.vhost.name == name))

    async def consumers(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        names = {v.name for v in self._vhosts(request, p)}
        return listing(request, (item for c in list(self.server.connections)
                                 if c.vhost is not None and c.vhost.name in names
                                 for ch in list(c.channels.values())
                                 for item in api.consumers_json(c, ch)))

    # ----------------------------------------------------------------- definitions
    async def export_definitions(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        p.require_admin()
        if request.query.get("format") == "warrenmq":  # as declared (warrenmq migrate)
            return web.json_response(definitions.export_document(self.broker))
        return web.json_response(definitions.export_definitions(self.broker))

    async def import_definitions(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        p.require_admin()
        document = _object(await read_json(request))
        try:
            notes = definitions.import_definitions(self.broker, document)
        except ValueError as exc:  # an invalid document: nothing was applied
            raise bad_request(str(exc)) from None
        self._changed()
        if notes:  # applied, except what these say could not be
            return web.json_response({"notes": notes})
        return web.Response(status=204)
