"""Permissions as RabbitMQ's access control, without a server: ``Permission`` regex
semantics (an unanchored search, "" matching nothing), ``Grant`` checks, wording and
the publish write cache, and the ``Broker`` API that owns users, vhosts and
permissions (set, clear, delete a user, add a vhost)."""

from __future__ import annotations

import pytest

from warrenmq.broker.broker import Broker, User
from warrenmq.broker.permissions import (
    FULL_ACCESS,
    WRITE_CACHE_LIMIT,
    Grant,
    Permission,
    named_exchange,
)
from warrenmq.errors import AccessRefused, ReplyCode


def test_permission_is_a_search_like_rabbitmq_re_run() -> None:
    perm = Permission(configure="^app\\.", write="orders", read=".*")
    assert perm.allows("configure", "app.q")
    assert not perm.allows("configure", "other.app.q")
    # unanchored: "orders" anywhere in the name, as Erlang's re:run
    assert perm.allows("write", "my.orders.x")
    assert not perm.allows("write", "invoices")
    assert perm.allows("read", "anything")


def test_empty_pattern_matches_no_resource() -> None:
    perm = Permission("", "", "")
    for access in ("configure", "write", "read"):
        assert not perm.allows(access, "q")  # type: ignore[arg-type]
        assert not perm.allows(access, "amq.default")  # type: ignore[arg-type]


def test_explicit_anchors_give_a_full_match() -> None:
    perm = Permission("^(amq\\.gen.*|amq\\.default)$", "^$", "^$")
    assert perm.allows("configure", "amq.gen-abc")
    assert perm.allows("configure", "amq.default")
    assert not perm.allows("configure", "amq.defaults")


@pytest.mark.parametrize("which", ["configure", "write", "read"])
def test_bad_regex_is_a_value_error_naming_which(which: str) -> None:
    patterns = {"configure": ".*", "write": ".*", "read": ".*", which: "(unclosed"}
    with pytest.raises(ValueError, match=which):
        Permission(**patterns)


def test_non_string_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="write"):
        Permission(".*", 5, ".*")  # type: ignore[arg-type]


def test_permissions_compare_by_their_patterns() -> None:
    assert Permission("a", "b", "c") == Permission("a", "b", "c")
    assert Permission("a", "b", "c") != Permission("a", "b", "d")
    assert FULL_ACCESS == Permission(".*", ".*", ".*")


def test_grant_refusal_uses_rabbitmq_wording() -> None:
    grant = Grant("alice", "/", Permission("^a\\.", "^a\\.", "^a\\."))
    grant.check("configure", "queue", "a.q")
    with pytest.raises(AccessRefused) as info:
        grant.check("configure", "queue", "b.q")
    assert info.value.reply_code == ReplyCode.ACCESS_REFUSED
    assert info.value.text == "access to queue 'b.q' in vhost '/' refused for user 'alice'"
    with pytest.raises(AccessRefused) as info:
        grant.check("write", "exchange", "")
    assert info.value.text == (
        "access to exchange 'amq.default' in vhost '/' refused for user 'alice'")


def test_default_exchange_is_checked_as_amq_default() -> None:
    grant = Grant("u", "v", Permission("", "^amq\\.default$", ""))
    assert grant.allows("write", "exchange", "")
    assert not grant.allows("write", "queue", "")  # only exchanges get the alias


def test_revoked_grant_refuses_everything() -> None:
    grant = Grant("u", "/", None)
    with pytest.raises(AccessRefused):
        grant.check("read", "queue", "q")


def test_publish_cache_keeps_only_existing_exchanges_and_is_bounded() -> None:
    grant = Grant("u", "/", FULL_ACCESS)
    grant.check_publish("x", exists=True)
    grant.check_publish("missing", exists=False)
    assert grant.writable == {"x"}
    for index in range(WRITE_CACHE_LIMIT + 5):
        grant.check_publish(f"x{index}", exists=True)
    assert len(grant.writable) <= WRITE_CACHE_LIMIT


def test_publish_refusal_is_not_cached() -> None:
    grant = Grant("u", "/", Permission(".*", "^ok$", ".*"))
    with pytest.raises(AccessRefused):
        grant.check_publish("nope", exists=True)
    assert grant.writable == set()


def test_update_clears_the_cache_in_place() -> None:
    grant = Grant("u", "/", FULL_ACCESS)
    cache = grant.writable
    grant.check_publish("x", exists=True)
    grant.update(Permission(".*", "^$", ".*"))
    assert cache is grant.writable and cache == set()
    with pytest.raises(AccessRefused):
        grant.check_publish("x", exists=True)


def test_named_exchange_reads_strings_and_bytes() -> None:
    assert named_exchange("dlx") == "dlx"
    assert named_exchange(b"dlx") == "dlx"
    assert named_exchange(5) is None
    assert named_exchange(None) is None


# --------------------------------------------------------------------------- Broker
def alice() -> User:
    return User("alice", password="secret")


def test_default_broker_gives_every_given_user_full_access_to_every_vhost() -> None:
    broker = Broker(vhosts=["/", "b"], users=[alice(), User("bob", password="x")])
    assert dict(broker.permissions) == {
        (user, vhost): FULL_ACCESS for user in ("alice", "bob") for vhost in ("/", "b")}
    assert broker.vhost_for(alice(), "b") is broker.vhosts["b"]


def test_explicit_permissions_decide_who_opens_which_vhost() -> None:
    broker = Broker(vhosts=["/", "b"], users=[alice()],
                    permissions={("alice", "b"): FULL_ACCESS})
    assert broker.vhost_for(alice(), "/") is None
    assert broker.vhost_for(alice(), "b") is broker.vhosts["b"]
    assert broker.vhost_for(alice(), "nope") is None


def test_permissions_view_is_read_only() -> None:
    broker = Broker(users=[alice()])
    with pytest.raises(TypeError):
        broker.permissions[("alice", "/")] = FULL_ACCESS  # type: ignore[index]


def test_set_permission_needs_a_known_user_and_vhost() -> None:
    broker = Broker(users=[alice()])
    with pytest.raises(ValueError, match="no user 'bob'"):
        broker.set_permission("bob", "/", FULL_ACCESS)
    with pytest.raises(ValueError, match="no vhost 'x'"):
        broker.set_permission("alice", "x", FULL_ACCESS)
    with pytest.raises(ValueError, match="Permission"):
        broker.set_permission("alice", "/", (".*", ".*", ".*"))  # type: ignore[arg-type]


def test_set_and_clear_reach_live_grants() -> None:
    broker = Broker(users=[alice()], permissions={})
    grant = broker.grant("alice", "/")
    assert grant.permission is None
    generation = broker.permission_generation
    broker.set_permission("alice", "/", Permission("^a", "^a", "^a"))
    assert broker.grant("alice", "/") is grant
    assert grant.allows("read", "queue", "a1") and not grant.allows("read", "queue", "b1")
    assert broker.clear_permission("alice", "/")
    assert grant.permission is None
    assert not broker.clear_permission("alice", "/")
    assert broker.permission_generation > generation


def test_delete_user_drops_its_permissions_and_notifies() -> None:
    broker = Broker(users=[alice(), User("bob", password="x")])
    grant = broker.grant("alice", "/")
    deleted: list[str] = []
    broker.on_user_deleted.append(deleted.append)
    assert broker.delete_user("alice")
    assert deleted == ["alice"]
    assert ("alice", "/") not in broker.permissions and ("bob", "/") in broker.permissions
    assert grant.permission is None
    assert broker.authenticate("alice", "secret", loopback=True) is None
    assert not broker.delete_user("alice")


def test_set_user_adds_or_replaces() -> None:
    broker = Broker(users=[alice()])
    broker.set_user(User("alice", password="new"))
    assert broker.authenticate("alice", "new", loopback=True) is not None
    assert broker.authenticate("alice", "secret", loopback=True) is None
    broker.set_user(User("carol", password="c"))
    assert "carol" in broker.users
    assert broker.vhost_for(broker.users["carol"], "/") is None  # no permission yet


def test_add_vhost_is_idempotent_and_validates() -> None:
    broker = Broker()
    vhost = broker.add_vhost("new")
    assert broker.add_vhost("new") is vhost
    assert broker.vhosts["new"] is vhost
    with pytest.raises(ValueError):
        broker.add_vhost("")
