"""The orders demo with ``--url`` on RabbitMQ 3.10.8 (the private node of this harness,
its consistent-hash plugin enabled), run as a process.

Covers: the demo's topology, orders.yaml included (the x-consistent-hash exchange, the
single-active-consumer shipment queues, the deduplication argument RabbitMQ accepts and
ignores), declares on RabbitMQ; shipping runs there (the killed worker's standby takes
over, ``ordering_violations=0``); checkout's retry after a lost confirm is skipped with
the reason printed (RabbitMQ has no broker-side deduplication) and the summary says
``duplicates_dropped_by_broker=skipped``; the exit status is 0.
"""

from __future__ import annotations

import pytest

from tests.differential.conftest import CONSISTENT_HASH_PLUGIN
from tests.differential.node import RabbitMQNode, plugin_available
from tests.integration.test_demo import SHORT, run_demo, summary


@pytest.mark.skipif(not plugin_available(CONSISTENT_HASH_PLUGIN),
                    reason=f"RabbitMQ's {CONSISTENT_HASH_PLUGIN} plugin is not installed here")
async def test_demo_on_rabbitmq_skips_only_deduplication(rabbitmq: RabbitMQNode) -> None:
    status, lines, err = await run_demo("--orders", "30", *SHORT, "--timeout", "60",
                                        "--url", rabbitmq.url, timeout=90)
    text = "\n".join(lines)
    assert status == 0, f"{text}\n{err}"
    assert summary(lines) == {**summary(lines), "placed": 30, "inventory": 30, "email": 30,
                              "analytics": 30, "dead_lettered": 1, "replayed": 1, "lost": 0,
                              "ordering_violations": 0,
                              "duplicates_dropped_by_broker": "skipped"}
    assert ("skipped: checkout's retry after a lost confirm: RabbitMQ has no broker-side"
            " deduplication") in text
    assert "shipping: worker shipments.0/a KILLED" in text
    assert "shipping: 90/90 events handled" in text
