"""Bindings and publishing over HTTP, as RabbitMQ's management API has them.

``/api/bindings/{vhost}/e/{source}/q/{queue}`` and ``.../e/{source}/e/{exchange}``: GET
lists the bindings between the two, POST (``routing_key``, ``arguments``) adds one and
answers 201 with a ``Location`` naming its properties key, and
``.../{properties_key}`` is one binding (GET, DELETE). ``/api/queues/{vhost}/{q}/bindings``
and ``/api/exchanges/{vhost}/{x}/bindings/source|destination`` list a queue's or an
exchange's bindings. ``POST /api/exchanges/{vhost}/{x}/publish`` (``properties``,
``routing_key``, ``payload``, ``payload_encoding``) publishes one message and answers
``{"routed": bool}``; a persistent message is on disk (fsynced) before the answer, as
RabbitMQ's management publishes with confirms. Permissions are RabbitMQ's: binding
needs write on the destination and read on the source; publishing needs write on the
exchange. Owns nothing; must not await between reading and changing broker state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from warrenmq.broker.permissions import Access, ResourceKind
from warrenmq.broker.vhost import VirtualHost
from warrenmq.management import api
from warrenmq.management.admin import persist
from warrenmq.management.app import read_json
from warrenmq.management.auth import HttpError, Principal, bad_request, not_found
from warrenmq.management.listing import arrange
from warrenmq.message import Message
from warrenmq.protocol.fields import FieldError, encode_shortstr
from warrenmq.protocol.properties import encode_properties

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

CONFIRM_TIMEOUT = 10.0  # seconds a publish waits for its fsync before answering 500
KIND = {"q": "queue", "e": "exchange"}


def _x(name: str) -> str:
    return "" if name == "amq.default" else name


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise bad_request("expected a JSON object")
    return raw


class TopologyHandlers:
    def __init__(self, mgmt: ManagementServer) -> None:
        self.mgmt = mgmt
        self.server = mgmt.server
        self.broker = mgmt.broker

    def _check(self, p: Principal, vhost: VirtualHost, access: Access, kind: ResourceKind,
               name: str) -> None:
        self.broker.grant(p.user.name, vhost.name).check(access, kind, name)

    def _ends(self, request: web.Request, p: Principal, *, write: bool = False
              ) -> tuple[VirtualHost, str, str, str]:
        """(vhost, source, destination kind, destination) of a bindings URL; 404s for
        a missing end."""
        info = request.match_info
        vhost = p.vhost(info["vhost"], write=write)
        kind = KIND[info["kind"]]
        source, destination = _x(info["source"]), info["destination"]
        if source not in vhost.exchanges:
            raise not_found(f"no exchange '{source}' in vhost '{vhost.name}'")
        table: Iterable[str] = vhost.queues if kind == "queue" else vhost.exchanges
        if (destination if kind == "queue" else _x(destination)) not in table:
            raise not_found(f"no {kind} '{destination}' in vhost '{vhost.name}'")
        return vhost, source, kind, destination if kind == "queue" else _x(destination)

    def _between(self, vhost: VirtualHost, source: str, kind: str, destination: str
                 ) -> list[dict[str, Any]]:
        return [b for b in api.bindings_json(vhost) if b["source"] == source and b["source"]
                and b["destination_type"] == kind and b["destination"] == destination]

    async def between(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost, source, kind, destination = self._ends(request, p)
        return web.json_response(arrange(request.query, self._between(
            vhost, source, kind, destination)))

    async def one(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost, source, kind, destination = self._ends(request, p)
        return web.json_response(self._find(request, vhost, source, kind, destination))

    def _find(self, request: web.Request, vhost: VirtualHost, source: str, kind: str,
              destination: str) -> dict[str, Any]:
        wanted = request.match_info["props"]
        for binding in self._between(vhost, source, kind, destination):
            if wanted in (binding["properties_key"], unquote(binding["properties_key"])):
                return binding
        raise not_found()

    async def bind(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        body = _body(await read_json(request))
        vhost, source, kind, destination = self._ends(request, p, write=True)
        key = body.get("routing_key", "")
        arguments = body.get("arguments") or {}
        if not isinstance(key, str) or not isinstance(arguments, dict):
            raise bad_request("routing_key must be a string and arguments an object")
        self._check(p, vhost, "write", kind, destination)  # type: ignore[arg-type]
        self._check(p, vhost, "read", "exchange", source)
        if kind == "queue":
            vhost.bind_queue(destination, source, key, arguments, owner=None)
        else:
            vhost.bind_exchange(destination, source, key, arguments)
        persist(self.server)
        location = api.properties_key(key, arguments)
        return web.Response(status=201, headers={"Location": location})

    async def unbind(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost, source, kind, destination = self._ends(request, p, write=True)
        binding = self._find(request, vhost, source, kind, destination)
        self._check(p, vhost, "write", kind, destination)  # type: ignore[arg-type]
        self._check(p, vhost, "read", "exchange", source)
        arguments = self._arguments(vhost, source, binding)
        if kind == "queue":
            vhost.unbind_queue(destination, source, binding["routing_key"], arguments,
                               owner=None)
        else:
            vhost.unbind_exchange(destination, source, binding["routing_key"], arguments)
        persist(self.server)
        return web.Response(status=204)

    @staticmethod
    def _arguments(vhost: VirtualHost, source: str, binding: dict[str, Any]) -> dict[str, Any]:
        """The binding's own (not JSON-rendered) arguments, to unbind exactly it."""
        for destination, key, arguments in vhost.exchanges[source].bindings():
            if (getattr(destination, "name", None) == binding["destination"]
                    and key == binding["routing_key"]
                    and api.jsonable(arguments) == binding["arguments"]):
                return arguments
        raise not_found()

    async def queue_bindings(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"])
        name = request.match_info["name"]
        if name not in vhost.queues:
            raise not_found()
        return web.json_response(arrange(request.query, (
            b for b in api.bindings_json(vhost)
            if b["destination_type"] == "queue" and b["destination"] == name)))

    async def exchange_bindings(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"])
        name = _x(request.match_info["name"])
        if name not in vhost.exchanges:
            raise not_found()
        side = request.match_info["side"]
        if side == "source":
            found = [b for b in api.bindings_json(vhost) if b["source"] == name and name]
        else:
            found = [b for b in api.bindings_json(vhost)
                     if b["destination_type"] == "exchange" and b["destination"] == name]
        return web.json_response(arrange(request.query, found))

    # ----------------------------------------------------------------- publish
    async def publish(self, request: web.Request) -> web.Response:
        p = self.mgmt.principal(request)
        body = _body(await read_json(request))
        vhost = p.vhost(request.match_info["vhost"], write=True)
        name = _x(request.match_info["name"])
        exchange = vhost.exchanges.get(name)
        if exchange is None:
            raise not_found()
        missing = [k for k in ("properties", "routing_key", "payload", "payload_encoding")
                   if k not in body]
        if missing:
            raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
        key, payload = body["routing_key"], body["payload"]
        if not isinstance(key, str) or not isinstance(payload, str):
            raise bad_request("routing_key and payload must be strings")
        self._check(p, vhost, "write", "exchange", name)
        message = Message(name, key, encode_shortstr(name) + encode_shortstr(key),
                          _properties(body["properties"]),
                          _payload(payload, body["payload_encoding"]))
        routed, _rejected, ticket = vhost.publish(exchange, message)
        self.server.kick_commit()
        if ticket:
            await self._durable(ticket)
        return web.json_response({"routed": routed > 0})

    async def _durable(self, ticket: int) -> None:
        committer = self.server.committer
        if committer is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_TIMEOUT
        while committer.durable < ticket:
            if committer.is_failed(ticket) or loop.time() > deadline:
                raise HttpError(500, "internal_server_error",
                                "the message was not written to disk (see the broker's log)")
            await asyncio.sleep(0.005)


def _payload(payload: str, encoding: Any) -> bytes:
    if encoding == "string":
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("payload is not valid base64") from None
    raise bad_request("payload_encoding must be string or base64")


def _properties(raw: Any) -> bytes:
    if not isinstance(raw, dict):
        raise bad_request("properties must be a JSON object")
    props = dict(raw)
    if isinstance(props.get("delivery_mode"), str) and props["delivery_mode"].isdigit():
        props["delivery_mode"] = int(props["delivery_mode"])  # rabbitmqadmin sends text
    try:
        return encode_properties(props)
    except (FieldError, TypeError, ValueError, struct.error, OverflowError) as exc:
        raise bad_request(f"invalid properties: {exc}") from None


def add_topology_routes(app: web.Application, mgmt: ManagementServer) -> None:
    h = TopologyHandlers(mgmt)
    r = app.router
    ends = "/api/bindings/{vhost}/e/{source}/{kind:[qe]}/{destination}"
    r.add_get(ends, h.between)
    r.add_post(ends, h.bind)
    r.add_get(ends + "/{props}", h.one)
    r.add_delete(ends + "/{props}", h.unbind)
    r.add_get("/api/queues/{vhost}/{name}/bindings", h.queue_bindings)
    r.add_get("/api/exchanges/{vhost}/{name}/bindings/{side:source|destination}",
              h.exchange_bindings)
    r.add_post("/api/exchanges/{vhost}/{name}/publish", h.publish)
