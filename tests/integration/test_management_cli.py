"""Command-line clients of the management listener, each a real subprocess: ``warrenmq
queues`` (one shot, ``--watch --count``, errors), RabbitMQ's own ``rabbitmqadmin``
(list/declare/get/purge/delete/close) when Debian's rabbitmq-server package provides it,
and ``warrenmq serve --management-port``."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerHandle
from tests.integration.test_management_api import consume_and_hold, publish
from tests.mgmthttp import MANAGEMENT, Http

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
RABBITMQADMIN = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/"
                                 "rabbitmq_management-*/priv/www/cli/rabbitmqadmin"))


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    return handle, Http(handle.server.management_port or 0)


async def test_warrenmq_queues_table(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, _ = mgmt
    await publish(broker.url, "orders", 100)
    await publish(broker.url, "audit", 3)
    connection, held = await consume_and_hold(broker.url, "orders", 40)
    async with connection:
        url = f"http://guest:guest@127.0.0.1:{broker.server.management_port}"
        code, out, err = await run(sys.executable, "-m", "warrenmq", "queues", "--url", url)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("Listing queues for vhost /")
        assert lines[1].split() == ["NAME", "READY", "UNACKED", "CONSUMERS", "PUBLISH/S",
                                    "DELIVER/S"]
        rows = {line.split()[0]: line.split()[1:4] for line in lines[2:]}
        assert rows == {"audit": ["3", "0", "0"], "orders": ["60", "40", "0"]}
        for message in held:
            await message.ack()

    code, out, err = await run(sys.executable, "-m", "warrenmq", "queues", "--url", url,
                               "--vhost", "", "--watch", "--count", "2", "--interval", "0.2")
    assert code == 0, err
    assert out.count("Listing queues for vhost (all)") == 2
    assert out.count("/:orders") == 2  # every vhost: names carry theirs
    assert "\x1b[" not in out  # not a terminal: no screen control codes


async def test_warrenmq_queues_errors(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, _ = mgmt
    port = broker.server.management_port
    code, _, err = await run(sys.executable, "-m", "warrenmq", "queues", "--url",
                             f"http://guest:bad@127.0.0.1:{port}")
    assert code == 2
    assert "HTTP 401 Login failed" in err and "Traceback" not in err
    code, _, err = await run(sys.executable, "-m", "warrenmq", "queues", "--url",
                             f"http://guest:guest@127.0.0.1:{port}", "--vhost", "nope")
    assert code == 2 and "HTTP 404" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, _, err = await run(sys.executable, "-m", "warrenmq", "queues", "--url",
                             f"http://127.0.0.1:{closed}")
    assert code == 2 and "cannot reach" in err


@pytest.mark.skipif(not RABBITMQADMIN, reason="rabbitmqadmin (Debian rabbitmq-server) absent")
async def test_rabbitmqadmin(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, _ = mgmt
    base = ["python3", RABBITMQADMIN[-1], "-H", "127.0.0.1", "-P",
            str(broker.server.management_port), "-u", "guest", "-p", "guest"]

    async def admin(*args: str) -> str:
        code, out, err = await run(*base, *args)
        assert code == 0, (args, out, err)
        return out

    await publish(broker.url, "work", 4)
    out = await admin("list", "queues")
    assert "| work | 4        |" in out
    await admin("declare", "queue", "name=adm.q", "durable=false")
    await admin("declare", "exchange", "name=adm.x", "type=fanout")
    assert "adm.x" in broker.vhost().exchanges
    out = await admin("-f", "tsv", "list", "queues", "name", "messages", "consumers")
    assert out.splitlines()[1:] == ["adm.q\t0\t0", "work\t4\t0"]
    out = await admin("get", "queue=work", "count=2", "ackmode=ack_requeue_true")
    assert "m0" in out and "m1" in out
    assert broker.vhost().queues["work"].message_count == 4  # requeued
    out = await admin("-f", "raw_json", "show", "overview")
    assert '"queue_totals"' in out
    await admin("purge", "queue", "name=work")
    assert broker.vhost().queues["work"].message_count == 0
    await admin("delete", "queue", "name=adm.q")
    assert "adm.q" not in broker.vhost().queues
    code, _, err = await run(*base[:-4], "-u", "guest", "-p", "wrong", "list", "queues")
    assert code != 0 and "Access refused" in err


async def test_serve_with_management_port(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - waited on below with bounds
            [sys.executable, "-m", "warrenmq", "serve", "--port", str(ports[0]),
             "--management-port", str(ports[1]), "--data-dir", str(tmp_path / "data")],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    try:
        http = Http(ports[1])
        for _ in range(100):
            try:
                reply = await http.get("/api/overview")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(log.read_text())
        assert reply.status == 200
        assert {"protocol": "amqp", "port": ports[0]}.items() <= next(
            item for item in reply.json["listeners"] if item["protocol"] == "amqp").items()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_serve_refuses_a_taken_management_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = await run(
            sys.executable, "-m", "warrenmq", "serve", "--port", "0", "--management-port",
            str(taken.getsockname()[1]), "--data-dir", str(tmp_path / "data"))
    assert code == 2, (out, err)
    assert "cannot start the management listener" in err and "--no-management" in err
    assert "Traceback" not in err + out
