"""The management listener: an aiohttp application on the broker's own event loop.

Routes: ``/metrics`` (Prometheus, unauthenticated like rabbitmq_prometheus), the
dashboard (``/`` and ``/dashboard/*``: static files, which log in to the API
themselves) and ``/api/*`` (RabbitMQ's management API subset, ``handlers.py``, HTTP
basic auth with the broker's users, ``auth.py``). Every error is JSON in RabbitMQ's
``{"error", "reason"}`` shape: unknown routes 404, bad JSON 400, missing or wrong
credentials 401 with ``WWW-Authenticate``; an unexpected exception is logged and
answered 500 without a traceback. Handlers never await between reading and changing
broker state, so they keep the loop's "no await between read and mutate" rule.

Owns the aiohttp runner, its site, the statistics sampler (``Stats``) and the charts'
history (``History``, 10 minutes at 5 s), both fed by its timer.
Must not import ``warrenmq.server`` (``edge.py`` says what it reads), and must not add
work on the AMQP hot path: everything here runs on request or on the sampler's timer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from warrenmq.errors import AccessRefused, AMQPError, NotFound
from warrenmq.management.auth import HttpError, Principal, authenticate
from warrenmq.management.edge import ServerView
from warrenmq.management.history import History
from warrenmq.management.metrics import CONTENT_TYPE_LATEST, BrokerCollector, registry_for, render
from warrenmq.management.stats import COLLECT_INTERVAL, Stats

log = structlog.get_logger("warrenmq.management")

DASHBOARD = Path(__file__).parent / "dashboard"
MAX_BODY = 32 * 1024 * 1024  # a definitions import may be large
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, error: str, reason: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status,
                             headers=headers)


def _amqp_error(exc: AMQPError) -> HttpError:
    """A domain refusal as RabbitMQ's management answers it (rabbit_mgmt_util)."""
    if isinstance(exc, NotFound):
        return HttpError(404, "Object Not Found", exc.reply_text())
    if isinstance(exc, AccessRefused):
        return HttpError(401, "not_authorised", exc.reply_text())
    return HttpError(400, "bad_request", exc.reply_text())


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as exc:
        if not exc.error:  # RabbitMQ's bare challenge (no credentials): no body
            return web.Response(status=exc.status, headers=exc.headers)
        return error_response(exc.status, exc.error, exc.reason, exc.headers)
    except AMQPError as exc:
        err = _amqp_error(exc)
        return error_response(err.status, err.error, err.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_response(404, "Object Not Found", "Not Found")
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception as exc:
        log.exception("management_request_failed", method=request.method, path=request.path)
        return error_response(500, "internal_server_error", type(exc).__name__)


def is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (an empty body is an empty object), or a 400."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise HttpError(400, "bad_request", f"failed to decode json: {exc}") from exc


class ManagementServer:
    """The HTTP listener of one broker; ``start`` binds it, ``close`` stops it."""

    def __init__(self, server: ServerView, *, data_dir: Path | None = None) -> None:
        self.server = server
        self.broker = server.broker
        self.stats = Stats(server.broker, connections=lambda: server.connections)
        self.history = History(server.broker, lambda: server.sync_ops)
        self.data_dir = data_dir
        self.registry = registry_for(BrokerCollector(server, self.stats, data_dir))
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._timer: asyncio.TimerHandle | None = None

    def principal(self, request: web.Request) -> Principal:
        return authenticate(self.broker, request.headers.get("Authorization"),
                            loopback=is_loopback(request))

    def application(self) -> web.Application:
        from warrenmq.management.certificates import add_certificate_route
        from warrenmq.management.handlers import add_api_routes
        from warrenmq.management.limits import add_limit_routes

        app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
        app.router.add_get("/", self.index)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_static("/dashboard/", DASHBOARD)
        add_certificate_route(app, self)  # certificate-expiration check (certificates.py)
        add_api_routes(app, self)
        add_limit_routes(app, self)  # vhost/user limits, security counters (limits.py)
        return app

    async def start(self, host: str, port: int,
                    ssl_context: ssl.SSLContext | None = None) -> int:
        """Bind and serve (HTTPS with ``ssl_context``); returns the bound port (port 0
        picks a free one)."""
        runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._collect()
        log.info("management_listening", host=host, port=self.port)
        return self.port

    def _collect(self) -> None:
        try:
            self.stats.refresh()
            self.history.record()
        except Exception:
            log.exception("management_stats_failed")
        self._timer = asyncio.get_running_loop().call_later(COLLECT_INTERVAL, self._collect)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("management_stopped")

    # ----------------------------------------------------------------- routes
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(DASHBOARD / "index.html",
                                headers={"Cache-Control": "no-cache"})

    async def metrics(self, request: web.Request) -> web.Response:
        body = render(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
