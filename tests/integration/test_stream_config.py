"""Stream queues from a YAML config (``type: stream`` with retention keys), in the saved
definitions and in a RabbitMQ definitions export (``"type": "stream"``), and back in
through a RabbitMQ definitions document."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from tests.integration.test_config_topology import started, write_config
from tests.integration.test_streams import _consume, _publish
from warrenmq.app import start
from warrenmq.broker.definitions import snapshot
from warrenmq.config import load_config
from warrenmq.config.rabbit import for_rabbitmq
from warrenmq.queues.stream import StreamQueue

YAML = """
queues:
  - name: order-events
    type: stream
    max_age: 7D
    max_length_bytes: 1GiB
    stream_max_segment_size_bytes: 10MB
  - {name: plain}
"""


async def test_yaml_stream_declared_saved_and_exported(tmp_path: Path) -> None:
    server, url = await started(write_config(tmp_path, YAML))
    try:
        queue = server.broker.vhosts["/"].queues["order-events"]
        assert isinstance(queue, StreamQueue)
        assert queue.stream_args.max_age_ms == 7 * 86400 * 1000
        assert queue.stream_args.max_length_bytes == 2**30
        assert queue.stream_args.segment_size == 10_000_000
        await _publish(url, "order-events", [b"a", b"b"])
        document = snapshot(server.broker)
        exported, _notes = for_rabbitmq(document)
        entry = next(q for q in exported["queues"] if q["name"] == "order-events")
        assert entry["type"] == "stream"
        assert entry["arguments"]["x-max-age"] == "7D"
        plain = next(q for q in exported["queues"] if q["name"] == "plain")
        assert plain["type"] == "classic"
    finally:
        await server.close(grace=2.0)
    server, url = await started(write_config(tmp_path, YAML))  # same config, same data
    try:
        got = await _consume(url, "order-events", {"x-stream-offset": "first"}, 2)
        assert got == [(b"a", 0), (b"b", 1)]
    finally:
        await server.close(grace=2.0)


async def test_rabbitmq_definitions_with_a_stream(tmp_path: Path) -> None:
    document = {"queues": [{"name": "events", "vhost": "/", "durable": True,
                            "auto_delete": False, "type": "stream",
                            "arguments": {"x-queue-type": "stream", "x-max-age": "1D"}}]}
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(document))
    config_path = write_config(tmp_path, "")
    # a RabbitMQ definitions file serves as a config; our listener and data dir
    base = load_config(config_path)
    defs = load_config(path)
    config = dataclasses.replace(defs, listeners=base.listeners, storage=base.storage,
                                 management=base.management)
    server = await start(config)
    try:
        queue = server.broker.vhosts["/"].queues["events"]
        assert isinstance(queue, StreamQueue)
        assert queue.stream_args.max_age_ms == 86400 * 1000
        notes = defs.source.notes if defs.source is not None else ()
        assert not [n for n in notes if "events" in n]  # not "runs it as a classic queue"
    finally:
        await server.close(grace=2.0)


def test_check_config_reports_stream_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("queues:\n"
                    "  - name: s\n"
                    "    type: stream\n"
                    "    message_ttl: 5s\n"
                    "    max_age: 7X\n"
                    "  - name: c\n"
                    "    max_age: 1D\n")
    done = subprocess.run([sys.executable, "-m", "warrenmq", "check-config", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert f"{path}:4:18: queues[0].message_ttl: a stream queue does not take this key" \
        " (RabbitMQ refuses it too)" in lines
    assert any(line.startswith(f"{path}:5:14: queues[0].max_age: expected an age such as 7D")
               for line in lines)
    assert f"{path}:7:14: queues[1].max_age: only a stream queue (type: stream) takes" \
        " this key" in lines
    assert "Traceback" not in done.stderr
