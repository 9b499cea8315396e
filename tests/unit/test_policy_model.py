"""Policies without a server: validation of ``Policy``, choosing the one that applies
(priority, ties, apply-to, pattern search), how declared arguments and a policy merge,
and live re-application on a ``VirtualHost`` (limits enforced at once, TTL for new
messages, alternate exchanges, clearing) and through ``Broker``."""

from __future__ import annotations

import pytest

from warrenmq.broker.broker import Broker
from warrenmq.broker.policies import Policy, queue_arguments, select
from warrenmq.broker.vhost import VirtualHost
from warrenmq.clock import FakeClock
from warrenmq.errors import PreconditionFailed
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr


def msg(body: bytes, exchange: str = "", key: str = "") -> Message:
    route = encode_shortstr(exchange) + encode_shortstr(key)
    return Message(exchange, key, route, b"\x00\x00", body)


def pol(name: str = "p", pattern: str = ".*", priority: int = 0, apply_to: str = "all",
        **definition: object) -> Policy:
    return Policy(name, "/", pattern, apply_to, priority,
                  {k.replace("_", "-"): v for k, v in definition.items()})


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("definition", "key"), [
    ({"max-length": "ten"}, "max-length"),
    ({"max-length": -1}, "max-length"),
    ({"message-ttl": True}, "message-ttl"),
    ({"expires": 0}, "expires"),
    ({"overflow": "explode"}, "overflow"),
    ({"dead-letter-exchange": 5}, "dead-letter-exchange"),
    ({"retry-delays": []}, "retry-delays"),
    ({"alternate-exchange": ["x"]}, "alternate-exchange"),
    ({"ha-mode": "all"}, "ha-mode"),
])
def test_bad_definition_names_the_key(definition: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        Policy("p", "/", ".*", "queues", 0, definition)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"apply_to": "streams"}, "apply-to"),
    ({"priority": True}, "priority"),
    ({"priority": "1"}, "priority"),
    ({"pattern": "(open"}, "pattern"),
    ({"definition": {}}, "definition"),
    ({"name": ""}, "name"),
])
def test_bad_fields_are_value_errors(kwargs: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {"name": "p", "vhost": "/", "pattern": ".*",
                                 "apply_to": "all", "priority": 0,
                                 "definition": {"max-length": 1}}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=words):
        Policy(**fields)  # type: ignore[arg-type]


def test_every_supported_key_is_accepted() -> None:
    policy = Policy("all", "/", ".*", "all", 0, {
        "dead-letter-exchange": "dlx", "dead-letter-routing-key": "k", "message-ttl": 0,
        "expires": 1, "max-length": 0, "max-length-bytes": 10, "overflow": "reject-publish",
        "delivery-limit": 3, "retry-delays": [10, 20], "alternate-exchange": "ae"})
    assert policy.definition["retry-delays"] == [10, 20]


# --------------------------------------------------------------------------- selection
def test_highest_priority_wins_and_ties_go_to_the_first_name() -> None:
    low, high = pol("low", priority=1, max_length=1), pol("high", priority=5, max_length=2)
    assert select([low, high], "queue", "q") is high
    a, b = pol("b-policy", max_length=1), pol("a-policy", max_length=2)
    assert select([a, b], "queue", "q") is b
    assert select([b, a], "queue", "q") is b


def test_apply_to_and_pattern_filter() -> None:
    queues_only = pol("q", pattern="^orders\\.", apply_to="queues", max_length=1)
    exchanges_only = pol("x", pattern="orders", apply_to="exchanges", alternate_exchange="ae")
    policies = [queues_only, exchanges_only]
    assert select(policies, "queue", "orders.new") is queues_only
    assert select(policies, "queue", "old.orders") is None  # ^ anchors the queue pattern
    assert select(policies, "exchange", "old.orders") is exchanges_only  # a search
    assert select(policies, "exchange", "payments") is None


def test_declared_arguments_and_policy_merge_as_rabbitmq() -> None:
    policy = pol(max_length=5, message_ttl=1000, dead_letter_exchange="p-dlx",
                 overflow="reject-publish", expires=60000)
    declared = {"x-max-length": 10, "x-message-ttl": 500, "x-dead-letter-exchange": "q-dlx"}
    merged = queue_arguments(declared, policy)
    assert merged == {
        "x-max-length": 5,  # numeric limit: the lower applies
        "x-message-ttl": 500,
        "x-dead-letter-exchange": "q-dlx",  # the declared argument wins
        "x-overflow": "reject-publish",  # only in the policy
        "x-expires": 60000,
    }
    assert queue_arguments(declared, None) == declared


# --------------------------------------------------------------------------- live application
def full_vhost(clock: FakeClock | None = None) -> VirtualHost:
    vhost = VirtualHost("/", clock or FakeClock())
    vhost.declare_exchange("dlx", "fanout")
    vhost.declare_queue("dlq", owner=None)
    vhost.bind_queue("dlq", "dlx", "", {}, None)
    return vhost


def publish(vhost: VirtualHost, queue: str, count: int) -> None:
    for index in range(count):
        vhost.publish(vhost.exchanges[""], msg(f"m{index}".encode(), key=queue))


def test_policy_limits_apply_at_once_and_clear_restores() -> None:
    vhost = full_vhost()
    vhost.declare_queue("work.a", owner=None)
    vhost.declare_queue("other", owner=None)
    publish(vhost, "work.a", 5)
    publish(vhost, "other", 5)
    vhost.set_policy(pol("cap", pattern="^work\\.", max_length=2, dead_letter_exchange="dlx"))
    work = vhost.queues["work.a"]
    assert work.policy == "cap"
    assert work.effective_arguments == {"x-max-length": 2, "x-dead-letter-exchange": "dlx"}
    assert work.arguments == {}
    assert work.message_count == 2  # drop-head: the oldest three left, dead-lettered
    assert vhost.queues["dlq"].message_count == 3
    assert vhost.queues["other"].message_count == 5 and vhost.queues["other"].policy is None
    assert vhost.clear_policy("cap")
    assert work.policy is None and work.effective_arguments == {}
    publish(vhost, "work.a", 5)
    assert work.message_count == 7
    assert not vhost.clear_policy("cap")


def test_a_new_queue_takes_the_policy_when_declared() -> None:
    vhost = full_vhost()
    vhost.set_policy(pol("cap", pattern="^work\\.", max_length=1, dead_letter_exchange="dlx"))
    queue = vhost.declare_queue("work.b", owner=None)
    assert queue.policy == "cap"
    publish(vhost, "work.b", 3)
    assert queue.message_count == 1
    assert vhost.queues["dlq"].message_count == 2


def test_reject_publish_from_a_policy_keeps_what_is_there() -> None:
    vhost = full_vhost()
    vhost.declare_queue("q", owner=None)
    publish(vhost, "q", 4)
    vhost.set_policy(pol(max_length=2, overflow="reject-publish"))
    queue = vhost.queues["q"]
    assert queue.message_count == 4  # RabbitMQ: the reject modes drop nothing already in
    routed, rejected, _ = vhost.publish(vhost.exchanges[""], msg(b"late", key="q"))
    assert (routed, rejected) == (0, True)


def test_declared_limit_and_policy_take_the_lower() -> None:
    vhost = full_vhost()
    vhost.set_policy(pol(max_length=3))
    low = vhost.declare_queue("low", owner=None, arguments={"x-max-length": 1})
    high = vhost.declare_queue("high", owner=None, arguments={"x-max-length": 10})
    assert low.args.max_length == 1 and high.args.max_length == 3


def test_declare_equivalence_ignores_policy_arguments() -> None:
    vhost = full_vhost()
    vhost.set_policy(pol(max_length=3))
    vhost.declare_queue("q", owner=None)
    assert vhost.declare_queue("q", owner=None) is vhost.queues["q"]
    with pytest.raises(PreconditionFailed, match="inequivalent arg 'x-max-length'"):
        vhost.declare_queue("q", owner=None, arguments={"x-max-length": 3})


def test_policy_ttl_applies_to_messages_enqueued_after_it() -> None:
    clock = FakeClock()
    vhost = full_vhost(clock)
    queue = vhost.declare_queue("q", owner=None)
    publish(vhost, "q", 1)  # before the policy: no expiry
    vhost.set_policy(pol(message_ttl=100, dead_letter_exchange="dlx"))
    assert queue in vhost.timed
    publish(vhost, "q", 1)
    clock.advance(0.2)
    vhost.tick(clock.monotonic())
    assert queue.message_count == 1
    assert vhost.queues["dlq"].message_count == 1


def test_policy_expires_removes_an_idle_queue() -> None:
    clock = FakeClock()
    vhost = full_vhost(clock)
    vhost.declare_queue("idle", owner=None)
    clock.advance(10)
    vhost.set_policy(pol(pattern="^idle$", expires=1000))  # the idle clock restarts now
    vhost.tick(clock.monotonic())
    assert "idle" in vhost.queues
    clock.advance(1.5)
    vhost.tick(clock.monotonic())
    assert "idle" not in vhost.queues


def test_policy_alternate_exchange_and_declared_one_wins() -> None:
    vhost = full_vhost()
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_queue("unrouted", owner=None)
    vhost.bind_queue("unrouted", "ae", "", {}, None)
    vhost.declare_exchange("ae2", "fanout")
    vhost.declare_queue("unrouted2", owner=None)
    vhost.bind_queue("unrouted2", "ae2", "", {}, None)
    plain = vhost.declare_exchange("plain", "direct")
    own = vhost.declare_exchange("own", "direct", arguments={"alternate-exchange": "ae2"})
    vhost.set_policy(pol("ae", apply_to="exchanges", alternate_exchange="ae"))
    assert plain.policy == "ae" and plain.effective_arguments == {"alternate-exchange": "ae"}
    assert vhost.exchanges[""].policy is None  # the default exchange takes no policy
    vhost.publish(plain, msg(b"1", "plain", "nowhere"))
    vhost.publish(own, msg(b"2", "own", "nowhere"))
    assert vhost.queues["unrouted"].message_count == 1
    assert vhost.queues["unrouted2"].message_count == 1
    vhost.clear_policy("ae")
    vhost.publish(plain, msg(b"3", "plain", "nowhere"))
    assert vhost.queues["unrouted"].message_count == 1


def test_queues_only_policy_leaves_exchanges_alone() -> None:
    vhost = full_vhost()
    x = vhost.declare_exchange("x", "direct")
    vhost.set_policy(pol(apply_to="queues", alternate_exchange="dlx", max_length=1))
    assert x.policy is None
    assert vhost.queues["dlq"].policy == "p"


def test_broker_policy_api() -> None:
    broker = Broker(vhosts=["/", "b"])
    policy = Policy("p", "b", ".*", "queues", 0, {"max-length": 1})
    broker.set_policy(policy)
    assert dict(broker.policies) == {("b", "p"): policy}
    queue = broker.vhosts["b"].declare_queue("q", owner=None)
    assert queue.policy == "p"
    with pytest.raises(ValueError, match="no vhost 'nope'"):
        broker.set_policy(Policy("p", "nope", ".*", "all", 0, {"max-length": 1}))
    with pytest.raises(TypeError):
        broker.policies[("b", "x")] = policy  # type: ignore[index]
    assert broker.clear_policy("b", "p") and queue.policy is None
    assert not broker.clear_policy("b", "p") and not broker.clear_policy("zz", "p")


def test_replacing_a_policy_reapplies_its_new_definition() -> None:
    vhost = full_vhost()
    queue = vhost.declare_queue("q", owner=None)
    vhost.set_policy(pol(max_length=5))
    vhost.set_policy(pol(max_length=7))
    assert queue.args.max_length == 7
    assert queue.effective_policy_definition == {"max-length": 7}
