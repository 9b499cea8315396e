"""Crash-safe whole-file replacement.

``write_atomic`` writes to a temporary file in the same directory, fsyncs it, renames it
over the target with ``os.replace`` (atomic on POSIX) and fsyncs the directory so the
rename itself survives a power cut. A reader therefore sees either the old content or the
new one, never a mix. Must not be used for large or frequently rewritten data: every call
costs two fsyncs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make creations, renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(path: Path) -> str:
    """Prefix of the temporary files ``write_atomic`` leaves behind if killed mid-write."""
    return f".{path.name}."


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=temp_prefix(path), suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def read_json(path: Path) -> Any:
    """Parse the JSON file at ``path`` (raises FileNotFoundError, json.JSONDecodeError)."""
    with open(path, "rb") as f:
        return json.loads(f.read())


def write_json_atomic(path: Path, obj: Any) -> None:
    """Serialise ``obj`` (JSON types only) and ``write_atomic`` it."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
    write_atomic(path, text.encode("utf-8") + b"\n")
