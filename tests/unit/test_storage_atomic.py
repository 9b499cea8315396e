"""Atomic files and the definitions document (warrenmq.storage.atomic, .definitions):
replacement leaves old-or-new content and no temporary files, even when the write fails or
the writing process is killed at random moments; DefinitionsStore load/save, {} when
absent, stale temporary files removed, corrupt documents refused with the path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from warrenmq.storage import (
    DefinitionsStore,
    StorageError,
    read_json,
    write_atomic,
    write_json_atomic,
)


def test_write_atomic_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_atomic(path, b"one")
    assert path.read_bytes() == b"one"
    write_atomic(path, b"two" * 1000)
    assert path.read_bytes() == b"two" * 1000
    assert os.listdir(tmp_path) == ["f.bin"]


def test_failed_write_keeps_the_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "f.bin", b"x")


def test_json_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    doc = {"vhosts": ["/", "ü"], "n": 3, "nested": {"a": None, "b": [1.5, True]}}
    write_json_atomic(path, doc)
    assert read_json(path) == doc
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bytes": b"x"})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"nan": float("nan")})
    assert read_json(path) == doc
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")


def test_definitions_load_save(tmp_path: Path) -> None:
    store = DefinitionsStore(tmp_path / "data")
    assert store.load() == {}
    assert not (tmp_path / "data").exists()  # loading creates nothing
    doc = {"queues": [{"vhost": "/", "name": "q", "durable": True, "arguments": {}}]}
    store.save(doc)
    assert store.path == tmp_path / "data" / "definitions.json"
    assert DefinitionsStore(tmp_path / "data").load() == doc
    store.save({})
    assert store.load() == {}


def test_definitions_removes_stale_temp_files(tmp_path: Path) -> None:
    store = DefinitionsStore(tmp_path)
    store.save({"a": 1})
    stale = tmp_path / ".definitions.json.abc123.tmp"
    stale.write_bytes(b"{half")
    other = tmp_path / "keep.tmp"
    other.write_bytes(b"")
    assert store.load() == {"a": 1}
    assert not stale.exists() and other.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "does not hold a JSON object"),
        (b"\xff", "not valid JSON"),
    ],
)
def test_corrupt_definitions_are_refused_with_the_path(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    (tmp_path / "definitions.json").write_bytes(content)
    with pytest.raises(StorageError, match=fragment) as info:
        DefinitionsStore(tmp_path).load()
    assert str(tmp_path / "definitions.json") in str(info.value)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from warrenmq.storage import DefinitionsStore
    store = DefinitionsStore(Path(sys.argv[1]))
    store.save({"n": 0, "padding": ""})
    print("ready", flush=True)
    for n in range(1, 10**9):
        store.save({"n": n, "padding": "x" * (n % 5000)})
    """
)


def test_a_writer_killed_at_random_moments_leaves_a_whole_document(tmp_path: Path) -> None:
    seen = set()
    for delay in (0.05, 0.1, 0.15, 0.2, 0.3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=20)
        raw = json.loads((tmp_path / "definitions.json").read_bytes())
        doc = DefinitionsStore(tmp_path).load()  # also removes the killed writer's temp file
        assert doc == raw and doc["padding"] == "x" * (doc["n"] % 5000)
        seen.add(doc["n"])
        assert os.listdir(tmp_path) == ["definitions.json"]
    assert len(seen) > 1  # the writer made progress between kills
