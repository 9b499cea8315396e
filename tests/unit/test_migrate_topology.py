"""warrenmq migrate's topology half (no I/O): queue types, identical vs conflicting
entities against a RabbitMQ export (salted password hashes included), the upload."""

from __future__ import annotations

import copy
from typing import Any

from warrenmq.config.rabbit import hash_password
from warrenmq.protocol.fields import encode_table
from warrenmq.tools.migrate_move import without_delivery_count
from warrenmq.tools.migrate_topology import choose_types, plan

OURS: dict[str, Any] = {
    "vhosts": [{"name": "/"}],
    "users": [{"name": "guest", "password_hash": hash_password("guest"),
               "hashing_algorithm": "rabbit_password_hashing_sha256",
               "tags": ["administrator"], "loopback_only": True}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "policies": [],
    "exchanges": [{"vhost": "/", "name": "orders", "type": "fanout", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "queues": [
        {"vhost": "/", "name": "work", "durable": True, "auto_delete": False,
         "arguments": {"x-delivery-limit": 3}},
        {"vhost": "/", "name": "plain", "durable": True, "auto_delete": False,
         "arguments": {}},
        {"vhost": "/", "name": "prio", "durable": True, "auto_delete": False,
         "arguments": {"x-max-priority": 5}},
    ],
    "bindings": [],
}
# A fresh RabbitMQ node's export: its own salted hash of "guest".
FRESH: dict[str, Any] = {
    "vhosts": [{"name": "/", "limits": [], "metadata": {}}],
    "users": [{"name": "guest", "password_hash": hash_password("guest"),
               "hashing_algorithm": "rabbit_password_hashing_sha256",
               "tags": ["administrator"], "limits": {}}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "queues": [], "exchanges": [], "bindings": [], "policies": [],
}


def test_a_fresh_node_is_not_a_conflict() -> None:
    result = plan(OURS, FRESH, "auto", ["guest"])
    assert result.conflicts == []
    assert result.present == 3  # "/", guest, guest's permission
    assert "users" not in result.upload and "vhosts" not in result.upload
    types = {q["name"]: q["arguments"].get("x-queue-type") for q in result.upload["queues"]}
    assert types == {"work": "quorum", "plain": None, "prio": None}
    assert any('queue "work" in vhost "/": becomes a quorum queue' in n for n in result.notes)


def test_quorum_for_all_keeps_what_a_quorum_queue_cannot_be_classic() -> None:
    document = copy.deepcopy(OURS)
    notes = choose_types(document, "quorum")
    types = {q["name"]: q["arguments"].get("x-queue-type") for q in document["queues"]}
    assert types == {"work": "quorum", "plain": "quorum", "prio": None}
    assert 'queue "prio" in vhost "/": stays classic; a quorum queue cannot be' \
           " x-max-priority" in notes


def test_classic_drops_the_delivery_limit_with_the_export_note() -> None:
    result = plan(OURS, FRESH, "classic", ["guest"])
    work = next(q for q in result.upload["queues"] if q["name"] == "work")
    assert "x-delivery-limit" not in work["arguments"]
    assert any("x-delivery-limit left out" in n for n in result.notes)


def test_conflicts_are_named() -> None:
    target = copy.deepcopy(FRESH)
    target["users"][0]["password_hash"] = hash_password("other")
    target["queues"] = [{"vhost": "/", "name": "plain", "durable": True,
                         "auto_delete": False, "arguments": {"x-max-length": 1},
                         "type": "classic"}]
    target["exchanges"] = [{"vhost": "/", "name": "orders", "type": "topic",
                            "durable": True, "auto_delete": False, "internal": False,
                            "arguments": {}}]
    result = plan(OURS, target, "auto", ["guest"])
    assert sorted(c.split(":")[0] for c in result.conflicts) == [
        'exchange "orders" in vhost "/"', 'queue "plain" in vhost "/"', 'user "guest"']


def test_a_second_run_finds_its_own_upload_identical() -> None:
    first = plan(OURS, FRESH, "quorum", ["guest"])
    target = {k: v + first.upload.get(k, []) if isinstance(v, list) else v
              for k, v in FRESH.items()}
    again = plan(OURS, target, "quorum", ["guest"])
    assert again.conflicts == [] and all(
        not isinstance(v, list) for v in again.upload.values())


def test_without_delivery_count_keeps_every_other_byte() -> None:
    headers = encode_table({"a": 1, "x-delivery-count": 2, "z": "zz"})
    raw = b"\xa0\x00" + b"\x10application/json" + headers  # content-type + headers
    out = without_delivery_count(raw)
    assert out == b"\xa0\x00" + b"\x10application/json" + encode_table({"a": 1, "z": "zz"})
    assert without_delivery_count(b"\x00\x00") == b"\x00\x00"


def test_a_stream_is_declared_but_its_contents_not_moved() -> None:
    document = copy.deepcopy(OURS)
    document["queues"].append({"vhost": "/", "name": "events", "durable": True,
                               "auto_delete": False,
                               "arguments": {"x-queue-type": "stream"}})
    result = plan(document, FRESH, "auto", ["guest"])
    assert ("/", "events") not in result.queues()
    assert any(q["name"] == "events" for q in result.upload["queues"])
    assert 'queue "events" in vhost "/": a stream; declared on the target, its contents' \
           " are not moved" in result.notes
