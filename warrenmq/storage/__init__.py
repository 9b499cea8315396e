"""Durability: the data-directory lock, atomic definitions file and the message log.

Synchronous, thread-aware plain Python; no asyncio and no imports from the broker, queues,
exchanges or server. Layout of a data directory::

    <data_dir>/.lock              DataDirLock (one broker process per directory)
    <data_dir>/definitions.json   DefinitionsStore (vhosts, exchanges, queues, bindings)
    <data_dir>/messages/*.seg     MessageStore segments (persistent messages)
    <data_dir>/dedup.log          DedupLog (deduplication keys of durable entities)
"""

from warrenmq.storage.atomic import read_json, write_atomic, write_json_atomic
from warrenmq.storage.definitions import DefinitionsStore
from warrenmq.storage.errors import DataDirLocked, StorageError
from warrenmq.storage.lock import DataDirLock
from warrenmq.storage.log import (
    DEFAULT_KEEP_IN_MEMORY,
    DEFAULT_SEGMENT_SIZE,
    FsyncPolicy,
    MessageStore,
    PreparedCommit,
    Published,
    Ticket,
)
from warrenmq.storage.recovery import BodyLocation, RecoveredMessage, Recovery

MESSAGES_DIR = "messages"

__all__ = [
    "DEFAULT_KEEP_IN_MEMORY",
    "DEFAULT_SEGMENT_SIZE",
    "MESSAGES_DIR",
    "BodyLocation",
    "DataDirLock",
    "DataDirLocked",
    "DefinitionsStore",
    "FsyncPolicy",
    "MessageStore",
    "PreparedCommit",
    "Published",
    "RecoveredMessage",
    "Recovery",
    "StorageError",
    "Ticket",
    "read_json",
    "write_atomic",
    "write_json_atomic",
]
