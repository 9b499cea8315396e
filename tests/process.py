"""A real ``python -m warrenmq serve`` process for tests of the command line.

``BrokerProcess`` starts the broker on port 0 (AMQP and, unless told otherwise, the
management listener), waits for its ``broker_started`` JSON log event and reads the
ports it picked from there, so tests never race for a free port. Its log (stdout and
stderr together) is kept in a file. ``stop`` sends a signal and waits; leaving the
``async with`` kills the process by PID if it is still running. ``run_cli`` runs any
other ``warrenmq`` command as a subprocess. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
START_TIMEOUT = 30.0


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``warrenmq ARGS`` as a subprocess: its status, stdout and stderr."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([PYTHON, "-m", "warrenmq", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False, env=full_env, input=stdin)


async def arun_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
                   stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=timeout, stdin=stdin)


def events(text: str) -> list[dict[str, Any]]:
    """The JSON log events in ``text`` (other lines skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class BrokerProcess:
    def __init__(self, data_dir: Path, *args: str, management: bool = True,
                 cwd: Path = REPO) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        listener = ["--management-port", "0"] if management else ["--no-management"]
        self.args = ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir",
                     str(data_dir), *listener, *args]
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.started: dict[str, Any] = {}

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def port(self) -> int:
        return int(self.started["ports"][0])

    @property
    def management_port(self) -> int:
        return int(self.started["management_port"])

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    async def start(self) -> BrokerProcess:
        with self.log_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                PYTHON, "-m", "warrenmq", *self.args, cwd=self.cwd, stdout=out,
                stderr=subprocess.STDOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(f"broker exited with {self.proc.returncode}:\n{self.log}")
            for event in events(self.log):
                if event.get("event") == "broker_started":
                    self.started = event
                    return self
            await asyncio.sleep(0.05)
        raise AssertionError(f"broker did not start within {START_TIMEOUT} s:\n{self.log}")

    def send(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.send(signum)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def __aenter__(self) -> BrokerProcess:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)
