"""A private RabbitMQ node for differential tests: start once, stop by PID.

Owns one foreground ``rabbitmq-server`` process (Debian's package, 3.10.8 here), its own
``epmd`` on a private port, and a data folder under /tmp named after a unique node name.
Everything binds to 127.0.0.1. The node is provisioned at boot from a RabbitMQ
definitions document (``load_definitions``), so no ``rabbitmqctl`` call (two seconds of
Erlang start-up each) is needed. It must never touch the system's rabbitmq-server service
or another process: it stops only the two PIDs it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
EPMD = Path("/usr/bin/epmd")


def rabbitmq_available() -> str | None:
    """None when a node can be started here, else the reason it cannot."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists() and shutil.which("rabbitmq-server") is None:
        return "rabbitmq-server is not installed (apt-get install -y rabbitmq-server)"
    if not EPMD.exists() and shutil.which("epmd") is None:
        return "epmd (erlang-base) is not installed"
    return None


def plugin_available(name: str) -> bool:
    """Whether Debian's package ships the RabbitMQ plugin ``name`` (enabled per node)."""
    return any(Path("/usr/lib/rabbitmq/lib").glob(f"rabbitmq_server-*/plugins/{name}-*"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class RabbitMQNode:
    """``start()`` boots the node and waits until AMQP answers; ``stop()`` ends it."""

    def __init__(self, definitions: dict[str, Any], base: Path | None = None,
                 plugins: tuple[str, ...] = ()) -> None:
        self.plugins = plugins  # enabled at boot through our own enabled_plugins file
        self.port = free_port()
        self.name = f"warrendiff{self.port}@localhost"
        self.base = base or Path(f"/tmp/warrendiff-rabbitmq-{self.port}-{os.getpid()}")
        self.definitions = definitions
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self, epmd_port: int) -> dict[str, str]:
        base = self.base
        return {
            **os.environ,
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 90.0) -> None:
        base = self.base
        shutil.rmtree(base, ignore_errors=True)
        (base / "log").mkdir(parents=True)
        (base / "mnesia").mkdir()
        (base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "definitions.json").write_text(json.dumps(self.definitions))
        (base / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            f"load_definitions = {base / 'definitions.json'}\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        epmd_port = free_port()
        self.epmd = subprocess.Popen(  # foreground: its PID is ours to stop
            [str(EPMD), "-port", str(epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        server = RABBITMQ_BIN / "rabbitmq-server"
        self.output = (base / "log" / "stdout.txt").open("wb")
        self.process = subprocess.Popen(
            [str(server) if server.exists() else "rabbitmq-server"], env=self._env(epmd_port),
            stdout=self.output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop(keep_logs=True)
                raise RuntimeError(f"rabbitmq-server exited with {code}; see {base / 'log'}")
            if self._answers():
                return
            time.sleep(0.25)
        self.stop(keep_logs=True)
        raise RuntimeError(f"RabbitMQ node {self.name} did not start in {timeout:.0f} s;"
                           f" see {base / 'log'}")

    def _answers(self) -> bool:
        """True once the node answers the AMQP protocol header with connection.start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                data = sock.recv(16)
                return len(data) >= 11 and data[0] == 1 and data[7:11] == b"\x00\x0a\x00\x0a"
        except OSError:
            return False

    def stop(self, keep_logs: bool = False) -> None:
        _stop(self.process, 60.0)
        _stop(self.epmd, 10.0)
        self.process = self.epmd = None
        if self.output is not None:
            self.output.close()
            self.output = None
        if not keep_logs:
            shutil.rmtree(self.base, ignore_errors=True)
