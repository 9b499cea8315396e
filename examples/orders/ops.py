"""What an operator runs: a WarrenMQ broker for the demo, and ``warrenmq dlq``.

Owns the broker subprocess the demo starts when it is given no ``--url``
(``python -m warrenmq serve --config orders.yaml`` on free loopback ports with a
temporary data directory, stopped with SIGTERM by PID), and the DLQ command-line tools
run as subprocesses against any broker URL, their output parsed.
Must not know the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
TOOL_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class OwnBroker:
    process: asyncio.subprocess.Process
    port: int
    management_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.management_port}/"

    @classmethod
    async def start(cls, config: Path, workdir: Path) -> OwnBroker:
        """Start WarrenMQ and wait until it accepts AMQP connections (it declares the
        config's topology before it listens)."""
        port, management_port = free_port(), free_port()
        log = workdir / "warrenmq.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "warrenmq", "serve", "--config", str(config),
                "--port", str(port), "--management-port", str(management_port),
                "--data-dir", str(workdir / "data"),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        broker = cls(process, port, management_port, log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return broker
        await broker.stop()
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"WarrenMQ did not start (exit status {process.returncode});"
                           f" its log {log}:\n{tail}")

    async def stop(self) -> int | None:
        """SIGTERM (graceful: connections get 320, the store is closed), then SIGKILL
        if it is still running after STOP_TIMEOUT; returns the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


@dataclass
class ToolRun:
    status: int
    stdout: str
    stderr: str


async def warrenmq(*args: str) -> ToolRun:
    """``python -m warrenmq ARGS`` (the installed CLI), bounded by TOOL_TIMEOUT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warrenmq", *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), TOOL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"warrenmq {' '.join(args)}: no answer in {TOOL_TIMEOUT:.0f} s"
                           ) from None
    assert process.returncode is not None
    return ToolRun(process.returncode, out.decode(errors="replace"),
                   err.decode(errors="replace"))


async def dlq_inspect(url: str, queue: str) -> list[dict[str, Any]]:
    """``warrenmq dlq inspect QUEUE --json``: the dead letters, left in the queue."""
    run = await warrenmq("dlq", "inspect", queue, "--url", url, "--json")
    if run.status != 0:
        raise RuntimeError(f"warrenmq dlq inspect {queue}: {run.stderr.strip()}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


async def dlq_replay_to_queue(url: str, dlq: str, queue: str) -> dict[str, int]:
    """``warrenmq dlq replay DLQ --exchange '' --routing-key QUEUE``: back into the one
    queue they died in (the original exchange is a fanout: replaying there would send
    them to every service again). Returns its ``replayed=N skipped=N failed=N``."""
    run = await warrenmq("dlq", "replay", dlq, "--url", url, "--exchange", "",
                         "--routing-key", queue)
    counts = {}
    for line in run.stdout.splitlines():
        if line.startswith("replayed="):
            counts = {key: int(value) for key, value in
                      (pair.split("=", 1) for pair in line.split())}
    if run.status not in (0, 1) or not counts:
        raise RuntimeError(f"warrenmq dlq replay {dlq}: {run.stderr.strip()}")
    return counts
