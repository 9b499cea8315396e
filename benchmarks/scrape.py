"""A Prometheus stand-in for benchmarks: GET a ``/metrics`` URL every second during a run.

Role: measure what being scraped costs the broker (the issue's "under 3% of throughput
while scraped every second"): run the same scenarios with and without
``--scrape-metrics URL`` and compare. The scraper runs in a thread of the orchestrator
process (which only waits on its children), reads each answer fully, and counts scrapes,
failures and their durations for the report.

Must not: scrape faster than its interval, block without a timeout, or keep running after
``stop``.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request

TIMEOUT = 5.0


class MetricsScraper:
    def __init__(self, url: str, interval: float = 1.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise SystemExit(f"--scrape-metrics {url!r}: expected an http:// URL")
        self.url = url
        self.interval = interval
        self.durations: list[float] = []
        self.failures: list[str] = []
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=TIMEOUT) as response:
                    self.bytes += len(response.read())
                self.durations.append(time.monotonic() - began)
            except OSError as exc:
                self.failures.append(str(exc))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> str:
        """Stop (bounded) and return a one-line summary for the report."""
        self._stop.set()
        self._thread.join(timeout=TIMEOUT + self.interval)
        count = len(self.durations)
        median = statistics.median(self.durations) * 1000 if count else 0.0
        line = (f"Scraped {self.url} every {self.interval:g} s during the runs: {count} scrapes"
                f" (median {median:.1f} ms, {self.bytes / max(count, 1) / 1024:.1f} KiB each),"
                f" {len(self.failures)} failed")
        if self.failures:
            line += f" (first: {self.failures[0]})"
        return line
