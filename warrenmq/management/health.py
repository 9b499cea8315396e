"""The node and its health, as RabbitMQ's management API reports them.

``/api/nodes`` and ``/api/nodes/{name}`` (one node: this process), the health checks
under ``/api/health/checks/`` (``alarms``, ``local-alarms``, ``port-listener/{port}``,
``protocol-listener/{protocol}``, ``virtual-hosts``, ``node-is-quorum-critical`` and
``node-is-mirror-sync-critical``, always fine on one node), the older
``/api/healthchecks/node`` and ``/api/aliveness-test/{vhost}`` (declares the
``aliveness-test`` queue, publishes a message to it and fetches it back, as RabbitMQ
does). A check answers 200 ``{"status": "ok"}`` or 503 ``{"status": "failed",
"reason": ...}`` with RabbitMQ's words. Node figures are the process's own (RSS from
/proc, file descriptors, free disk under the data directory); Erlang-only figures
(processes, GC, reductions) are left out rather than made up. Owns the start time;
must not change broker state except the aliveness queue.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq import __version__
from warrenmq.exchange.registry import exchange_types_listing
from warrenmq.management.api import MANAGEMENT_VERSION, listeners_json
from warrenmq.management.auth import not_found
from warrenmq.management.metrics import resident_memory_bytes
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.protocol.properties import encode_properties

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

ALIVENESS_QUEUE = "aliveness-test"


def ok(**extra: Any) -> web.Response:
    return web.json_response({"status": "ok", **extra})


def failed(reason: str, **extra: Any) -> web.Response:
    return web.json_response({"status": "failed", "reason": reason, **extra}, status=503)


def _fds() -> tuple[int | None, int]:
    try:
        used: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = None
    return used, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class HealthHandlers:
    def __init__(self, mgmt: ManagementServer, data_dir: Path | None) -> None:
        self.mgmt = mgmt
        self.server = mgmt.server
        self.data_dir = data_dir
        self.started = time.monotonic()

    def listeners(self) -> list[dict[str, Any]]:
        return listeners_json(self.server, self.mgmt.port)

    def alarms(self) -> list[dict[str, str]]:
        node = self.server.cluster_name
        return [{"node": node, "resource": r} for r, on in
                (("memory", self.server.memory_alarm), ("disk", self.server.disk_alarm)) if on]

    def node_json(self) -> dict[str, Any]:
        server = self.server
        fd_used, fd_total = _fds()
        free: int | None = None
        if self.data_dir is not None:
            try:
                free = shutil.disk_usage(self.data_dir).free
            except OSError:
                free = None
        out: dict[str, Any] = {
            "name": server.cluster_name,
            "type": "disc",
            "running": True,
            "os_pid": str(os.getpid()),
            "uptime": int((time.monotonic() - self.started) * 1000),
            "processors": os.cpu_count() or 1,
            "run_queue": round(os.getloadavg()[0], 2),
            "mem_used": resident_memory_bytes(),
            "mem_calculation_strategy": "rss",
            "mem_alarm": server.memory_alarm,
            "queue_bytes_ready": server.held_bytes(),
            "disk_free_alarm": server.disk_alarm,
            "fd_total": fd_total,
            "sockets_used": len(server.connections),
            "sockets_total": fd_total,
            "io_sync_count": server.sync_ops,
            "io_sync_count_details": {"rate": round(self.mgmt.history.rate("sync_ops"), 2)},
            "rates_mode": "basic",
            "partitions": [],
            "exchange_types": exchange_types_listing(),
            "auth_mechanisms": [{"name": m, "description": "", "enabled": True}
                                for m in ("PLAIN", "AMQPLAIN")],
            "applications": [{"name": "warrenmq", "description": "WarrenMQ",
                              "version": __version__}],
            "listeners": self.listeners(),
            "alarms": self.alarms(),
            "management_version": MANAGEMENT_VERSION,
        }
        if fd_used is not None:
            out["fd_used"] = fd_used
        if free is not None:
            out["disk_free"] = free
        if self.data_dir is not None:
            out["db_dir"] = str(self.data_dir)
        return out

    # ----------------------------------------------------------------- nodes
    async def nodes(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        return web.json_response([self.node_json()])

    async def node(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        if request.match_info["name"] != self.server.cluster_name:
            raise not_found()
        return web.json_response(self.node_json())

    # ----------------------------------------------------------------- checks
    async def check_alarms(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        alarms = self.alarms()
        if alarms:
            return failed("resource alarm(s) in effect in the cluster", alarms=alarms)
        return ok()

    async def check_local_alarms(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        alarms = self.alarms()
        if alarms:
            return failed("resource alarm(s) in effect on the node", alarms=alarms)
        return ok()

    async def check_port(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        raw = request.match_info["port"]
        ports = [int(entry["port"]) for entry in self.listeners()]
        if not raw.isdigit():
            return failed(f"invalid port: {raw}")
        if int(raw) not in ports:
            return failed("No active listener", missing=int(raw), ports=ports)
        return ok(port=int(raw))

    async def check_protocol(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        wanted = request.match_info["protocol"].lower()
        protocols = sorted({str(entry["protocol"]) for entry in self.listeners()})
        aliases = {"amqp091": "amqp", "amqp0.9.1": "amqp", "amqp0-9-1": "amqp",
                   "amqps": "amqp/ssl", "management": "http"}
        if aliases.get(wanted, wanted) not in protocols:
            return failed("No active listener", missing=wanted, protocols=protocols)
        return ok(protocol=wanted)

    async def check_virtual_hosts(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        return ok()  # every vhost of a running node is up: none can be stopped here

    async def check_quorum(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        return ok(reason="single node cluster")

    async def healthchecks_node(self, request: web.Request) -> web.Response:
        self.mgmt.principal(request)
        alarms = self.alarms()
        if alarms:
            names = ", ".join(a["resource"] for a in alarms)
            return web.json_response({"status": "failed",
                                      "reason": f"resource alarm(s) in effect: {names}"})
        return ok()

    async def aliveness(self, request: web.Request) -> web.Response:
        """Declare, publish to and fetch from the ``aliveness-test`` queue."""
        p = self.mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"], write=True)
        queue = vhost.declare_queue(ALIVENESS_QUEUE, owner=None, durable=False,
                                    auto_delete=False, arguments={})
        body = b"test_message"
        route = encode_shortstr("") + encode_shortstr(ALIVENESS_QUEUE)
        message = Message("", ALIVENESS_QUEUE, route, encode_properties({}), body)
        vhost.publish(vhost.exchanges[""], message)
        got = queue.get()
        if got is None:
            return failed("aliveness-test: the message did not come back")
        queue.track_unacked()
        queue.ack([got])
        queue.dispatch()
        if got.message.load_body() != body:
            return failed("aliveness-test: a different message came back")
        self.server.definitions_changed()
        return ok()


def add_health_routes(app: web.Application, mgmt: ManagementServer,
                      data_dir: Path | None) -> None:
    h = HealthHandlers(mgmt, data_dir)
    r = app.router
    r.add_get("/api/nodes", h.nodes)
    r.add_get("/api/nodes/{name}", h.node)
    r.add_get("/api/health/checks/alarms", h.check_alarms)
    r.add_get("/api/health/checks/local-alarms", h.check_local_alarms)
    r.add_get("/api/health/checks/port-listener/{port}", h.check_port)
    r.add_get("/api/health/checks/protocol-listener/{protocol}", h.check_protocol)
    r.add_get("/api/health/checks/virtual-hosts", h.check_virtual_hosts)
    r.add_get("/api/health/checks/node-is-quorum-critical", h.check_quorum)
    r.add_get("/api/health/checks/node-is-mirror-sync-critical", h.check_quorum)
    r.add_get("/api/healthchecks/node", h.healthchecks_node)
    r.add_get("/api/aliveness-test/{vhost}", h.aliveness)
