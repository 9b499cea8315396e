"""``warrenmq stream info|replay`` as real subprocesses against a broker with the
management listener: offsets and committed consumer offsets, a replay into a queue with
progress, an interrupted replay resumed from its checkpoint, and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aiormq
import pytest

from tests.conftest import BrokerHandle
from tests.integration.test_management_cli import run
from tests.integration.test_streams import _consume, _declare, _publish
from tests.mgmthttp import MANAGEMENT, Http


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    return handle, Http(handle.server.management_port or 0)


def api(broker: BrokerHandle) -> str:
    return f"http://guest:guest@127.0.0.1:{broker.server.management_port}"


async def _queue_bodies(url: str, queue: str) -> list[tuple[bytes, int]]:
    conn = await aiormq.connect(url)
    ch = await conn.channel()
    out = []
    while True:
        got = await ch.basic_get(queue, no_ack=True)
        if got.body is None or got.delivery_tag is None:
            break
        headers = got.header.properties.headers or {}
        assert "x-stream-offset" not in headers
        out.append((got.body, int(headers["x-replayed-offset"])))  # type: ignore[arg-type]
    await conn.close()
    return out


async def test_info_shows_offsets_and_committed_consumer_offsets(mgmt) -> None:  # type: ignore[no-untyped-def]
    broker, http = mgmt
    await _declare(broker.url, "events")
    await _publish(broker.url, "events", [b"%d" % i for i in range(12)])
    await _consume(broker.url, "events", {"x-stream-offset": "first",
                                          "x-stream-consumer-name": "reports"}, 12)
    code, out, err = await run(sys.executable, "-m", "warrenmq", "stream", "info", "events",
                               "--api", api(broker))
    assert code == 0, err
    assert out.splitlines()[0].split()[:2] == ["stream", "events"]
    assert "first offset  0" in out and "last offset   11" in out
    assert "messages      12" in out and "segments      1" in out
    assert "reports" in out and out.rstrip().endswith("11")
    body = await http.json("/api/queues/%2F/events")
    assert body["type"] == "stream"
    assert body["stream"]["consumer_offsets"] == {"reports": 11}


async def test_info_on_a_classic_queue_is_a_clear_error(mgmt) -> None:  # type: ignore[no-untyped-def]
    broker, _ = mgmt
    conn = await aiormq.connect(broker.url)
    ch = await conn.channel()
    await ch.queue_declare("plain")
    await conn.close()
    code, out, err = await run(sys.executable, "-m", "warrenmq", "stream", "info", "plain",
                               "--api", api(broker))
    assert code == 2 and out == ""
    assert err.strip() == ("warrenmq stream info: queue 'plain' in vhost '/' is a classic"
                           " queue, not a stream")


async def test_replay_copies_a_range_and_resumes_from_its_checkpoint(broker, tmp_path: Path
                                                                     ) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "events")
    await _publish(broker.url, "events", [b"e%d" % i for i in range(50)])
    conn = await aiormq.connect(broker.url)
    ch = await conn.channel()
    await ch.queue_declare("copy")
    await conn.close()
    state = tmp_path / "replay.json"
    base = [sys.executable, "-m", "warrenmq", "stream", "replay", "events", "--to-queue",
            "copy", "--url", broker.url, "--state", str(state), "--idle", "0.5",
            "--batch", "10"]
    code, out, err = await run(*base, "--from", "5", "--until", "24")
    assert code == 0, err
    assert "stream_replay_copied=20 next_offset=25" in out
    assert "replay events -> copy: copied=20 next_offset=25 of 24" in err
    assert json.loads(state.read_text())["next_offset"] == 25
    # the rerun resumes after the checkpoint, whatever --from says
    code, out, err = await run(*base, "--from", "first")
    assert code == 0, err
    assert "resuming at offset 25" in err
    assert "stream_replay_copied=25 next_offset=50" in out
    copied = await _queue_bodies(broker.url, "copy")
    assert copied == [(b"e%d" % i, i) for i in range(5, 50)]


@pytest.mark.parametrize(("extra", "text"), [
    (["--from", "yesterday"], "--from 'yesterday': expected first, last, next"),
    (["--from", "first", "--to-queue", "missing"], "no queue 'missing': declare it first"),
])
async def test_replay_errors(broker, tmp_path: Path, extra, text) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "events")
    args = [sys.executable, "-m", "warrenmq", "stream", "replay", "events", "--url",
            broker.url, "--state", str(tmp_path / "s.json")]
    if "--to-queue" not in extra:
        args += ["--to-queue", "copy"]
    code, _out, err = await run(*args, *extra)
    assert code == 2
    assert text in err and "Traceback" not in err
