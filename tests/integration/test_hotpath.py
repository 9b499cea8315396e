"""The compiled hot path and its pure twin (warrenmq/hotpath.py, server/connection.py).

The same sources run compiled (mypyc) or interpreted; which one runs is decided at import
and said in ``warrenmq.HOT_PATH``. A publish whose three frames arrive in one read takes
the fused path (``Channel.publish_from``), any other arrival the frame-by-frame path:
both must deliver the same bytes, whatever the split.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

import warrenmq
from tests.conftest import BrokerHandle
from tests.rawamqp import RawClient
from warrenmq import hotpath

ROOT = Path(__file__).resolve().parents[2]


def mode_in_subprocess(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c",
         "import warrenmq, warrenmq.queues.queue as q; "
         "print(warrenmq.HOT_PATH, q.__file__.endswith('.py'))"],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_warrenmq_pure_runs_the_python_sources() -> None:
    assert mode_in_subprocess(WARRENMQ_PURE="1") == "pure True"


def test_the_compiled_build_runs_when_it_matches_the_sources() -> None:
    built = (ROOT / hotpath.BUILD_INFO).exists()
    mode = hotpath.decide(ROOT / "warrenmq", pure=False)[0]
    expected = "compiled False" if mode == "compiled" else "pure True"
    assert mode_in_subprocess(WARRENMQ_PURE="0") == expected
    if os.environ.get("WARRENMQ_PURE") != "1" and built:
        # make test compiles first: a build present must be the one running
        assert warrenmq.HOT_PATH == "compiled", warrenmq.HOT_PATH_REASON


def test_a_build_of_other_sources_is_not_run(tmp_path: Path) -> None:
    package = tmp_path / "warrenmq"
    for source in hotpath.source_paths(ROOT / "warrenmq"):
        target = package / source.relative_to(ROOT / "warrenmq")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    assert hotpath.decide(package, pure=False) == ("pure", "no compiled build installed")
    (package / "_hot__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (package / "_build_info.py").write_text('DIGEST = "0000"\n')
    mode, reason = hotpath.decide(package, pure=False)
    assert (mode, reason.split(" (")[0]) == (
        "pure", "the compiled build is older than the sources")
    digest = hotpath.source_digest(package)
    (package / "_build_info.py").write_text(f'DIGEST = "{digest}"\n')
    assert hotpath.decide(package, pure=False)[0] == "compiled"
    assert hotpath.decide(package, pure=True) == ("pure", "WARRENMQ_PURE=1")


def publish_frames(queue: str, body: bytes, properties: commands.Basic.Properties,
                   frame_max: int = 131072) -> bytes:
    parts = [frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1),
             frame.marshal(ContentHeader(0, len(body), properties), 1)]
    step = frame_max - 8
    parts += [frame.marshal(ContentBody(body[i:i + step]), 1) for i in range(0, len(body), step)]
    return b"".join(parts)


@pytest.mark.parametrize("queue", ["fused", "q"])  # "q": the shortest publish the fused
async def test_fused_and_frame_by_frame_publishes_deliver_the_same(  # path takes (10 bytes)
        broker: BrokerHandle, queue: str) -> None:
    rng = random.Random(5)
    client = await RawClient.connect(broker.port)
    await client.handshake(frame_max=4096)
    await client.open_channel(1)
    client.send_method(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    await client.expect(commands.Queue.DeclareOk)
    sent = []
    stream = b""
    for n in range(300):
        body = rng.randbytes(rng.choice([0, 1, 31, 4088, 4089, 9000]))
        props = commands.Basic.Properties(message_id=f"m{n}", headers={"n": n} if n % 3 else None)
        sent.append((f"m{n}", body))
        stream += publish_frames(queue, body, props, frame_max=4096)
    # the whole stream in reads of random sizes: publishes whole, split, and byte by byte
    pos = 0
    while pos < len(stream):
        size = rng.choice([1, 7, 100, 5000, 60000])
        client.send(stream[pos:pos + size])
        await client.writer.drain()
        pos += size
    client.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
    await client.expect(commands.Basic.ConsumeOk)
    got = []
    for _ in sent:
        await client.expect(commands.Basic.Deliver)
        _, header = await client.read_frame()
        body = b""
        while len(body) < header.body_size:
            _, chunk = await client.read_frame()
            body += chunk.value
        got.append((header.properties.message_id, body))
    assert got == sent
    client.close()
