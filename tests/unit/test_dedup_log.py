"""The deduplication key log (storage/dedup_log.py) and cache (queues/dedup.py) on their
own: replay order and CLEAR, a torn tail, the file bounded by snapshots while keys keep
coming, a failed write pended again, and the cache's FIFO/TTL rules on a FakeClock."""

from __future__ import annotations

from pathlib import Path

from warrenmq.clock import FakeClock
from warrenmq.message import Message
from warrenmq.protocol.properties import encode_properties
from warrenmq.queues.dedup import DedupCache, DedupSettings, tagged
from warrenmq.storage.dedup_log import DedupLog, encode_clear, encode_key


class Tickets:
    def __init__(self) -> None:
        self.n = 0

    def reserve_ticket(self) -> int:
        self.n += 1
        return self.n


def message(key: object, **extra: object) -> Message:
    props = encode_properties({"headers": {"x-deduplication-header": key, **extra}})
    return Message("", "q", b"\x00\x01q", props, b"body")


def commit(log: DedupLog) -> None:
    batch = log.take()
    if batch is not None:
        log.write(batch)
        log.finish(batch, True)


def test_replay_keeps_order_and_clear_forgets(tmp_path: Path) -> None:
    path = tmp_path / "dedup.log"
    path.write_bytes(encode_key("q\x00/\x00a", b"s1", 0) + encode_key("q\x00/\x00a", b"s2", 0)
                     + encode_key("q\x00/\x00b", b"s9", 0) + encode_clear("q\x00/\x00b")
                     + encode_key("q\x00/\x00a", b"s1", 0)  # seen again: now the newest
                     + encode_key("q\x00/\x00b", b"s3", 0)
                     + encode_key("q\x00/\x00a", b"sgone", 1000))  # expired long ago
    log = DedupLog.open(path, fsync=False)
    assert log.recovered == {"q\x00/\x00a": {b"s2": 0, b"s1": 0, b"sgone": 1000},
                             "q\x00/\x00b": {b"s3": 0}}
    log.close()
    again = DedupLog.open(path, fsync=False)  # rewritten at open without the expired key
    assert again.recovered == {"q\x00/\x00a": {b"s2": 0, b"s1": 0},
                               "q\x00/\x00b": {b"s3": 0}}
    again.close()


def test_a_torn_tail_loses_only_the_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "dedup.log"
    whole = encode_key("e", b"s1", 0) + encode_key("e", b"s2", 0)
    path.write_bytes(whole + encode_key("e", b"s3", 0)[:-3])
    log = DedupLog.open(path, fsync=False)
    assert log.recovered == {"e": {b"s1": 0, b"s2": 0}}
    assert path.read_bytes() == whole  # rewritten clean: new records follow valid ones
    log.close()


def test_the_file_stays_bounded_while_keys_keep_coming(tmp_path: Path) -> None:
    path = tmp_path / "dedup.log"
    log = DedupLog.open(path, fsync=False, slack=4096)
    log.tickets = Tickets()
    clock = FakeClock()
    cache = DedupCache(DedupSettings(cache_size=50), clock, log, "q\x00/\x00orders")
    log.register("q\x00/\x00orders", cache, lambda: True)
    dead = DedupCache(DedupSettings(cache_size=50), clock, log, "q\x00/\x00gone")
    log.register("q\x00/\x00gone", dead, lambda: False)  # its queue was deleted
    for i in range(5):
        dead.admit(message(f"d{i}"))
    biggest = 0
    for i in range(5000):
        duplicate, ticket = cache.admit(message(f"order-{i}"))
        assert not duplicate and ticket == log.tickets.n
        if i % 10 == 0:
            commit(log)
            biggest = max(biggest, path.stat().st_size)
    commit(log)
    one = len(encode_key("q\x00/\x00orders", tagged("order-1000") or b"", 0))
    assert biggest <= 2 * 50 * one + 4096 + 10 * one  # twice the live keys + slack + a batch
    assert "q\x00/\x00gone" not in log.caches  # dropped by a snapshot
    log.close()
    reopened = DedupLog.open(path, fsync=False)
    assert list(reopened.recovered) == ["q\x00/\x00orders"]
    restored = DedupCache(DedupSettings(cache_size=50), clock)
    restored.restore(reopened.adopt("q\x00/\x00orders") or {})  # the newest 50, in order
    assert list(restored.entries) == [tagged(f"order-{i}") for i in range(4950, 5000)]
    reopened.close()


def test_a_failed_write_is_pended_again_in_order(tmp_path: Path) -> None:
    path = tmp_path / "dedup.log"
    log = DedupLog.open(path, fsync=False)
    log.append_key("e", b"s1", 0)
    batch = log.take()
    assert batch is not None
    log.append_key("e", b"s2", 0)
    log.finish(batch, False)  # never written (the commit failed before it)
    commit(log)
    log.close()
    assert DedupLog.open(path, fsync=False).recovered == {"e": {b"s1": 0, b"s2": 0}}


def test_cache_fifo_ttl_and_own_ttl() -> None:
    clock = FakeClock()
    cache = DedupCache(DedupSettings(cache_size=2, cache_ttl=1000), clock)
    assert cache.admit(message("a")) == (False, 0)
    assert cache.admit(message("b")) == (False, 0)
    assert cache.admit(message("a")) == (True, 0)  # does not refresh "a"
    assert cache.admit(message("c")) == (False, 0)  # pushes out "a", the oldest
    assert cache.admit(message("a"))[0] is False
    clock.advance(1.5)
    assert cache.admit(message("c"))[0] is False  # expired after 1000 ms
    assert cache.admit(message("long", **{"x-cache-ttl": 10_000}))[0] is False
    clock.advance(5)
    assert cache.admit(message("long"))[0] is True  # its own 10 s TTL
    assert cache.admit(message("x", **{"x-cache-ttl": "soon"}))[0] is False  # ignored
    assert cache.duplicates == 2
    assert tagged("1") != tagged(1) and tagged(b"1") == tagged("1")
    assert len(tagged("k" * 10_000) or b"") == 21  # long keys are kept as a digest
