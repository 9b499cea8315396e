"""Unit tests for the declarative config sections and RabbitMQ definitions conversions.

Covers: loading exchanges, queues (friendly spellings -> x-arguments), bindings,
policies and permissions; every validation problem with file:line:col and key path
(unknown key, wrong type, bad duration, undeclared or default-exchange binding ends,
duplicates per vhost, topic patterns, 255-byte keys, unlisted vhosts, unknown users,
regexes, policy keys, raw x-argument types, double-given arguments, free-map values),
and that one bad entry does not hide the others' problems; the shipped reference's
commented examples and the README's example; config -> RabbitMQ JSON -> config and
config -> YAML -> config identity; what RabbitMQ cannot express (notes); reading
RabbitMQ's JSON with its own key paths in problems; ``logging.format: auto``.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from warrenmq.broker.apply import SUPPORTED_POLICY_KEYS
from warrenmq.broker.broker import User
from warrenmq.config import (
    BindingConfig,
    BrokerConfig,
    ConfigError,
    ExchangeConfig,
    FreeMap,
    PermissionConfig,
    PolicyConfig,
    TopicPermissionConfig,
    UserConfig,
    VhostConfig,
    load_config,
    load_config_text,
    parse_duration_ms,
)
from warrenmq.config.loader import format_duration_ms
from warrenmq.config.rabbit import declarations, for_rabbitmq, hash_password, yaml_text
from warrenmq.config.rabbit_import import config_from_document, load_definitions_text
from warrenmq.config.topology import POLICY_KEYS, queue_arguments

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "broker.yaml"
HASH = "Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF"  # "pw", made by RabbitMQ 3.10


def load(text: str) -> BrokerConfig:
    return load_config_text(textwrap.dedent(text), "c.yaml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value).splitlines()


def error(text: str) -> str:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


ISSUE_EXAMPLE = """
exchanges:
  - {name: orders, type: fanout, durable: true}
  - {name: events, type: topic}
queues:
  - name: email
    durable: true
    dead_letter_exchange: orders.dlx
    delivery_limit: 3
    message_ttl: 30s
  - name: audit
bindings:
  - {source: orders, destination: email}            # destination_type defaults to queue
  - {source: events, destination: audit, routing_key: "order.#"}
"""


# ------------------------------------------------------------------------------ loading


def test_the_issue_example_loads_with_friendly_spellings_as_x_arguments():
    cfg = load(ISSUE_EXAMPLE)
    assert cfg.exchanges == (ExchangeConfig("orders", "fanout"), ExchangeConfig("events", "topic"))
    email = cfg.queues[0]
    assert (email.message_ttl, email.delivery_limit) == (30000, 3)
    assert queue_arguments(email) == {
        "x-dead-letter-exchange": "orders.dlx", "x-message-ttl": 30000, "x-delivery-limit": 3}
    assert cfg.bindings == (
        BindingConfig("orders", "email"),
        BindingConfig("events", "audit", "queue", "order.#"),
    )
    assert cfg.source is not None and cfg.source.positions["queues[0]"] == (6, 5)


def test_every_friendly_key_and_raw_arguments():
    cfg = load("""
        queues:
          - name: q
            vhost: /
            auto_delete: true
            dead_letter_exchange: dlx
            dead_letter_routing_key: dead
            message_ttl: 1500ms
            expires: 1h
            max_length: 10000
            max_length_bytes: 10MiB
            overflow: reject-publish
            delivery_limit: 0
            retry_delays: [1s, 5s, 2m]
            arguments: {x-custom: [1, 2.5, true, {deep: x}], x-single-active-consumer: true}
        """)
    assert queue_arguments(cfg.queues[0]) == {
        "x-custom": [1, 2.5, True, {"deep": "x"}], "x-single-active-consumer": True,
        "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead",
        "x-message-ttl": 1500, "x-expires": 3_600_000, "x-max-length": 10000,
        "x-max-length-bytes": 10 * 2**20, "x-overflow": "reject-publish",
        "x-delivery-limit": 0, "x-retry-delays": [1000, 5000, 120_000],
    }


def test_policies_permissions_and_vhosts():
    cfg = load(f"""
        vhosts: [{{name: /}}, {{name: prod}}]
        users:
          - {{name: alice, password_hash: "{HASH}"}}
        permissions:
          - {{user: alice, vhost: prod, configure: "^alice\\\\.", write: ".*", read: ""}}
        policies:
          - name: limits
            vhost: prod
            pattern: "^orders\\\\."
            apply_to: queues
            priority: 5
            definition: {{max-length: 10, retry-delays: [1000], ha-mode: all}}
        """)
    assert cfg.permissions == (PermissionConfig("alice", "^alice\\.", ".*", "", "prod"),)
    assert cfg.policies == (PolicyConfig(
        "limits", "^orders\\.", FreeMap({"max-length": 10, "retry-delays": [1000],
                                        "ha-mode": "all"}),
        "prod", "queues", 5),)


def test_free_maps_compare_by_typed_value_and_hash():
    assert FreeMap({"a": 1}) != FreeMap({"a": True})
    assert FreeMap({"a": 1}) != FreeMap({"a": 1.0})
    assert FreeMap({"a": [1, {"b": "c"}]}) == FreeMap({"a": (1, FreeMap({"b": "c"}))})
    assert hash(FreeMap({"x": [1]})) == hash(FreeMap({"x": (1,)}))
    assert FreeMap({"a": [1, {"b": "c"}]}).to_plain() == {"a": [1, {"b": "c"}]}


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("30s", 30000), ("2m", 120000),
                                          ("1h", 3600000), ("1d", 86400000), ("0s", 0)])
def test_millisecond_durations(text, ms):
    assert parse_duration_ms(text) == ms
    assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_format_duration_ms_picks_the_largest_exact_unit():
    assert [format_duration_ms(v) for v in (0, 1, 1500, 60000, 90000, 7_200_000)] == [
        "0ms", "1ms", "1500ms", "1m", "90s", "2h"]


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "queues:\n  - name: a\n  - name: b\n  - name: c\n    max_length: ten\n",
            'c.yaml:5:17: queues[2].max_length: expected an integer >= 0, got "ten"',
        ),
        (
            "queues:\n  - {name: a, message_tl: 5s}\n",
            "c.yaml:2:15: queues[0].message_tl: unknown key 'message_tl'; did you mean"
            " 'message_ttl'?",
        ),
        (
            "queues:\n  - {name: a, message_ttl: 30 sec}\n",
            'c.yaml:2:28: queues[0].message_ttl: expected a duration with a unit, such as'
            ' "30s" or "500ms", at most 4294967295ms, got "30 sec" (unknown unit "sec" (known:'
            ' ms, s, m, h, d))',
        ),
        (
            "queues:\n  - {name: a, message_ttl: 5000}\n",
            'c.yaml:2:28: queues[0].message_ttl: expected a duration with a unit, such as'
            ' "30s" or "500ms", at most 4294967295ms, got 5000 (an integer); write a unit,'
            ' e.g. "5000ms" or "5000s"',
        ),
        (
            "queues:\n  - {name: a, retry_delays: [1s, soon]}\n",
            'c.yaml:2:34: queues[0].retry_delays[1]: expected a duration with a unit, such as'
            ' "30s" or "500ms", at most 4294967295ms, got "soon" (not a whole number with a'
            ' unit, such as "30s")',
        ),
        (
            "queues:\n  - {name: a, expires: 0s}\n",
            'c.yaml:2:24: queues[0].expires: expected a duration with a unit, such as "30s"'
            ' or "500ms", between 1ms and 4294967295ms, got "0s" (= 0)',
        ),
        (
            "queues:\n  - {name: a, overflow: drop-tail}\n",
            'c.yaml:2:25: queues[0].overflow: expected one of "drop-head", "reject-publish",'
            ' "reject-publish-dlx", got "drop-tail"',
        ),
        (
            "queues:\n  - {name: a, durable: 1}\n",
            "c.yaml:2:24: queues[0].durable: expected a boolean (true or false), got 1"
            " (an integer)",
        ),
        (
            "queues:\n  - {name: amq.mine}\n",
            "c.yaml:2:12: queues[0].name: queue names starting with 'amq.' are reserved",
        ),
        (
            "exchanges:\n  - {name: x, type: x-delayed-message}\n",
            "c.yaml:2:5: exchanges[0].arguments: the x-delayed-message exchange type refuses"
            " it: Invalid argument, 'x-delayed-type' must be an existing exchange type (none"
            " given)",
        ),
        (
            "exchanges:\n  - {name: x, type: x-delayed-message, delayed_type: x-delayed-message}\n",
            "c.yaml:2:5: exchanges[0].arguments: the x-delayed-message exchange type refuses"
            " it: Invalid argument, 'x-delayed-type' must be an existing exchange type (got"
            " 'x-delayed-message')",
        ),
        (
            "exchanges:\n  - {name: x, type: topic, delayed_type: direct}\n",
            "c.yaml:2:42: exchanges[0].delayed_type: only an exchange of type"
            " x-delayed-message takes this key",
        ),
        (
            "exchanges:\n  - {name: x, type: x-random}\n",
            'c.yaml:2:21: exchanges[0].type: unknown exchange type "x-random"; expected one'
            ' of "direct", "fanout", "topic", "headers", "x-consistent-hash", "x-delayed-message"',
        ),
        (
            "exchanges:\n  - {name: amq.direct, type: direct}\n",
            "c.yaml:2:12: exchanges[0].name: exchange names starting with 'amq.' are reserved"
            " (the standard exchanges exist already)",
        ),
        (
            "queues:\n  - name: a\n    message_ttl: 1s\n    arguments: {x-message-ttl: 1000}\n",
            "c.yaml:4:32: queues[0].arguments.x-message-ttl: given twice: here and as"
            " message_ttl; keep one",
        ),
        (
            "queues:\n  - {name: a, arguments: {x-message-ttl: soon}}\n",
            "c.yaml:2:42: queues[0].arguments.x-message-ttl: expected an integer between 0"
            ' and 4294967295 (milliseconds), got "soon"',
        ),
        (
            "queues:\n  - {name: a, dead_letter_routing_key: k}\n",
            "c.yaml:2:40: queues[0].dead_letter_routing_key: a dead-letter routing key needs"
            " dead_letter_exchange as well",
        ),
        (
            "queues:\n  - {name: a, arguments: {x-thing: null}}\n",
            "c.yaml:2:36: queues[0].arguments.x-thing: expected a string, number, boolean,"
            " list or mapping, got null; quote it if you meant a string",
        ),
        (
            "exchanges:\n  - {name: x, alternate_exchange: y,"
            " arguments: {alternate-exchange: z}}\n",
            "c.yaml:2:70: exchanges[0].arguments.alternate-exchange: given twice: here and as"
            " alternate_exchange; keep one",
        ),
        (
            "bindings:\n  - {source: nowhere, destination: q}\nqueues: [{name: q}]\n",
            'c.yaml:2:14: bindings[0].source: no exchange "nowhere" is declared in vhost "/"',
        ),
        (
            "bindings:\n  - {source: amq.fanout, destination: gone}\n",
            'c.yaml:2:39: bindings[0].destination: no queue "gone" is declared in vhost "/"',
        ),
        (
            "bindings:\n  - {source: amq.fanout, destination: x, destination_type: exchange}\n",
            'c.yaml:2:39: bindings[0].destination: no exchange "x" is declared in vhost "/"',
        ),
        (
            "bindings:\n  - {source: '', destination: q}\nqueues: [{name: q}]\n",
            "c.yaml:2:14: bindings[0].source: the default exchange cannot be bound",
        ),
        (
            "bindings:\n  - {source: amq.topic, destination: q, routing_key: 'order.#x'}\n"
            "queues: [{name: q}]\n",
            'c.yaml:2:54: bindings[0].routing_key: invalid topic pattern "order.#x": "*" and'
            ' "#" must be whole words between dots (got the word "#x")',
        ),
        (
            "bindings:\n  - {source: amq.headers, destination: q, arguments: {x-match: some}}\n"
            "queues: [{name: q}]\n",
            'c.yaml:2:64: bindings[0].arguments.x-match: expected one of "all", "any",'
            ' "all-with-x", "any-with-x", got "some"',
        ),
        (
            "queues:\n  - {name: q, vhost: prod}\n",
            'c.yaml:2:22: queues[0].vhost: no vhost named "prod" (vhosts: "/")',
        ),
        (
            "permissions:\n  - {user: bob, configure: '.*', write: '.*', read: '.*'}\n",
            'c.yaml:2:12: permissions[0].user: no user named "bob" in users',
        ),
        (
            "permissions:\n  - {user: guest, configure: '(', write: '.*', read: '.*'}\n",
            "c.yaml:2:30: permissions[0].configure: not a valid regular expression: missing ),"
            " unterminated subpattern at position 0",
        ),
        (
            "permissions:\n  - {user: guest, configure: '.*', read: '.*'}\n",
            "c.yaml:2:5: permissions[0]: missing required key 'write'",
        ),
        (
            "policies:\n  - {name: p, pattern: '[', definition: {max-length: 1}}\n",
            "c.yaml:2:24: policies[0].pattern: not a valid regular expression: unterminated"
            " character set at position 0",
        ),
        (
            "policies:\n  - {name: p, pattern: q, definition: {max-lenght: 1}}\n",
            "c.yaml:2:52: policies[0].definition.max-lenght: 'max-lenght' is not a policy key"
            " (RabbitMQ's, or WarrenMQ's retry-delays)",
        ),
        (
            "policies:\n  - {name: p, pattern: q, definition: {message-ttl: -1}}\n",
            "c.yaml:2:53: policies[0].definition.message-ttl: expected an integer between 0 and"
            " 4294967295 (milliseconds), got -1",
        ),
        (
            "policies:\n  - {name: p, pattern: q, definition: {}}\n",
            "c.yaml:2:39: policies[0].definition: expected a non-empty mapping, got an empty"
            " mapping",
        ),
        (
            "users:\n  - {name: a, password_hash: nothash}\n",
            "c.yaml:2:30: users[0].password_hash: expected RabbitMQ's salted SHA-256 hash:"
            " base64 of a 4-byte salt and a 32-byte digest (48 characters)",
        ),
    ],
)
def test_problems(text, expected):
    assert error(text) == expected


def test_routing_keys_longer_than_255_bytes():
    key = "k" * 256
    assert error(f"queues: [{{name: q}}]\nbindings: [{{source: amq.direct, destination: q,"
                 f" routing_key: {key}}}]\n") == (
        "c.yaml:2:62: bindings[0].routing_key: must be at most 255 bytes of UTF-8"
        " (an AMQP short string)")


def test_duplicates_are_per_vhost():
    found = errors("""
        vhosts: [{name: /}, {name: prod}]
        exchanges:
          - {name: x}
          - {name: x, vhost: prod}
          - {name: x, vhost: /}
        queues:
          - {name: q}
          - {name: q, vhost: prod}
          - {name: q}
        bindings:
          - {source: x, destination: q}
          - {source: x, destination: q, vhost: /}
        policies:
          - {name: p, pattern: ., definition: {max-length: 1}}
          - {name: p, pattern: x, definition: {max-length: 2}}
        permissions:
          - {user: guest, configure: '', write: '', read: ''}
          - {user: guest, vhost: /, configure: '', write: '', read: ''}
        """)
    assert found == [
        'c.yaml:6:12: exchanges[2].name: duplicate exchange "x" in vhost "/"',
        'c.yaml:10:12: queues[2].name: duplicate queue "q" in vhost "/"',
        'c.yaml:13:5: bindings[1]: duplicate binding of "q" to "x" with routing key "" in'
        ' vhost "/"',
        'c.yaml:16:12: policies[1].name: duplicate policy "p" in vhost "/"',
        'c.yaml:19:12: permissions[1].user: duplicate permission for user "guest" in vhost "/"',
    ]


def test_every_problem_is_listed_in_file_order():
    found = errors("""
        queues:
          - {name: a, max_length: ten}
          - {name: b, message_ttl: 5}
        bindings:
          - {source: nope, destination: a}
        permissions:
          - {user: ghost, configure: '(', write: '', read: ''}
        """)
    # a binding's queue is judged only once every queue loads (an undeclared queue could
    # be one that failed), its exchange still is; one bad entry does not hide the others'
    assert [line.split(": ", 2)[1] for line in found] == [
        "queues[0].max_length", "queues[1].message_ttl", "bindings[0].source",
        "permissions[0].user", "permissions[0].configure"]


def test_an_entry_that_failed_does_not_hide_the_others_cross_checks():
    assert [line.split(": ", 1)[1] for line in errors("""
        queues:
          - {name: a, max_length: ten}
          - {name: b, vhost: nowhere}
          - {name: b}
          - {name: b}
        """)] == [
        'queues[0].max_length: expected an integer >= 0, got "ten"',
        'queues[1].vhost: no vhost named "nowhere" (vhosts: "/")',
        'queues[3].name: duplicate queue "b" in vhost "/"',
    ]


def test_standard_exchanges_count_as_declared_in_every_vhost():
    cfg = load("""
        vhosts: [{name: /}, {name: v}]
        queues: [{name: q, vhost: v}]
        bindings:
          - {source: amq.topic, destination: q, vhost: v, routing_key: "a.*.#"}
          - {source: amq.match, destination: q, vhost: v, arguments: {x-match: any, k: 1}}
        """)
    assert len(cfg.bindings) == 2


def test_config_policy_keys_cover_what_the_broker_applies():
    assert SUPPORTED_POLICY_KEYS <= POLICY_KEYS


# ---------------------------------------------------------------- the shipped reference


def test_shipped_reference_examples_load_when_uncommented():
    text = SHIPPED.read_text()
    start = text.index("# ------------------------------------------------------------------"
                       "----- declarations")
    lines = []
    for line in text[start:].splitlines():
        if re.match(r"^#(   | [a-z_]+:$| [a-z_]+: )", line) and not line.startswith("# ---"):
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        elif re.match(r"^[a-z_]+: \[\]$", line):
            lines.append(line[:-3])
    cfg = load_config_text("\n".join(lines) + "\n", "uncommented.yaml")
    assert [q.name for q in cfg.queues] == ["email", "audit", "jobs", "ledger", "payments"]
    assert cfg.queues[2].max_priority == 10
    assert cfg.queues[3].single_active_consumer is True
    assert (cfg.queues[4].message_deduplication, cfg.queues[4].cache_ttl) == (True, 600_000)
    assert [x.name for x in cfg.exchanges] == ["orders", "events", "checkout", "later"]
    assert (cfg.exchanges[3].type, cfg.exchanges[3].delayed_type) == ("x-delayed-message",
                                                                       "direct")
    assert len(cfg.bindings) == 3 and len(cfg.policies) == 1
    assert cfg.permissions is not None and len(cfg.permissions) == 1
    assert [t.write for t in cfg.topic_permissions] == ["^{username}\\."]
    assert load_config(SHIPPED) == BrokerConfig()


# ----------------------------------------------------------------------- round trips

FULL = f"""
vhosts: [{{name: /}}, {{name: prod}}]
users:
  - {{name: guest, password_hash: "{HASH}", tags: [administrator], loopback_only: true}}
  - {{name: alice, password_hash: "{HASH}", tags: [monitoring, management]}}
permissions:
  - {{user: alice, vhost: prod, configure: "^a", write: ".*", read: ""}}
  - {{user: guest, configure: ".*", write: ".*", read: ".*"}}
topic_permissions:
  - {{user: alice, vhost: prod, exchange: amq.topic, write: '^{{username}}\\.', read: ""}}
  - {{user: guest, exchange: events, read: '^order\\.'}}
policies:
  - {{name: p1, pattern: "^q", apply_to: queues, priority: 2,
     definition: {{message-ttl: 1000, max-length: 3, ha-mode: all}}}}
exchanges:
  - {{name: orders, type: fanout}}
  - {{name: events, type: topic, alternate_exchange: orders, auto_delete: true}}
  - {{name: private, type: direct, internal: true, durable: false}}
  - {{name: hx, type: headers, vhost: prod, arguments: {{x-note: [1, 2.5]}}}}
  - {{name: later, type: x-delayed-message, delayed_type: topic}}
queues:
  - name: email
    dead_letter_exchange: orders.dlx
    dead_letter_routing_key: dead
    message_ttl: 30s
    expires: 10m
    max_length: 100
    max_length_bytes: 1MiB
    overflow: reject-publish-dlx
    retry_delays: [1s, 5s, 30s]
    arguments: {{x-custom: {{nested: [true, 1.5, "s"]}}}}
  - {{name: work, delivery_limit: 3, arguments: {{x-queue-type: quorum}}}}
  - {{name: temp, durable: false, auto_delete: true}}
  - {{name: hq, vhost: prod}}
bindings:
  - {{source: orders, destination: email}}
  - {{source: events, destination: work, routing_key: "order.#"}}
  - {{source: hx, destination: hq, vhost: prod, arguments: {{x-match: any, k: v, n: 3}}}}
  - {{source: amq.topic, destination: events, destination_type: exchange, routing_key: "a.*"}}
"""
DECLARATIVE = ("vhosts", "users", "permissions", "topic_permissions", "policies", "exchanges",
               "queues", "bindings")


def declarative(cfg: BrokerConfig) -> dict[str, object]:
    return {name: getattr(cfg, name) for name in DECLARATIVE}


def test_yaml_to_rabbitmq_json_to_yaml_is_the_identity():
    cfg = load(FULL)
    document, _notes = for_rabbitmq(declarations(cfg))
    text = json.dumps(document)  # what a file holds
    back = load_definitions_text(text, "x.json")
    assert declarative(back) == declarative(cfg)
    again, _ = yaml_text(back)
    assert declarative(load_config_text(again, "again.yaml")) == declarative(cfg)


def test_yaml_export_loads_back_to_the_same_config():
    cfg = load(FULL)
    text, notes = yaml_text(cfg)
    assert notes == []
    assert declarative(load_config_text(text, "export.yaml")) == declarative(cfg)


def test_default_permissions_survive_a_round_trip_as_the_default():
    cfg = load("vhosts: [{name: /}, {name: v}]\nqueues: [{name: q, vhost: v}]\n")
    assert cfg.permissions is None
    document, _ = for_rabbitmq(declarations(cfg))
    assert {(p["user"], p["vhost"]) for p in document["permissions"]} == {
        ("guest", "/"), ("guest", "v")}
    assert config_from_document(document).permissions is None


def test_rabbitmq_document_shape_and_password_hashes():
    cfg = load("users:\n  - {name: dev, password: s3cret, tags: [a, b]}\n"
               "  - {name: guest, password: guest, loopback_only: true}\n")
    document, notes = for_rabbitmq(declarations(cfg))
    assert set(document) == {
        "rabbit_version", "rabbitmq_version", "product_name", "product_version", "users",
        "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters",
        "policies", "queues", "exchanges", "bindings"}
    dev = document["users"][0]
    assert set(dev) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert dev["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert dev["tags"] == ["a", "b"]
    assert User("dev", password_hash=dev["password_hash"]).check_password("s3cret")
    assert not User("dev", password_hash=dev["password_hash"]).check_password("S3cret")
    assert document["vhosts"] == [{"name": "/", "limits": [],
                                   "metadata": {"description": "", "tags": []}}]
    assert notes == [
        'users[0] ("dev"): the plain password is exported as a salted SHA-256 hash',
        'users[1] ("guest"): the plain password is exported as a salted SHA-256 hash']


def test_hash_password_is_rabbitmqs_scheme():
    # RabbitMQ 3.10 wrote HASH for "pw"; the salt is its first 4 bytes
    import base64

    salt = base64.b64decode(HASH)[:4]
    assert hash_password("pw", salt) == HASH


def test_what_rabbitmq_cannot_express_is_noted():
    cfg = load("""
        users:
          - {name: guest, password: guest, loopback_only: false}
          - {name: local, password_hash: "HASH", loopback_only: true}
        queues:
          - {name: slow, retry_delays: [1s], delivery_limit: 2}
          - {name: quorum, delivery_limit: 2, arguments: {x-queue-type: quorum}}
        policies:
          - {name: backoff, pattern: ., definition: {retry-delays: [1000]}}
          - {name: mixed, pattern: ., definition: {retry-delays: [1000], max-length: 5}}
        """.replace("HASH", HASH))
    document, notes = for_rabbitmq(declarations(cfg))
    joined = "\n".join(notes)
    assert 'users[0] ("guest"): may log in from anywhere here' in joined
    assert 'users[1] ("local"): may log in only from loopback here' in joined
    assert "x-retry-delays is WarrenMQ's own" in joined
    assert 'queues[0] ("slow" in vhost "/"): x-delivery-limit left out' in joined
    slow, quorum = document["queues"]
    assert "x-delivery-limit" not in slow["arguments"]
    assert quorum["type"] == "quorum" and quorum["arguments"]["x-delivery-limit"] == 2
    assert [p["name"] for p in document["policies"]] == ["mixed"]
    assert document["policies"][0]["definition"] == {"max-length": 5}
    assert 'policies[0] ("backoff" in vhost "/"): nothing in its definition is' in joined


# ---------------------------------------------------------------- reading RabbitMQ JSON


RABBIT_EXPORT = {
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
    "users": [
        {"name": "guest", "password_hash": HASH,
         "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"],
         "limits": {}},
        {"name": "old", "password_hash": HASH,
         "hashing_algorithm": "rabbit_password_hashing_sha512", "tags": "", "limits": {}},
        {"name": "nopw", "password_hash": "", "tags": "monitoring,management"},
        {"name": "capped", "password_hash": HASH, "tags": [], "limits": {"max-connections": 2}},
    ],
    "vhosts": [{"name": "/", "limits": [], "metadata": {"description": "Default virtual host",
                                                          "tags": []}},
               {"name": "v2", "limits": {"max-queues": 5}, "metadata": {}}],
    "permissions": [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "old", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    ],
    "topic_permissions": [{"user": "guest", "vhost": "/", "exchange": "amq.topic",
                           "write": "^x", "read": ".*"}],
    "parameters": [{"vhost": "/", "component": "shovel", "name": "s1", "value": {}}],
    "global_parameters": [{"name": "cluster_name", "value": "rabbit@host"}],
    "policies": [],
    "queues": [
        {"name": "q1", "vhost": "/", "durable": True, "auto_delete": False, "type": "quorum",
         "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 5,
                       "x-message-ttl": 60000}},
        {"name": "q2", "vhost": "v2", "durable": True, "auto_delete": False,
         "arguments": {"x-max-length": 10}},
    ],
    "exchanges": [
        {"name": "delayed", "vhost": "/", "type": "x-random", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}},
        {"name": "ex", "vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {"alternate-exchange": "ae"}},
    ],
    "bindings": [
        {"source": "delayed", "vhost": "/", "destination": "q1", "destination_type": "queue",
         "routing_key": "k", "arguments": {}},
        {"source": "ex", "vhost": "/", "destination": "q1", "destination_type": "queue",
         "routing_key": "k", "arguments": {}},
    ],
}


def test_reading_a_rabbitmq_export_notes_what_it_cannot_keep():
    cfg = config_from_document(RABBIT_EXPORT, "defs.json")
    assert [u.name for u in cfg.users] == ["guest", "capped"]
    assert cfg.users[0] == UserConfig("guest", password_hash=HASH, tags=("administrator",),
                                      loopback_only=True)  # RabbitMQ's loopback_users default
    assert cfg.vhosts == (VhostConfig("/", description="Default virtual host"),
                          VhostConfig("v2", max_queues=5))  # description and tags are kept
    assert cfg.users[1].max_connections == 2  # RabbitMQ's user and vhost limits are kept
    assert cfg.permissions == (PermissionConfig("guest", ".*", ".*", ".*"),)
    assert cfg.topic_permissions == (
        TopicPermissionConfig("guest", "amq.topic", "^x", ".*"),)
    q1, q2 = cfg.queues
    assert (q1.message_ttl, q1.delivery_limit) == (60000, 5)
    assert q1.arguments == FreeMap({"x-queue-type": "quorum"})  # clients redeclare with it
    assert (q2.vhost, q2.max_length) == ("v2", 10)
    assert cfg.exchanges == (ExchangeConfig("ex", "direct", alternate_exchange="ae"),)
    assert cfg.bindings == (BindingConfig("ex", "q1", routing_key="k"),)
    assert cfg.source is not None
    notes = "\n".join(cfg.source.notes)
    for expected in (
        'users[1] ("old"): hashing algorithm rabbit_password_hashing_sha512 is not supported',
        'users[2] ("nopw"): has no password',
        'permissions[1]: user "old" was not imported',
        'parameters[0] (shovel "s1" in vhost "/")',
        'global_parameters[0] ("cluster_name")',
        'queues[0] ("q1"): a quorum queue in RabbitMQ; WarrenMQ runs it as a classic queue',
        'exchanges[0] ("delayed"): exchange type "x-random" is not supported',
        "bindings[0]: an end of the binding was not imported",
    ):
        assert expected in notes, expected
    assert "Default virtual host" not in notes


def test_rabbitmq_json_problems_use_the_documents_key_paths(tmp_path):
    document = {
        "vhosts": [{"name": "/"}],
        "queues": [
            {"name": "ok", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
            {"name": "bad", "vhost": "/", "durable": "yes", "auto_delete": False,
             "arguments": {}},
            {"vhost": "/", "durable": True},
        ],
        "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "missing",
                      "destination_type": "queue", "routing_key": "", "arguments": {}}],
        "exchanges": "no",
    }
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        f'{path}: exchanges: expected a list, got "no"',
        f'{path}: queues[1].durable: expected a boolean, got "yes"',
        f"{path}: queues[2]: missing required key 'name'",
    ]
    document.update(exchanges=[], queues=[document["queues"][0],  # type: ignore[list-item]
                                          {"name": "x", "vhost": "/", "durable": True,
                                           "auto_delete": False,
                                           "arguments": {"x-message-ttl": "soon"}}])
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        f'{path}: queues[1].arguments.x-message-ttl: expected an integer between 0 and'
        ' 4294967295 (milliseconds), got "soon"',
        f'{path}: bindings[0].destination: no queue "missing" is declared in vhost "/"',
    ]


def test_json_syntax_errors_and_non_objects(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"queues": [}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:1:13: JSON syntax error: Expecting value"
    with pytest.raises(ConfigError) as info:
        config_from_document([1, 2], "list.json")
    assert str(info.value) == "list.json: expected a JSON object at the top, got a list"


def test_the_readme_example_loads():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config_text(block, "README.md")
    assert [q.name for q in cfg.queues] == ["email"]
    assert cfg.queues[0].retry_delays == (1000, 5000, 30000)
    assert cfg.permissions == (PermissionConfig("app", "^app\\.", ".*", ".*", "prod"),)


def test_logging_format_auto_is_json_off_a_terminal_and_console_on_one():
    import io

    import structlog

    from warrenmq.config import LoggingConfig
    from warrenmq.logging import configure_logging, reset_logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert LoggingConfig().format == "auto"
    try:
        piped = io.StringIO()
        configure_logging(LoggingConfig(), piped)
        structlog.get_logger().info("hello", k=1)
        line = json.loads(piped.getvalue())
        assert (line["event"], line["k"], line["level"]) == ("hello", 1, "info")
        terminal = Terminal()
        configure_logging(LoggingConfig(), terminal)
        structlog.get_logger().info("hello", k=1)
        assert "hello" in terminal.getvalue() and not terminal.getvalue().startswith("{")
    finally:
        reset_logging()
