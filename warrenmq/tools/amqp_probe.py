"""Why did the broker refuse the connection? A minimal AMQP 0-9-1 handshake that
returns the broker's own close reason (reply code and text).

aiormq reports a connection.close in answer to connection.open (an unknown vhost, no
access to it) as "Expected one of ['Connection.OpenOk'], got <Connection.Close object
at 0x...>", dropping the reason the broker gave. The client-side tools call
``close_reason`` after such a failure to show the broker's words instead, e.g.
"530 NOT_ALLOWED - vhost novhost not found". Only connection-level frames, PLAIN
login, one bounded attempt; owns nothing and must not be used to send messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote, urlsplit

from pamqp import commands as spec
from pamqp import frame as amqp_frame
from pamqp.exceptions import UnmarshalingException
from pamqp.header import ProtocolHeader

TIMEOUT = 5.0


async def _next_frame(reader: asyncio.StreamReader, buffer: bytearray) -> object:
    while True:
        try:
            consumed, _channel, value = amqp_frame.unmarshal(bytes(buffer))
        except UnmarshalingException:  # a partial frame: read more
            chunk = await reader.read(65536)
            if not chunk:
                raise EOFError("the broker closed the socket") from None
            buffer += chunk
            continue
        del buffer[:consumed]
        return value


async def _handshake(url: str) -> str | None:
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", port,
                                                   ssl=parts.scheme == "amqps" or None)
    buffer = bytearray()
    try:
        writer.write(ProtocolHeader().marshal())
        frame = await _next_frame(reader, buffer)
        if not isinstance(frame, spec.Connection.Start):
            return None
        writer.write(amqp_frame.marshal(spec.Connection.StartOk(
            client_properties={"product": "warrenmq-tools"}, mechanism="PLAIN",
            response=f"\0{user}\0{password}", locale="en_US"), 0))
        frame = await _next_frame(reader, buffer)
        if isinstance(frame, spec.Connection.Tune):
            writer.write(amqp_frame.marshal(spec.Connection.TuneOk(
                channel_max=frame.channel_max, frame_max=frame.frame_max, heartbeat=0), 0))
            writer.write(amqp_frame.marshal(spec.Connection.Open(virtual_host=vhost), 0))
            frame = await _next_frame(reader, buffer)
        if isinstance(frame, spec.Connection.Close):
            return f"{frame.reply_code} {frame.reply_text}"
        return None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def close_reason(url: str) -> str | None:
    """The broker's reply code and text when it closes a login to ``url``, else None."""
    try:
        return await asyncio.wait_for(_handshake(url), TIMEOUT)
    except (OSError, EOFError, TimeoutError, ValueError):
        return None
