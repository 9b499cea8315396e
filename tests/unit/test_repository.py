"""Repository hygiene: no crash dumps committed (and git ignores them), the LICENSE
that pyproject names is there, and the docs say what an operator needs (how
``warrenmq`` gets on PATH, the CLI in the README's operator section, ``warrenmq/tools/``
in ARCHITECTURE.md). Runs git itself as a subprocess."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="not a git checkout")
def test_no_crash_dumps_and_they_are_ignored() -> None:
    tracked = git("ls-files").stdout.splitlines()
    assert not [f for f in tracked if Path(f).name == "erl_crash.dump"]
    ignored = git("check-ignore", "-q", "--no-index", "erl_crash.dump")
    assert ignored.returncode == 0
    assert git("check-ignore", "-q", "--no-index", "benchmarks/erl_crash.dump").returncode == 0


def test_license_is_apache_2() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()


def test_docs_cover_the_operator_cli() -> None:
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/warrenmq" in readme and "source .venv/bin/activate" in readme
    for command in ("warrenmq list queues", "warrenmq status", "warrenmq ping",
                    "WARRENMQ_URL", "warrenmq data delete-queue", "warrenmq hash-password",
                    "--no-management", 'make run ARGS="'):
        assert command in readme, command
    assert "| tools | `tools/` |" in (REPO / "ARCHITECTURE.md").read_text()
