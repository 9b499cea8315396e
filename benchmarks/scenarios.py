"""Benchmark scenarios: topologies, process orchestration, repetitions and medians.

Role: for one target URL, run a scenario R times, each time in fresh OS processes (a consumer
process and a producer process, started with multiprocessing 'spawn'), and turn verified
results into `Metric`s. Also the generator-ceiling runs against `benchmarks.sink` and the
idle-connection memory probe.

Why separate processes: on 2 cores, one Python process that both publishes and verifies
would cap the generator at one core; with the broker also needing a core, the producer and
consumer processes are mostly idle-waiting on the broker (the ceiling rows show how far
ahead of it they are). All consumers of a scenario share one process (one event loop,
one connection per queue), so a fanout run is 2 generator processes, not 4.

Must not: report a value for a run with missing, duplicated, corrupted or misrouted messages
(such a run yields value None and ok False), wait on a child without a timeout, or signal
any process except the children it started itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import resource
import secrets
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from pamqp import commands

from benchmarks.amqpwire import AmqpUrl
from benchmarks.client import AmqpConnection
from benchmarks.measure import Metric, Probe, broker_rss_kib, wait_for_quiet
from benchmarks.sink import sink_main
from benchmarks.workers import RunSpec, Topology, run_process

CTX = mp.get_context("spawn")
CHILD_GRACE = 15.0  # seconds a child may overrun its deadline before it is terminated

THROUGHPUT = [
    "one_to_one_32B",
    "one_to_one_1KiB",
    "one_to_one_confirm",
    "persistent_confirm",
    "fanout",
    "topic",
]
# idle_connections first: it needs a broker whose memory high-water mark is still low.
ALL_SCENARIOS = ["idle_connections", *THROUGHPUT, "latency"]
IDLE_SETTLE_S = 3.0
IDLE_QUEUE = "bench.idle"


@dataclass
class Options:
    messages: int = 200_000
    repeat: int = 3
    timeout: float = 120.0
    prefetch: int = 1000
    confirm_window: int = 500
    latency_rate: float = 5000.0
    latency_seconds: float = 10.0
    connections: int = 1000
    quiet_wait: float = 0.0  # wait up to this long for an idle machine before each run


# --------------------------------------------------------------------------- topologies
def topology(name: str, rid: str) -> Topology:
    if name.startswith("one_to_one") or name == "latency":
        q = f"bench.{rid}.q"
        return Topology("", "direct", [q], [], [q])
    if name == "persistent_confirm":
        q = f"bench.{rid}.durable"
        return Topology("", "direct", [q], [], [q], durable=True)
    if name == "fanout":
        queues = [f"bench.{rid}.fanout.q{i}" for i in range(3)]
        return Topology(f"bench.{rid}.fanout", "fanout", queues, [(i, "") for i in range(3)], [""])
    if name == "topic":
        # 100 bindings over 4 queues: 50 `orders.*.regionN` (one per region), 25 `#.regionN`
        # (even regions, to a second queue), 24 `payments.#.regionN` that never match and
        # one `*.us.#`. 100 routing keys `orders.{eu,us}.regionN`; each message reaches 1-3
        # queues (the consumer checks each delivery against this table).
        queues = [f"bench.{rid}.topic.q{i}" for i in range(4)]
        binds = [(r % 4, f"orders.*.region{r}") for r in range(50)]
        binds += [((r + 1) % 4, f"#.region{r}") for r in range(0, 50, 2)]
        binds += [(r % 4, f"payments.#.region{r}") for r in range(24)]
        binds += [(3, "*.us.#")]
        keys = [f"orders.{zone}.region{r}" for r in range(50) for zone in ("eu", "us")]
        return Topology(f"bench.{rid}.topic", "topic", queues, binds, keys)
    raise ValueError(f"unknown scenario {name!r}")


# --------------------------------------------------------------------------- processes
def _recv(pipe: Connection, deadline: float) -> tuple[str, Any]:
    if not pipe.poll(max(0.0, deadline - time.monotonic())):
        return ("error", "timed out waiting for a child process")
    try:
        msg: tuple[str, Any] = pipe.recv()
    except EOFError:
        return ("error", "child process exited without a result")
    return msg


def _stop(procs: list[BaseProcess]) -> None:
    for proc in procs:
        proc.join(timeout=CHILD_GRACE)
        if proc.is_alive():
            proc.terminate()  # our own child, by its PID
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def run_roles(spec: RunSpec, roles: list[str]) -> dict[str, Any]:
    """Start `roles` ('consumer' first, then 'producer'), gate the producer on 'go'.

    Returns {role: result dict} plus 'errors'.
    """
    procs: list[BaseProcess] = []
    pipes: dict[str, Connection] = {}
    out: dict[str, Any] = {"errors": []}
    hard_deadline = spec.deadline + CHILD_GRACE
    try:
        for role in roles:
            parent, child = CTX.Pipe()
            proc = CTX.Process(
                target=run_process, args=(child, role, spec), daemon=True, name=f"bench-{role}"
            )
            proc.start()
            child.close()
            procs.append(proc)
            pipes[role] = parent
            kind, payload = _recv(parent, spec.deadline)
            if kind != "ready":
                out["errors"].append(str(payload))
                return out
        if "producer" in pipes:
            pipes["producer"].send("go")
        for role in sorted(pipes, key=lambda r: r != "producer"):  # the producer first
            kind, payload = _recv(pipes[role], hard_deadline)
            if kind == "done":
                out[role] = payload
                out["errors"].extend(payload["errors"])
            else:
                out["errors"].append(str(payload))
            if role == "producer" and (kind != "done" or payload["errors"]) and "consumer" in pipes:
                with contextlib.suppress(OSError):  # nothing more is coming: do not wait it out
                    pipes["consumer"].send("stop")
        return out
    finally:
        _stop(procs)


def _verification_errors(consumer: dict[str, Any]) -> list[str]:
    errors = []
    for q in consumer["per_queue"]:
        bad = {k: q[k] for k in ("missing", "duplicates", "corrupt", "misrouted") if q[k]}
        if bad:
            errors.append(f"FAILED verification on {q['queue']}: {bad}")
    return errors


def _run_errors(name: str, out: dict[str, Any], opts: Options) -> list[str]:
    errors = list(out["errors"])
    if "consumer" in out:
        errors += _verification_errors(out["consumer"])
    if name == "latency" and "producer" in out:
        prod = out["producer"]
        took = (prod["written_ns"] - prod["t0_ns"]) / 1e9
        if took > opts.latency_seconds * 1.1 + 0.1:  # paced load fell behind: not this scenario
            errors.append(
                f"could not sustain {opts.latency_rate:,.0f} msgs/s: "
                f"{prod['published']:,} messages took {took:.1f} s"
            )
    return errors


def _spec(url: str, name: str, opts: Options, **kw: Any) -> RunSpec:
    return RunSpec(
        url=url,
        topology=topology(name, secrets.token_hex(4)),
        messages=opts.messages,
        body_size=32,
        deadline=time.monotonic() + opts.timeout,
        prefetch=opts.prefetch,
        **kw,
    )


def _scenario_spec(name: str, url: str, opts: Options) -> RunSpec:
    if name == "latency":
        spec = _spec(url, name, opts, rate=opts.latency_rate, record_latency=True)
        spec.messages = int(opts.latency_rate * opts.latency_seconds)
    elif name == "one_to_one_1KiB":
        spec = _spec(url, name, opts)
        spec.body_size = 1024
    elif name == "one_to_one_confirm":
        spec = _spec(url, name, opts, confirm_window=opts.confirm_window)
    elif name == "persistent_confirm":
        spec = _spec(url, name, opts, confirm_window=opts.confirm_window, persistent=True)
    else:
        spec = _spec(url, name, opts)
    return spec


# --------------------------------------------------------------------------- scenarios
def run_broker_scenario(name: str, url: str, pid: int | None, opts: Options) -> list[Metric]:
    if name == "idle_connections":
        return [idle_connections(url, pid, opts)]
    if name == "latency":
        p50 = Metric("latency_p50", "ms", higher_is_better=False)
        p99 = Metric("latency_p99", "ms", higher_is_better=False)
        metrics = [p50, p99]
    else:
        unit = "deliveries/s" if name in ("fanout", "topic") else "msgs/s"
        metrics = [Metric(name, unit, higher_is_better=True)]
    for _ in range(opts.repeat):
        wait_for_quiet(opts.quiet_wait, pid)
        spec = _scenario_spec(name, url, opts)
        probe = Probe(pid)
        out = run_roles(spec, ["consumer", "producer"])
        probe.record(metrics, sum(out[r]["cpu_s"] for r in ("consumer", "producer") if r in out))
        errors = _run_errors(name, out, opts)
        if errors or "consumer" not in out or "producer" not in out:
            for m in metrics:
                m.errors.extend(errors or ["no result"])
            break  # a failed run is reported as FAILED; do not keep loading a broken target
        cons, prod = out["consumer"], out["producer"]
        if name == "latency":
            p50.reps.append(cons["latency"]["p50_ms"])
            p99.reps.append(cons["latency"]["p99_ms"])
        else:
            delivered = sum(q["unique"] for q in cons["per_queue"])
            metrics[0].reps.append(delivered / ((cons["last_ns"] - prod["t0_ns"]) / 1e9))
    return metrics


def ceiling(opts: Options) -> list[Metric]:
    """The generator's own limits against benchmarks.sink (no broker involved)."""
    metrics = []
    for mode, role, size in [
        ("discard", "producer", 32),
        ("discard", "producer", 1024),
        ("source", "consumer", 32),
        ("source", "consumer", 1024),
    ]:
        label = "1KiB" if size == 1024 else "32B"
        m = Metric(
            f"ceiling_{'publish' if role == 'producer' else 'consume'}_{label}",
            "msgs/s",
            higher_is_better=True,
        )
        for _ in range(opts.repeat):
            wait_for_quiet(opts.quiet_wait, None)
            deadline = time.monotonic() + opts.timeout
            parent, child = CTX.Pipe()
            sink = CTX.Process(
                target=sink_main,
                args=(child, mode, opts.messages, size, deadline),
                daemon=True,
                name="bench-sink",
            )
            sink.start()
            child.close()
            try:
                kind, port = _recv(parent, deadline)
                if kind != "port":
                    m.errors.append(str(port))
                    break
                spec = _spec(f"amqp://guest:guest@127.0.0.1:{port}/", "one_to_one", opts)
                spec.body_size, spec.deadline = size, deadline
                t0 = time.monotonic()
                out = run_roles(spec, [role])
                m.wall_s.append(time.monotonic() - t0)
            finally:
                parent.send("stop")
                _stop([sink])
            res = out.get(role)
            errs = list(out["errors"]) + (
                _verification_errors(res) if role == "consumer" and res else []
            )
            if errs or res is None:
                m.errors.extend(errs or ["no result"])
                break
            m.gen_cpu_s.append(res["cpu_s"])
            if role == "producer":
                m.reps.append(res["published"] / ((res["closed_ns"] - res["t0_ns"]) / 1e9))
            else:
                delivered = sum(q["unique"] for q in res["per_queue"])
                m.reps.append(delivered / max(1e-9, (res["last_ns"] - res["first_ns"]) / 1e9))
        metrics.append(m)
    return metrics


def idle_connections(url: str, pid: int | None, opts: Options) -> Metric:
    """Broker RSS growth per idle consumer connection, as a marginal cost.

    Each connection opens one channel, declares the shared auto-delete queue
    ``bench.idle`` and starts a consumer on it (so the broker holds a connection, a
    channel and a consumer per connection), then stays idle.

    Allocators keep freed memory (pymalloc/glibc arenas, Erlang carriers), so RSS only grows
    past the process's high-water mark. Hence: a warm-up step of connections/4 (absorbs
    slack), then `repeat` steps of `connections` more each, all kept open until the end;
    each step is a repetition. Run it first, on a freshly started broker (`all` does).
    """
    m = Metric("idle_connections", "KiB/conn", higher_is_better=False)
    if pid is None:
        m.skipped = "skipped: no --broker-pid for this target (broker RSS cannot be read)"
        return m
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = opts.connections * (opts.repeat + 1) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    import uvloop

    wait_for_quiet(opts.quiet_wait, pid)
    probe = Probe(pid)
    steps, err = uvloop.run(_idle_steps(url, pid, opts))
    probe.record([m], 0.0)
    m.reps = steps
    if err:
        m.errors.append(err)
    return m


async def _idle_steps(url: str, pid: int, opts: Options) -> tuple[list[float], str]:
    target = AmqpUrl.parse(url)
    deadline = time.monotonic() + opts.timeout * (opts.repeat + 1)
    conns: list[AmqpConnection] = []
    failures: list[str] = []
    gate = asyncio.Semaphore(50)

    async def one() -> None:
        async with gate:
            try:
                conn = await AmqpConnection.open(target, max(1.0, deadline - time.monotonic()))
                conns.append(conn)
                limit = max(1.0, deadline - time.monotonic())
                await asyncio.wait_for(conn.open_channel(1), limit)
                await conn.rpc(1, commands.Queue.Declare(queue=IDLE_QUEUE, auto_delete=True),
                               commands.Queue.DeclareOk, limit)
                await conn.rpc(1, commands.Basic.Consume(queue=IDLE_QUEUE),
                               commands.Basic.ConsumeOk, limit)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    steps: list[float] = []
    try:
        await asyncio.gather(*(one() for _ in range(max(1, opts.connections // 4))))  # warm-up
        for _ in range(opts.repeat):
            if failures or time.monotonic() > deadline:
                break
            await asyncio.sleep(IDLE_SETTLE_S)
            before = broker_rss_kib(pid)
            await asyncio.gather(*(one() for _ in range(opts.connections)))
            await asyncio.sleep(IDLE_SETTLE_S)  # let the broker finish per-connection setup
            steps.append((broker_rss_kib(pid) - before) / opts.connections)
    finally:
        await asyncio.gather(*(c.close(limit_s=10) for c in conns), return_exceptions=True)
    if failures:
        return (
            steps,
            f"{len(failures)} connections failed (of {len(conns)} opened), e.g. {failures[0]}",
        )
    return steps, ""
