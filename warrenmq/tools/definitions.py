"""``warrenmq definitions export|import``: RabbitMQ's definitions JSON in and out.

``export`` writes the topology, users, vhosts, permissions and policies of a config
file (``--config``) and/or a data directory (``--data-dir``: the durable definitions a
broker saved there, plus the config's) as RabbitMQ's definitions JSON (what
``rabbitmqctl import_definitions`` takes) or as our YAML. Both commands default to the
same data directory: the config's ``storage.data_dir`` (``./warrenmq-data`` without
``--config``). A data directory given or defaulted to that is missing or holds no
saved definitions is an error (exit 2), never an export of the defaults; with
``--config`` and no such directory, the config alone is exported. ``import`` loads RabbitMQ's
JSON into a data directory's durable definitions, for the next start; it refuses while
a broker holds the directory (use the management API's POST /api/definitions then).
What one side cannot express is printed on stderr as ``note: ...``, never dropped
silently. Exit status: 0 done, 2 bad input (every problem listed) or a locked data
directory. Must not start a broker or talk to one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from warrenmq.broker.broker import Broker
from warrenmq.broker.definitions import export_document, import_definitions, restore, snapshot
from warrenmq.config import BrokerConfig, ConfigError, LoggingConfig, load_config
from warrenmq.config.rabbit import declarations, for_rabbitmq, merge, notes_text, yaml_text
from warrenmq.config.rabbit_import import config_from_document
from warrenmq.logging import configure_logging
from warrenmq.storage import DataDirLock, DefinitionsStore, StorageError
from warrenmq.storage.definitions import DEFINITIONS_NAME


def add_subparser(sub: Any) -> None:
    parser = sub.add_parser("definitions", help="export or import RabbitMQ definitions JSON")
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write the definitions of a config file and/or a data directory")
    export.add_argument("--config", help="config file (YAML, or definitions JSON)")
    export.add_argument("--data-dir", help="data directory whose saved definitions to add"
                        " (default: the config's storage.data_dir, ./warrenmq-data without"
                        " --config)")
    export.add_argument("--format", choices=("rabbitmq", "yaml"), default="rabbitmq",
                        help="rabbitmq (definitions JSON, the default) or yaml (our config)")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    load = actions.add_parser(
        "import", help="load RabbitMQ definitions JSON into a data directory")
    load.add_argument("file", help="definitions JSON, as rabbitmqctl export_definitions writes")
    load.add_argument("--data-dir", help="data directory (default: the config's storage.data_dir)")
    load.add_argument("--config", help="config file naming the data directory")


def _err(text: str) -> None:
    print(text, file=sys.stderr, end="" if text.endswith("\n") else "\n")  # noqa: T201


def _offline(config: BrokerConfig, document: dict[str, Any]) -> Broker:
    """A broker holding a data directory's saved definitions (no listeners, no store)."""
    broker = Broker(vhosts=[v.name for v in config.vhosts], users=[], permissions={})
    restore(broker, document)
    return broker


class NoDataDir(Exception):
    """A data directory that is missing or holds no saved definitions: exit 2."""


def data_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a broker's data directory, or None when it is one."""
    if not path.exists():
        return f"no such directory: {path}"
    if not path.is_dir():
        return f"{path} is not a directory"
    if not (path / DEFINITIONS_NAME).is_file():
        return (f"{path} holds no {DEFINITIONS_NAME}: not a WarrenMQ data directory (a broker"
                " writes it there when it first starts)")
    return None


def _export_data_dir(args: argparse.Namespace, config: BrokerConfig) -> Path | None:
    """The data directory to export, with the same default as ``import``; None when only
    the config file is exported (--config given, its data directory not there)."""
    if args.data_dir is not None:
        problem = data_dir_problem(Path(args.data_dir))
        if problem is not None:
            raise NoDataDir(f"{problem}. Give --data-dir the directory a broker ran with.")
        return Path(args.data_dir)
    default = Path(config.storage.data_dir)
    problem = data_dir_problem(default)
    if problem is None:
        return default
    if args.config is None:
        raise NoDataDir(f"{problem}. Give --config FILE and/or --data-dir DIR (the default"
                        f" is {default}, in the current directory).")
    return None


def _export(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else BrokerConfig()
    notes: list[str] = list(config.source.notes) if config.source is not None else []
    document = declarations(config)
    data_dir = _export_data_dir(args, config)
    if data_dir is not None:
        saved = DefinitionsStore(data_dir).load()
        document = merge(document, export_document(_offline(config, saved)))
    if args.format == "yaml":
        if data_dir is not None:
            config = config_from_document(json.loads(json.dumps(document, default=str)),
                                          str(data_dir / DEFINITIONS_NAME))
        text, more = yaml_text(config)
    else:
        rabbit, more = for_rabbitmq(document)
        text = json.dumps(rabbit, indent=2, ensure_ascii=False, default=str) + "\n"
    notes += more
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if notes:
        _err(notes_text(notes))
    return 0


def _import(args: argparse.Namespace) -> int:
    document = json.loads(Path(args.file).read_text(encoding="utf-8-sig"))
    config_from_document(document, args.file)  # every problem, with the file's key paths
    config = load_config(args.config) if args.config else BrokerConfig()
    data_dir = Path(args.data_dir or config.storage.data_dir)
    lock = DataDirLock(data_dir)
    lock.acquire()  # DataDirLocked while a broker runs on it
    try:
        store = DefinitionsStore(data_dir)
        broker = _offline(config, store.load())
        notes = import_definitions(broker, document)
        store.save(snapshot(broker))
    finally:
        lock.release()
    notes += _transient(document)
    if notes:
        _err(notes_text(notes))
    _err("imported: " + ", ".join(
        f"{len(document.get(section) or [])} {section}"
        for section in ("users", "vhosts", "permissions", "policies", "exchanges", "queues",
                        "bindings")))
    print(f"{args.file}: imported into {data_dir}")  # noqa: T201
    return 0


def _transient(document: dict[str, Any]) -> list[str]:
    """Entries a data directory cannot keep: it holds durable entities only."""
    return [f'{section}[{index}] ("{entry.get("name")}"): not durable; a data directory'
            " keeps durable exchanges and queues only (declare it at run time instead)"
            for section in ("exchanges", "queues")
            for index, entry in enumerate(document.get(section) or [])
            if isinstance(entry, dict) and entry.get("durable") is False]


def run(args: argparse.Namespace) -> int:
    # stdout carries the export; the offline broker's own events are not news here
    configure_logging(LoggingConfig(format="console", level="warning"))
    try:
        return _export(args) if args.action == "export" else _import(args)
    except ConfigError as exc:
        _err(str(exc))
    except json.JSONDecodeError as exc:
        _err(f"{getattr(args, 'file', '')}:{exc.lineno}:{exc.colno}: JSON syntax error:"
             f" {exc.msg}")
    except NoDataDir as exc:
        _err(f"warrenmq definitions export: {exc}")
    except StorageError as exc:
        _err(f"warrenmq definitions: {exc}")
    except OSError as exc:
        _err(f"warrenmq definitions: {exc.filename or ''}: {exc.strerror}")
    return 2
