"""A broker holding a big stream: its RSS while the stream is written and read from
``first``, and how long a restart takes (recovery reads one header per segment).

    python -m benchmarks.stream_memory --size-mib 2048 --body 65536

Starts its own ``warrenmq serve`` (free loopback port, a temporary data directory that
is removed at the end unless ``--keep``), publishes ``--size-mib`` of messages into one
stream with confirms, samples the broker's VmRSS from /proc every 0.2 s, consumes the
whole stream from ``first`` with one consumer, then stops the broker (SIGTERM) and
starts it again on the same directory, timing until it accepts connections. Prints
one ``key value`` line per figure. Every phase is bounded by ``--limit-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.measure import broker_rss_kib
from benchmarks.streams import consume, publish

ROOT = Path(__file__).resolve().parents[1]


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError, ValueError):
                self.peak = max(self.peak, broker_rss_kib(self.pid))

    def __enter__(self) -> RssSampler:
        self.peak = broker_rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(data_dir: Path, port: int, log: Path, limit_s: float
                 ) -> tuple[subprocess.Popen[bytes], float]:
    config = data_dir.parent / "broker.yaml"
    config.write_text("management: {enabled: false}\n")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "warrenmq", "serve", "--config", str(config), "--port",
         str(port), "--data-dir", str(data_dir)], cwd=ROOT,
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    while time.monotonic() - started < limit_s:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, time.monotonic() - started
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited with status {proc.returncode}; see {log}")
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("the broker did not start listening")


def stop_broker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def fill(url: str, queue: str, count: int, body: int, limit_s: float) -> float:
    args = argparse.Namespace(url=url, messages=count, body=body, window=64,
                              limit_s=limit_s)
    return await publish(args, queue)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stream_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=2048)
    p.add_argument("--body", type=int, default=65536)
    p.add_argument("--prefetch", type=int, default=100)
    p.add_argument("--limit-s", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args(argv)
    count = max(1, args.size_mib * 1024 * 1024 // args.body)
    work = Path(tempfile.mkdtemp(prefix="warrenmq-stream-memory-"))
    data, log = work / "data", work / "broker.log"
    port = free_port()
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    queue = "big-stream"
    try:
        proc, _ = start_broker(data, port, log, 30)
        try:
            print(f"rss_idle_kib {broker_rss_kib(proc.pid)}", flush=True)
            with RssSampler(proc.pid) as rss:
                rate = asyncio.run(fill(url, queue, count, args.body, args.limit_s))
            print(f"messages {count}\nbody_bytes {args.body}", flush=True)
            print(f"publish_confirm_mib_s {rate * args.body / 2**20:.1f}", flush=True)
            print(f"rss_peak_while_publishing_kib {rss.peak}", flush=True)
            with RssSampler(proc.pid) as rss:
                rate = asyncio.run(consume(url, queue, count, args.prefetch, args.limit_s))
            print(f"consume_first_mib_s {rate * args.body / 2**20:.1f}", flush=True)
            print(f"rss_peak_while_consuming_from_first_kib {rss.peak}", flush=True)
        finally:
            stop_broker(proc)
        stream_dirs = list((data / "streams").iterdir())
        segments = sum(len(list(d.glob("*.seg"))) for d in stream_dirs)
        size = sum(f.stat().st_size for d in stream_dirs for f in d.glob("*.seg"))
        print(f"segments {segments}\nstream_bytes_on_disk {size}", flush=True)
        proc, seconds = start_broker(data, port, log, args.limit_s)
        try:
            print(f"restart_until_listening_s {seconds:.2f}", flush=True)
            print(f"rss_after_restart_kib {broker_rss_kib(proc.pid)}", flush=True)
        finally:
            stop_broker(proc)
    except (RuntimeError, OSError, TimeoutError) as exc:
        print(f"benchmarks.stream_memory: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
