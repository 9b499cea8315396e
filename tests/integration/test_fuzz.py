"""The fast slice of the structure-aware fuzzer (benchmarks/fuzz.py runs 1,000,000):
2,000 generated inputs against the in-process broker, each on its own connection after a
pipelined handshake, with a well-behaved aio-pika connection publishing and consuming
beside them. Every input must get connection.close with a code its kind allows (never
541), or leave the connection open where its kind may; no socket may be dropped without
a close; the bystander loses and duplicates nothing."""

from __future__ import annotations

import asyncio

from benchmarks.fuzz import bystander, fuzz
from tests.conftest import BrokerHandle


async def test_fuzz_slice(broker: BrokerHandle) -> None:
    stop = asyncio.Event()
    side = asyncio.create_task(bystander(broker.url, stop))
    tally = await asyncio.wait_for(fuzz(broker.port, 2000, 100, seed=0x17, quiet=0.3), 240)
    stop.set()
    published, consumed, duplicates = await asyncio.wait_for(side, 30)
    assert tally.inputs == 2000
    assert tally.violations == [], tally.violations[:5]
    kinds = {key.split(":")[0] for key in tally.outcomes}
    assert kinds >= {"mutated", "field", "truncated", "oversized", "wrong_state", "random",
                     "interleaved_ok", "interleaved_bad"}, kinds
    assert sum(n for key, n in tally.outcomes.items() if key.endswith(":501")) > 100
    assert published > 0 and consumed == published and duplicates == 0
