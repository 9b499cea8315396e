"""Offline tools as subprocesses: ``warrenmq data delete-queue|delete-exchange`` on a
stopped broker's data directory (the way out of a config conflict without the old
config), and ``warrenmq hash-password`` (a hash the broker then accepts for a login).

Covered: a config that conflicts with a durable queue exits 2 at start; deleting the
queue offline (its bindings too) lets the same config start, with the queue's old
messages gone; deleting an exchange removes bindings from and to it; an unknown entity,
a missing data directory and a running broker's directory each exit 2 with one line;
hash-password from an argument and from stdin, verified by logging in with it.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import aiormq

from tests.process import BrokerProcess, arun_cli


async def _durable_topology(url: str) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare("orders", exchange_type="direct", durable=True)
        await channel.exchange_declare("audit", exchange_type="fanout", durable=True)
        await channel.queue_declare("work", durable=True, arguments={"x-max-length": 10})
        await channel.queue_declare("keep", durable=True)
        await channel.queue_bind("work", "orders", routing_key="new")
        await channel.queue_bind("keep", "orders", routing_key="keep")
        await channel.exchange_bind("audit", "orders", routing_key="new")
        await channel.basic_publish(b"old", exchange="orders", routing_key="new",
                                    properties=aiormq.spec.Basic.Properties(delivery_mode=2))
    finally:
        await connection.close()


async def test_delete_queue_resolves_a_config_conflict(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with BrokerProcess(data, management=False) as broker:
        await _durable_topology(broker.amqp_url)
        assert await broker.stop() == 0
    config = tmp_path / "broker.yaml"
    config.write_text("queues:\n  - name: work\n    max_length: 5\n")
    conflict = await arun_cli("serve", "--config", str(config), "--port", "0",
                              "--no-management", "--data-dir", str(data))
    assert conflict.returncode == 2
    assert "work" in conflict.stderr and "Traceback" not in conflict.stderr

    deleted = await arun_cli("data", "delete-queue", "work", "--data-dir", str(data))
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == (
        f"deleted queue 'work' in vhost '/' from {data} (1 binding(s) removed); its messages"
        " are dropped when the broker next starts")

    async with BrokerProcess(data, "--config", str(config), management=False) as broker:
        connection = await aiormq.connect(broker.amqp_url)
        try:
            channel = await connection.channel()
            work = await channel.queue_declare("work", passive=True)
            assert work.message_count == 0  # the old message went with the old queue
            keep = await channel.queue_declare("keep", passive=True)
            assert keep.message_count == 0
        finally:
            await connection.close()
        assert await broker.stop() == 0


async def test_delete_exchange_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with BrokerProcess(data, management=False) as broker:
        await _durable_topology(broker.amqp_url)
        locked = await arun_cli("data", "delete-exchange", "orders", "--data-dir", str(data))
        assert locked.returncode == 2
        assert "in use by another WarrenMQ" in locked.stderr
        assert await broker.stop() == 0
    deleted = await arun_cli("data", "delete-exchange", "orders", "--data-dir", str(data))
    assert deleted.returncode == 0, deleted.stderr
    assert "(3 binding(s) removed)" in deleted.stdout  # to work, to keep, to audit
    again = await arun_cli("data", "delete-exchange", "orders", "--data-dir", str(data))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"warrenmq data delete-exchange: no durable exchange 'orders' in vhost '/' in {data}"
        " (durable exchanges there: audit)")
    missing = await arun_cli("data", "delete-queue", "q", "--data-dir", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("warrenmq data delete-queue: no such directory:")


def _verify(password: str, encoded: str) -> bool:
    raw = base64.b64decode(encoded)
    salt, digest = raw[:4], raw[4:]
    return len(raw) == 36 and hashlib.sha256(salt + password.encode()).digest() == digest


async def test_hash_password_is_accepted_by_the_broker(tmp_path: Path) -> None:
    by_arg = await arun_cli("hash-password", "s3cret")
    assert by_arg.returncode == 0 and _verify("s3cret", by_arg.stdout.strip())
    by_stdin = await arun_cli("hash-password", stdin="s3cret\n")
    assert by_stdin.returncode == 0 and _verify("s3cret", by_stdin.stdout.strip())
    assert by_stdin.stdout != by_arg.stdout  # salted
    empty = await arun_cli("hash-password", stdin="")
    assert empty.returncode == 2 and "no password" in empty.stderr
    config = tmp_path / "users.yaml"
    config.write_text(
        "users:\n  - name: ops\n    password_hash: " + by_stdin.stdout.strip() + "\n"
        "    tags: [administrator]\n"
        "permissions:\n  - {user: ops, configure: '.*', write: '.*', read: '.*'}\n")
    async with BrokerProcess(tmp_path / "data", "--config", str(config),
                             management=False) as broker:
        connection = await aiormq.connect(f"amqp://ops:s3cret@127.0.0.1:{broker.port}/")
        await connection.close()
        assert await broker.stop() == 0
