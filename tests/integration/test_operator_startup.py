"""The broker process as an operator meets it: ``warrenmq serve`` as a subprocess.

Covered: SIGHUP never kills a broker started without ``--config`` (it logs that there is
nothing to reload, keeps serving, and a later SIGTERM still stops it cleanly with the
data-dir lock released); command-line ports are checked (1..65535, 0 = any free one,
the picked ports logged); start-up errors name what failed and the fix (the data
directory, the AMQP listener, the management listener) with exit status 2 and no
traceback; ``--no-management``; the banner on a terminal and the one ``broker_started``
event; a SIGTERM during 1 MB persistent publishing from 8 connections stops cleanly,
with no error line in the log; ``check-config`` reports type errors and dangling
bindings in one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import aiormq
import pytest

from tests.process import PYTHON, REPO, BrokerProcess, arun_cli, events


def _errors(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if '"level": "error"' in line or "Traceback" in line or "[error" in line]


async def test_sighup_without_config_does_not_kill_the_broker(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "data", management=False) as broker:
        broker.send(signal.SIGHUP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while "config_reload_skipped" not in broker.log and loop.time() < deadline:
            await asyncio.sleep(0.05)
        skipped = [e for e in events(broker.log) if e["event"] == "config_reload_skipped"]
        assert skipped and "without --config" in skipped[0]["reason"], broker.log
        connection = await aiormq.connect(broker.amqp_url)  # still serving
        await connection.close()
        assert await broker.stop() == 0, broker.log
    assert _errors(broker.log) == []
    # the lock was released: a second broker can take the directory at once
    async with BrokerProcess(tmp_path / "data", management=False) as again:
        assert await again.stop() == 0


@pytest.mark.parametrize(("flag", "value"), [("--port", "70000"), ("--port", "-1"),
                                             ("--management-port", "99999"),
                                             ("--port", "http")])
async def test_command_line_ports_are_checked(tmp_path: Path, flag: str, value: str) -> None:
    result = await arun_cli("serve", flag, value, "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert f"argument {flag}:" in result.stderr
    assert "1..65535" in result.stderr or "not a port number" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()  # nothing started


async def test_port_zero_picks_ports_and_logs_them(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "data") as broker:
        assert broker.port > 0 and broker.management_port > 0
        assert broker.started["amqp_urls"] == [f"amqp://127.0.0.1:{broker.port}/"]
        assert broker.started["management_url"] == f"http://127.0.0.1:{broker.management_port}/"
        assert broker.started["data_dir"] == str((tmp_path / "data").resolve())
        assert broker.started["config_file"] is None
        assert broker.started["hot_path"] in ("pure", "compiled")
        assert broker.started["version"]
        assert await broker.stop() == 0


async def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = await arun_cli("serve", "--port", "0", "--no-management",
                            "--data-dir", str(tmp_path / "afile"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"warrenmq: cannot use the data directory {tmp_path / 'afile'}:")
    assert "it is a file, not a directory" in last and "--data-dir" in last
    assert "cannot listen" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to user nobody")
async def test_unwritable_data_dir() -> None:
    top = Path(tempfile.mkdtemp(prefix="warrenmq-ro-"))  # /tmp: searchable by nobody
    data = top / "ro"
    os.chmod(top, 0o755)
    os.mkdir(data, 0o555)
    result = await asyncio.to_thread(
        subprocess.run, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         PYTHON, "-m", "warrenmq", "serve", "--port", "0", "--no-management",
                         "--data-dir", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    if "Permission denied" in result.stderr and "warrenmq" not in result.stderr:
        pytest.skip("user nobody cannot run this checkout's interpreter")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"warrenmq: cannot use the data directory {data}: permission denied")
    assert "--data-dir" in last
    os.rmdir(data)
    os.rmdir(top)


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_amqp_port_in_use_names_the_listener_and_the_fix(tmp_path: Path) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        result = await arun_cli("serve", "--port", str(port), "--no-management",
                                "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"warrenmq: cannot start the AMQP listener on 127.0.0.1:{port}:"
                           " the address is already in use."), last
    assert "--port" in last and "Traceback" not in result.stderr


async def test_management_port_in_use_suggests_no_management(tmp_path: Path) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        result = await arun_cli("serve", "--port", "0", "--management-port", str(port),
                                "--data-dir", str(tmp_path / "d"))
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"warrenmq: cannot start the management listener on"
                               f" 127.0.0.1:{port}: the address is already in use."), last
        assert "--no-management" in last and "--management-port" in last
        # ... and the fix works
        async with BrokerProcess(tmp_path / "d", management=False) as ok:
            assert ok.started["management_url"] is None
            assert await ok.stop() == 0


async def test_banner_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "warrenmq", "serve", "--port", "0", "--management-port", "0",
        "--data-dir", str(tmp_path / "d"), cwd=REPO, stdin=subprocess.DEVNULL,
        stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while b"hot path" not in seen and loop.time() < deadline:
            with contextlib.suppress(OSError):
                seen += await asyncio.to_thread(os.read, leader, 4096)
        text = seen.decode(errors="replace")
        assert "WarrenMQ " in text and "is running" in text, text
        for label in ("AMQP", "amqp://127.0.0.1:", "management", "http://127.0.0.1:",
                      "login", "guest / guest", "data dir", str((tmp_path / "d").resolve()),
                      "config", "none (built-in defaults", "hot path"):
            assert label in text, (label, text)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        os.close(leader)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_no_banner_when_not_a_terminal(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "d") as broker:
        assert await broker.stop() == 0
    assert "is running" not in broker.log
    assert sum(e["event"] == "broker_started" for e in events(broker.log)) == 1


async def _publish_big(url: str, stop: asyncio.Event) -> None:
    body = b"x" * (1 << 20)
    with contextlib.suppress(Exception):
        connection = await aiormq.connect(url)
        channel = await connection.channel()
        await channel.queue_declare("big", durable=True)
        while not stop.is_set():
            await channel.basic_publish(
                body, routing_key="big", properties=aiormq.spec.Basic.Properties(
                    delivery_mode=2))


async def test_sigterm_during_persistent_publishing_is_clean(tmp_path: Path) -> None:
    for attempt in range(3):
        async with BrokerProcess(tmp_path / f"data{attempt}", management=False) as broker:
            stop = asyncio.Event()
            publishers = [asyncio.create_task(_publish_big(broker.amqp_url, stop))
                          for _ in range(8)]
            await asyncio.sleep(1.5)
            status = await broker.stop()
            stop.set()
            await asyncio.wait(publishers, timeout=10)
            assert status == 0, broker.log
            assert _errors(broker.log) == [], broker.log
            assert "server_stopped" in broker.log


async def test_check_config_reports_everything_in_one_round(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "exchanges:\n"
        "  - name: events\n    type: fanout\n    durable: 3\n"
        "  - name: orders\n    auto_delete: x\n"
        "queues:\n"
        "  - name: billing\n    durable: 5\n    max_length: x\n"
        "  - name: audit\n    message_ttl: true\n"
        "bindings:\n"
        "  - source: nope\n    destination: billing\n"
        "  - source: events\n    destination: nosuchq\n"
        "  - source: orders\n    destination: audit\n")
    result = await arun_cli("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 7, lines
    assert f"{bad}:14:13: bindings[0].source: no exchange \"nope\" is declared in vhost \"/\"" \
        in lines
    assert f"{bad}:17:18: bindings[1].destination: no queue \"nosuchq\" is declared in" \
        " vhost \"/\"" in lines
    assert sum("durable" in line for line in lines) == 2


async def test_recovery_of_a_large_store_logs_progress(tmp_path: Path) -> None:
    data = tmp_path / "data"
    body = b"y" * (1 << 20)
    async with BrokerProcess(data, management=False) as broker:
        connection = await aiormq.connect(broker.amqp_url)
        try:
            channel = await connection.channel()  # publisher confirms on
            await channel.queue_declare("big", durable=True)
            for _ in range(70):  # > 64 MiB: two segments
                await channel.basic_publish(body, routing_key="big",
                                            properties=aiormq.spec.Basic.Properties(
                                                delivery_mode=2))
        finally:
            await connection.close()
        assert await broker.stop() == 0
    async with BrokerProcess(data, management=False) as again:
        assert await again.stop() == 0
    progress = [e for e in events(again.log) if e["event"] == "storage_recovery_progress"]
    assert progress, again.log
    assert progress[-1]["segments_done"] == progress[-1]["segments"] >= 2
    recovered = [e for e in events(again.log) if e["event"] == "messages_recovered"]
    assert recovered[0]["messages"] == 70


@pytest.mark.skipif(shutil.which("make") is None or not (REPO / ".venv/bin/warrenmq").exists(),
                    reason="needs make and the checkout's .venv")
async def test_make_run_passes_args(tmp_path: Path) -> None:
    log = tmp_path / "make.log"
    with log.open("wb") as out:
        # -o: the existing .venv counts as up to date; WARRENMQ_PURE: no mypyc build here
        proc = await asyncio.create_subprocess_exec(
            "make", "--no-print-directory", "-o", ".venv/bin/warrenmq", "run",
            f"ARGS=--no-management --port 0 --data-dir {tmp_path / 'data'}",
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "WARRENMQ_PURE": "1"})
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        started: list[dict[str, object]] = []
        while not started and loop.time() < deadline and proc.returncode is None:
            await asyncio.sleep(0.1)
            started = [e for e in events(log.read_text(errors="replace"))
                       if e.get("event") == "broker_started"]
        assert started, log.read_text(errors="replace")
        assert started[0]["management_url"] is None
        assert started[0]["data_dir"] == str((tmp_path / "data").resolve())
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def test_heartbeat_takes_the_same_durations_as_ttls(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("limits:\n  heartbeat: 30000ms\nqueues:\n  - name: q\n"
                    "    message_ttl: 1d\n    expires: 2h\n")
    result = await arun_cli("check-config", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, f"{good}: ok"), result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  heartbeat: 1500ms\n")
    result = await arun_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "limits.heartbeat" in result.stderr and "whole number of seconds" in result.stderr
