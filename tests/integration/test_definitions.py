"""RabbitMQ definitions in and out: the CLI, the live functions, and a real RabbitMQ.

Covers: ``warrenmq definitions export --config`` writes RabbitMQ's JSON (friendly
spellings as x-arguments, hashes that verify, notes on stderr) and our YAML (which
loads back to the same declarations); ``export --data-dir`` adds what a broker saved
there (a client's durable queue, not its transient one); ``definitions import`` loads
RabbitMQ's JSON into a data directory that a broker then starts from (users log in,
queues, policies and permissions are there, notes name what was not kept) and refuses
while a broker holds the directory; ``import_definitions``/``export_definitions`` on a
running broker (what the management API calls): applied live, invalid documents refused
whole, conflicts reported and left alone, imported users/policies survive a restart;
and, against Debian's rabbitmq-server on a private node, ``rabbitmqctl
import_definitions`` of our export creates every vhost, user, permission, policy,
exchange, queue and binding with the right arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from tests.helpers import TIMEOUT
from warrenmq.app import start
from warrenmq.broker.broker import User
from warrenmq.broker.definitions import export_definitions, import_definitions
from warrenmq.config import load_config, load_config_text

REPO = Path(__file__).resolve().parents[2]
HASH = "Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF"  # "pw", made by RabbitMQ 3.10

REPRESENTATIVE = f"""
vhosts: [{{name: /}}, {{name: prod}}]
users:
  - {{name: guest, password: guest, tags: [administrator], loopback_only: true}}
  - {{name: alice, password_hash: "{HASH}", tags: [monitoring]}}
permissions:
  - {{user: guest, configure: ".*", write: ".*", read: ".*"}}
  - {{user: alice, vhost: prod, configure: "^alice\\\\.", write: ".*", read: ""}}
topic_permissions:
  - {{user: alice, vhost: prod, exchange: amq.topic, write: "^{{username}}\\\\.", read: ""}}
policies:
  - {{name: cap, pattern: "^email$", apply_to: queues, priority: 1,
     definition: {{max-length: 1000, overflow: reject-publish}}}}
exchanges:
  - {{name: orders, type: fanout}}
  - {{name: unrouted, type: fanout}}
  - {{name: events, type: topic, alternate_exchange: unrouted}}
  - {{name: hidden, type: direct, internal: true}}
  - {{name: hx, type: headers, vhost: prod}}
queues:
  - name: email
    dead_letter_exchange: orders
    dead_letter_routing_key: dead
    message_ttl: 30s
    expires: 1h
    max_length_bytes: 1MiB
    retry_delays: [1s, 5s]
  - {{name: work, delivery_limit: 3, arguments: {{x-queue-type: quorum}}}}
  - {{name: hq, vhost: prod, max_length: 10, overflow: reject-publish-dlx}}
  - {{name: prio, max_priority: 10, single_active_consumer: true}}
bindings:
  - {{source: orders, destination: email}}
  - {{source: events, destination: work, routing_key: "order.#"}}
  - {{source: events, destination: hidden, destination_type: exchange, routing_key: "*.x"}}
  - {{source: hx, destination: hq, vhost: prod, arguments: {{x-match: any, k: v, n: 3}}}}
"""


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrenmq", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args)


def write_config(tmp_path: Path, body: str = REPRESENTATIVE) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(f"listeners: [{{port: 0}}]\nstorage: {{data_dir: {tmp_path / 'data'}}}\n"
                    f"management: {{enabled: false}}\n{body}")
    return path


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


# ------------------------------------------------------------------------------ export


async def test_export_config_as_rabbitmq_json(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = await run("definitions", "export", "--config", str(write_config(tmp_path)),
                       "-o", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    queues = by_name(document["queues"])
    assert queues["email"] == {
        "name": "email", "vhost": "/", "durable": True, "auto_delete": False, "type": "classic",
        "arguments": {"x-dead-letter-exchange": "orders", "x-dead-letter-routing-key": "dead",
                      "x-message-ttl": 30000, "x-expires": 3600000,
                      "x-max-length-bytes": 1048576, "x-retry-delays": [1000, 5000]}}
    assert queues["work"]["type"] == "quorum"
    assert queues["prio"]["arguments"] == {"x-max-priority": 10,
                                           "x-single-active-consumer": True}
    assert by_name(document["exchanges"])["hidden"]["internal"] is True
    users = by_name(document["users"])
    assert users["alice"]["password_hash"] == HASH
    assert User("guest", password_hash=users["guest"]["password_hash"]).check_password("guest")
    assert document["topic_permissions"] == [
        {"user": "alice", "vhost": "prod", "exchange": "amq.topic", "write": "^{username}\\.",
         "read": ""}]
    assert document["policies"] == [{
        "vhost": "/", "name": "cap", "pattern": "^email$", "apply-to": "queues",
        "definition": {"max-length": 1000, "overflow": "reject-publish"}, "priority": 1}]
    assert result.stderr.splitlines() == [
        'note: users[0] ("guest"): the plain password is exported as a salted SHA-256 hash',
        """note: queues[0] ("email" in vhost "/"): x-retry-delays is WarrenMQ's own; RabbitMQ"""
        " keeps the argument but does not retry with backoff",
    ]


async def test_export_config_as_yaml_loads_back(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = await run("definitions", "export", "--config", str(config), "--format", "yaml")
    assert result.returncode == 0, result.stderr
    back = load_config_text(result.stdout, "export.yaml")
    original = load_config(config)
    for section in ("vhosts", "permissions", "policies", "exchanges", "queues", "bindings"):
        assert getattr(back, section) == getattr(original, section), section
    assert back.users[1] == original.users[1]  # alice's hash unchanged
    assert back.users[0].password_hash is not None  # guest's plain password, hashed


async def test_export_data_dir_adds_what_a_broker_saved(tmp_path: Path) -> None:
    config = write_config(tmp_path, "queues: [{name: from-config}]\n")
    server = await start(load_config(config))
    try:
        connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/")
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("client-durable", durable=True,
                                        arguments={"x-max-length": 7})
            await channel.declare_queue("client-transient")
    finally:
        await server.close(grace=2)
    result = await run("definitions", "export", "--data-dir", str(tmp_path / "data"),
                       "--config", str(config))
    assert result.returncode == 0, result.stderr
    queues = by_name(json.loads(result.stdout)["queues"])
    assert set(queues) == {"from-config", "client-durable"}
    assert queues["client-durable"]["arguments"] == {"x-max-length": 7}
    result = await run("definitions", "export", "--data-dir", str(tmp_path / "data"),
                       "--format", "yaml")
    assert result.returncode == 0, result.stderr
    assert [q.name for q in load_config_text(result.stdout).queues] == [
        "from-config", "client-durable"]


async def test_export_needs_a_source(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "warrenmq", "definitions", "export"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "warrenmq definitions export: no such directory: warrenmq-data. Give --config FILE"
        " and/or --data-dir DIR (the default is warrenmq-data, in the current directory).")


async def test_export_of_a_missing_or_empty_data_dir_fails(tmp_path: Path) -> None:
    result = await run("definitions", "export", "--data-dir", str(tmp_path / "no-such-dir"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"warrenmq definitions export: no such directory: {tmp_path / 'no-such-dir'}."
        " Give --data-dir the directory a broker ran with.")
    (tmp_path / "empty").mkdir()
    result = await run("definitions", "export", "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and result.stdout == ""
    assert "holds no definitions.json: not a WarrenMQ data directory" in result.stderr


async def test_export_and_import_default_to_the_same_data_dir(tmp_path: Path) -> None:
    definitions = tmp_path / "rabbit.json"
    definitions.write_text(json.dumps(RABBIT_EXPORT))
    config = write_config(tmp_path, "")
    result = await run("definitions", "import", str(definitions), "--config", str(config))
    assert result.returncode == 0, result.stderr
    counts = ", ".join(f"{len(RABBIT_EXPORT[s])} {s}" for s in (  # type: ignore[arg-type]
        "users", "vhosts", "permissions", "policies", "exchanges", "queues", "bindings"))
    assert f"imported: {counts}" in result.stderr
    result = await run("definitions", "export", "--config", str(config))  # no --data-dir
    assert result.returncode == 0, result.stderr
    assert "jobs" in by_name(json.loads(result.stdout)["queues"])


# ------------------------------------------------------------------------------ import

RABBIT_EXPORT = {
    "rabbit_version": "3.10.8",
    "users": [
        {"name": "dave", "password_hash": HASH,
         "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"],
         "limits": {}},
        {"name": "legacy", "password_hash": HASH,
         "hashing_algorithm": "rabbit_password_hashing_md5", "tags": [], "limits": {}},
    ],
    "vhosts": [{"name": "/", "limits": [], "metadata": {"description": "Default virtual host",
                                                          "tags": []}},
               {"name": "apps", "limits": [], "metadata": {"description": "", "tags": []}}],
    "permissions": [{"user": "dave", "vhost": "apps", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "topic_permissions": [],
    "parameters": [{"vhost": "apps", "component": "federation-upstream", "name": "up",
                    "value": {"uri": "amqp://elsewhere"}}],
    "global_parameters": [],
    "policies": [{"vhost": "apps", "name": "lazy", "pattern": "^jobs", "apply-to": "queues",
                  "definition": {"queue-mode": "lazy", "message-ttl": 60000}, "priority": 0}],
    "queues": [
        {"name": "jobs", "vhost": "apps", "durable": True, "auto_delete": False,
         "type": "classic", "arguments": {"x-max-length": 100}},
        {"name": "scratch", "vhost": "apps", "durable": False, "auto_delete": True,
         "type": "classic", "arguments": {}},
        {"name": "ranked", "vhost": "apps", "durable": True, "auto_delete": False,
         "type": "classic",
         "arguments": {"x-max-priority": 5, "x-single-active-consumer": True}},
    ],
    "exchanges": [{"name": "in", "vhost": "apps", "type": "topic", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "bindings": [{"source": "in", "vhost": "apps", "destination": "jobs",
                  "destination_type": "queue", "routing_key": "job.*", "arguments": {}}],
}


async def test_import_into_a_data_dir_then_serve_from_it(tmp_path: Path) -> None:
    definitions = tmp_path / "rabbit.json"
    definitions.write_text(json.dumps(RABBIT_EXPORT))
    config = write_config(tmp_path, "")
    result = await run("definitions", "import", str(definitions), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{definitions}: imported into {tmp_path / 'data'}\n"
    notes = result.stderr
    assert 'users[1] ("legacy"): hashing algorithm rabbit_password_hashing_md5' in notes
    assert 'parameters[0] (federation-upstream "up" in vhost "apps")' in notes
    assert 'policies[0] (policy "lazy" in vhost "apps"): WarrenMQ does not act on' \
           " queue-mode; ignored" in notes
    assert 'queues[1] ("scratch"): not durable' in notes
    server = await start(load_config(config))
    try:
        vhost = server.broker.vhosts["apps"]
        assert vhost.queues["jobs"].arguments == {"x-max-length": 100}
        assert vhost.queues["jobs"].policy == "lazy"
        ranked = vhost.queues["ranked"]
        assert ranked.args.max_priority == 5 and ranked.args.single_active_consumer
        assert "scratch" not in vhost.queues
        url = f"amqp://dave:pw@127.0.0.1:{server.ports[0]}/apps"
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("in")
            await exchange.publish(aio_pika.Message(b"j"), routing_key="job.new")
            queue = await channel.declare_queue("jobs", passive=True)
            message = await queue.get(timeout=TIMEOUT)
            assert message.body == b"j"
            await message.ack()
        assert "legacy" not in server.broker.users
        # the default guest of the config still works, on "/" only
        conn = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/")
        await conn.close()
    finally:
        await server.close(grace=2)


async def test_import_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    definitions = tmp_path / "rabbit.json"
    definitions.write_text(json.dumps(RABBIT_EXPORT))
    config = write_config(tmp_path, "")
    server = await start(load_config(config))
    try:
        result = await run("definitions", "import", str(definitions),
                           "--data-dir", str(tmp_path / "data"))
    finally:
        await server.close(grace=2)
    assert result.returncode == 2
    assert "is in use by another WarrenMQ" in result.stderr


async def test_import_reports_every_problem_and_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queues": [{"name": "q", "vhost": "/", "durable": "yes"}],
                               "bindings": [{"source": "nowhere", "vhost": "/",
                                             "destination": "q"}]}))
    result = await run("definitions", "import", str(bad), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'{bad}: queues[0].durable: expected a boolean, got "yes"']
    assert not (tmp_path / "d" / "definitions.json").exists()
    bad.write_text("{nope")
    result = await run("definitions", "import", str(bad), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:1:2: JSON syntax error")


# ------------------------------------------------------------ the live functions (API)


async def test_import_and_export_on_a_running_broker(tmp_path: Path) -> None:
    config = write_config(tmp_path, "queues: [{name: existing, max_length: 5}]\n")
    server = await start(load_config(config))
    try:
        with pytest.raises(ValueError, match=r"queues\[0\]\.durable: expected a boolean"):
            import_definitions(server.broker, {"queues": [{"name": "x", "vhost": "/",
                                                           "durable": "no"}]})
        assert "x" not in server.broker.vhosts["/"].queues
        document = {**RABBIT_EXPORT, "queues": [
            *RABBIT_EXPORT["queues"],  # type: ignore[list-item]
            {"name": "existing", "vhost": "/", "durable": True, "auto_delete": False,
             "arguments": {"x-max-length": 9}}]}
        problems = import_definitions(server.broker, document)
        assert any('queue "existing" in vhost "/" exists with other settings: argument'
                   " x-max-length 9 here, 5 in the existing one" in p for p in problems)
        assert server.broker.vhosts["/"].queues["existing"].arguments == {"x-max-length": 5}
        assert "jobs" in server.broker.vhosts["apps"].queues
        assert server.broker.users["dave"].check_password("pw")
        server.definitions_changed()
        exported = export_definitions(server.broker)
        assert set(by_name(exported["queues"])) == {"existing", "jobs", "ranked"}
        assert by_name(exported["queues"])["ranked"]["arguments"] == {
            "x-max-priority": 5, "x-single-active-consumer": True}
        assert {v["name"] for v in exported["vhosts"]} == {"/", "apps"}
        assert [p["name"] for p in exported["policies"]] == ["lazy"]
    finally:
        await server.close(grace=2)
    server = await start(load_config(config))  # imported definitions were saved
    try:
        assert server.broker.users["dave"].check_password("pw")
        assert ("dave", "apps") in server.broker.permissions
        assert server.broker.vhosts["apps"].queues["jobs"].policy == "lazy"
    finally:
        await server.close(grace=2)


# ------------------------------------------------------------------ a real RabbitMQ

RABBITMQ_SCRIPT = REPO / "benchmarks" / "rabbitmq.sh"
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


def _free_port_pair() -> int:
    """A port P with P and P + 20000 (the node's distribution port) both free."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 20000 >= 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 20000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair")


def _args(triples: list[Any]) -> dict[str, Any]:
    """rabbitmqctl's JSON arguments ([name, type, value] triples) as plain values."""
    def value(kind: str, raw: Any) -> Any:
        if kind == "array":
            return [value(k, v) for k, v in raw]
        if kind == "table":
            return _args(raw)
        return raw
    return {name: value(kind, raw) for name, kind, raw in triples}


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("rabbitmq-server") is None and not RABBITMQCTL.exists(),
                    reason="rabbitmq-server is not installed (apt-get install rabbitmq-server)")
async def test_rabbitmq_imports_our_export(tmp_path: Path) -> None:
    exported = tmp_path / "definitions.json"
    result = await run("definitions", "export", "--config", str(write_config(tmp_path)),
                       "-o", str(exported))
    assert result.returncode == 0, result.stderr
    port = _free_port_pair()
    base = Path(f"/tmp/warrenbench-rabbitmq-{port}")
    node = f"warrenbench{port}@localhost"
    env = {**os.environ, "HOME": str(base)}

    def script(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(RABBITMQ_SCRIPT), action, str(port)],
                              capture_output=True, text=True, timeout=120, check=False)

    def ctl(*args: str) -> Any:
        done = subprocess.run([str(RABBITMQCTL), "-n", node, "-q", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        if "--formatter" not in args:
            return done.stdout
        return [dict(row) for row in json.loads(done.stdout or "[]", object_pairs_hook=list)]

    epmd_pid = base / "epmd.pid"  # written by the script when it had to start epmd
    epmd: int | None = None
    try:
        started = await asyncio.to_thread(script, "start")
        epmd = await asyncio.to_thread(_pid_in, epmd_pid)
        assert started.returncode == 0, started.stdout + started.stderr
        await asyncio.to_thread(ctl, "import_definitions", str(exported))
        queues: dict[str, Any] = {}
        for _ in range(60):  # the import is asynchronous; bounded wait
            queues = {q["name"]: q for vhost in ("/", "prod") for q in await asyncio.to_thread(
                ctl, "list_queues", "-p", vhost, "name", "durable", "auto_delete", "arguments",
                "type", "--formatter", "json")}
            if {"email", "work", "hq", "prio"} <= set(queues):
                break
            await asyncio.sleep(0.5)
        assert _args(queues["email"]["arguments"]) == {
            "x-dead-letter-exchange": "orders", "x-dead-letter-routing-key": "dead",
            "x-message-ttl": 30000, "x-expires": 3600000, "x-max-length-bytes": 1048576,
            "x-retry-delays": [1000, 5000]}
        assert queues["email"]["durable"] is True and queues["email"]["auto_delete"] is False
        assert queues["work"]["type"] == "quorum"
        assert _args(queues["work"]["arguments"])["x-delivery-limit"] == 3
        assert _args(queues["hq"]["arguments"]) == {"x-max-length": 10,
                                                    "x-overflow": "reject-publish-dlx"}
        assert _args(queues["prio"]["arguments"]) == {"x-max-priority": 10,
                                                      "x-single-active-consumer": True}
        exchanges = {x["name"]: x for x in await asyncio.to_thread(
            ctl, "list_exchanges", "-p", "/", "name", "type", "durable", "internal",
            "arguments", "--formatter", "json")}
        assert exchanges["orders"]["type"] == "fanout"
        assert _args(exchanges["events"]["arguments"]) == {"alternate-exchange": "unrouted"}
        assert exchanges["hidden"]["internal"] is True
        bindings = {(b["source_name"], b["destination_name"], b["destination_kind"],
                     b["routing_key"], json.dumps(_args(b["arguments"]), sort_keys=True))
                    for vhost in ("/", "prod") for b in await asyncio.to_thread(
                        ctl, "list_bindings", "-p", vhost, "source_name", "destination_name",
                        "destination_kind", "routing_key", "arguments", "--formatter", "json")
                    if b["source_name"]}
        assert bindings == {
            ("orders", "email", "queue", "", "{}"),
            ("events", "work", "queue", "order.#", "{}"),
            ("events", "hidden", "exchange", "*.x", "{}"),
            ("hx", "hq", "queue", "", '{"k": "v", "n": 3, "x-match": "any"}'),
        }
        policies = await asyncio.to_thread(ctl, "list_policies", "-p", "/", "--formatter",
                                           "json")
        assert [(p["name"], p["pattern"], p["apply-to"], json.loads(p["definition"]),
                 p["priority"]) for p in policies] == [
            ("cap", "^email$", "queues", {"max-length": 1000, "overflow": "reject-publish"}, 1)]
        permissions = await asyncio.to_thread(ctl, "list_permissions", "-p", "prod",
                                              "--formatter", "json")
        assert permissions == [{"user": "alice", "configure": "^alice\\.", "write": ".*",
                                "read": ""}]
        topic = await asyncio.to_thread(ctl, "list_topic_permissions", "-p", "prod",
                                        "--formatter", "json")
        assert topic == [{"user": "alice", "exchange": "amq.topic", "write": "^{username}\\.",
                          "read": ""}]
        users = {u["user"]: u["tags"] for u in await asyncio.to_thread(
            ctl, "list_users", "--formatter", "json")}
        assert users == {"guest": ["administrator"], "alice": ["monitoring"]}
        await asyncio.to_thread(ctl, "authenticate_user", "alice", "pw")
        await asyncio.to_thread(ctl, "authenticate_user", "guest", "guest")
    finally:
        await asyncio.to_thread(script, "stop")
        if epmd is not None:
            await asyncio.to_thread(_stop_epmd, epmd)
        shutil.rmtree(base, ignore_errors=True)


def _pid_in(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def _stop_epmd(pid: int) -> None:
    """The epmd the script started for this node: the script leaves it running when the
    node is still deregistering; end it (by its PID) once no node is registered."""
    for _ in range(50):  # bounded: 10 s
        names = subprocess.run(["/usr/bin/epmd", "-names"], capture_output=True, text=True,
                               timeout=10, check=False)
        if "name " not in names.stdout:
            break
        time.sleep(0.2)
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "epmd":
            os.kill(pid, 15)
    except (FileNotFoundError, ProcessLookupError):
        pass
