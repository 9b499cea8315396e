"""The rabbitmqctl-like commands as subprocesses against a real ``warrenmq serve``
process (its management listener on port 0), with the broker found through
``WARRENMQ_URL`` / ``WARRENMQ_USER`` / ``WARRENMQ_PASSWORD`` or flags.

Covered: declare queue/exchange/binding, publish (routed and not), list (table, --json,
--sort/--reverse, --filter, --columns, --vhost), get (requeue and --remove), purge,
delete with --if-empty, status, ping (0, and 1 when nothing answers); add user, set
permissions (the new user then logs in over AMQP and is refused what the regex does not
allow), list users/vhosts/permissions/policies, delete user; list connections,
channels and consumers, close connection (the client sees the reason); errors: a 404
in words with exit 1, a refused login, an amqp:// URL and an unreachable broker with
exit 2, each one line without a traceback.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiormq
import pytest

from tests.helpers import wait_until
from tests.process import BrokerProcess, arun_cli


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    async with BrokerProcess(tmp_path / "data") as running:
        yield running
        assert await running.stop() == 0


async def wq(broker: BrokerProcess, *args: str, stdin: str | None = None,
             **env: str) -> tuple[int, str, str]:
    environment = {"WARRENMQ_URL": broker.http_url, **env}
    result = await arun_cli(*args, env=environment, stdin=stdin)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


async def test_queues_exchanges_bindings_publish_get(broker: BrokerProcess) -> None:
    status, out, err = await wq(broker, "declare", "queue", "jobs", "--argument",
                                "x-max-length=10")
    assert (status, out.strip()) == (0, "declared queue 'jobs' in vhost '/'"), err
    assert err.strip() == f"warrenmq declare: talking to {broker.http_url} as guest"
    assert (await wq(broker, "declare", "queue", "zeta", "--transient"))[0] == 0
    assert (await wq(broker, "declare", "exchange", "events", "--type", "fanout"))[0] == 0
    status, out, _ = await wq(broker, "declare", "binding", "--source", "events",
                              "--destination", "jobs")
    assert (status, out.strip()) == (0, "bound queue 'jobs' to exchange 'events' with"
                                         " routing key ''")
    for n in range(3):
        status, out, _ = await wq(broker, "publish", "--exchange", "events", "--routing-key",
                                  "any", "--payload", f"hello {n}", "--property",
                                  "content_type=text/plain", "--header", "n=1")
        assert status == 0 and out.strip().endswith(": routed")
    status, out, _ = await wq(broker, "publish", "--routing-key", "nowhere", stdin="x")
    assert status == 0 and "NOT routed" in out

    status, out, _ = await wq(broker, "list", "queues")
    assert status == 0
    assert rows(out) == [
        ["vhost", "name", "messages_ready", "messages_unacknowledged", "consumers", "durable"],
        ["/", "jobs", "3", "0", "0", "true"], ["/", "zeta", "0", "0", "0", "false"]]
    status, out, _ = await wq(broker, "list", "queues", "--sort", "messages_ready",
                              "--reverse", "--columns", "name,arguments.x-max-length")
    assert rows(out) == [["name", "arguments.x-max-length"], ["jobs", "10"], ["zeta"]]
    status, out, _ = await wq(broker, "list", "exchanges", "--vhost", "/", "--filter",
                              "type=fanout", "--json")
    assert sorted(x["name"] for x in json.loads(out)) == ["amq.fanout", "events"]
    status, out, _ = await wq(broker, "list", "bindings", "--filter", "source=events")
    assert rows(out)[1] == ["/", "events", "jobs", "queue"]

    status, out, _ = await wq(broker, "get", "jobs", "--count", "2")
    assert status == 0 and [r[-2:] for r in rows(out)[1:]] == [["hello", "0"], ["hello", "1"]]
    status, out, _ = await wq(broker, "get", "jobs", "--remove", "--json")
    assert [m["payload"] for m in json.loads(out)] == ["hello 0"]
    status, out, _ = await wq(broker, "delete", "queue", "jobs", "--if-empty")
    assert status == 1  # it still holds two
    assert (await wq(broker, "purge", "queue", "jobs"))[1].strip() == \
        "purged queue 'jobs' in vhost '/'"
    status, out, _ = await wq(broker, "delete", "queue", "jobs", "--if-empty")
    assert (status, out.strip()) == (0, "deleted queue 'jobs' in vhost '/'")
    status, out, err = await wq(broker, "delete", "queue", "jobs")
    assert (status, out) == (1, "")
    assert err.strip().splitlines()[-1] == ("warrenmq delete: queue 'jobs' not found in"
                                            " vhost '/'")


async def test_status_and_ping(broker: BrokerProcess, tmp_path: Path) -> None:
    status, out, _ = await wq(broker, "status")
    assert status == 0
    text = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert text["version"].strip().startswith("WarrenMQ ")
    assert f"amqp 127.0.0.1:{broker.port}" in text["listeners"]
    assert text["alarms"].strip() == "none" and "uptime" in text and "memory" in text
    assert "disk free" in text and text["messages"].strip().startswith("0 (")
    status, out, _ = await wq(broker, "status", "--json")
    assert json.loads(out)["messages"] == 0
    status, out, _ = await wq(broker, "ping")
    assert status == 0 and out.startswith(f"pong from {broker.http_url}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, out, err = await wq(broker, "ping", WARRENMQ_URL=f"http://127.0.0.1:{port}")
    assert (status, out) == (1, "")
    assert "cannot reach the management API" in err and "Connection refused" in err


async def test_users_and_permissions(broker: BrokerProcess) -> None:
    status, out, err = await wq(broker, "add", "user", "ops", "--new-password", "pw",
                                "--tags", "monitoring")
    assert (status, out.strip()) == (0, "added user 'ops' with tags monitoring"), err
    status, out, _ = await wq(broker, "set", "permissions", "ops", "--configure", "^ops\\.",
                              "--write", "^ops\\.", "--read", "^ops\\.")
    assert status == 0
    status, out, _ = await wq(broker, "list", "permissions", "--sort", "user")
    assert rows(out)[1:] == [["guest", "/", ".*", ".*", ".*"],
                             ["ops", "/", "^ops\\.", "^ops\\.", "^ops\\."]]
    status, out, _ = await wq(broker, "list", "users", "--filter", "name=ops")
    assert rows(out) == [["name", "tags"], ["ops", '["monitoring"]']]
    assert rows((await wq(broker, "list", "vhosts"))[1])[1][0] == "/"
    assert rows((await wq(broker, "list", "policies"))[1])[0][0] == "vhost"

    connection = await aiormq.connect(f"amqp://ops:pw@127.0.0.1:{broker.port}/")
    try:
        channel = await connection.channel()
        await channel.queue_declare("ops.q")
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.queue_declare("other.q")
    finally:
        await connection.close()
    # the CLI itself as that user (env credentials): refused what a monitoring user may not
    status, out, err = await wq(broker, "delete", "user", "guest", WARRENMQ_USER="ops",
                                WARRENMQ_PASSWORD="pw")
    assert status == 1 and ("401" in err or "403" in err), err
    status, out, _ = await wq(broker, "delete", "user", "ops")
    assert (status, out.strip()) == (0, "deleted user 'ops'")
    status, _, err = await wq(broker, "list", "queues", WARRENMQ_PASSWORD="wrong")
    assert status == 1 and "401" in err


async def test_connections_channels_consumers_close(broker: BrokerProcess) -> None:
    connection = await aiormq.connect(broker.amqp_url + "?name=worker")
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=7)
        await channel.queue_declare("work")
        await channel.basic_consume("work", lambda m: None, consumer_tag="c1")
        status, out, _ = await wq(broker, "list", "connections", "--json")
        [info] = json.loads(out)
        status, out, _ = await wq(broker, "list", "channels")
        assert rows(out)[1][-3:] == ["1", "0", "7"]
        status, out, _ = await wq(broker, "list", "consumers")
        assert rows(out)[1][:3] == ["/", "work", "c1"]
        status, out, _ = await wq(broker, "close", "connection", info["name"], "--reason",
                                  "maintenance")
        assert (status, out.strip()) == (0, f"closed connection '{info['name']}'")
        await wait_until(lambda: connection.is_closed, timeout=10)
        assert "maintenance" in repr(connection.closing.exception())
    finally:
        if not connection.is_closed:
            await connection.close()
    status, _, err = await wq(broker, "close", "connection", "nope")
    assert status == 1 and err.strip().endswith("connection 'nope' not found")


async def test_bad_urls_exit_2(broker: BrokerProcess) -> None:
    status, out, err = await wq(broker, "list", "queues", "--url",
                                f"amqp://guest:guest@127.0.0.1:{broker.port}/")
    assert (status, out) == (2, "")
    assert "is an AMQP URL: these commands talk to the management HTTP API" in err
    assert "guest:guest" not in err
    status, _, err = await wq(broker, "declare", "binding", "--source", "x")
    assert status == 2 and "needs --source EXCHANGE and --destination NAME" in err
