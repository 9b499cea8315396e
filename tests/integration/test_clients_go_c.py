"""Clients beyond Python, part 1: Go's amqp091 and C's librabbitmq / amqp-tools, with
the toolchains Debian packages (see .ci/run), each driving a real WarrenMQ over TCP.

- Go (golang-go + golang-github-rabbitmq-amqp091-go-dev, built offline with
  GO111MODULE=off against /usr/share/gocode): tests/clients/go/main.go publishes with
  confirms, consumes with QoS 2, acks, nacks with requeue, gets a cancel notification,
  sees connection.blocked/unblocked around a memory alarm, is closed by the management
  API (320) and reconnects; the failure path is a 404 on a passive declare.
- C: amqp-tools (amqp-declare-queue, amqp-publish, amqp-get, amqp-consume) round trip
  with a persistent message; and tests/clients/c/roundtrip.c built with gcc against
  librabbitmq (publisher confirms, headers, basic.get, ack; a 404 on a passive declare).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerHandle
from tests.mgmthttp import MANAGEMENT

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
TIMEOUT = 60.0


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is needed for this test (apt-get install {package}; see .ci/run)"
    return path


async def run(*args: str, env: dict[str, str] | None = None,
              timeout: float = TIMEOUT) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = need("go", "golang-go")
    assert Path("/usr/share/gocode/src/github.com/rabbitmq/amqp091-go").is_dir(), (
        "apt-get install golang-github-rabbitmq-amqp091-go-dev")
    out = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
           "GOCACHE": str(out / "cache"), "GOFLAGS": "", "GOPROXY": "off"}
    subprocess.run([go, "build", "-o", str(out / "client"), str(CLIENTS / "go" / "main.go")],
                   env=env, check=True, timeout=300, capture_output=True)
    return out / "client"


async def test_go_amqp091(broker_factory: object, go_client: Path) -> None:
    broker: BrokerHandle = await broker_factory(  # type: ignore[operator]
        top={**MANAGEMENT, "memory_high_watermark_bytes": 100_000})
    api = f"http://127.0.0.1:{broker.server.management_port}"
    code, out, err = await run(str(go_client), broker.url, api)
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {
        "confirmed": 10, "acked": 10, "redelivered": 1, "max_unacked": 2,
        "cancelled": "doomed", "blocked": report["blocked"], "unblocked": True,
        "close_code": 320, "reconnected": True, "after_reconnect": "ggggg",
        "missing_code": 404}
    assert report["blocked"]  # RabbitMQ's reason text, e.g. "low on memory"


@pytest.fixture(scope="module")
def c_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = need("gcc", "gcc")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "librabbitmq"],
                           capture_output=True, text=True, check=False)
    assert flags.returncode == 0, "apt-get install librabbitmq-dev pkg-config"
    out = tmp_path_factory.mktemp("c") / "roundtrip"
    subprocess.run([gcc, "-Wall", "-Werror", "-o", str(out), str(CLIENTS / "c" / "roundtrip.c"),
                    *flags.stdout.split()], check=True, timeout=120, capture_output=True)
    return out


async def test_c_librabbitmq(broker: BrokerHandle, c_client: Path) -> None:
    code, out, err = await run(str(c_client), broker.host, str(broker.port), "c.work")
    assert code == 0, err
    assert json.loads(out) == {"confirmed": 1, "body": "hello from C", "lang": "c",
                               "delivery_mode": 2, "missing_code": 404}
    assert broker.vhost().queues["c.work"].message_count == 0  # acked


async def test_c_amqp_tools(broker: BrokerHandle, tmp_path: Path) -> None:
    declare = need("amqp-declare-queue", "amqp-tools")
    url = broker.url
    code, out, err = await run(declare, "-u", url, "-q", "tools.q", "-d")
    assert code == 0 and out.strip() == "tools.q", err
    for i in range(3):
        code, _, err = await run(need("amqp-publish", "amqp-tools"), "-u", url, "-r", "tools.q",
                                 "-p", "-C", "text/plain", "-H", f"n: {i}", "-b", f"msg {i}")
        assert code == 0, err
    assert broker.vhost().queues["tools.q"].message_count == 3
    code, out, err = await run(need("amqp-get", "amqp-tools"), "-u", url, "-q", "tools.q")
    assert code == 0 and out == "msg 0", err
    sink, script = tmp_path / "consumed", tmp_path / "sink.sh"
    script.write_text('cat >> "$1"; echo >> "$1"\n')  # amqp-consume runs it per message
    code, _, err = await run(need("amqp-consume", "amqp-tools"), "-u", url, "-q", "tools.q",
                             "-c", "2", "-p", "1", "sh", str(script), str(sink))
    assert code == 0, err
    assert sink.read_text().splitlines() == ["msg 1", "msg 2"]
    assert broker.vhost().queues["tools.q"].message_count == 0
    # the failure path: a queue that does not exist
    code, _, err = await run(need("amqp-get", "amqp-tools"), "-u", url, "-q", "tools.missing")
    assert code != 0 and "NOT_FOUND" in err
