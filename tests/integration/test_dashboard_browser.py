"""The dashboard in a real browser: Debian's headless Chromium, started by the test and
driven over the DevTools protocol (a websocket, aiohttp's client). The page signs in,
shows the depth of a queue the test filled, and its Replay button moves a dead-letter
queue's messages back to where they came from. The browser is killed by PID at the end."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import BrokerHandle
from tests.integration.test_management_api import publish
from tests.integration.test_management_replay import topology
from tests.mgmthttp import MANAGEMENT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 20.0  # bound on each wait for the browser or the page
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--no-default-browser-check",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


class Page:
    """One DevTools session on a page target: commands by id, events ignored."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                data: dict[str, Any] = json.loads(message.data)
                if data.get("id") == ident:
                    assert "error" not in data, data
                    return data.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, expected: Any) -> None:
        """Poll ``expression`` until it equals ``expected`` (bounded)."""
        last = None
        for _ in range(int(TIMEOUT / 0.1)):
            last = await self.evaluate(expression)
            if last == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{expression} stayed {last!r}, expected {expected!r}")


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[Page]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("wb")
    assert CHROMIUM is not None
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on with bounds
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(int(TIMEOUT / 0.1)):
            if port_file.exists() and port_file.read_text().strip():
                break
            assert proc.poll() is None, (tmp_path / "chromium.log").read_text()
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("chromium did not open its DevTools port")
        port = int(port_file.read_text().splitlines()[0])
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as reply:
                targets = await reply.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"],
                                          max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.terminate()  # the browser we started, by its PID
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        log.close()


def cell(table: str, name: str, column: str) -> str:
    return (f"(() => {{ const c = document.querySelector('#{table} tr[data-name=\"{name}\"]"
            f" td.{column}'); return c ? c.textContent : null; }})()")


async def test_dashboard_shows_depth_and_replays_a_dlq(broker_factory: Any,
                                                       tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    await publish(broker.url, "depth.q", 37)
    await topology(broker.url, rejected=3)  # orders.dlq: 3 dead letters and 1 stray
    async with browser(tmp_path) as page:
        await page.send("Page.navigate", url=f"http://127.0.0.1:{broker.server.management_port}/")
        await page.wait_for("document.readyState === 'complete' && "
                            "!!document.getElementById('login')", True)
        await page.evaluate("""(() => {
            document.getElementById('username').value = 'guest';
            document.getElementById('password').value = 'guest';
            document.querySelector('#login button').click(); })()""")
        await page.wait_for(cell("queues", "depth.q", "ready"), "37")
        assert await page.evaluate(cell("queues", "depth.q", "unacked")) == "0"
        assert await page.evaluate(
            "!!document.querySelector('#queues tr[data-name=\"depth.q\"] svg polyline.ready')")
        await publish(broker.url, "depth.q", 5)  # the page follows the queue
        await page.wait_for(cell("queues", "depth.q", "ready"), "42")

        await page.wait_for(cell("dlqs", "orders.dlq", "ready"), "4")
        await page.evaluate(
            "document.querySelector('button.replay[data-name=\"orders.dlq\"]').click()")
        await page.wait_for("document.getElementById('replay-result').textContent",
                            "orders.dlq: 3 replayed, 1 skipped, 0 failed")
        await page.wait_for(cell("dlqs", "orders.dlq", "ready"), "1")
        await page.wait_for(cell("queues", "orders", "ready"), "3")
    queues = broker.vhost().queues
    assert (queues["orders"].message_count, queues["orders.dlq"].message_count) == (3, 1)
