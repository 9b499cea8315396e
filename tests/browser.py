"""Drive Debian's headless Chromium over its DevTools protocol (a websocket, aiohttp's
client): used by the dashboard's browser tests and by ``make screenshots``. The browser
is started with a private profile in a temporary folder and ended by its PID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 20.0  # bound on each wait for the browser or the page
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--no-default-browser-check",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]

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

    async def screenshot(self, path: Path, width: int, height: int, *, mobile: bool = False
                         ) -> None:
        """A PNG of the whole page at ``width`` CSS pixels."""
        await self.resize(width, height, mobile=mobile)
        await asyncio.sleep(0.3)
        full = await self.evaluate("document.documentElement.scrollHeight")
        await self.resize(width, max(height, int(full)), mobile=mobile)
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    async def resize(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=mobile)


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
