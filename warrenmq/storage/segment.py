"""Segment files of the message log: naming, listing and scanning with resync.

A segment is one file ``<seq>.seg`` (``seq`` zero-padded to 16 digits so names sort in
log order) holding whole records back to back; a record never spans two files.

``scan`` walks a segment's bytes and yields every record whose frame validates (magic,
known type, length inside the file, CRC). On anything else -- a torn tail left by a crash
mid-write, a flipped bit, zeros left by the filesystem -- it logs
``storage_corrupt_record`` with the file and offset, then RESYNCS: it searches forward for
the next ``MAGIC`` whose record validates and continues from there, so one bad record never
hides the valid records after it. A body can contain the magic bytes; a false resync
would additionally need a matching CRC32 over a well-formed frame, which only a body
deliberately embedding a record can provide, and only right after real corruption.
Must not decide what a record means (see ``recovery``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import structlog

from warrenmq.storage.records import HEADER, HEADER_SIZE, MAGIC, RECORD_TYPES

SEGMENT_SUFFIX = ".seg"
_NAME = re.compile(r"^(\d{16})\.seg$")

log = structlog.get_logger("warrenmq.storage")


def segment_name(seq: int) -> str:
    return f"{seq:016d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Sequence numbers of the segment files in ``directory``, oldest first."""
    seqs = []
    for path in directory.iterdir():
        m = _NAME.match(path.name)
        if m and path.is_file():
            seqs.append(int(m.group(1)))
    seqs.sort()
    return seqs


def _valid_at(buf: bytes, pos: int, size: int) -> int:
    """End offset of the record framed at ``pos`` if it validates, else -1."""
    if pos + HEADER_SIZE > size:
        return -1
    magic, rtype, length, crc = HEADER.unpack_from(buf, pos)
    end: int = pos + HEADER_SIZE + length
    if magic != MAGIC or rtype not in RECORD_TYPES or end > size:
        return -1
    view = memoryview(buf)
    if zlib.crc32(view[pos + HEADER_SIZE : end], zlib.crc32(view[pos + 4 : pos + 9])) != crc:
        return -1
    return end


def _resync(buf: bytes, pos: int, size: int) -> int:
    """Offset of the next valid record after ``pos``, or ``size`` when there is none."""
    nxt = buf.find(MAGIC, pos + 1)
    while nxt != -1:
        if _valid_at(buf, nxt, size) != -1:
            return nxt
        nxt = buf.find(MAGIC, nxt + 1)
    return size


def scan(
    buf: bytes, path: Path, damaged: list[tuple[str, int]] | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(type, record_start, payload_start, payload_end)`` for each valid record.

    Damage is reported through the log: one warning per damaged region, with the offset of
    its first bad byte and how many bytes were skipped; ``(file, offset)`` is also appended
    to ``damaged`` when given.
    """
    size = len(buf)
    view = memoryview(buf)  # CRC over a view: no copy of large bodies
    pos = 0
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    while pos < size:
        # Fast path inlined (this loop runs once per record at start-up).
        if pos + HEADER_SIZE <= size:
            magic, rtype, length, crc = unpack(buf, pos)
            start = pos + HEADER_SIZE
            end = start + length
            if (
                magic == MAGIC
                and rtype in RECORD_TYPES
                and end <= size
                and crc32(view[start:end], crc32(buf[pos + 4 : pos + 9])) == crc
            ):
                yield rtype, pos, start, end
                pos = end
                continue
        nxt = _resync(buf, pos, size)
        log.warning(
            "storage_corrupt_record",
            file=str(path),
            offset=pos,
            skipped=nxt - pos,
            torn_tail=nxt == size,
        )
        if damaged is not None:
            damaged.append((str(path), pos))
        pos = nxt
