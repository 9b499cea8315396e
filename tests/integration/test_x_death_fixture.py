"""WarrenMQ's dead-letter headers against a fixture recorded from a real RabbitMQ.

``tests/fixtures/rabbitmq_x_death.json`` was recorded from RabbitMQ (version inside) by
``tests/fixtures/record_x_death.py``; these tests replay the same scenarios (rejected,
rejected with a per-message TTL, expired per message and per queue, maxlen, a message
dead-lettered twice from the same queues, the same through another exchange, a quorum
queue's delivery_limit) against the in-process broker with the same raw client, and
compare every captured content header field by field with the typed walker
``tests.typed_table``: header keys and their order, every wire type tag (headers,
x-death entries, their fields), values (``time`` only as a 'T' close to the capture
time), the x-death entry order and each entry's key order, count and time on repeats,
``expiration`` removed and kept as ``original-expiration``, other properties unchanged.

WarrenMQ additionally writes x-last-death-queue/-reason/-exchange (RabbitMQ 3.13+); those
three extra keys, and nothing else, are allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerHandle
from tests.fixtures.record_x_death import (
    SCENARIOS,
    Session,
    group_name,
    run_scenario,
    scenario_delivery_limit,
    scenario_repeat,
    setup_common,
)
from tests.typed_table import typed_properties

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "rabbitmq_x_death.json"
RECORDED = json.loads(FIXTURE.read_text())
EXPECTED = {capture["scenario"]: capture for capture in RECORDED["captures"]}
LAST_DEATH = ("x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")
TIME_SLACK = 5  # seconds between a death's 'T' and the moment the message was read


def scenario_names(scenario: Any) -> list[str]:
    return [c["scenario"] for c in RECORDED["captures"] if c["group"] == group_name(scenario)]


def deaths(capture: dict[str, Any]) -> list[dict[str, list[Any]]]:
    tag, items = capture["headers"]["x-death"]
    assert tag == "A"
    assert all(item[0] == "F" for item in items), items
    return [item[1] for item in items]


def compare_value(path: str, want: list[Any], got: list[Any]) -> None:
    """Same tag and value, recursively through tables and arrays."""
    assert got[0] == want[0], f"{path}: type tag {got[0]!r}, RabbitMQ wrote {want[0]!r}"
    if want[0] == "F":
        assert list(got[1]) == list(want[1]), f"{path}: keys/order {list(got[1])}, " \
                                              f"RabbitMQ {list(want[1])}"
        for key in want[1]:
            compare_value(f"{path}.{key}", want[1][key], got[1][key])
    elif want[0] == "A":
        assert len(got[1]) == len(want[1]), f"{path}: {got[1]} vs RabbitMQ {want[1]}"
        for index, (w, g) in enumerate(zip(want[1], got[1], strict=True)):
            compare_value(f"{path}[{index}]", w, g)
    else:
        assert got[1] == want[1], f"{path}: {got[1]!r}, RabbitMQ wrote {want[1]!r}"


def compare_capture(want: dict[str, Any], got: dict[str, Any]) -> None:
    name = want["scenario"]
    assert got["body"] == want["body"], name
    assert (got["queue"], got["exchange"], got["routing_key"]) == (
        want["queue"], want["exchange"], want["routing_key"]), name
    # Other properties unchanged, expiration gone (flags included).
    assert got["properties"] == want["properties"], name
    assert "expiration" not in got["properties"], name
    assert got["properties_hex"][:4] == want["properties_hex"][:4], f"{name}: property flags"

    headers, expected = got["headers"], want["headers"]
    extra = [key for key in headers if key not in expected]
    assert sorted(extra) == sorted(k for k in LAST_DEATH if k not in expected), (
        f"{name}: unexpected extra headers {extra}")
    missing = [key for key in expected if key not in headers]
    assert not missing, f"{name}: missing headers {missing}"
    assert [k for k in headers if k in expected] == list(expected), (
        f"{name}: header order {list(headers)}, RabbitMQ {list(expected)}")

    for key, value in expected.items():
        if key != "x-death":
            compare_value(f"{name}.{key}", value, headers[key])
    assert headers["x-death"][0] == "A", name
    got_deaths, want_deaths = deaths(got), deaths(want)
    assert len(got_deaths) == len(want_deaths), f"{name}: {got_deaths} vs {want_deaths}"
    for index, (w, g) in enumerate(zip(want_deaths, got_deaths, strict=True)):
        path = f"{name}.x-death[{index}]"
        assert list(g) == list(w), f"{path}: fields {list(g)}, RabbitMQ {list(w)}"
        for field in w:
            if field == "time":
                assert g["time"][0] == w["time"][0] == "T", path
                assert abs(g["time"][1] - got["captured_at"]) <= TIME_SLACK, (path, g, got)
                assert abs(w["time"][1] - want["captured_at"]) <= TIME_SLACK, (path, w, want)
            else:
                compare_value(f"{path}.{field}", w[field], g[field])
    # x-last-death-* (3.13+): the newest death, as long strings.
    newest = got_deaths[0]
    for key in LAST_DEATH:
        assert headers[key][0] == "S", (name, key, headers[key])
    assert headers["x-last-death-queue"] == newest["queue"], name
    assert headers["x-last-death-reason"] == newest["reason"], name
    # ... and the exchange the message was in when it died this time (3.13+'s
    # record_death), which a repeated entry does not update.
    died_in = "fx.rx.back" if name == "repeat_other_exchange_rejected_2" else newest[
        "exchange"][1]
    assert headers["x-last-death-exchange"] == ["S", died_in], name


def death_times(captures: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """(capture, queue, reason) -> the entry's time."""
    return {(name, d["queue"][1], d["reason"][1]): d["time"][1]
            for name, capture in captures.items() for d in deaths(capture)}


def same_time_pairs(captures: dict[str, dict[str, Any]]) -> set[tuple[Any, Any]]:
    """Pairs of (capture, queue, reason) keys of one message's successive captures
    ("repeat_rejected_1", "repeat_rejected_2") whose entries carry the same time. Entries
    of different messages that died within the same second share a time by chance (the
    recording's do; a run that straddles a second does not), so they are not compared."""
    times = death_times(captures)
    return {(a, b) for a in times for b in times
            if a < b and a[1:] == b[1:] and _chain(a[0]) == _chain(b[0])
            and times[a] == times[b]}


def _chain(capture: str) -> str:
    """The message a capture belongs to: its name without a trailing _<n>."""
    return capture.rstrip("0123456789").rstrip("_")


# ---------------------------------------------------------------------- the fixture
def test_fixture_is_self_consistent() -> None:
    """The stored typed headers are exactly what the stored raw bytes decode to, and the
    fixture covers every scenario (delivery_limit included)."""
    assert RECORDED["broker"] == "RabbitMQ"
    assert RECORDED["version"].startswith("RabbitMQ 3.10."), RECORDED["version"]
    errors = [c for c in RECORDED["captures"] if "error" in c]
    assert not errors, errors
    for capture in RECORDED["captures"]:
        props = typed_properties(bytes.fromhex(capture["properties_hex"]))
        assert props.pop("headers") == capture["headers"], capture["scenario"]
        assert props == capture["properties"], capture["scenario"]
    for scenario in SCENARIOS:
        assert scenario_names(scenario), scenario.__name__


def test_fixture_records_rabbitmq_repeat_semantics() -> None:
    """What the recording shows about repeats (so a re-recording that changes it fails
    loudly): the repeated (queue, reason) entry moves to the front with count 2 and keeps
    the time, exchange and routing keys of its first death, although the second death
    happened more than a second later."""
    first, second = EXPECTED["repeat_rejected_1"], EXPECTED["repeat_rejected_2"]
    (entry1,) = deaths(first)
    entry2, expired = deaths(second)
    assert (entry2["queue"], entry2["reason"], entry2["count"]) == (
        ["S", "fx.retry.work"], ["S", "rejected"], ["l", 2])
    assert (expired["queue"], expired["reason"], expired["count"]) == (
        ["S", "fx.retry.wait"], ["S", "expired"], ["l", 1])
    assert second["captured_at"] - entry1["time"][1] >= 1
    assert entry2["time"] == entry1["time"]
    other = deaths(EXPECTED["repeat_other_exchange_rejected_2"])
    assert [(d["queue"][1], d["reason"][1], d["count"][1], d["exchange"][1]) for d in other] \
        == [("fx.rx.work", "rejected", 2, "fx.rx.in"), ("fx.rx.wait", "expired", 1, "fx.rx.dlx")]


# ---------------------------------------------------------------------- replays
@pytest.mark.parametrize("scenario", SCENARIOS, ids=group_name)
async def test_warrenmq_matches_rabbitmq(broker: BrokerHandle, scenario: Any) -> None:
    session = await Session.open(broker.url)
    try:
        await setup_common(session)
        captures = await run_scenario(session, scenario)
    finally:
        session.close()
    got = {capture["scenario"]: capture for capture in captures}
    names = scenario_names(scenario)
    assert sorted(got) == sorted(names)
    for name in names:
        compare_capture(EXPECTED[name], got[name])
    # Which entries keep their time from one snapshot to the next: as RabbitMQ.
    want = {name: EXPECTED[name] for name in names}
    assert same_time_pairs(got) >= same_time_pairs(want)
    if scenario is scenario_repeat:
        times = death_times(got)
        key = ("fx.retry.work", "rejected")
        assert times[("repeat_rejected_2", *key)] == times[("repeat_rejected_1", *key)]
        assert got["repeat_rejected_2"]["captured_at"] - times[("repeat_rejected_1", *key)] >= 1
    if scenario is scenario_delivery_limit:
        # x-delivery-limit 1 on a quorum queue: delivered twice, dead-lettered on the
        # second return, as RabbitMQ did.
        assert got["delivery_limit"]["returns"] == EXPECTED["delivery_limit"]["returns"] == 2
        assert [g["redelivered"] for g in got["delivery_limit"]["gets"]] == [
            g["redelivered"] for g in EXPECTED["delivery_limit"]["gets"]]
