"""DataDirLock (warrenmq.storage.lock) between real processes: a second broker process is
refused with the holder's PID in the message, the lock dies with its holder (even on
SIGKILL), release lets another process in, and the directory is created on acquire.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from warrenmq.storage import DataDirLock, DataDirLocked

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from warrenmq.storage import DataDirLock
    lock = DataDirLock(Path(sys.argv[1]))
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until stdin closes (or the process is killed)
    lock.release()
    """
)

TRY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from warrenmq.storage import DataDirLock, DataDirLocked
    try:
        DataDirLock(Path(sys.argv[1])).acquire()
    except DataDirLocked as exc:
        print(exc)
        sys.exit(3)
    print("acquired")
    """
)


def start_holder(d: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail("the holder process did not take the lock within 20 s")
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    d = tmp_path / "data"
    holder = start_holder(d)
    try:
        with pytest.raises(DataDirLocked) as info:
            DataDirLock(d).acquire()
        assert str(info.value) == (
            f"data directory {d} is in use by another WarrenMQ (pid {holder.pid})"
        )
        assert (d / ".lock").read_text().strip() == str(holder.pid)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=20) == 0
    # Released by the holder: now it can be taken.
    lock = DataDirLock(d)
    lock.acquire()
    assert lock.held and (d / ".lock").read_text().strip() == str(os.getpid())
    lock.release()
    assert not lock.held


def test_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=20) == -signal.SIGKILL
    # The stale PID is still in the file, but the kernel dropped the flock.
    assert (tmp_path / ".lock").read_text().strip() == str(holder.pid)
    with DataDirLock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_this_process_holding_the_lock_refuses_another_process(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / "new" / "dir")
    lock.acquire()
    assert (tmp_path / "new" / "dir").is_dir()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", TRY, str(tmp_path / "new" / "dir")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 3, proc.stderr
        assert f"(pid {os.getpid()})" in proc.stdout
        assert "is in use by another WarrenMQ" in proc.stdout
    finally:
        lock.release()
    proc = subprocess.run(
        [sys.executable, "-c", TRY, str(tmp_path / "new" / "dir")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "acquired")


def test_two_lock_objects_in_one_process_also_conflict(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
            DataDirLock(tmp_path).acquire()
    DataDirLock(tmp_path).acquire()  # and free again after release


def test_acquire_and_release_are_idempotent(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)
    lock.release()
    lock.acquire()
    lock.acquire()
    lock.release()
    lock.release()
    assert not lock.held
