"""The store's live set: which laid-out (queue, message) pairs are still held, where.

Owns ``queue key -> {msg_id: segment}``, the count of live pairs per segment (a segment
with none is dead and may be deleted once it is also in the dead prefix), and the
DELIVERED / FAILURES state of live pairs that have any (a compaction copy must carry it:
see ``compaction``). Rebuilt by recovery, then kept by ``log.MessageStore`` under its
lock. Must not do I/O or know about records or pending publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class LiveSet:
    def __init__(
        self,
        live: dict[str, dict[int, int]] | None = None,
        segment_live: dict[int, int] | None = None,
        notes: dict[tuple[str, int], list[int]] | None = None,
    ) -> None:
        self.live = live if live is not None else {}
        self.segment_live = segment_live if segment_live is not None else {}
        # (queue, msg_id) -> [delivered 0/1, failures], only for pairs that have either
        self.notes = notes if notes is not None else {}

    def segment_of(self, queue: str, msg_id: int) -> int | None:
        ids = self.live.get(queue)
        return ids.get(msg_id) if ids is not None else None

    def add(self, targets: Iterable[str], msg_id: int, segment: int) -> None:
        """``msg_id`` is live in ``targets`` in ``segment`` (a duplicate id: the newer wins,
        as in replay)."""
        live = self.live
        n = 0
        for q in targets:
            ids = live.get(q)
            if ids is None:
                ids = live[q] = {}
            elif msg_id in ids:
                self._release(ids[msg_id])
            ids[msg_id] = segment
            n += 1
        self.segment_live[segment] = self.segment_live.get(segment, 0) + n

    def move(self, queue: str, msg_id: int, segment: int) -> None:
        """A live pair's record now lies in ``segment`` (a compaction copy)."""
        ids = self.live[queue]
        self._release(ids[msg_id])
        ids[msg_id] = segment
        self.segment_live[segment] = self.segment_live.get(segment, 0) + 1

    def remove(self, queue: str, msg_ids: Sequence[int]) -> None:
        """The pairs left ``queue`` for good (acked, dead-lettered...)."""
        ids = self.live.get(queue)
        if ids is None:
            return
        notes = self.notes
        for msg_id in msg_ids:
            segment = ids.pop(msg_id, None)
            if segment is not None:
                self._release(segment)
                if notes:
                    notes.pop((queue, msg_id), None)
        if not ids:
            del self.live[queue]

    def drop(self, queue: str) -> None:
        for segment in self.live.pop(queue, {}).values():
            self._release(segment)
        if self.notes:
            for key in [k for k in self.notes if k[0] == queue]:
                del self.notes[key]

    def mark_delivered(self, queue: str, msg_id: int) -> None:
        if self.segment_of(queue, msg_id) is not None:
            note = self.notes.get((queue, msg_id))
            if note is None:
                self.notes[queue, msg_id] = [1, 0]
            else:
                note[0] = 1

    def set_failures(self, queue: str, msg_id: int, count: int) -> None:
        if self.segment_of(queue, msg_id) is not None:
            note = self.notes.get((queue, msg_id))
            if note is None:
                self.notes[queue, msg_id] = [0, count]
            else:
                note[1] = count

    def note(self, queue: str, msg_id: int) -> tuple[bool, int]:
        """(delivered, failures) of a live pair."""
        note = self.notes.get((queue, msg_id))
        return (False, 0) if note is None else (bool(note[0]), note[1])

    def _release(self, segment: int) -> None:
        n = self.segment_live[segment] - 1
        if n:
            self.segment_live[segment] = n
        else:
            del self.segment_live[segment]
