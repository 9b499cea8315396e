"""Celery (from PyPI) with WarrenMQ as its broker: real worker processes.

tests/clients/celery/wmq_tasks.py runs in ``celery worker`` subprocesses (solo pool,
so killing the worker kills the task in hand). Covers: a task and its result (rpc://
backend: replies over AMQP); a task that retries twice through the broker, then
succeeds; a task routed through a topic exchange to its own queue; Celery's remote
control (ping and inspect: the pidbox fanout and reply queues); an ``acks_late`` task
whose worker is SIGKILLed mid-task, redone by the next worker after the broker
redelivers it. The failure path: a task whose retries run out fails with its error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerHandle

HERE = Path(__file__).resolve().parent.parent / "clients" / "celery"


class Workers:
    def __init__(self, url: str, state: Path, log: Path) -> None:
        self.env = {**os.environ, "WMQ_BROKER": url, "WMQ_STATE": str(state),
                    "PYTHONPATH": str(HERE)}
        self.log = log
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, name: str) -> asyncio.subprocess.Process:
        with self.log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "celery", "-A", "wmq_tasks", "worker", "--pool", "solo",
                "-Q", "celery,orders", "-n", f"{name}@wmq", "--loglevel", "INFO",
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
        self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@pytest.fixture
async def celery_env(broker: BrokerHandle, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, Workers]]:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("WMQ_BROKER", broker.url)
    monkeypatch.setenv("WMQ_STATE", str(state))
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop("wmq_tasks", None)
    import wmq_tasks

    workers = Workers(broker.url, state, tmp_path / "worker.log")
    yield wmq_tasks, workers
    await workers.stop()
    await asyncio.to_thread(wmq_tasks.app.close)
    sys.modules.pop("wmq_tasks", None)


def read(path: Path) -> str:
    """A marker or log file's text ('' while it does not exist)."""
    return path.read_text() if path.exists() else ""


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Celery's client API blocks; the broker runs on this loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def until_pong(app: Any, name: str, log: Path) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        replies = await call(app.control.ping, timeout=1.0)
        if any(f"{name}@wmq" in reply for reply in replies):
            return
    raise AssertionError(f"worker {name} never answered ping:\n{read(log)[-3000:]}")


@pytest.mark.timeout(180)
async def test_celery_worker(celery_env: tuple[Any, Workers], broker: BrokerHandle) -> None:
    tasks, workers = celery_env
    app = tasks.app
    first = await workers.start("w1")
    await until_pong(app, "w1", workers.log)

    # (every client call runs in a thread: publishing blocks until this loop's broker
    # answers)
    added = await call(tasks.add.delay, 2, 3)
    assert await call(added.get, timeout=20) == 5
    flaky = await call(tasks.flaky.delay, "a")
    assert await call(flaky.get, timeout=30) == 3  # two retries
    routed = await call(tasks.on_order.delay, "o-1")
    assert await call(routed.get, timeout=20) == "handled o-1"
    events = broker.vhost().exchanges["events"]
    assert events.type_name == "topic"
    assert broker.vhost().queues["orders"].published >= 1  # it went through "orders"

    # Remote control: broadcast over the pidbox fanout, replies on a reply queue.
    queues = await call(app.control.inspect(timeout=2.0).active_queues)
    assert {q["name"] for q in queues["w1@wmq"]} == {"celery", "orders"}

    # The failure path: retries run out, the task's error is its result.
    failing = await call(tasks.hopeless.delay)
    with pytest.raises(ValueError, match="still broken"):
        await call(failing.get, timeout=30)
    assert await call(lambda: failing.state) == "FAILURE"

    # acks_late: the worker dies mid-task; the broker redelivers it to the next worker.
    slow = await call(tasks.slow.delay, "k")
    marker = Path(os.environ["WMQ_STATE"]) / "slow-k"
    deadline = time.monotonic() + 20
    while not read(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert read(marker) == "1", read(workers.log)[-3000:]
    first.kill()  # SIGKILL: no goodbye, the delivery is unacked
    await first.wait()
    await workers.start("w2")
    assert await call(slow.get, timeout=60) == 2  # the second run finished it
    assert read(marker) == "2"
