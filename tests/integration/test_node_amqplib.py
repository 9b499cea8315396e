"""Node's amqplib (the client most Node services use) works unmodified: confirm channel,
topic exchange, server-named exclusive queue, prefetch, nack with requeue, ack.

Needs node and npm (the CI machine has both); the pinned amqplib is installed into
tests/clients/node on first use with `npm ci`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BrokerHandle

NODE_DIR = Path(__file__).resolve().parent.parent / "clients" / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for this test (apt-get install nodejs npm)"
    if not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       timeout=300, capture_output=True)
    return NODE_DIR / "amqplib_roundtrip.js"


async def test_amqplib_roundtrip(broker: BrokerHandle, node_client: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "node", str(node_client), broker.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    seen = json.loads(stdout.decode().strip().splitlines()[-1])["seen"]
    # Only order.* matched: i = 1, 3, 5, 7, 9. With prefetch 2, 1 and 3 are delivered;
    # acking 1 lets 5 out, nacking 3 requeues it ahead of 7 and 9 (its original place).
    order = [m["i"] for m in seen]
    assert sorted(order) == [1, 3, 5, 7, 9]
    assert order.index(3) < order.index(7) < order.index(9)
    assert all(m["n"] == m["i"] for m in seen)
    assert {m["i"]: m["redelivered"] for m in seen} == {
        1: False, 3: True, 5: False, 7: False, 9: False}
