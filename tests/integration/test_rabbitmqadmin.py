"""RabbitMQ's own ``rabbitmqadmin`` (Debian's rabbitmq-server ships it as
/usr/bin/rabbitmqadmin) driving WarrenMQ's management API, run as a process for every
verb: declare/list/delete vhosts, users, permissions, policies, queues, exchanges and
bindings, publish, get with ack modes, purge, close a connection, export and import
definitions. The same script of calls runs against a private RabbitMQ 3.10.8 node with
the management plugin (benchmarks/rabbitmq.sh, unique node name, ports and folder,
stopped by PID) and the two transcripts must be the same, apart from what RabbitMQ has
and WarrenMQ says it does not (the amq.rabbitmq.trace exchange)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.conftest import BrokerHandle
from tests.integration.test_definitions import (
    RABBITMQ_SCRIPT,
    RABBITMQCTL,
    _free_port_pair,
    _pid_in,
    _stop_epmd,
)
from tests.mgmthttp import MANAGEMENT, Http

RABBITMQADMIN = shutil.which("rabbitmqadmin")
pytestmark = pytest.mark.skipif(
    RABBITMQADMIN is None, reason="rabbitmqadmin is not installed (apt-get install"
                                  " rabbitmq-server ships it)")

#: One operator's session; tsv output so that column widths do not depend on rows.
SCRIPT = [
    "declare vhost name=cmp",
    "declare queue --vhost=cmp name=q1 durable=true",
    'declare queue --vhost=cmp name=q2 durable=false arguments={"x-message-ttl":60000}',
    "declare exchange --vhost=cmp name=x1 type=topic",
    "declare binding --vhost=cmp source=x1 destination=q1 routing_key=a.*",
    "declare binding --vhost=cmp source=x1 destination=q2 routing_key=#",
    "declare exchange --vhost=cmp name=x2 type=fanout",
    "declare binding --vhost=cmp source=x1 destination=x2 destination_type=exchange"
    " routing_key=b.#",
    "list bindings --vhost=cmp source destination destination_type routing_key properties_key",
    "list queues --vhost=cmp name durable auto_delete arguments",
    "list exchanges --vhost=cmp name type durable internal auto_delete",
    "publish --vhost=cmp exchange=x1 routing_key=a.b payload=one"
    ' properties={"delivery_mode":2,"content_type":"text/plain"}',
    "publish --vhost=cmp exchange=x1 routing_key=zz payload=two",
    "publish --vhost=cmp exchange=x1 routing_key=nowhere.x payload=three",
    "publish --vhost=cmp exchange=x2 routing_key=k payload=lost",
    "get --vhost=cmp queue=q1 ackmode=ack_requeue_true",
    "get --vhost=cmp queue=q1 ackmode=reject_requeue_true",
    "get --vhost=cmp queue=q2 count=5 ackmode=ack_requeue_false",
    "get --vhost=cmp queue=q2",
    "purge queue --vhost=cmp name=q1",
    "get --vhost=cmp queue=q1",
    "declare user name=cmpuser password=pw tags=monitoring",
    "declare permission vhost=cmp user=cmpuser configure=^cmp write=.* read=",
    "list permissions vhost user configure write read",
    "list users name tags",
    "declare policy --vhost=cmp name=p1 pattern=^q apply-to=queues"
    ' definition={"max-length":10} priority=1',
    "list policies --vhost=cmp vhost name pattern apply-to definition priority",
    "delete policy --vhost=cmp name=p1",
    "list policies --vhost=cmp",
    "delete binding --vhost=cmp source=x1 destination_type=queue destination=q1"
    " properties_key=a.*",
    "list bindings --vhost=cmp source destination routing_key",
    "delete exchange --vhost=cmp name=x2",
    "delete queue --vhost=cmp name=q2",
    "delete permission vhost=cmp user=cmpuser",
    "delete user name=cmpuser",
    "list vhosts name",
    "delete vhost name=cmp",
    "list vhosts name",
    "delete vhost name=cmp",
    "delete queue name=nonexistent",
    "declare queue --vhost=nowhere name=q",
    "list users name tags",
]


async def admin(port: int, line: str, *extra: str) -> tuple[int, str]:
    """Run rabbitmqadmin once with ``line``'s words, then ``extra`` (words with spaces);
    (exit status, stdout + stderr)."""
    assert RABBITMQADMIN is not None
    args = [RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(port), "-u", "guest", "-p", "guest",
            "-f", "tsv", *_split(line), *extra]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _split(line: str) -> list[str]:
    """Words split on spaces, except inside a JSON value (``key={...}``)."""
    words: list[str] = []
    depth = 0
    current = ""
    for ch in line:
        if ch == " " and depth == 0:
            if current:
                words.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    if current:
        words.append(current)
    return words


async def transcript(port: int) -> list[str]:
    out = []
    for line in SCRIPT:
        code, text = await admin(port, line)
        assert "Traceback" not in text, (line, text)
        kept = [row for row in text.splitlines() if "amq.rabbitmq.trace" not in row]
        out.append(f"$ {line}\n" + "\n".join(kept) + f"\nexit {code}")
    return out


async def test_rabbitmqadmin_drives_warrenmq(broker_factory: Any, tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    port = broker.server.management_port
    assert port
    steps = dict(zip(SCRIPT, await transcript(port), strict=True))
    failing = {line for line, text in steps.items() if not text.endswith("exit 0")}
    assert failing == {"delete vhost name=cmp", "delete queue name=nonexistent",
                       "declare queue --vhost=nowhere name=q"}, failing
    assert "*** Not found: /api/vhosts/cmp" in steps["delete vhost name=cmp"]
    assert steps["list bindings --vhost=cmp source destination destination_type routing_key"
                 " properties_key"].splitlines()[1:-1] == [
        "source\tdestination\tdestination_type\trouting_key\tproperties_key",
        "\tq1\tqueue\tq1\tq1", "\tq2\tqueue\tq2\tq2", "x1\tq1\tqueue\ta.*\ta.%2A",
        "x1\tq2\tqueue\t#\t%23", "x1\tx2\texchange\tb.#\tb.%23"]
    got = steps["get --vhost=cmp queue=q2 count=5 ackmode=ack_requeue_false"].splitlines()
    assert [row.split("\t")[3] for row in got[2:-1]] == ["one", "two", "three"]
    assert "\tone\t" in steps["get --vhost=cmp queue=q1 ackmode=ack_requeue_true"]
    assert steps["get --vhost=cmp queue=q1"].splitlines()[1:-1] == ["No items"]  # purged
    assert steps["list users name tags"].splitlines()[1:-1] == ["name\ttags",
                                                                "guest\tadministrator"]
    # what rabbitmqadmin did is what the broker holds
    assert "cmp" not in broker.server.broker.vhosts
    assert set(broker.server.broker.users) == {"guest"}


async def test_rabbitmqadmin_connections_and_definitions(broker_factory: Any,
                                                         tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    port = broker.server.management_port
    assert port
    connection = await aio_pika.connect(broker.url, client_properties={
        "connection_name": "orders-app"})
    closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    connection.close_callbacks.add(lambda _c, exc=None: closed.done() or closed.set_result(exc))
    code, text = await admin(port, "list connections name user client_properties.connection_name")
    assert code == 0, text
    row = text.splitlines()[1].split("\t")
    assert row[1:] == ["guest", "orders-app"]
    code, text = await admin(port, "close connection", f"name={row[0]}")
    assert (code, text.strip()) == (0, "connection closed")
    assert "320" in str(await asyncio.wait_for(closed, 10))
    await Http(port).request("PUT", "/api/queues/%2F/kept", body={"durable": True})
    exported = tmp_path / "defs.json"
    code, text = await admin(port, f"export {exported}")
    assert code == 0, text
    document = json.loads(exported.read_text())
    assert "kept" in {q["name"] for q in document["queues"]}
    document["queues"].append({"name": "imported", "vhost": "/", "durable": True,
                               "auto_delete": False, "arguments": {}})
    exported.write_text(json.dumps(document))
    code, text = await admin(port, f"import {exported}")
    assert code == 0, text
    assert "imported" in broker.vhost().queues
    code, text = await admin(port, "show overview")
    assert code == 0 and "3.10.8" in text


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("rabbitmq-server") is None and not RABBITMQCTL.exists(),
                    reason="rabbitmq-server is not installed (apt-get install rabbitmq-server)")
async def test_rabbitmqadmin_transcript_same_as_rabbitmq(broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    assert broker.server.management_port
    ours = await transcript(broker.server.management_port)
    port = _free_port_pair()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        mgmt_port = int(sock.getsockname()[1])
    base = Path(f"/tmp/warrenbench-rabbitmq-{port}")

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(RABBITMQ_SCRIPT), *args], capture_output=True,
                              text=True, timeout=150, check=False,
                              env={**os.environ, "PATH": os.environ.get("PATH", "")})

    epmd: int | None = None
    try:
        started = await asyncio.to_thread(script, "start", str(port), str(mgmt_port))
        epmd = await asyncio.to_thread(_pid_in, base / "epmd.pid")
        assert started.returncode == 0, started.stdout + started.stderr
        for _ in range(60):  # the management listener starts after the node: bounded wait
            code, _ = await admin(mgmt_port, "show overview")
            if code == 0:
                break
            await asyncio.sleep(0.5)
        theirs = await transcript(mgmt_port)
    finally:
        await asyncio.to_thread(script, "stop", str(port))
        if epmd is not None:
            await asyncio.to_thread(_stop_epmd, epmd)
        shutil.rmtree(base, ignore_errors=True)
    for mine, rabbit in zip(ours, theirs, strict=True):
        assert mine == rabbit, f"\n--- RabbitMQ\n{rabbit}\n--- WarrenMQ\n{mine}"
    print(f"{len(ours)} rabbitmqadmin calls, same transcript as RabbitMQ", file=sys.stderr)
