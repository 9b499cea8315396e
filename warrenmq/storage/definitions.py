"""The durable definitions document: ``<data_dir>/definitions.json``.

Owns the file only; the broker decides the document's shape (vhosts, exchanges, queues,
bindings). Every ``save`` replaces the whole file atomically (see ``atomic``), so a crash
leaves either the previous or the new document. Must not interpret the document.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from warrenmq.storage.atomic import TMP_SUFFIX, read_json, temp_prefix, write_json_atomic
from warrenmq.storage.errors import StorageError

DEFINITIONS_NAME = "definitions.json"


class DefinitionsStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DEFINITIONS_NAME

    def load(self) -> dict[str, Any]:
        """The saved document, or ``{}`` when none was ever saved.

        Raises StorageError when the file exists but is not a JSON object (disk corruption:
        atomic replacement never leaves a half-written document).
        """
        self._remove_stale_temps()
        try:
            doc = read_json(self.path)
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StorageError(f"definitions file {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise StorageError(f"definitions file {self.path} does not hold a JSON object")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        """Replace the document atomically and durably (two fsyncs)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, doc)

    def _remove_stale_temps(self) -> None:
        """Temporary files left by a process killed inside ``save``."""
        if not self.directory.is_dir():
            return
        prefix = temp_prefix(self.path)
        for entry in os.scandir(self.directory):
            if entry.name.startswith(prefix) and entry.name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
