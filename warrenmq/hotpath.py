"""The compiled hot path: which modules mypyc compiles, and which build runs.

The modules in ``HOT`` are plain typed Python that setup.py compiles with mypyc into one
extension group (``warrenmq._hot__mypyc`` plus a small shim per module, next to each
``.py``). The same sources run interpreted when there is no build, when
``WARRENMQ_PURE=1`` is set, or when the build no longer matches the sources (an edit
since the last ``make``): a digest of the sources compiled is kept in
``warrenmq/_build_info.py`` and compared at import, so a stale extension is never run.

Running pure with a build present works by a meta-path finder that loads these modules
from their ``.py`` files and never looks at the extensions. This module is imported by
``warrenmq/__init__.py`` and by setup.py on its own, so it uses the standard library only
and imports nothing from the package.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The extension group: its shared library is ``warrenmq/_hot__mypyc.*.so``.
GROUP = "warrenmq._hot"
#: Written by setup.py after compiling (relative to the project root; not in git).
BUILD_INFO = "warrenmq/_build_info.py"

#: (protocol/methods.py, the table-driven codec of every other method, stays interpreted:
#: it generates its method classes at import, which compiled classes cannot be.)
#: Every module on the per-message path: frames and the hot codec, the connection,
#: channel and consumer, exchanges and routing, queues, the message, flow, and the
#: store's append/layout path. They must stay mypyc-compatible: typed, no monkeypatching.
HOT: tuple[str, ...] = (
    "warrenmq.protocol.frames",
    "warrenmq.protocol.fields",
    "warrenmq.protocol.properties",
    "warrenmq.protocol.content",
    "warrenmq.clock",
    "warrenmq.message",
    "warrenmq.queues.ready",
    "warrenmq.queues.priority",
    "warrenmq.queues.consumers",
    "warrenmq.queues.queue",
    "warrenmq.queues.expiry",
    "warrenmq.queues.dead_letter",
    "warrenmq.queues.utilisation",
    "warrenmq.queues.stream",  # issue 14: subclasses Queue and QueuedMessage (native)
    "warrenmq.queues.dedup",  # issue 13: deduplication caches (per message when in use)
    "warrenmq.queues.stream_props",  # the offset header spliced into each append
    "warrenmq.exchange.base",
    "warrenmq.exchange.direct",
    "warrenmq.exchange.fanout",
    "warrenmq.exchange.topic",
    "warrenmq.exchange.headers",
    "warrenmq.exchange.consistent_hash",  # issue 13: routes per message
    "warrenmq.broker.flow",
    "warrenmq.broker.dedup",
    "warrenmq.broker.routing",
    "warrenmq.broker.vhost",
    "warrenmq.server.connection",
    "warrenmq.server.channel",
    "warrenmq.server.consumer",
    "warrenmq.server.unacked",
    "warrenmq.server.methods.basic",
    "warrenmq.storage.records",
    "warrenmq.storage.pending",
    "warrenmq.storage.live",
    "warrenmq.storage.log",
    "warrenmq.storage.stream",  # a stream's appends and reads: encode/decode per record
    "warrenmq.storage.streams",  # every stream append takes a store ticket here
)


def source_paths(package_dir: Path) -> list[Path]:
    """The ``.py`` file of each hot module under ``package_dir`` (the ``warrenmq`` dir)."""
    return [package_dir.joinpath(*name.split(".")[1:]).with_suffix(".py") for name in HOT]


def source_digest(package_dir: Path) -> str:
    """sha256 over the hot modules' names and sources: what a build was made from."""
    digest = hashlib.sha256()
    for name, path in zip(HOT, source_paths(package_dir), strict=True):
        digest.update(name.encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


class _SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds the package's modules as ``.py`` files only, skipping compiled extensions
    (every module, not only ``HOT``: a stale shim of a module no longer compiled must not
    pull the extension group in either)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("warrenmq.") or path is None:
            return None
        loaders = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, loaders).find_spec(fullname)
            if spec is not None:
                return spec
        return None


def _built_digest(package_dir: Path) -> str | None:
    info = package_dir / "_build_info.py"
    if not info.exists():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("DIGEST = "):
            return line.split('"')[1]
    return None


def decide(package_dir: Path, pure: bool) -> tuple[str, str]:
    """(mode, reason): "compiled" when a build of exactly these sources is there."""
    if pure:
        return "pure", "WARRENMQ_PURE=1"
    built = _built_digest(package_dir)
    if built is None or not any(package_dir.glob(GROUP.split(".")[1] + "__mypyc*")):
        return "pure", "no compiled build installed"
    if built != source_digest(package_dir):
        return "pure", "the compiled build is older than the sources (run make to rebuild)"
    return "compiled", "mypyc build matches the sources"


def select(package_dir: Path) -> tuple[str, str]:
    """Decide, before any hot module is imported, whether the compiled build runs; when
    not, make every module of the package load from its ``.py`` file."""
    mode, reason = decide(package_dir, os.environ.get("WARRENMQ_PURE") == "1")
    if mode == "pure" and not any(isinstance(f, _SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnlyFinder())
    return mode, reason


def running_compiled() -> bool:
    """True when the hot modules imported so far are the compiled ones."""
    module = sys.modules.get("warrenmq.queues.queue")
    if module is None:
        module = importlib.import_module("warrenmq.queues.queue")
    return not str(getattr(module, "__file__", "")).endswith(".py")


if __name__ == "__main__":
    # `python warrenmq/hotpath.py`: the hot sources, one per line (the Makefile's prerequisites)
    for source in source_paths(Path(__file__).resolve().parent):
        print(source.relative_to(Path.cwd()))  # noqa: T201
