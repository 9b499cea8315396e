"""A private RabbitMQ cluster on loopback from Debian's rabbitmq-server (tests, benchmarks).

``RabbitCluster(base, size).start()`` starts ``size`` nodes named ``wmq18<letter>_<port>
@localhost`` with their own AMQP, management and distribution ports, data and log
folders under ``base``, one Erlang cookie (``HOME=base``) and an epmd of their own on a
port of their own (``ERL_EPMD_PORT``), so nothing is shared with other nodes on the
machine; the second and later nodes ``rabbitmqctl join_cluster`` the first. ``stop``
ends every node it started (``rabbitmqctl stop``, then SIGKILL of the node's PID if it
has not exited) and its epmd, by PID. The management plugin is on (the migration
loads definitions through it). Must not touch any node or epmd it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/rabbitmq/bin")
EPMD = Path("/usr/bin/epmd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    name: str
    amqp_port: int
    management_port: int
    dist_port: int
    home: Path
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def api(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"


class RabbitCluster:
    def __init__(self, base: Path, size: int = 3) -> None:
        self.base = base
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen[bytes] | None = None
        self.nodes: list[Node] = []
        for index in range(size):
            amqp = free_port()
            name = f"wmq18{'abcdefgh'[index]}_{amqp}@localhost"
            self.nodes.append(Node(name, amqp, free_port(), free_port(),
                                   base / name.split("@")[0]))

    def env(self, node: Node | None = None) -> dict[str, str]:
        env = {**os.environ, "HOME": str(self.base), "ERL_EPMD_PORT": str(self.epmd_port),
               "ERL_EPMD_ADDRESS": "127.0.0.1", "LC_ALL": "C.UTF-8"}
        if node is None:
            return env
        return {**env,
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(node.amqp_port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.home / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.home / "log"),
                "RABBITMQ_PID_FILE": str(node.home / "rabbitmq.pid"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(node.home / "rabbitmq"),
                "RABBITMQ_CONF_ENV_FILE": str(node.home / "rabbitmq-env.conf"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                    "-kernel inet_dist_use_interface {127,0,0,1}"}

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([str(BIN / "rabbitmqctl"), "-n", node.name, *args],
                              env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name} failed:"
                               f" {done.stdout}{done.stderr}")
        return done.stdout

    def _prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(f"WMQ18COOKIE{self.epmd_port}")
        cookie.chmod(0o400)
        # the consistent-hash plugin too: the orders demo's topology has an
        # x-consistent-hash exchange (it ships with Debian's package)
        (self.base / "enabled_plugins").write_text(
            "[rabbitmq_management,rabbitmq_consistent_hash_exchange].\n")
        for node in self.nodes:
            self._configure(node)

    def _configure(self, node: Node) -> None:
        (node.home / "log").mkdir(parents=True, exist_ok=True)
        (node.home / "rabbitmq-env.conf").write_text("")
        (node.home / "rabbitmq.conf").write_text(
            f"management.tcp.port = {node.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "collect_statistics_interval = 1000\n")

    def _launch(self, node: Node) -> None:
        subprocess.run([str(BIN / "rabbitmq-server"), "-detached"], env=self.env(node),
                       check=True, timeout=60, capture_output=True)

    def start(self) -> None:
        """Start every node (in parallel) and cluster them; raises if one fails."""
        self._prepare()
        self.epmd = subprocess.Popen(
            [str(EPMD), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            try:
                self.await_node(node, 90)
            except RuntimeError:
                # Once more on fresh ports: on a busy machine a port picked free can be
                # taken (an outgoing connection's ephemeral port) before the node binds it.
                self.stop_node(node)
                node.amqp_port, node.management_port = free_port(), free_port()
                node.dist_port = free_port()
                self._configure(node)
                self._launch(node)
                self.await_node(node, 120)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        self.ctl(first, "await_online_nodes", str(len(self.nodes)))

    def await_node(self, node: Node, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctl(node, "await_startup", "--timeout", "5", timeout=30)
                break
            if time.monotonic() > deadline:
                logs = sorted((node.home / "log").glob("*.log"))
                tail = logs[0].read_text(errors="replace")[-3000:] if logs else "(no log)"
                raise RuntimeError(f"{node.name} did not start; its log ends:\n{tail}")
            time.sleep(1)
        node.pid = int((node.home / "rabbitmq.pid").read_text().strip())

    def stop_node(self, node: Node) -> None:
        """Stop one node (it leaves the cluster running without it)."""
        if node.pid is None and not (node.home / "rabbitmq.pid").exists():
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl(node, "stop", timeout=60)
        self._reap(node)

    def _reap(self, node: Node) -> None:
        if node.pid is None:  # started, but never seen up: its PID file may say
            with contextlib.suppress(OSError, ValueError):
                node.pid = int((node.home / "rabbitmq.pid").read_text().strip())
        if node.pid is None:
            return
        deadline = time.monotonic() + 15
        while _alive(node.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(node.pid):
            os.kill(node.pid, signal.SIGKILL)
        node.pid = None

    def stop(self) -> None:
        for node in self.nodes:
            self.stop_node(node)
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(10)
            self.epmd = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    return True
