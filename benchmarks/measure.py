"""Measurements around a benchmark run: results, CPU and memory from /proc, machine noise.

Role: the `Metric` record (per-repetition values, errors, CPU seconds), readers for the broker
process (/proc/PID/stat CPU, /proc/PID/status VmRSS), machine-wide busy time (/proc/stat) to
expose other load on a shared machine, and `Probe` to account one run.

Must not: signal or otherwise touch the processes it reads, nor block without a bound.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass, field


def cpu_seconds() -> float:
    """utime+stime of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    reps: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gen_cpu_s: list[float] = field(default_factory=list)
    broker_cpu_s: list[float] = field(default_factory=list)
    other_cpu_s: list[float] = field(default_factory=list)  # the rest of the machine: noise
    wall_s: list[float] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors and not self.skipped and bool(self.reps)

    @property
    def value(self) -> float | None:
        return statistics.median(self.reps) if self.ok else None

    @staticmethod
    def med(values: list[float]) -> float | None:
        return statistics.median(values) if values else None


def broker_cpu(pid: int | None) -> float:
    """utime+stime of the broker process (all threads), in seconds; 0.0 without a PID."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, pid: int | None, cores: float = 0.15) -> None:
    """On a shared machine: wait (bounded) until others use < `cores` CPU over 1 s."""
    end = time.monotonic() + max_wait
    while time.monotonic() < end:
        busy0, broker0 = machine_busy_s(), broker_cpu(pid)
        time.sleep(1.0)
        if machine_busy_s() - busy0 - (broker_cpu(pid) - broker0) < cores:
            return


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Probe:
    """CPU accounting around one run: generator (self + children), broker, everything else."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.cpu0, self.child0 = cpu_seconds(), children_cpu()
        self.broker0, self.busy0 = broker_cpu(pid), machine_busy_s()
        self.t0 = time.monotonic()

    def record(self, metrics: list[Metric], work_cpu: float) -> None:
        """`work_cpu`: what the children measured themselves (without interpreter start-up)."""
        own = cpu_seconds() - self.cpu0
        gen_total = own + children_cpu() - self.child0
        broker = broker_cpu(self.pid) - self.broker0
        other = max(0.0, machine_busy_s() - self.busy0 - gen_total - broker)
        for m in metrics:
            m.gen_cpu_s.append(own + work_cpu)
            m.wall_s.append(time.monotonic() - self.t0)
            m.other_cpu_s.append(other)
            if self.pid is not None:
                m.broker_cpu_s.append(broker)


def broker_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
