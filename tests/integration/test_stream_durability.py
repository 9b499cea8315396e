"""Stream queues across restarts: tracked consumer offsets (x-stream-consumer-name),
contiguous acks only, retention deleting whole segments (argument and policy), a torn
segment tail, and the Unix-time warning for numeric offsets."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiormq
import pytest
import structlog
from aiormq.abc import DeliveredMessage

from tests.conftest import running
from tests.integration.test_streams import STREAM, _consume, _declare, _publish
from warrenmq.storage.streams import STREAMS_DIR, stream_dirname


def stream_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / "data" / STREAMS_DIR / stream_dirname("/", name)


def tear(path: Path) -> None:
    """Cut the last record in half and leave garbage after it (a crash mid-write)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 7)
        f.seek(0, os.SEEK_END)
        f.write(b"\xff" * 3)


async def _consume_acking(url: str, args: dict[str, object], ack: list[int], count: int,
                          prefetch: int = 10) -> list[int]:
    """Receive ``count`` messages, acking only those at the positions in ``ack``."""
    conn = await aiormq.connect(url)
    ch = await conn.channel()
    await ch.basic_qos(prefetch_count=prefetch)
    offsets: list[int] = []
    done = asyncio.get_running_loop().create_future()

    async def on_message(msg: DeliveredMessage) -> None:
        index = len(offsets)
        offsets.append(int(msg.header.properties.headers["x-stream-offset"]))
        if index in ack:
            await ch.basic_ack(msg.delivery.delivery_tag)
        if len(offsets) == count and not done.done():
            done.set_result(None)

    await ch.basic_consume("s", on_message, arguments=args)
    await asyncio.wait_for(done, 5)
    await asyncio.sleep(0.2)  # let the acks arrive
    await conn.close()
    return offsets


async def test_tracked_offset_survives_restart_and_counts_contiguous_acks(tmp_path: Path
                                                                          ) -> None:
    named = {"x-stream-consumer-name": "reporting", "x-stream-offset": "first"}
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s")
        await _publish(broker.url, "s", [b"%d" % i for i in range(10)])
        # offsets 0..5 delivered; 0, 1, 2 and 4 acked: 3 is not, so only 0..2 count
        got = await _consume_acking(broker.url, named, [0, 1, 2, 4], 6, prefetch=6)
        assert got[:6] == list(range(6))  # more follow as acks return credit
        vhost = broker.vhost()
        assert vhost.queues["s"].tracked_offsets() == {"reporting": 2}
    async with running(tmp_path) as broker:
        assert broker.vhost().queues["s"].tracked_offsets() == {"reporting": 2}
        resumed = await _consume(broker.url, "s", {"x-stream-consumer-name": "reporting"}, 7)
        assert [o for _, o in resumed] == list(range(3, 10))
        await _publish(broker.url, "s", [b"10"])
    async with running(tmp_path) as broker:
        assert broker.vhost().queues["s"].tracked_offsets() == {"reporting": 9}
        again = await _consume(broker.url, "s", {"x-stream-consumer-name": "reporting"}, 1)
        assert again == [(b"10", 10)]
        # an explicit offset wins over the tracked one
        explicit = await _consume(broker.url, "s", {"x-stream-consumer-name": "reporting",
                                                    "x-stream-offset": 8}, 3)
        assert [o for _, o in explicit] == [8, 9, 10]
        # a name never seen starts at `next`, as an unnamed consumer does
        assert await _consume(broker.url, "s", {"x-stream-consumer-name": "new"}, 0) == []


async def test_retention_by_bytes_deletes_whole_oldest_segments(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s", **{"x-max-length-bytes": 3000,
                                           "x-stream-max-segment-size-bytes": 1000})
        await _publish(broker.url, "s", [b"x" * 200 for _ in range(40)])
        queue = broker.vhost().queues["s"]
        segments = sorted(p.name for p in stream_dir(tmp_path, "s").glob("*.seg"))
        assert 2 <= len(segments) <= 5, segments
        assert queue.log.size_bytes <= 3000 + 1000
        first = queue.log.first_offset
        assert first > 0 and segments[0] == f"{first:020d}.seg"
        got = await _consume(broker.url, "s", {"x-stream-offset": "first"}, 40 - first)
        assert [o for _, o in got] == list(range(first, 40))
    async with running(tmp_path) as broker:
        assert broker.vhost().queues["s"].log.first_offset == first


async def test_retention_by_age_with_a_policy_that_wins(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s", **{"x-max-age": "7D",
                                           "x-stream-max-segment-size-bytes": 500})
        await _publish(broker.url, "s", [b"y" * 200 for _ in range(6)])
        queue = broker.vhost().queues["s"]
        before = len(queue.log.segments)
        assert before >= 3
        await asyncio.sleep(1.1)
        await _publish(broker.url, "s", [b"y" * 200])  # a newer segment
        from warrenmq.broker.policies import Policy
        broker.server.broker.set_policy(Policy("short", "/", "^s$", "queues", 0,
                                               {"max-age": "1s"}))
        assert queue.stream_args.max_age_ms == 1000
        deadline = time.monotonic() + 5
        while len(queue.log.segments) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(queue.log.segments) == 1  # the newest always stays
        assert queue.log.first_offset == queue.log.segments[0].first


async def test_torn_segment_tail_is_cut_at_the_last_whole_record(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s")
        await _publish(broker.url, "s", [b"whole-%d" % i for i in range(5)])
    tear(next(stream_dir(tmp_path, "s").glob("*.seg")))
    async with running(tmp_path) as broker:
        queue = broker.vhost().queues["s"]
        assert queue.log.committed == 4
        got = await _consume(broker.url, "s", {"x-stream-offset": "first"}, 4)
        assert [b for b, _ in got] == [b"whole-%d" % i for i in range(4)]
        await _publish(broker.url, "s", [b"after"])
        assert await _consume(broker.url, "s", {"x-stream-offset": 4}, 1) == [(b"after", 4)]


async def test_numeric_offset_that_looks_like_a_unix_time_warns(tmp_path: Path, capsys
                                                                 ) -> None:  # type: ignore[no-untyped-def]
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s")
        await _publish(broker.url, "s", [b"a"])
        capsys.readouterr()
        got = await _consume(broker.url, "s", {"x-stream-offset": int(time.time()) - 60}, 0)
        assert got == []  # clamped to the end, as RabbitMQ does
        out = capsys.readouterr().out
        assert "stream_offset_looks_like_timestamp" in out
        assert "Unix time in seconds" in out


async def test_deleting_a_stream_removes_its_files(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s")
        await _publish(broker.url, "s", [b"a"])
        assert stream_dir(tmp_path, "s").exists()
        conn = await aiormq.connect(broker.url)
        ch = await conn.channel()
        await ch.queue_delete("s")
        await conn.close()
        assert not stream_dir(tmp_path, "s").exists()
        # declared again: a new, empty stream
        conn = await aiormq.connect(broker.url)
        ch = await conn.channel()
        await ch.queue_declare("s", durable=True, arguments=STREAM)
        await conn.close()
        assert await _consume(broker.url, "s", {"x-stream-offset": "first"}, 0) == []


@pytest.mark.parametrize("persistent", [False, True])
async def test_confirm_means_on_disk(tmp_path: Path, persistent: bool) -> None:
    """Every message in a stream is durable, whatever its delivery mode."""
    async with running(tmp_path) as broker:
        await _declare(broker.url, "s")
        conn = await aiormq.connect(broker.url)
        ch = await conn.channel()
        await ch.confirm_delivery()
        props = aiormq.spec.Basic.Properties(delivery_mode=2 if persistent else 1)
        await ch.basic_publish(b"kept", routing_key="s", properties=props)
        await conn.close()
        path = next(stream_dir(tmp_path, "s").glob("*.seg"))
        assert b"kept" in path.read_bytes()


async def test_orphaned_stream_directory_is_named_at_start_and_kept(tmp_path: Path) -> None:
    """A stream's segments whose definition was lost are neither silently deleted nor
    silently ignored: the start-up log names them, and declaring the stream again reads
    them as they were."""
    async with running(tmp_path) as broker:
        await _declare(broker.url, "history")
        await _publish(broker.url, "history", [b"a", b"b", b"c"])
    (tmp_path / "data" / "definitions.json").unlink()  # the definition is gone
    with structlog.testing.capture_logs() as logs:
        async with running(tmp_path) as broker:
            orphaned = [e for e in logs if e["event"] == "stream_orphaned"]
            assert len(orphaned) == 1, logs
            assert orphaned[0]["stream"] == "history" and orphaned[0]["vhost"] == "/"
            assert orphaned[0]["bytes"] > 0 and "declare it again" in orphaned[0]["hint"]
            assert orphaned[0]["log_level"] == "warning"
            assert stream_dir(tmp_path, "history").is_dir()
            await _declare(broker.url, "history")
            got = await _consume(broker.url, "history", {"x-stream-offset": "first"}, 3)
            assert [body for body, _ in got] == [b"a", b"b", b"c"]
    with structlog.testing.capture_logs() as logs:  # declared again: no longer an orphan
        async with running(tmp_path):
            assert not [e for e in logs if e["event"] == "stream_orphaned"]
