"""A small client for a running broker's management HTTP API (RabbitMQ's, or WarrenMQ's).

Where to talk and as whom: ``--url`` / ``--user`` / ``--password``, else the
environment's ``WARRENMQ_URL`` / ``WARRENMQ_USER`` / ``WARRENMQ_PASSWORD``, else
``http://127.0.0.1:15672`` as guest/guest; credentials inside the URL count too. Only
http(s) URLs are accepted: an ``amqp://`` URL gets a message saying which one is
wanted. Errors become ``ApiError`` with one line for a person: the broker's own
``reason`` for an HTTP error (with the status), or what could not be reached and why.
Standard library only; must not import the broker.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_URL = "http://127.0.0.1:15672"
TIMEOUT = 10.0


class ApiError(Exception):
    """A problem talking to the API. ``status`` is the HTTP status, or None when the
    broker could not be reached (or the URL is wrong)."""

    def __init__(self, text: str, status: int | None = None) -> None:
        super().__init__(text)
        self.status = status


def _or_env(value: str | None, name: str) -> str | None:
    return value if value is not None else os.environ.get(name)


@dataclass
class Api:
    base: str  # scheme://host:port[/prefix], no credentials
    user: str
    password: str

    @classmethod
    def from_args(cls, url: str | None, user: str | None, password: str | None) -> Api:
        text = _or_env(url, "WARRENMQ_URL") or DEFAULT_URL
        parts = urlsplit(text)
        if parts.scheme in ("amqp", "amqps"):
            raise ApiError(f"{text.split('@')[-1]} is an AMQP URL: these commands talk to"
                           " the management HTTP API, e.g. http://127.0.0.1:15672"
                           " (set --url or WARRENMQ_URL)")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(f"not an http URL: {text!r} (e.g. http://127.0.0.1:15672)")
        host = parts.netloc.rpartition("@")[2]
        base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
        login = _or_env(user, "WARRENMQ_USER") or (unquote(parts.username)
                                                   if parts.username else "guest")
        secret = _or_env(password, "WARRENMQ_PASSWORD")
        if secret is None:
            secret = unquote(parts.password) if parts.password is not None else "guest"
        return cls(base, login, secret)

    def describe(self) -> str:
        return f"{self.base} as {self.user}"

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        """The decoded JSON answer (None for an empty one); raises ApiError."""
        target = self.base + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(target, data=data, method=method)  # noqa: S310
        credentials = f"{self.user}:{self.password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc.code} {_reason(exc)}", exc.code) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            why = getattr(exc, "reason", exc)
            if isinstance(why, OSError) and why.strerror:
                why = why.strerror
            raise ApiError(f"cannot reach the management API at {self.base}: {why} (is the"
                           " broker running with its management listener? set --url or"
                           " WARRENMQ_URL)") from exc
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError):
        return str(exc.reason)
    if isinstance(answer, dict):
        return str(answer.get("reason") or answer.get("error") or exc.reason)
    return str(exc.reason)


def q(value: str) -> str:
    """One URL path segment (a vhost ``/`` is ``%2F``)."""
    return quote(value, safe="")
