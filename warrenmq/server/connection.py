"""Connection: one AMQP client socket as an ``asyncio.Protocol``.

Owns the frame reader, the outgoing buffer, the channels and the connection state machine
(protocol header → start → tune → open → running → closing). Bytes are parsed in
``data_received`` with no task per frame; replies and deliveries are appended to one list
and flushed with a single ``writelines`` per loop tick. Errors are translated here (and in
channel) only: an ``AMQPError`` that is not channel-level becomes connection.close with
the failing method's class and method ids; anything unexpected becomes 541 for this one
connection and is logged, never allowed to reach the loop.

Logging: every protocol callback that reads or ends the connection runs in the
connection's own ``contextvars.Context`` (``logctx``), so its id, peer, user and vhost
are on every line logged meanwhile; ``connection_closed`` says how long it lived and why
it ended (the close code and text, whoever sent it, or "connection lost").
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from typing import TYPE_CHECKING, Any, Final, cast

import structlog

from warrenmq.clock import COARSE
from warrenmq.errors import (
    AMQPError,
    ChannelError,
    InternalError,
    NotAllowed,
    UnexpectedFrame,
)
from warrenmq.protocol.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    PROTOCOL_HEADER,
    FrameReader,
    frame_stop,
)
from warrenmq.protocol.methods import Method, decode_method, method_class, method_frame
from warrenmq.server import handshake
from warrenmq.server.channel import Channel
from warrenmq.server.heartbeat import HeartbeatMonitor
from warrenmq.server.logctx import method_name

if TYPE_CHECKING:
    from warrenmq.broker.broker import User
    from warrenmq.broker.permissions import Grant
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.queues.queue import Queue
    from warrenmq.server.listener import Server
    from warrenmq.server.tls import TlsContext

log = structlog.get_logger("warrenmq.connection")

ConnectionClose: Final = method_class("ConnectionClose")
ConnectionCloseOk: Final = method_class("ConnectionCloseOk")
ChannelOpenIndex: Final = method_class("ChannelOpen").INDEX
ConnectionBlocked: Final = method_class("ConnectionBlocked")
ConnectionUnblocked: Final = method_class("ConnectionUnblocked")
_IDS: Final = itertools.count(1)  # connection ids, unique in the process
#: A big read is handled in slices of this many frames (about 100 publishes), checking
#: between slices whether a store commit has landed (see _read).
FRAMES_PER_TURN: Final = 300


class Connection(asyncio.Protocol):
    """One client connection. ``state`` is one of the handshake steps or running/closing."""

    def __init__(self, server: Server, tls: TlsContext | None = None) -> None:
        self.server = server
        self.tls = tls  # the listener's TLS context; None on a plain listener
        self.settings = server.settings
        self.loop = asyncio.get_running_loop()
        self.id = next(_IDS)
        self.context = contextvars.Context()  # logging context (module docstring)
        self.started = self.loop.time()
        self.opened_at: float | None = None  # loop time of connection.open-ok
        self.close_reason: str | None = None  # "<code> <text>" of the close, either way
        self.closed_by: str | None = None  # "client" or "server"; None: the socket went
        self.grant: Grant | None = None  # permissions in the vhost, from connection.open
        self.reader = FrameReader(self.settings.frame_max)
        self._backlog = b""  # the rest of a big read, for the next turn (_read)
        self.turns_deferred = 0  # big reads split across turns
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.loopback = False
        self.state = "header"
        self.frame_max = self.settings.frame_max
        self.channel_max = self.settings.channel_max
        self.write_high_water = self.settings.write_high_water  # read per delivery batch
        self.heartbeat = 0
        self.user: User | None = None
        self.vhost: VirtualHost | None = None
        self.client_properties: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: list[Queue] = []
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._paused = False
        self._starved = False
        self._header = b""
        self._timers: list[asyncio.TimerHandle] = []  # handshake and close deadlines
        self.monitor = HeartbeatMonitor(self.write, self._heartbeat_timeout)
        self._dirty: set[Channel] = set()
        self.published = False
        self.blocked = False
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.connected_at = COARSE.now  # wall clock, for the management API

    # ----------------------------------------------------------------- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.context.run(self._made, transport)

    def _made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        structlog.contextvars.bind_contextvars(connection_id=self.id, peer=self.peer)
        self.loopback = (bool(peer) and str(peer[0]) in {"127.0.0.1", "::1"}) or (
            bool(peer) and str(peer[0]).startswith("127.")
        )
        self.transport.set_write_buffer_limits(
            high=self.settings.write_high_water, low=self.settings.write_low_water
        )
        self.server.connections.add(self)
        if not self.server.guard.admit(self):  # too many handshakes at once
            self.abort()
            return
        self._timers.append(
            self.loop.call_later(self.settings.handshake_timeout, self._handshake_timeout)
        )
        log.debug("connection_accepted")

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.run(self._lost, exc)

    def _lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.guard.left(self)
        if not self.closed.done():
            self.closed.set_result(None)
        for timer in self._timers:
            timer.cancel()
        self.monitor.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._release()
        self.state = "closed"
        if self.opened_at is not None:
            self._log_closed(exc)

    def _log_closed(self, exc: Exception | None) -> None:
        props = self.client_properties
        extra = {"error": str(exc)} if exc is not None and self.closed_by is None else {}
        log.info(
            "connection_closed",
            client_product=props.get("product"),
            client_version=props.get("version"),
            duration=round(self.loop.time() - self.started, 3),
            reason=self.close_reason or "connection lost",
            closed_by=self.closed_by or "network",
            **extra,
        )

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.redispatch()

    def data_received(self, data: bytes) -> None:
        self.context.run(self._received, data)

    def _received(self, data: bytes) -> None:
        self.monitor.received = True
        if self.state == "header":
            data = self._read_protocol_header(data)
            if not data:
                return
        if self.state == "closed":
            return
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        """Bytes read (or kept from a read): errors translated once, confirms and the
        commit kicked after."""
        try:
            self._read(data)
        except AMQPError as exc:
            self.close_with(exc)
        except Exception as exc:
            log.exception("connection_internal_error")
            self.close_with(InternalError(f"internal error: {type(exc).__name__}"))
        self._after_frames()

    def _read(self, data: bytes) -> None:
        """Walk the complete frames in the buffer, in one pass over one ``bytes``.

        The frame header is read by indexing (no struct call, no tuple per frame). A
        basic.publish whose content header and single body frame are already in the
        buffer is taken whole by ``Channel.publish_from`` (exchange, routing key,
        properties and body each sliced once, no payload copies in between); anything
        else goes frame by frame to ``_on_frame_payload``. Every ``FRAMES_PER_TURN``
        frames, if the store's writer finished a commit meanwhile, the rest waits for
        the next loop turn (reading paused) so that commit's publisher confirms go out
        first."""
        reader = self.reader
        buf = reader.take(data)
        end = len(buf)
        pos = 0
        limit = reader.frame_max - FRAME_OVERHEAD
        channels = self.channels
        handled = 0
        while end - pos >= 7:
            stop = frame_stop(buf, pos, end, reader.frame_max)
            if stop < 0:
                break
            frame_type = buf[pos]
            size = stop - pos - 7
            channel_id = (buf[pos + 1] << 8) | buf[pos + 2]
            following = -1
            if frame_type == FRAME_METHOD and size >= 9 and buf[pos + 10] == 40 \
                    and buf[pos + 8] == 60 and buf[pos + 7] == 0 and buf[pos + 9] == 0:
                channel = channels.get(channel_id) if self.state == "running" else None
                if channel is not None:
                    following = channel.publish_from(buf, pos + 7, stop, end, limit)
            if following < 0:
                self._on_frame_payload(frame_type, channel_id, buf[pos + 7 : stop])
                following = stop + 1
                handled += 1
            else:
                handled += 3  # method, header, body
            pos = following
            if handled >= FRAMES_PER_TURN:
                handled = 0
                if self.server.commit_landed and pos < end and self.state == "running":
                    self._defer(buf[pos:])
                    reader.keep(b"")
                    return
            channels = self.channels  # a close may have replaced the map
        reader.keep(buf[pos:] if pos < end else b"")

    def _on_frame_payload(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        """One frame, outside the publish fast path: to its channel, or to ``_on_frame``."""
        channel = self.channels.get(channel_id) if channel_id else None
        if channel is None or self.state != "running":
            self._on_frame(frame_type, channel_id, payload)
        elif frame_type == FRAME_BODY:
            channel.on_body_frame(payload)
        elif frame_type == FRAME_HEADER:
            channel.on_header_frame(payload)
        elif frame_type == FRAME_METHOD:
            channel.on_method_frame(payload)
        else:
            self._on_frame(frame_type, channel_id, payload)

    def _after_frames(self) -> None:
        if self._dirty:
            if self.state == "running":  # after our connection.close: nothing but close-ok
                for dirty in self._dirty:
                    dirty.flush_confirms()
            self._dirty.clear()
        if self.published:
            self.published = False
            if self.server.alarm:
                self._block()
        self.server.kick_commit()

    def _defer(self, rest: bytes) -> None:
        """Keep the rest of a big read for the next loop turn, reading paused."""
        self._backlog = rest
        self.turns_deferred += 1
        assert self.transport is not None
        self.transport.pause_reading()
        self.loop.call_soon(self.context.run, self._next_turn)

    def _next_turn(self) -> None:
        rest, self._backlog = self._backlog, b""
        if self.state == "closed":
            return
        if not self.blocked and self.transport is not None:
            self.transport.resume_reading()
        self._handle(rest)

    # ----------------------------------------------------------------- reading
    def _read_protocol_header(self, data: bytes) -> bytes:
        self._header += data
        if len(self._header) < 8:
            if PROTOCOL_HEADER.startswith(self._header):
                return b""
        elif self._header[:8] == PROTOCOL_HEADER:
            rest = self._header[8:]
            self._header = b""
            self.state = "start"
            self.write(method_frame(0, handshake.start_method(self)))
            return rest
        # AMQP 0-9-1 §4.2.2: answer a bad header with ours, then close the socket.
        log.warning("bad_protocol_header", header=self._header[:8])
        self.state = "closed"
        assert self.transport is not None
        self.transport.write(PROTOCOL_HEADER)
        self.transport.close()
        return b""

    def _on_frame(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        if self.state == "closing":
            self._on_frame_closing(frame_type, channel_id, payload)
            return
        if frame_type == FRAME_HEARTBEAT:
            if channel_id != 0:
                raise UnexpectedFrame("heartbeat frame on a non-zero channel")
            return
        if channel_id == 0:
            if frame_type != FRAME_METHOD:
                raise UnexpectedFrame(f"frame type {frame_type} on channel 0")
            self._on_connection_method(decode_method(payload))
            return
        if self.state != "running":
            # RabbitMQ's handle_frame: a channel frame outside "running" is unexpected.
            raise UnexpectedFrame(f"channel {channel_id} used before connection.open")
        channel = self.channels.get(channel_id)
        if channel is None:
            self._open_channel(frame_type, channel_id, payload)
            return
        if frame_type == FRAME_METHOD:
            channel.on_method_frame(payload)
        elif frame_type == FRAME_HEADER:
            channel.on_header_frame(payload)
        else:
            channel.on_body_frame(payload)

    def _open_channel(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        method = decode_method(payload) if frame_type == FRAME_METHOD else None
        if method is None or method.INDEX != ChannelOpenIndex:
            raise ChannelError(
                "expected 'channel.open'",  # RabbitMQ's text
                class_id=method.CLASS_ID if method else 0,
                method_id=method.METHOD_ID if method else 0,
            )
        if len(self.channels) >= self.channel_max:
            # RabbitMQ's create_channel: channel_max bounds how many channels are open at
            # once (any number up to 65535 may be used), a 530 without method ids.
            raise NotAllowed(
                f"number of channels opened ({len(self.channels)}) has reached the"
                f" negotiated channel_max ({self.channel_max})")
        self.server.guard.check_channel_limit(self)  # user max-channels (530)
        channel = Channel(self, channel_id)
        self.channels[channel_id] = channel
        channel.opened()

    def _on_frame_closing(self, frame_type: int, channel_id: int, payload: bytes) -> None:
        if frame_type != FRAME_METHOD or channel_id != 0:
            return
        # RabbitMQ 3.10 answers every connection.close with close-ok, ignores every other
        # frame and leaves the socket to the client (closing it would reset a close still
        # in flight, e.g. from a client that closes from several threads); a close-ok
        # ends the connection.
        method = decode_method(payload)
        if isinstance(method, ConnectionClose):
            self.write(method_frame(0, ConnectionCloseOk()))
        elif isinstance(method, ConnectionCloseOk):
            self.terminate()

    def _on_connection_method(self, method: Method) -> None:
        try:
            handshake.on_connection_method(self, method)
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = method.CLASS_ID, method.METHOD_ID
            raise

    # ----------------------------------------------------------------- writing
    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def write_parts(self, parts: list[bytes]) -> None:
        self._out.extend(parts)
        for part in parts:
            self._out_bytes += len(part)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    # ----------------------------------------------------------------- memory alarm
    def _block(self) -> None:
        """Stop reading a publishing connection while an alarm (memory, disk) is raised."""
        if self.blocked or self.transport is None or self.state != "running":
            return
        self.blocked = True
        self.transport.pause_reading()
        reason = self.server.alarm_reason
        if self.client_capabilities.get("connection.blocked"):
            self.write(method_frame(0, ConnectionBlocked(reason)))
        log.info("connection_blocked", reason=reason)

    def unblock(self) -> None:
        if not self.blocked or self.transport is None:
            return
        self.blocked = False
        if self.state == "running":
            if not self._backlog:  # else the last deferred turn resumes reading
                self.transport.resume_reading()
            if self.client_capabilities.get("connection.blocked"):
                self.write(method_frame(0, ConnectionUnblocked()))
            log.info("connection_unblocked")

    @property
    def out(self) -> list[bytes]:
        """The out list, for hot-path writers that append many frames then call wrote()."""
        return self._out

    def wrote(self, size: int) -> None:
        """Account for ``size`` bytes appended to ``out`` and make sure a flush is due."""
        self._out_bytes += size
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if out and self.transport is not None and not self.transport.is_closing():
            # One buffer per tick: joining many small frames is cheaper than handing the
            # transport a long list; big bodies go as a list to avoid copying them.
            if self._out_bytes <= 262144:
                self.transport.write(b"".join(out))
            else:
                self.transport.writelines(out)
            self.monitor.sent = True
        self._out = []
        self._out_bytes = 0
        if self._starved and not self._paused:
            self._starved = False
            self.redispatch()

    def can_write(self) -> bool:
        """Credit from the socket: False while the peer is not reading fast enough."""
        if self.state != "running":
            return False
        if self._paused or self._out_bytes >= self.write_high_water:
            self._starved = True
            return False
        return True

    def redispatch(self) -> None:
        """Give every queue consumed on this connection a chance to push again."""
        for channel in list(self.channels.values()):
            channel.redispatch()

    def mark_dirty(self, channel: Channel) -> None:
        self._dirty.add(channel)

    # ----------------------------------------------------------------- closing
    def close_with(self, exc: AMQPError) -> None:
        """Close the connection with an error (connection.close), as the server."""
        if self.state in ("closing", "closed"):
            return
        code = exc.reply_code
        log.warning(
            "connection_error",
            reply_code=int(exc.reply_code),
            reply_text=exc.text,
            class_id=exc.class_id,
            method_id=exc.method_id,
            method=method_name(exc.class_id, exc.method_id),
        )
        self.close(int(code), exc.reply_text(), exc.class_id, exc.method_id)

    def close(
        self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0
    ) -> None:
        if self.state in ("closing", "closed"):
            return
        if self.state == "header":
            self.terminate()
            return
        if self.close_reason is None:
            self.close_reason, self.closed_by = f"{reply_code} {reply_text}", "server"
        close = ConnectionClose(reply_code, reply_text[:255], class_id, method_id)
        self.write(method_frame(0, close))
        self.state = "closing"
        self._release()
        self._timers.append(self.loop.call_later(self.settings.close_timeout, self.terminate))

    def closed_by_client(self) -> None:
        """connection.close from the client: release everything, answer close-ok, and let
        the client close the socket (AMQP 0-9-1 §2.2.4: the peer that sent close closes it
        after close-ok; closing first would reset its in-flight writes), with a timeout."""
        self.write(method_frame(0, ConnectionCloseOk()))
        self.state = "closing"
        self._release()
        self._timers.append(self.loop.call_later(self.settings.close_timeout, self.terminate))

    def terminate(self) -> None:
        self._flush()
        self._release()
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._release()
        self.state = "closed"
        if self.transport is not None:
            self.transport.abort()

    def _release(self) -> None:
        """Give back everything this connection holds: unacked messages, consumers, queues."""
        channels, self.channels = self.channels, {}
        # Consumers first, on every channel, so requeued messages cannot be pushed to
        # another channel of this same dying connection.
        left: list[Queue] = []
        for channel in channels.values():
            left += channel.remove_consumers()
        for channel in channels.values():
            channel.release()
        for queue in left:  # after the requeues: a single active successor gets them first
            if not queue.deleted:
                queue.dispatch()
        queues, self.exclusive_queues = self.exclusive_queues, []
        for queue in queues:
            if self.vhost is not None:
                _, consumers = self.vhost.remove_queue(queue, "exclusive_owner_closed")
                for consumer in consumers:
                    consumer.cancelled_by_server()  # type: ignore[attr-defined]
        if channels and self.vhost is not None:
            self.server.definitions_changed()  # auto-delete queues may have gone

    def _handshake_timeout(self) -> None:
        if self.state in ("header", "start", "secure", "tune", "open"):
            log.warning("handshake_timeout", state=self.state)
            self.abort()

    # ----------------------------------------------------------------- heartbeats
    def start_heartbeat(self) -> None:
        self.monitor.start(self.heartbeat)

    def _heartbeat_timeout(self) -> None:
        log.warning("heartbeat_timeout", heartbeat=self.heartbeat)
        if self.close_reason is None:
            self.close_reason = f"missed heartbeats from client, timeout: {self.heartbeat}s"
            self.closed_by = "server"
        self.abort()

    def release_channel(self, channel_id: int) -> None:
        self.channels.pop(channel_id, None)

    def forget_channel(self, channel: Channel) -> None:
        """Drop a channel the client closed, once the read that closed it is handled."""
        if self.channels.get(channel.number) is channel:
            del self.channels[channel.number]
