"""WarrenMQ compiled, WarrenMQ pure, RabbitMQ and garagemq, measured in one interleaved run.

Starts each broker on its own loopback port (WarrenMQ twice: the mypyc build and
``WARRENMQ_PURE=1``; RabbitMQ 3.10 as a private node through benchmarks/rabbitmq.sh;
garagemq, Debian's Go broker, with a private copy of its sample config), runs the C load
generator's side-by-side driver (../shared/amqpgen/bench.py ``matrix``: brokers
interleaved per scenario, the order rotated every repeat, every message verified, broker
CPU read from /proc), and stops what it started, by PID. RabbitMQ is the reference: the
summary's ratios are each broker over RabbitMQ.

    .venv/bin/python -m benchmarks.side_by_side --out /tmp/sbs
    .venv/bin/python -m benchmarks.side_by_side --scenarios throughput-32,fanout --repeats 3
    .venv/bin/python -m benchmarks.side_by_side --brokers compiled,rabbitmq

Scenarios are amqpgen's presets (``python3 ../shared/amqpgen/bench.py presets``). A broker
whose package is missing is skipped with a note; the generator's own ceiling is shown by
its ``direct-32`` preset. Loopback only; every run is bounded by the driver's timeouts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "amqpgen" / "bench.py"
DEFAULT_SCENARIOS = "throughput-32,throughput-1k,fanout,topic,latency,confirms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbit_port() -> int:
    """A free port below 45536 whose +20000 (rabbitmq.sh's Erlang distribution port) is
    free too."""
    for candidate in random.Random().sample(range(25000, 45000), 200):
        try:
            for port in (candidate, candidate + 20000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return candidate
    raise SystemExit("error: no free port pair for RabbitMQ")


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


class Brokers:
    """The brokers this run started, and how to stop each."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.urls: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.rabbit_port: int | None = None

    def warrenmq(self, name: str, pure: bool) -> None:
        port = free_port()
        config = self.work / "warrenmq.yaml"
        config.write_text("management: {enabled: false}\nlogging: {level: warning}\n")
        env = dict(os.environ, WARRENMQ_PURE="1" if pure else "0")
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrenmq", "serve", "--config", str(config),
             "--port", str(port), "--data-dir", str(self.work / f"data-{name}")],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        if not wait_port(port, 60):
            raise SystemExit(f"error: WarrenMQ ({name}) did not listen on {port}")
        self.urls[name] = f"amqp://guest:guest@127.0.0.1:{port}/"

    def rabbitmq(self) -> None:
        if shutil.which("rabbitmq-server") is None and not Path("/usr/lib/rabbitmq").exists():
            print("note: rabbitmq-server is not installed; RabbitMQ skipped", file=sys.stderr)
            return
        port = rabbit_port()
        script = ROOT / "benchmarks" / "rabbitmq.sh"
        subprocess.run(["bash", str(script), "start", str(port)], check=True,
                       stdout=subprocess.DEVNULL, timeout=180)
        self.rabbit_port = port
        if not wait_port(port, 120):
            raise SystemExit(f"error: RabbitMQ did not listen on {port}")
        self.urls["rabbitmq"] = f"amqp://guest:guest@127.0.0.1:{port}/"

    def garagemq(self) -> None:
        binary = shutil.which("garagemq")
        sample = Path("/etc/garagemq/config.yaml")
        if binary is None or not sample.exists():
            print("note: garagemq is not installed; garagemq skipped", file=sys.stderr)
            return
        port, admin = free_port(), free_port()
        text = sample.read_text()
        text = text.replace("port: 5672", f"port: {port}").replace("port: 15672", f"port: {admin}")
        text = text.replace("nodelay: false", "nodelay: true")
        text = text.replace("/var/lib/garagemq/db", str(self.work / "garagemq-db"))
        config = self.work / "garagemq.yaml"
        config.write_text(text)
        proc = subprocess.Popen([binary, "--config", str(config)], cwd=self.work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        if not wait_port(port, 30):
            raise SystemExit(f"error: garagemq did not listen on {port}")
        self.urls["garagemq"] = f"amqp://guest:guest@127.0.0.1:{port}/"

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.rabbit_port is not None:
            subprocess.run(["bash", str(ROOT / "benchmarks" / "rabbitmq.sh"), "stop",
                            str(self.rabbit_port)], check=False, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="rabbitmq,compiled,pure,garagemq",
                        help="which to run, the first is the reference (default: %(default)s)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder for results.jsonl and summary.md")
    args = parser.parse_args(argv)
    if not BENCH.exists():
        raise SystemExit(f"error: {BENCH} not found (the shared amqpgen driver)")
    names = args.brokers.split(",")
    unknown = set(names) - {"rabbitmq", "compiled", "pure", "garagemq"}
    if unknown:
        raise SystemExit(f"error: unknown broker(s) {sorted(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="warrenmq-sbs-"))
    out = Path(args.out) if args.out else work / "results"
    brokers = Brokers(work)
    try:
        for name in names:
            if name == "rabbitmq":
                brokers.rabbitmq()
            elif name == "garagemq":
                brokers.garagemq()
            else:
                brokers.warrenmq(name, pure=name == "pure")
        cmd = [sys.executable, str(BENCH), "matrix", "--scenarios", args.scenarios,
               "--repeats", str(args.repeats), "--out", str(out)]
        for name in names:
            if name in brokers.urls:
                cmd += ["--broker", f"{name}={brokers.urls[name]}"]
        print("running:", " ".join(cmd), flush=True)
        return subprocess.run(cmd, check=False).returncode
    finally:
        brokers.stop()
        shutil.rmtree(work / "garagemq-db", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
