"""Build hook: compile the broker's hot path with mypyc from the same typed source.

Everything else about the package is in pyproject.toml. The modules in ``HOT`` (the list
lives in warrenmq/hotpath.py, which the package reads at run time too) are compiled into
one extension group, ``warrenmq._hot``, when a C compiler and mypyc are available;
otherwise, or with ``WARRENMQ_PURE=1``, the package installs as plain Python and runs the
same modules interpreted. A build records a digest of the sources it compiled
(warrenmq/_build_info.py) so that a stale in-place build is noticed at import time.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "warrenmq"))
import hotpath  # noqa: E402  (warrenmq/hotpath.py: stdlib only, importable alone)

sys.path.pop(0)


_COMPILED_DIGEST: list[str] = []


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def _ext_modules() -> list[object]:
    if os.environ.get("WARRENMQ_PURE") == "1":
        print("warrenmq: WARRENMQ_PURE=1, installing the pure-Python hot path")  # noqa: T201
        (ROOT / hotpath.BUILD_INFO).unlink(missing_ok=True)
        return []
    if {"dist_info", "egg_info", "sdist"} & set(sys.argv):
        return []  # metadata only: nothing to compile
    if _compiler() is None:
        print("warrenmq: no C compiler found, installing the pure-Python hot path")  # noqa: T201
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warrenmq: mypyc is not installed, installing the pure-Python hot path")  # noqa: T201
        return []
    paths = [str(Path("warrenmq", *name.split(".")[1:])) + ".py" for name in hotpath.HOT]
    _COMPILED_DIGEST.append(hotpath.source_digest(ROOT / "warrenmq"))  # before compiling
    modules = mypycify(paths, opt_level="3", debug_level="0", group_name=hotpath.GROUP)
    return list(modules)


class BuildHotPath(build_ext):
    """build_ext that records, once the extensions are built, which sources they are."""

    def run(self) -> None:
        if self.extensions and self.inplace:
            # shims of modules compiled before but no longer listed must not linger
            for stale in (ROOT / "warrenmq").rglob("*.so"):
                stale.unlink()
        super().run()
        if not self.extensions or not _COMPILED_DIGEST:
            return
        text = (
            '"""Written by setup.py: the digest of the hot-path sources compiled."""\n\n'
            f'DIGEST = "{_COMPILED_DIGEST[0]}"\n'
        )
        targets = [ROOT / hotpath.BUILD_INFO]  # in place: editable installs, make build
        if not self.inplace:
            targets.append(Path(self.build_lib) / hotpath.BUILD_INFO)
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": BuildHotPath})
