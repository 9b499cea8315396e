"""Errors raised by the storage layer.

OS-level failures (``OSError`` with ``ENOSPC``, ``EIO``, ...) are never wrapped: the caller
needs the errno to decide between a disk alarm and a fatal error. These classes cover what
the storage layer itself detects.
"""

from __future__ import annotations


class StorageError(Exception):
    """A storage-level failure that is not a plain OS error."""


class DataDirLocked(StorageError):
    """Another process holds the data directory's lock."""
