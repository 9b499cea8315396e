"""A small HTTP client for the management listener in tests (aiohttp over real TCP).

``Http(port)`` sends requests with basic auth (guest/guest unless told otherwise) and a
bounded timeout, and returns status, headers and the decoded body, so tests assert on
what a client would see. ``mgmt_config`` turns the listener on at an ephemeral port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from warrenmq.config import ManagementConfig

TIMEOUT = aiohttp.ClientTimeout(total=10)
MANAGEMENT = {"management": ManagementConfig(port=0)}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Http:
    def __init__(self, port: int, user: str | None = "guest", password: str = "guest") -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.user = user
        self.password = password

    def as_user(self, user: str | None, password: str = "") -> Http:
        other = Http(0, user, password)
        other.base = self.base
        return other

    async def request(self, method: str, path: str, *, body: Any = None,
                      raw: str | bytes | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if self.user is not None:
            sent.setdefault("Authorization", aiohttp.encode_basic_auth(self.user, self.password))
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.request(
                method, self.base + path, data=data, headers=sent) as response:
            return Reply(response.status, dict(response.headers), await response.text())

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def json(self, path: str) -> Any:
        reply = await self.get(path)
        assert reply.status == 200, (path, reply.status, reply.text)
        return reply.json
