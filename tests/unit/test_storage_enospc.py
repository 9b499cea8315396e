"""The message log on a full disk: a REAL 256 KiB tmpfs (mounted for the test; skipped
with the reason when mounting is not permitted).

commit() raises OSError(ENOSPC); the durable ticket does not move, so nothing after the
last successful commit is claimed durable; everything committed before is recovered
intact after a crash; and once space is freed, a later commit writes the kept batch and
everything is recovered.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import small_tmpfs
from warrenmq.storage import MessageStore

Q = "/\x00q"
BODY = 1000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "256k") as mnt:
        yield mnt


def body(msg_id: int) -> bytes:
    return msg_id.to_bytes(4, "big") * (BODY // 4)


def fill_until_enospc(store: MessageStore) -> tuple[list[int], list[int], OSError]:
    """Commit batches of 5 messages until a commit fails: (committed ids, failed ids, error)."""
    committed: list[int] = []
    msg_id = 0
    for _ in range(200):  # 256 KiB / 5 KiB per batch: fails well before this bound
        batch = []
        for _ in range(5):
            msg_id += 1
            store.publish(msg_id, [Q], "", "", b"", body(msg_id))
            batch.append(msg_id)
        durable_before = store.durable_ticket
        try:
            assert store.commit() == store.last_ticket
        except OSError as exc:
            assert store.durable_ticket == durable_before  # nothing new claimed durable
            return committed, batch, exc
        committed.extend(batch)
    raise AssertionError("the 256 KiB filesystem never filled up")


def test_enospc_raises_and_committed_data_survives_a_crash(small_fs: Path) -> None:
    d = small_fs / "messages"
    store, _ = MessageStore.open(d, segment_size=64 * 1024)
    committed, failed, exc = fill_until_enospc(store)
    assert exc.errno == errno.ENOSPC
    assert len(committed) > 100
    assert store.durable_ticket == len(committed)  # one ticket per publish
    assert store.pending_bytes >= 5 * BODY  # the failed batch is kept for a retry
    with pytest.raises(OSError) as again:  # still full: the retry fails the same way
        store.commit()
    assert again.value.errno == errno.ENOSPC
    assert store.durable_ticket == len(committed)
    store.abandon()  # crash
    store, rec = MessageStore.open(d, segment_size=64 * 1024)
    got = [m.msg_id for m in rec.queues[Q]]
    # Everything committed, intact; of the failed batch at most a prefix (never claimed).
    assert got[: len(committed)] == committed
    assert got[len(committed) :] == failed[: len(got) - len(committed)]
    assert all(m.body == body(m.msg_id) for m in rec.queues[Q])
    store.abandon()


def test_commit_after_space_is_freed_writes_the_kept_batch(small_fs: Path) -> None:
    d = small_fs / "messages"
    filler = small_fs / "filler"
    filler.write_bytes(os.urandom(128 * 1024))
    store, _ = MessageStore.open(d, segment_size=64 * 1024)
    committed, failed, exc = fill_until_enospc(store)
    assert exc.errno == errno.ENOSPC
    # The loop thread keeps appending while the disk is full: acks and another publish.
    store.ack(Q, committed[0])
    extra = failed[-1] + 1
    store.publish(extra, [Q], "", "", b"", body(extra))
    filler.unlink()
    assert store.commit() == store.last_ticket  # the kept batch and the new appends
    assert store.pending_bytes == 0
    store.abandon()
    store, rec = MessageStore.open(d, segment_size=64 * 1024)
    assert [m.msg_id for m in rec.queues[Q]] == [*committed[1:], *failed, extra]
    assert all(m.body == body(m.msg_id) for m in rec.queues[Q])
    assert rec.damaged == []  # the retry rewrote the torn record in place
    store.close()
