"""StreamLog: the segment files of one stream queue (append-only, read by offset).

Separate from the message store's log on purpose: a stream never forgets a message when
it is consumed, so it needs no acks, live sets or compaction — only appends, reads from
any offset, and retention that deletes whole segments from the oldest end.

Layout: ``<dir>/<first offset, 20 digits>.seg``; each file starts with ``MAGIC`` and holds
records ``size u32, crc32 u32`` + payload ``offset u64, timestamp ms u64, flags u8,
filter length u8, route length u16, properties length u32, filter, route, properties,
body``. Flag bit 0 marks the first record of a commit batch (a "chunk": what RabbitMQ's
``last`` offset points at).

Threads, as the message store: appends (loop thread) only encode and lay records out at
fixed (segment, byte) places; ``take`` hands them to the committer's worker, which
``pwrite``s and fdatasyncs them (``write``); ``finish`` (loop thread) moves the readable
end. Readers only ever see committed records, so a consumer is never sent a message a
crash could take back. A retried batch rewrites the same bytes at the same places.

Reads go to the files with ``pread`` in blocks (``read``): a consumer reading from
``first`` streams the log from disk and memory stays bounded by the block size.
Recovery (``open``) reads one record header per segment and scans only the newest
segment, truncating a torn or corrupt tail, so it costs the segment count, not the
message count. Must not import the broker, queues or server.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

import structlog

from warrenmq.storage.atomic import fsync_dir

log = structlog.get_logger("warrenmq.stream")

MAGIC = b"WMQSTRM1"
# a record: prefix (size u32, crc32 u32), then the fixed part (offset u64, timestamp u64,
# flags u8, filter length u8, route length u16, properties length u32), then the rest
_PREFIX_SIZE: Final = 8
_FIXED_SIZE: Final = 24
HEADER_SIZE: Final = _PREFIX_SIZE + _FIXED_SIZE
CHUNK_START = 0x01
#: Default segment size (x-stream-max-segment-size-bytes): RabbitMQ uses 500 MB; 64 MiB
#: makes retention finer (it removes whole segments), bounds recovery's tail scan, and a
#: 2 GiB stream is still only 32 files.
DEFAULT_STREAM_SEGMENT_SIZE = 64 * 1024 * 1024
READ_BLOCK = 1024 * 1024
MIN_READ = 16 * 1024
MAX_OPEN = 8  # read descriptors kept open per stream, besides the newest segment's
_datasync = getattr(os, "fdatasync", os.fsync)


class StreamRecord:
    """One record as read back. A plain class, not a NamedTuple: compiled, making one
    is a native allocation, where a NamedTuple's ``__new__`` runs as Python code (it
    was half of a stream consumer's cost per message)."""

    def __init__(self, offset: int, timestamp: int, filter_value: bytes, route: bytes,
                 properties: bytes, body: bytes) -> None:
        self.offset = offset
        self.timestamp = timestamp  # ms
        self.filter_value = filter_value
        self.route = route
        self.properties = properties
        self.body = body


class Segment:
    """One segment file: its first offset and timestamp, and the bytes committed in it."""

    def __init__(self, path: Path, first: int, first_ts: int, end: int) -> None:
        self.path = path
        self.first = first
        self.first_ts = first_ts  # ms; 0 while the segment holds no committed record
        self.end = end  # committed bytes (readers stop here)
        self.laid = end  # bytes laid out (committed or pending)
        self.fd = -1  # read/write descriptor, opened on demand

    def descriptor(self) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def segment_name(first: int) -> str:
    return f"{first:020d}.seg"


def encode_record(offset: int, timestamp: int, flags: int, filter_value: bytes,
                  route: bytes, properties: bytes, body: bytes) -> bytes:
    """One record, laid out as the prefix, the fixed part and the variable parts (built with
    ``int.to_bytes`` and one ``%`` join: native calls when compiled, where struct's
    pack is a method call on boxed integers)."""
    payload = b"%s%s%s%s%s%s%s%s%s" % (
        offset.to_bytes(8, "big"), timestamp.to_bytes(8, "big"),
        ((flags << 8) | len(filter_value)).to_bytes(2, "big"), len(route).to_bytes(2, "big"),
        len(properties).to_bytes(4, "big"), filter_value, route, properties, body)
    return b"%s%s%s" % (len(payload).to_bytes(4, "big"),
                        zlib.crc32(payload).to_bytes(4, "big"), payload)


def _u16(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _u32(data: bytes, at: int) -> int:
    return (data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]


def _u64(data: bytes, at: int) -> int:
    return (_u32(data, at) << 32) | _u32(data, at + 4)


def _decode(data: bytes, at: int, size: int) -> StreamRecord:
    """The record whose payload is ``data[at:at + size]``. Fields are read by indexing
    the bytes (native integer operations when compiled) rather than with ``struct``:
    a struct call per record boxes six integers and is a method call through Python."""
    start = at + _FIXED_SIZE
    f_end = start + data[at + 17]
    r_end = f_end + _u16(data, at + 18)
    p_end = r_end + _u32(data, at + 20)
    return StreamRecord(_u64(data, at), _u64(data, at + 8), data[start:f_end],
                        data[f_end:r_end], data[r_end:p_end], data[p_end:at + size])


class StreamBatch(NamedTuple):
    """Records taken for one commit: (segment, byte position, bytes), in log order."""

    pieces: list[tuple[Segment, int, bytes]]
    end_offset: int  # every offset below this is durable once written
    chunk_start: int
    created: bool  # a segment file was created: the directory needs an fsync


class StreamLog:
    """One stream's segments; see the module docstring for threads and layout."""

    def __init__(self, directory: Path, segment_size: int) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.segments: list[Segment] = []
        self.next_offset = 0  # the next offset to assign
        self.committed = 0  # offsets below this are durable and readable
        self.last_chunk = 0  # first offset of the newest committed chunk
        self._pending: list[tuple[Segment, int, bytes]] = []
        self._chunk_start = -1  # first offset appended since the last take, or -1
        self._created: list[Segment] = []
        self.pending_bytes = 0
        self.closed = False
        self.on_commit: Callable[[], None] | None = None  # new records became readable
        self.record_size = 1024  # bytes per record lately: sizes the reads

    # ------------------------------------------------------------------ recovery
    @classmethod
    def open(cls, directory: Path, segment_size: int = DEFAULT_STREAM_SEGMENT_SIZE
             ) -> StreamLog:
        directory.mkdir(parents=True, exist_ok=True)
        stream = cls(directory, segment_size)
        names = sorted(p for p in directory.glob("*.seg") if p.stem.isdigit())
        for path in names:
            size = path.stat().st_size
            stream.segments.append(Segment(path, int(path.stem), 0, size))
        if not stream.segments:
            return stream
        for segment in stream.segments[:-1]:
            segment.first_ts = stream._first_timestamp(segment)
            segment.close()  # reopened by the first read that needs it
        stream._recover_tail(stream.segments[-1])
        return stream

    def _first_timestamp(self, segment: Segment) -> int:
        head = os.pread(segment.descriptor(), HEADER_SIZE, len(MAGIC))
        if len(head) < HEADER_SIZE:
            return 0
        return _u64(head, _PREFIX_SIZE + 8)

    def _recover_tail(self, segment: Segment) -> None:
        """Scan the newest segment; cut it after its last valid record."""
        fd = segment.descriptor()
        pos = len(MAGIC)
        offset = segment.first
        chunk = segment.first
        good = os.pread(fd, len(MAGIC), 0) == MAGIC
        if good:
            for at, record, flags in self._scan(segment, pos):
                if record.offset != offset:
                    break
                if offset == segment.first:
                    segment.first_ts = record.timestamp
                if flags & CHUNK_START:
                    chunk = offset
                offset += 1
                pos = at
        file_size = os.fstat(fd).st_size
        if not good:
            os.pwrite(fd, MAGIC, 0)
            pos = len(MAGIC)
        if file_size > pos:
            log.warning("stream_segment_truncated", segment=str(segment.path),
                        valid_bytes=pos, dropped_bytes=file_size - pos)
        if file_size != pos or not good:
            os.ftruncate(fd, pos)
            _datasync(fd)
        segment.end = segment.laid = pos
        self.next_offset = self.committed = offset
        self.last_chunk = chunk if offset > segment.first else self._previous_chunk()

    def _previous_chunk(self) -> int:
        return max(0, self.next_offset - 1)

    def _scan(self, segment: Segment, pos: int) -> Iterator[tuple[int, StreamRecord, int]]:
        """Valid records from ``pos``: (position after it, record, flags); stops at the
        first short, oversized or CRC-failing record."""
        fd = self._reader(segment)
        while True:
            block = os.pread(fd, READ_BLOCK, pos)
            at = 0
            while at + _PREFIX_SIZE <= len(block):
                size, crc = _u32(block, at), _u32(block, at + 4)
                start = at + _PREFIX_SIZE
                if size < _FIXED_SIZE:
                    return
                if start + size > len(block):
                    break
                payload = memoryview(block)[start:start + size]
                if zlib.crc32(payload) != crc:
                    return
                flags = payload[16]
                yield pos + start + size, _decode(block, start, size), flags
                at = start + size
            if at == 0:
                if len(block) < READ_BLOCK:
                    return
                size = _u32(block, 0)
                big = os.pread(fd, _PREFIX_SIZE + size, pos)  # a record over a block
                if len(big) < _PREFIX_SIZE + size:
                    return
                block = big
                if zlib.crc32(memoryview(big)[_PREFIX_SIZE:]) != _u32(big, 4):
                    return
                yield pos + len(big), _decode(big, _PREFIX_SIZE, size), big[_PREFIX_SIZE + 16]
                pos += len(big)
                continue
            pos += at

    # ------------------------------------------------------------------ appends (loop)
    @property
    def first_offset(self) -> int:
        return self.segments[0].first if self.segments else self.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.end for s in self.segments)

    def append(self, timestamp: int, filter_value: bytes, route: bytes, properties: bytes,
               body: bytes) -> int:
        offset = self.next_offset
        flags = 0
        if self._chunk_start < 0:
            self._chunk_start = offset
            flags = CHUNK_START
        data = encode_record(offset, timestamp, flags, filter_value, route, properties, body)
        segments = self.segments
        head = segments[-1] if segments else None
        if head is None or (head.laid > len(MAGIC)
                            and head.laid + len(data) > self.segment_size):
            head = Segment(self.directory / segment_name(offset), offset, 0, 0)
            head.laid = len(MAGIC)
            head.descriptor()  # created here, on the loop thread: readers share the fd
            segments.append(head)
            self._created.append(head)
            self._pending.append((head, 0, MAGIC))
        self._pending.append((head, head.laid, data))
        head.laid += len(data)
        self.next_offset = offset + 1
        self.pending_bytes += len(data)
        self.record_size = (self.record_size * 15 + len(data)) // 16  # a running mean
        return offset

    def take(self) -> StreamBatch | None:
        """Loop thread: everything appended since the last take, as one chunk."""
        if not self._pending:
            return None
        pieces, self._pending = self._pending, []
        batch = StreamBatch(pieces, self.next_offset, self._chunk_start, bool(self._created))
        self._created = []
        self._chunk_start = -1
        self.pending_bytes = 0
        return batch

    def write(self, batch: StreamBatch) -> None:
        """Worker thread: write the batch and fdatasync each file, oldest first (a newer
        segment gets data only once the older one is durable: recovery relies on it)."""
        touched: list[Segment] = []
        for segment, pos, data in batch.pieces:
            if touched and touched[-1] is not segment:
                _datasync(touched[-1].descriptor())
            if not touched or touched[-1] is not segment:
                touched.append(segment)
            os.pwrite(segment.descriptor(), data, pos)
        if touched:
            _datasync(touched[-1].descriptor())
        if batch.created:
            fsync_dir(self.directory)

    def finish(self, batch: StreamBatch, ok: bool) -> None:
        """Loop thread: a written batch becomes readable; a failed one is kept to retry."""
        if not ok:
            self._pending[:0] = batch.pieces
            self.pending_bytes += sum(len(data) for _, _, data in batch.pieces)
            if batch.created:
                self._created.append(batch.pieces[0][0])
            return
        for segment, pos, data in batch.pieces:
            segment.end = max(segment.end, pos + len(data))
            if not segment.first_ts and data is not MAGIC:
                segment.first_ts = _u64(data, _PREFIX_SIZE + 8)
        self.committed = max(self.committed, batch.end_offset)
        self.last_chunk = batch.chunk_start
        if len(self.segments) > MAX_OPEN:
            self._trim(MAX_OPEN)  # segments the writer has left behind
        if self.on_commit is not None:
            self.on_commit()

    # ------------------------------------------------------------------ reads (loop)
    def _index(self, offset: int) -> int:
        firsts = [s.first for s in self.segments]
        return max(0, bisect.bisect_right(firsts, offset) - 1)

    def position(self, offset: int) -> tuple[int, int]:
        """(segment first offset, byte position) of the first record at or after
        ``offset`` (clamped to the log); the end of the log for offsets past it."""
        if not self.segments:
            return self.next_offset, len(MAGIC)
        offset = max(offset, self.first_offset)
        segment = self.segments[self._index(offset)]
        pos = len(MAGIC)
        for at, record, _ in self._scan_committed(segment, pos):
            if record.offset >= offset:
                return segment.first, pos
            pos = at
        return segment.first, pos

    def offset_at_time(self, timestamp_ms: int) -> int:
        """The first offset whose timestamp is at or after ``timestamp_ms`` (or the end)."""
        committed = [s for s in self.segments if s.end > len(MAGIC)]
        if not committed:
            return self.committed
        firsts = [s.first_ts for s in committed]
        start = max(0, bisect.bisect_right(firsts, timestamp_ms) - 1)
        for segment in committed[start:]:
            for _, record, _ in self._scan_committed(segment, len(MAGIC)):
                if record.timestamp >= timestamp_ms:
                    return record.offset
        return self.committed

    def _scan_committed(self, segment: Segment, pos: int
                        ) -> Iterator[tuple[int, StreamRecord, int]]:
        for item in self._scan(segment, pos):
            if item[0] > segment.end:
                return
            yield item

    def read(self, where: tuple[int, int], limit: int,
             ends: list[tuple[int, int]] | None = None
             ) -> tuple[list[StreamRecord], tuple[int, int]]:
        """Up to ``limit`` committed records from ``where`` (and about one read block),
        and the position after them (``ends``, if given, gets the position after each).
        A position in a segment retention removed moves to the start of the log."""
        first, pos = where
        index = self._index(first)
        if not self.segments:
            return [], where
        segment = self.segments[index]
        if segment.first != first:  # deleted by retention: resume at the oldest
            segment = self.segments[0]
            pos = len(MAGIC)
        out: list[StreamRecord] = []
        while len(out) < limit:
            if pos >= segment.end:
                index = self.segments.index(segment) + 1
                if index >= len(self.segments) or segment.end < segment.laid:
                    break
                segment = self.segments[index]
                pos = len(MAGIC)
                continue
            # about what ``limit`` records take (a page cache copy of a whole block
            # for a few records is what this avoids), within one block
            want = min(READ_BLOCK, segment.end - pos,
                       max(MIN_READ, limit * self.record_size * 5 // 4))
            block = os.pread(self._reader(segment), want, pos)
            length = len(block)
            at = 0
            while at + _PREFIX_SIZE <= length and len(out) < limit:
                size = _u32(block, at)
                if at + _PREFIX_SIZE + size > length:
                    break
                out.append(_decode(block, at + _PREFIX_SIZE, size))
                at += _PREFIX_SIZE + size
                if ends is not None:
                    ends.append((segment.first, pos + at))
            if at == 0:  # one record larger than a block
                size = _u32(block, 0)
                big = os.pread(self._reader(segment), _PREFIX_SIZE + size, pos)
                out.append(_decode(big, _PREFIX_SIZE, size))
                at = len(big)
                if ends is not None:
                    ends.append((segment.first, pos + at))
            pos += at
            if len(out) >= limit or at < want:
                break
        return out, (segment.first, pos)

    def _reader(self, segment: Segment) -> int:
        """The segment's descriptor for a read (loop thread). At most ``MAX_OPEN`` stay
        open per stream: older ones with nothing in flight are closed (the newest
        segment and any with unwritten records never are: the writer uses them)."""
        if segment.fd >= 0:
            return segment.fd
        self._trim(MAX_OPEN - 1)
        return segment.descriptor()

    def _trim(self, keep: int) -> None:
        opened = [s for s in self.segments[:-1] if s.fd >= 0 and s.laid == s.end]
        for old in opened[: max(0, len(opened) - keep)]:
            old.close()

    # ------------------------------------------------------------------ retention
    def retain(self, max_bytes: int | None, max_age_ms: int | None, now_ms: int) -> int:
        """Delete whole segments from the oldest end while the stream is over
        ``max_bytes`` or a segment's newest message is older than ``max_age_ms``; the
        newest segment always stays. Returns the number deleted."""
        removed = 0
        while len(self.segments) > 1:
            oldest, after = self.segments[0], self.segments[1]
            if after.end <= len(MAGIC):  # the next one is not written yet
                break
            too_big = max_bytes is not None and self.size_bytes > max_bytes
            too_old = max_age_ms is not None and after.first_ts and \
                after.first_ts < now_ms - max_age_ms
            if not (too_big or too_old):
                break
            self.segments.pop(0)
            oldest.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(oldest.path)
            removed += 1
        if removed:
            log.info("stream_segments_deleted", stream=str(self.directory), segments=removed,
                     first_offset=self.first_offset)
        return removed

    def close(self) -> None:
        self.closed = True
        for segment in self.segments:
            segment.close()
