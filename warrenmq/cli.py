"""Command line: ``warrenmq serve [--config FILE] [--host H] [--port N] [--data-dir D]``,
``warrenmq check-config FILE``, ``warrenmq dlq inspect|replay QUEUE`` (warrenmq.tools.dlq),
``warrenmq queues [--url U] [--watch]`` (warrenmq.tools.queues, over the HTTP API) and
``warrenmq definitions export|import`` (warrenmq.tools.definitions) and ``warrenmq migrate``
(warrenmq.tools.migrate).

The composition root: arguments → config → logging → uvloop → broker → listeners.
A bad config file exits with status 2 and every problem as file:line:column: key path;
so does a config entity that conflicts with a durable one the data directory holds. A
``.json`` config is RabbitMQ's definitions JSON. SIGHUP re-reads the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from warrenmq import __version__
from warrenmq.config import BrokerConfig, ConfigError, ListenerConfig, load_config
from warrenmq.logging import configure_logging
from warrenmq.storage import StorageError
from warrenmq.tools.definitions import add_subparser as add_definitions_parser
from warrenmq.tools.dlq_args import add_subparser as add_dlq_parser
from warrenmq.tools.queues import add_subparser as add_queues_parser
from warrenmq.tools.stream_args import add_subparser as add_stream_parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warrenmq", description="WarrenMQ AMQP 0-9-1 broker")
    parser.add_argument("--version", action="version", version=f"warrenmq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", help="YAML config file, or RabbitMQ definitions JSON"
                       " (*.json); default: embedded defaults")
    serve.add_argument("--host", help="listen address (replaces the configured listeners)")
    serve.add_argument("--port", type=int, help="listen port (replaces the configured listeners)")
    serve.add_argument("--data-dir", help="data directory")
    serve.add_argument("--management-port", type=int,
                       help="management HTTP port (enables the listener; 0 = ephemeral)")
    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    add_dlq_parser(sub)
    add_queues_parser(sub)
    add_definitions_parser(sub)
    from warrenmq.tools.migrate import add_subparser as add_migrate_parser

    add_migrate_parser(sub)  # warrenmq migrate: topology and messages into RabbitMQ
    add_stream_parser(sub)  # issue 14: warrenmq stream info|replay
    return parser


def _with_overrides(config: BrokerConfig, args: argparse.Namespace) -> BrokerConfig:
    if args.host is not None or args.port is not None:
        first = config.listeners[0]
        listener = ListenerConfig(
            host=args.host if args.host is not None else first.host,
            port=args.port if args.port is not None else first.port,
        )
        config = dataclasses.replace(config, listeners=(listener,))
    if args.data_dir is not None:
        config = dataclasses.replace(
            config, storage=dataclasses.replace(config.storage, data_dir=args.data_dir)
        )
    if args.management_port is not None:
        management = dataclasses.replace(config.management, enabled=True,
                                         port=args.management_port)
        config = dataclasses.replace(config, management=management)
    return config


def _load(path: str | None) -> BrokerConfig:
    return load_config(path) if path else BrokerConfig()


def _run_tool(args: argparse.Namespace) -> int | None:
    """The client tools' subcommands (their libraries are imported only here, so that
    ``serve`` never loads them); None for the broker's own commands."""
    if args.command == "dlq":
        from warrenmq.tools.dlq import run as run_dlq

        return run_dlq(args)
    if args.command == "queues":
        from warrenmq.tools.queues import run as run_queues

        return run_queues(args)
    if args.command == "definitions":
        from warrenmq.tools.definitions import run as run_definitions

        return run_definitions(args)
    if args.command == "migrate":
        from warrenmq.tools.migrate import run as run_migrate

        return run_migrate(args)
    if args.command == "stream":  # issue 14
        from warrenmq.tools.stream import run as run_stream

        return run_stream(args)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (status := _run_tool(args)) is not None:
        return status
    try:
        if args.command == "check-config":
            checked = _load(args.file)
            for note in checked.source.notes if checked.source is not None else ():
                print(f"note: {note}", file=sys.stderr)  # noqa: T201
            print(f"{args.file}: ok")  # noqa: T201
            return 0
        config = _with_overrides(_load(args.config), args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(f"{args.config or args.file}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(config.logging)
    try:
        import uvloop

        uvloop.run(_serve(config, _reloader(args)))
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:  # the config conflicts with the data directory
        print(str(exc), file=sys.stderr)  # noqa: T201
        return 2
    except StorageError as exc:  # another broker holds the data dir, or it is unreadable
        print(f"warrenmq: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:  # a listener (AMQP or management) could not bind its address
        print(f"warrenmq: cannot listen: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _reloader(args: argparse.Namespace) -> Callable[[], BrokerConfig] | None:
    """What SIGHUP re-reads: the config file with this command line's overrides."""
    if not args.config:
        return None
    return lambda: _with_overrides(load_config(args.config), args)


async def _serve(config: BrokerConfig, reload: Callable[[], BrokerConfig] | None) -> None:
    from warrenmq.app import serve

    await serve(config, reload)


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
