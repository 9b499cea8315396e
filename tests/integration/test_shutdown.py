"""Graceful shutdown and the command line.

Covers:

- in-process: ``await broker.server.close()`` sends connection.close 320
  CONNECTION_FORCED (class/method 0/0, as RabbitMQ's "broker forced connection closure
  with reason 'shutdown'") to every raw client, and aio-pika and aiormq connections see
  the forced close; the server stops accepting new connections;
- a real ``python -m warrenmq serve`` process: SIGTERM and SIGINT each make it close a
  connected raw client with 320 and exit with status 0 (bounded waits; the process is
  killed by PID in ``finally`` if it is still running);
- ``warrenmq check-config`` on a bad file exits 2 and reports each problem as
  ``file:line:col``; on the shipped file it exits 0; ``--version`` prints the version.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aio_pika
import aiormq
import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

import warrenmq
from tests.conftest import BrokerHandle
from tests.helpers import consume, declare, raw_client
from tests.rawamqp import RawClient

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


async def expect_forced_close(client: RawClient) -> None:
    close = await client.expect_connection_close((320, 0, 0), timeout=10)
    assert close.reply_text.startswith("CONNECTION_FORCED")
    assert "shutdown" in close.reply_text


# ----------------------------------------------------------------------------- in-process


async def test_server_close_forces_every_connection_closed(broker: BrokerHandle) -> None:
    raws = [await raw_client(broker) for _ in range(3)]
    # one with a consumer and an unacked delivery, to be sure that is fine
    await declare(raws[0], "shutdown-q")
    await consume(raws[0], "shutdown-q", "c")
    aio_conn = await aio_pika.connect(broker.url)
    aio_pika_closed: asyncio.Future[BaseException | None] = (
        asyncio.get_running_loop().create_future())
    aio_conn.close_callbacks.add(
        lambda _sender, exc: aio_pika_closed.done() or aio_pika_closed.set_result(exc))
    aio_channel = await aio_conn.channel()
    await aio_channel.default_exchange.publish(aio_pika.Message(b"m"), routing_key="shutdown-q")
    await raws[0].expect(commands.Basic.Deliver)
    await raws[0].expect(ContentHeader)
    assert (await raws[0].expect(ContentBody)).value == b"m"
    rmq = await aiormq.connect(broker.url)
    await rmq.channel()
    assert len(broker.server.connections) == 5

    closing = asyncio.create_task(broker.server.close(grace=5))
    await asyncio.gather(*(expect_forced_close(raw) for raw in raws))

    with pytest.raises(aiormq.exceptions.ConnectionClosed) as info:
        await asyncio.wait_for(rmq.closing, 10)
    assert info.value.args[0] == 320
    assert rmq.is_closed

    aio_pika_reason = await asyncio.wait_for(aio_pika_closed, 10)
    assert isinstance(aio_pika_reason, aiormq.exceptions.ConnectionClosed)
    assert aio_pika_reason.args[0] == 320
    assert not aio_conn.connected.is_set()
    await aio_conn.close()
    await asyncio.wait_for(closing, 10)
    assert not broker.server.connections
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", broker.port), 5)


async def test_server_close_aborts_clients_that_never_answer(broker: BrokerHandle) -> None:
    raw = await RawClient.connect(broker.port)
    await raw.handshake()
    closing = asyncio.create_task(broker.server.close(grace=3))
    close = await raw.expect(commands.Connection.Close, timeout=10)
    assert close.reply_code == 320
    # No close-ok: the broker still finishes its shutdown and drops the socket.
    await asyncio.wait_for(closing, 10)
    assert await raw.closed(timeout=5)
    raw.close()
    assert not broker.server.connections


# ----------------------------------------------------------------------------- subprocess


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_for_port(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    for _ in range(400):  # bounded: 20 s for the interpreter to start and listen
        assert proc.returncode is None, f"broker exited early:\n{read_log(log)}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"broker never listened on {port}:\n{read_log(log)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_process_shuts_down_gracefully(tmp_path: Path, signum: int) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "warrenmq", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--management-port", "0",
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        await wait_for_port(port, proc, log)
        client = await RawClient.connect(port)
        await client.handshake()
        await client.open_channel(1)
        await declare(client, "proc-q")
        os.kill(proc.pid, signum)
        await expect_forced_close(client)
        status = await asyncio.wait_for(proc.wait(), 10)
        assert status == 0, read_log(log)
        assert "broker_stopping" in read_log(log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 5)


# ----------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "warrenmq", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=False)


async def test_check_config_bad_file_exits_2_with_locations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  frame_max: 12\n  chanel_max: 5\n")
    result = await asyncio.to_thread(run_cli, "check-config", str(bad))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}:2:14: limits.frame_max:") for line in lines), lines
    assert any(line.startswith(f"{bad}:3:3: limits.chanel_max:") and "channel_max" in line
               for line in lines), lines


async def test_check_config_missing_file_exits_2(tmp_path: Path) -> None:
    result = await asyncio.to_thread(run_cli, "check-config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr


async def test_check_config_shipped_file_is_ok() -> None:
    shipped = REPO / "config" / "broker.yaml"
    result = await asyncio.to_thread(run_cli, "check-config", str(shipped))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{shipped}: ok"


async def test_version() -> None:
    result = await asyncio.to_thread(run_cli, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"warrenmq {warrenmq.__version__}"
