"""Run one client scenario against RabbitMQ and WarrenMQ and compare what the client saw.

A scenario is ``async def scenario(t: Target, seen: Transcript) -> None``: it talks to
``t`` with any client (aio-pika, aiormq, pika in a thread, raw frames through
``t.raw()``) and records observations with ``seen.see(label, value)``: reply codes and
texts, frames in arrival order (``seen.frames``), message properties and headers.
``differential(scenario, rabbit, warren)`` runs it against both, one after the other,
and fails with both transcripts side by side where they disagree. A deliberate
difference is declared where it is observed — ``seen.see(label, value, differs="why")``
— and then not compared (both values are still shown in the report). ``DIFF_SHOW=1 pytest
-s`` prints RabbitMQ's transcript of each scenario.

Values are normalised before comparison: server-generated names (``amq.ctag-*``,
``amq.gen-*``) and timestamps become placeholders; pamqp frames become
``(ClassName, {field: value})``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pprint
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from pamqp import commands
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.rawamqp import PROTOCOL_HEADER, RawClient

#: Frame fields that name this connection or node rather than behaviour.
_VOLATILE_FIELDS = {"server_properties", "mechanisms", "locales", "known_hosts"}


@dataclasses.dataclass
class Target:
    """One broker under test: where it listens, and a name prefix shared by both runs."""

    name: str  # "rabbitmq" or "warrenmq"
    port: int
    prefix: str = ""
    host: str = "127.0.0.1"

    def url(self, user: str = "guest", password: str = "guest", vhost: str = "/") -> str:
        return (f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:"
                f"{self.port}/{quote(vhost, safe='')}")

    def n(self, name: str) -> str:
        """A per-scenario unique entity name, the same on both brokers."""
        return f"{name}.{self.prefix}"

    async def raw(self, *, user: str = "guest", password: str = "guest", vhost: str = "/",
                  channel_max: int | None = None, open_channel: int | None = 1) -> RawClient:
        """A raw-frame client past connection.open (channel 1 opened unless None)."""
        client = await RawClient.connect(self.port, self.host)
        client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        client.send_method(0, commands.Connection.StartOk(
            client_properties={"product": "differential", "capabilities": {
                "consumer_cancel_notify": True, "authentication_failure_close": True,
                "connection.blocked": True, "publisher_confirms": True,
                "basic.nack": True}},
            mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"))
        tune = await client.expect(commands.Connection.Tune)
        client.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max if channel_max is None else channel_max,
            frame_max=131072, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host=vhost))
        await client.expect(commands.Connection.OpenOk)
        if open_channel is not None:
            await client.open_channel(open_channel)
        return client


def normalise(value: Any) -> Any:
    """A comparable form: placeholders for generated names and times, frames as tuples."""
    if isinstance(value, Heartbeat):
        return ("Heartbeat",)
    if isinstance(value, ContentHeader):
        return ("ContentHeader", value.body_size, normalise(value.properties))
    if isinstance(value, ContentBody):
        return ("ContentBody", bytes(value.value))
    if isinstance(value, commands.Basic.Properties):
        return {k: normalise(getattr(value, k)) for k in sorted(value.__slots__)
                if getattr(value, k) is not None}
    if isinstance(value, Frame):
        fields = {k: normalise(getattr(value, k)) for k in sorted(value.__slots__)
                  if k not in _VOLATILE_FIELDS}
        return (type(value).__qualname__, fields)
    if isinstance(value, dict):
        return {normalise(k): normalise(v) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, list | tuple):
        return type(value)(normalise(v) for v in value)
    if isinstance(value, datetime.datetime):
        return "<time>"
    if isinstance(value, str):
        if value.startswith("amq.ctag-"):
            return "<amq.ctag>"
        if value.startswith("amq.gen-"):
            return "<amq.gen>"
    return value


@dataclasses.dataclass
class Observation:
    label: str
    value: Any
    differs: str | None = None


class Transcript:
    """What one run of a scenario saw, in order."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.seen: list[Observation] = []

    def see(self, label: str, value: Any, *, differs: str | None = None) -> Any:
        """Record ``value`` under ``label``; ``differs`` (the reason) exempts it from the
        comparison. Returns ``value`` so a scenario can keep using it."""
        self.seen.append(Observation(label, normalise(value), differs))
        return value

    async def frames(self, label: str, client: RawClient, until: type | None = None,
                     count: int | None = None, quiet: float = 0.3,
                     confirms: bool = False, unordered: bool = False,
                     record: bool = True) -> list[Any]:
        """Record the frames ``client`` reads, in order: up to and including one of type
        ``until``, or ``count`` frames, or until nothing arrives for ``quiet`` seconds.

        With ``confirms``, publisher confirms are taken out of the frame list and recorded
        as ``label + " confirms"``: {sequence number: "ack"/"nack"}. How a broker groups
        them (``multiple``) and where they fall between other frames is its choice
        (RabbitMQ's differs from run to run), so only the outcome is compared.
        ``unordered`` compares the frames as a multiset: for frames from different
        RabbitMQ processes (a queue's deliveries and the channel's replies) whose order
        is a race there. ``record=False`` only returns them."""
        got: list[Any] = []
        while count is None or len(got) < count:
            try:
                channel, value = await client.read_frame(
                    timeout=5.0 if until is not None or count is not None else quiet)
            except TimeoutError:
                if until is not None or count is not None:
                    got.append(("timeout",))
                break
            except ConnectionError:
                got.append(("connection closed",))
                break
            if isinstance(value, Heartbeat):
                continue
            got.append((channel, value))
            if until is not None and isinstance(value, until):
                break
        if not record:
            return got
        if unordered:
            self.see(label, sorted((normalise(f) for f in got), key=repr))
        elif confirms:
            self.see(label, [f for f in got if not _is_confirm(f)])
            self.see(label + " confirms", confirm_outcomes(got))
        else:
            self.see(label, got)
        return got


def _is_confirm(item: Any) -> bool:
    return isinstance(item[-1], commands.Basic.Ack | commands.Basic.Nack)


def confirm_outcomes(frames: list[Any], settled: int = 0) -> dict[int, str]:
    """{publish sequence number: "ack" or "nack"} from basic.ack/nack frames, with
    ``multiple`` expanded (over sequence numbers above ``settled`` not yet confirmed)."""
    outcome: dict[int, str] = {}
    for item in frames:
        value = item[-1]
        if not isinstance(value, commands.Basic.Ack | commands.Basic.Nack):
            continue
        kind = "ack" if isinstance(value, commands.Basic.Ack) else "nack"
        tag = int(value.delivery_tag)
        first = settled + 1 if value.multiple else tag
        for seq in range(first, tag + 1):
            outcome.setdefault(seq, kind)
    return dict(sorted(outcome.items()))


Scenario = Callable[[Target, Transcript], Awaitable[None]]


def compare(rabbit: Transcript, warren: Transcript) -> list[str]:
    """Differences between two transcripts (empty when they agree), readable."""
    problems: list[str] = []
    for index in range(max(len(rabbit.seen), len(warren.seen))):
        r = rabbit.seen[index] if index < len(rabbit.seen) else None
        w = warren.seen[index] if index < len(warren.seen) else None
        if r is None or w is None or r.label != w.label:
            problems.append(f"#{index}: observation sequence diverged:\n"
                            f"  rabbitmq: {r and r.label!r}\n  warrenmq: {w and w.label!r}")
            break
        if r.differs or w.differs:
            continue
        if r.value != w.value:
            problems.append(f"#{index} {r.label}:\n  rabbitmq: {pprint.pformat(r.value)}\n"
                            f"  warrenmq: {pprint.pformat(w.value)}")
    return problems


async def differential(scenario: Scenario, rabbit_port: int, warren_port: int
                       ) -> tuple[Transcript, Transcript]:
    """Run ``scenario`` against RabbitMQ, then WarrenMQ; fail where they disagree."""
    prefix = uuid.uuid4().hex[:10]
    rabbit = Transcript(Target("rabbitmq", rabbit_port, prefix))
    warren = Transcript(Target("warrenmq", warren_port, prefix))
    await scenario(rabbit.target, rabbit)
    await scenario(warren.target, warren)
    problems = compare(rabbit, warren)
    if os.environ.get("DIFF_SHOW"):  # DIFF_SHOW=1 pytest -s ...: print what RabbitMQ did
        print(f"--- {getattr(scenario, '__name__', 'scenario')} on RabbitMQ")
        for seen in rabbit.seen:
            print(f"{seen.label}: {pprint.pformat(seen.value)}")
    if problems:
        raise AssertionError(
            f"{getattr(scenario, '__name__', 'scenario')}: WarrenMQ differs from RabbitMQ\n"
            + "\n".join(problems))
    return rabbit, warren


async def reply_of(call: Awaitable[Any]) -> Any:
    """Await a client call; its result, or ``(reply_code, reply_text)`` of the close it
    caused (aio-pika/aiormq raise ``ChannelClosed``/``ConnectionClosed`` with those)."""
    try:
        return await call
    except Exception as exc:
        return closed_reason(exc)


def closed_reason(exc: BaseException) -> Any:
    """(reply_code, reply_text) from a client library's close exception; else its type."""
    code = getattr(exc, "code", None) or getattr(exc, "reply_code", None)
    text = getattr(exc, "message", None) or getattr(exc, "reply_text", None)
    if isinstance(code, int):
        return (code, text)
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return (args[0], args[1])
    return (type(exc).__name__, str(exc))
