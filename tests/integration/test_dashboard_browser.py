"""The dashboard in a real browser: Debian's headless Chromium, started by the test and
driven over the DevTools protocol (tests/browser.py). Signing in hides the form and its
password; every tab shows what the API returns; the queue page asks before purging and
deleting and then does it; a chart gets points from the broker's history after a few
seconds of traffic; a dead-letter replay shows the dry run's count and targets and
waits for confirmation; at phone width nothing but the tables' own scroll boxes is
wider than the screen; signing out clears the session. No page script error happens."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.browser import CHROMIUM, Page, browser
from tests.conftest import BrokerHandle
from tests.integration.test_management_api import publish
from tests.integration.test_management_replay import topology
from tests.mgmthttp import MANAGEMENT

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

CATCH_ERRORS = """window.__errors = [];
addEventListener('error', (e) => window.__errors.push(String(e.message)));
addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));"""


def cell(table: str, name: str, column: str) -> str:
    return (f"(() => {{ const c = document.querySelector('#{table} tr[data-name=\"{name}\"]"
            f" td.{column}'); return c ? c.textContent : null; }})()")


def shown(selector: str) -> str:
    return (f"(() => {{ const e = document.querySelector('{selector}'); return !!e &&"
            " getComputedStyle(e).display !== 'none'; })()")


async def open_dashboard(page: Page, broker: BrokerHandle, tab: str = "overview") -> None:
    await page.send("Page.enable")
    await page.send("Page.addScriptToEvaluateOnNewDocument", source=CATCH_ERRORS)
    url = f"http://127.0.0.1:{broker.server.management_port}/#{tab}"
    await page.send("Page.navigate", url=url)
    await page.wait_for("document.readyState === 'complete' && "
                        "!!document.getElementById('login')", True)
    await page.evaluate("""(() => {
        document.getElementById('username').value = 'guest';
        document.getElementById('password').value = 'guest';
        document.querySelector('#login button').click(); })()""")
    await page.wait_for(shown("#app"), True)


async def tab(page: Page, name: str) -> None:
    await page.evaluate(f"location.hash = '#{name}'")
    await page.wait_for(f"!!document.querySelector('#tab-{name}')", True)


async def confirm(page: Page, answer: str) -> str:
    """Wait for the confirmation dialog, answer it (ok/cancel), return its question."""
    await page.wait_for("document.getElementById('confirm').open", True)
    text: str = await page.evaluate("document.getElementById('confirm-text').textContent")
    await page.evaluate(f"document.getElementById('confirm-{answer}').click()")
    await page.wait_for("document.getElementById('confirm').open", False)
    return text


async def no_script_errors(page: Page) -> None:
    assert await page.evaluate("window.__errors") == []


async def test_sign_in_every_tab_and_sign_out(broker_factory: Any, tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    await publish(broker.url, "depth.q", 37)
    await topology(broker.url, rejected=3)
    connection = await aio_pika.connect(broker.url, client_properties={
        "connection_name": "billing-worker"})
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=7)
    await channel.declare_queue("work.q", durable=True,
                                arguments={"x-dead-letter-exchange": "dlx"})
    async with connection, browser(tmp_path) as page:
        await open_dashboard(page, broker)
        # the login form is gone, with the password it held
        assert await page.evaluate(shown("#login")) is False
        assert await page.evaluate("document.getElementById('password').value") == ""
        assert "guest" in await page.evaluate("document.getElementById('status').textContent")
        await page.wait_for("document.querySelector('#totals .total-ready') &&"
                            " document.querySelector('#totals .total-ready').textContent", "41")
        await page.wait_for("!!document.querySelector('#node-panel dd.uptime')", True)
        listeners = await page.evaluate(
            "[...document.querySelectorAll('#listener-table td.port')].map(c => c.textContent)")
        assert str(broker.port) in listeners
        await tab(page, "queues")
        await page.wait_for(cell("queues", "depth.q", "ready"), "37")
        assert await page.evaluate(cell("queues", "orders", "dlx")) == "dlx"
        assert await page.evaluate(cell("queues", "work.q", "features")) == "D"
        await tab(page, "connections")
        await page.wait_for("[...document.querySelectorAll('#connections td.client')]"
                            ".map(c => c.textContent).includes('billing-worker')", True)
        product = await page.evaluate("document.querySelector('#connections td.product')"
                                      ".textContent")
        assert product.startswith("aiormq")
        rates = await page.evaluate("[...document.querySelectorAll('#connections td.recv_rate')]"
                                    ".map(c => c.textContent)")
        assert rates and all(r.endswith("B") for r in rates), rates  # e.g. "0 B", "1.2 KiB"
        await tab(page, "channels")
        await page.wait_for("[...document.querySelectorAll('#channels td.prefetch')]"
                            ".map(c => c.textContent).includes('7')", True)
        await tab(page, "exchanges")
        await page.wait_for(cell("exchanges", "orders.x", "type"), "direct")
        await tab(page, "dlq")
        await page.wait_for(cell("dlqs", "orders.dlq", "ready"), "4")
        await tab(page, "admin")
        await page.wait_for(cell("users", "guest", "tags"), "administrator")
        await page.wait_for(cell("vhosts", "/", "name"), "/")
        await page.wait_for(cell("permissions", "guest@/", "configure"), ".*")
        # an admin form works: a new vhost shows up, and the broker has it
        await page.evaluate("""(() => { document.getElementById('vhost-name').value = 'made';
            document.querySelector('#add-vhost button').click(); })()""")
        await page.wait_for(cell("vhosts", "made", "name"), "made")
        assert "made" in broker.server.broker.vhosts
        # phone width: the page itself never scrolls sideways (tables scroll in their box)
        await page.resize(390, 800, mobile=True)
        for name in ("overview", "queues", "admin"):
            await tab(page, name)
            await asyncio.sleep(0.3)
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        await no_script_errors(page)
        await page.evaluate("document.getElementById('signout').click()")
        await page.wait_for(shown("#login"), True)
        assert await page.evaluate(shown("#app")) is False
        assert await page.evaluate("sessionStorage.getItem('warrenmq-auth')") is None
        await page.send("Page.reload")  # and a reload does not sign back in
        await page.wait_for("document.readyState === 'complete' && "
                            + shown("#login"), True)


async def test_queue_page_purge_and_delete_ask_first(broker_factory: Any,
                                                     tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    await publish(broker.url, "depth.q", 12)
    queues = broker.vhost().queues
    async with browser(tmp_path) as page:
        await open_dashboard(page, broker, "queue/%2F/depth.q")
        await page.wait_for("document.querySelector('#queue-tiles .q-ready') &&"
                            " document.querySelector('#queue-tiles .q-ready').textContent", "12")
        # get with a requeueing ack mode shows the message and leaves it
        await page.evaluate("document.querySelector('#get-messages button').click()")
        await page.wait_for("document.querySelector('#got td.payload') &&"
                            " document.querySelector('#got td.payload').textContent", "m0")
        assert queues["depth.q"].message_count == 12
        # bindings: add one from amq.direct, then remove it
        await page.evaluate("""(() => { document.getElementById('bind-source').value = 'amq.direct';
            document.getElementById('bind-key').value = 'k1';
            document.querySelector('#add-binding button').click(); })()""")
        await page.wait_for(cell("bindings", "amq.direct|k1", "routing_key"), "k1")
        await page.evaluate("document.querySelector('#bindings tr[data-name=\"amq.direct|k1\"]"
                            " button.unbind').click()")
        await confirm(page, "ok")
        await page.wait_for(cell("bindings", "amq.direct|k1", "routing_key"), None)
        assert not broker.vhost().exchanges["amq.direct"].has_bindings()
        # purge asks first; cancel keeps the messages
        await page.evaluate("document.getElementById('purge').click()")
        question = await confirm(page, "cancel")
        assert "Purge queue 'depth.q'" in question and "12 ready messages" in question
        await asyncio.sleep(0.3)
        assert queues["depth.q"].message_count == 12
        await page.evaluate("document.getElementById('purge').click()")
        await confirm(page, "ok")
        await page.wait_for("document.querySelector('#queue-tiles .q-ready').textContent", "0")
        assert queues["depth.q"].message_count == 0
        # publish from the page, then delete (asked first) and land on the queue list
        await page.evaluate("""(() => {
            document.getElementById('queue-publish-payload').value = 'from the page';
            document.querySelector('#queue-publish button').click(); })()""")
        await page.wait_for("document.querySelector('#queue-tiles .q-ready').textContent", "1")
        await page.evaluate("document.getElementById('delete').click()")
        assert "Delete queue 'depth.q'" in await confirm(page, "ok")
        await page.wait_for("location.hash", "#queues")
        assert "depth.q" not in queues
        await no_script_errors(page)


async def test_charts_have_points_after_traffic(broker_factory: Any, tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    async with browser(tmp_path) as page:
        await open_dashboard(page, broker)
        for _ in range(12):  # about 6 s of traffic: two or more 5 s history samples
            await publish(broker.url, "chart.q", 20)
            await asyncio.sleep(0.5)
        await page.wait_for("Number(document.querySelector('#overview-depth"
                            " polyline.c-ready').dataset.points) >= 2", True)
        ticks = await page.evaluate(
            "[...document.querySelectorAll('#overview-depth text.tick.y')].map(t => t.textContent)")
        assert ticks[0] == "0" and len(ticks) >= 3
        assert await page.evaluate("document.querySelector('#overview-depth text.unit')"
                                   ".textContent") == "messages"
        assert await page.evaluate("document.querySelectorAll('#overview-depth text.tick.x')"
                                   ".length") >= 4
        # the history is the broker's: a reload shows the points at once
        await page.send("Page.reload")
        await page.wait_for("!!document.querySelector('#overview-depth polyline.c-ready') &&"
                            " Number(document.querySelector('#overview-depth polyline.c-ready')"
                            ".dataset.points) >= 2", True)
        await page.evaluate("location.hash = '#queue/%2F/chart.q'")
        await page.wait_for("!!document.querySelector('#queue-rates polyline.c-publish')", True)
        await no_script_errors(page)


async def test_dead_letter_replay_confirms_count_and_targets(broker_factory: Any,
                                                            tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    await topology(broker.url, rejected=3)  # orders.dlq: 3 dead letters and 1 stray
    queues = broker.vhost().queues
    async with browser(tmp_path) as page:
        await open_dashboard(page, broker, "dlq")
        await page.wait_for(cell("dlqs", "orders.dlq", "ready"), "4")
        await page.evaluate(
            "document.querySelector('button.replay[data-name=\"orders.dlq\"]').click()")
        question = await confirm(page, "cancel")
        assert question.startswith("Replay 3 messages from 'orders.dlq'? They go to /")
        assert "orders: 3" in question and "1 stay" in question
        await page.wait_for("document.getElementById('replay-result').textContent",
                            "orders.dlq: replay cancelled")
        assert queues["orders.dlq"].message_count == 4  # the dry run moved nothing
        await page.evaluate(
            "document.querySelector('button.replay[data-name=\"orders.dlq\"]').click()")
        await confirm(page, "ok")
        await page.wait_for("document.getElementById('replay-result').textContent"
                            ".startsWith('orders.dlq: 3 replayed, 1 skipped, 0 failed')", True)
        await page.wait_for(cell("dlqs", "orders.dlq", "ready"), "1")
        await no_script_errors(page)
    assert (queues["orders"].message_count, queues["orders.dlq"].message_count) == (3, 1)


async def test_queue_list_pages_sorts_and_filters(broker_factory: Any, tmp_path: Path) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    vhost = broker.vhost()
    for i in range(130):
        vhost.declare_queue(f"q{i:03d}", owner=None)
    await publish(broker.url, "q077", 9)
    rows = ("[...document.querySelectorAll('#queues tbody tr')]"
            ".map(r => r.dataset.name)")
    async with browser(tmp_path) as page:
        await open_dashboard(page, broker, "queues")
        await page.wait_for("document.querySelector('#queues-pager .count') &&"
                            " document.querySelector('#queues-pager .count').textContent",
                            "130 of 130")
        assert len(await page.evaluate(rows)) == 100  # one page, never all 130
        await page.evaluate("document.querySelector('#queues-pager button:last-child')"
                            ".click()")
        await page.wait_for(f"{rows}[0]", "q100")
        # sort by ready, deepest first: two clicks on the header
        await page.evaluate("document.querySelector('#queues th[data-key=\"ready\"]').click()")
        await page.wait_for(f"{rows}[0]", "q000")  # back to page 1, ascending
        await page.evaluate("document.querySelector('#queues th[data-key=\"ready\"]').click()")
        await page.wait_for(f"{rows}[0]", "q077")
        # filter by name (a substring, then a regex)
        await page.evaluate("""(() => { const f = document.getElementById('queues-filter');
            f.value = 'q12'; f.dispatchEvent(new Event('input')); })()""")
        await page.wait_for(f"{rows}.length", 10)
        await page.evaluate("""(() => { const f = document.getElementById('queues-filter');
            f.value = '^q00[12]$'; f.dispatchEvent(new Event('input'));
            document.getElementById('queues-regex').click(); })()""")
        await page.wait_for(f"{rows}.length", 2)
        await no_script_errors(page)
