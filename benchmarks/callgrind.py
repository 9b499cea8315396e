"""Instructions per message: the broker under ``valgrind --tool=callgrind``.

Times on a shared VM move by a third from run to run; instruction counts do not. This
runs a WarrenMQ broker (compiled, or pure with ``--pure``) under callgrind with
instrumentation off, and for each scenario drives it with the C load generator
(../shared/amqpgen, built on first use) twice — ``--base`` messages, then
``--base + --count`` — with instrumentation switched on only around each run
(``callgrind_control``). The difference of the two totals divided by ``--count`` is the
broker's instructions per message, with connection set-up, declares and warm-up
cancelled out. Deliveries are what is counted for fanout (one message, three deliveries:
the figure is per published message).

    .venv/bin/python -m benchmarks.callgrind                    # compiled
    .venv/bin/python -m benchmarks.callgrind --pure             # the same sources, pure
    .venv/bin/python -m benchmarks.callgrind --scenarios throughput --count 20000
    .venv/bin/python -m benchmarks.callgrind --scenarios stream-first   # stream reads

Needs Debian's valgrind (callgrind_control comes with it) and gcc for the generator.
Loopback only; the broker is started and stopped by this script (by PID).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AMQPGEN_DIR = ROOT.parent / "shared" / "amqpgen"

#: scenario -> extra amqpgen flags (the count is added per run)
SCENARIOS: dict[str, list[str]] = {
    "throughput": ["--scenario", "throughput", "--size", "32"],
    "throughput-1k": ["--scenario", "throughput", "--size", "1024"],
    "fanout": ["--scenario", "fanout", "--size", "32", "--queues", "3"],
    "topic": ["--scenario", "topic", "--size", "32", "--queues", "4", "--bindings", "100"],
    # a stream read from ``first`` by one consumer (benchmarks.streams, 100-byte bodies,
    # prefetch 1000): the stream is filled once, uninstrumented; each measured run reads
    # it from the start, so the difference is the cost of reading --count more records
    "stream-first": [sys.executable, "-m", "benchmarks.streams", "--only", "consume",
                     "--queue", "callgrind-stream", "--prefetch", "1000"],
    # publishing to a stream with confirms (window 5,000), the appends and their commits
    "stream-publish": [sys.executable, "-m", "benchmarks.streams", "--only", "publish",
                       "--queue", "callgrind-stream-publish"],
}


def generator() -> str:
    """The amqpgen binary: $AMQPGEN_BIN, or built from ../shared/amqpgen/amqpgen.c."""
    if os.environ.get("AMQPGEN_BIN"):
        return os.environ["AMQPGEN_BIN"]
    source = AMQPGEN_DIR / "amqpgen.c"
    if not source.exists():
        raise SystemExit(f"error: {source} not found; set AMQPGEN_BIN to an amqpgen binary")
    binary = Path(tempfile.gettempdir()) / "amqpgen-build" / "amqpgen-warrenmq"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(source)], check=True)
    return str(binary)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the broker exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: the broker did not listen on port {port} within {timeout:.0f} s")


def control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def totals(out_dir: Path, before: set[Path]) -> int:
    """Ir of the dump written since ``before`` (callgrind's "totals:" line; its
    "summary:" line counts from the last zeroing with instrumentation on, here 0)."""
    for _ in range(100):
        new = set(out_dir.glob("callgrind.out*")) - before
        for path in new:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.1)
    raise SystemExit("error: callgrind wrote no dump")


def measure(pid: int, out_dir: Path, gen_args: list[str], count: int) -> int:
    """Instructions the broker ran for one generator run of ``count`` messages."""
    before = set(out_dir.glob("callgrind.out*"))
    control(pid, "-z")
    control(pid, "-i", "on")
    count_flag = [] if gen_args[-1] == "--messages" else ["--count"]
    run = subprocess.run([*gen_args, *count_flag, str(count)], capture_output=True, text=True,
                         timeout=1800, check=False, cwd=ROOT)
    control(pid, "-i", "off")
    control(pid, "-d")
    result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    if not result.get("ok"):
        raise SystemExit(f"error: the generator run failed: {result or run.stderr[-300:]}")
    return totals(out_dir, before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pure", action="store_true", help="run the broker with WARRENMQ_PURE=1")
    parser.add_argument("--scenarios", default="throughput,fanout")
    parser.add_argument("--count", type=int, default=20000, help="messages measured")
    parser.add_argument("--base", type=int, default=2000, help="messages of the baseline run")
    args = parser.parse_args(argv)
    if shutil.which("callgrind_control") is None:
        raise SystemExit("error: valgrind is not installed (apt-get install valgrind)")
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"error: unknown scenario(s) {sorted(unknown)}; known: {list(SCENARIOS)}")
    gen = generator()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="warrenmq-callgrind-"))
    config = work / "broker.yaml"
    config.write_text("management: {enabled: false}\nlogging: {level: warning}\n")
    env = dict(os.environ, WARRENMQ_PURE="1" if args.pure else "0")
    broker = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={work}/callgrind.out.%p",
         sys.executable, "-m", "warrenmq", "serve", "--config", str(config),
         "--port", str(port), "--data-dir", str(work / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
    )
    results: dict[str, object] = {}
    try:
        wait_listening(port, broker, 300)
        url = f"amqp://guest:guest@127.0.0.1:{port}/"
        mode = "pure" if args.pure else "compiled"
        for name in args.scenarios.split(","):
            gen_args = [gen, "--broker", url, "--timeout", "1500", *SCENARIOS[name]]
            if name == "stream-publish":
                gen_args = [*SCENARIOS[name], "--url", url, "--limit-s", "1500", "--messages"]
            if name == "stream-first":
                gen_args = [*SCENARIOS[name], "--url", url, "--limit-s", "1500",
                            "--messages"]
                subprocess.run([*SCENARIOS[name][:3], "--only", "publish", "--queue",
                                "callgrind-stream", "--url", url, "--limit-s", "1500",
                                "--messages", str(args.base + args.count)],
                               cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=1800)
            base = measure(broker.pid, work, gen_args, args.base)
            full = measure(broker.pid, work, gen_args, args.base + args.count)
            per_message = (full - base) / args.count
            results[name] = round(per_message)
            print(json.dumps({"scenario": name, "hot_path": mode, "messages": args.count,
                              "instructions_per_message": round(per_message)}), flush=True)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(120)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
