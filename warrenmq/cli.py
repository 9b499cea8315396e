"""Command line: ``warrenmq serve [--config FILE] [--host H] [--port N] [--data-dir D]``,
``warrenmq check-config FILE`` and ``warrenmq dlq inspect|replay QUEUE`` (warrenmq.tools.dlq).

The composition root: arguments → config → logging → uvloop → broker → listeners.
A bad config file exits with status 2 and every problem as file:line:column: key path.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from warrenmq import __version__
from warrenmq.config import BrokerConfig, ConfigError, ListenerConfig, load_config
from warrenmq.logging import configure_logging
from warrenmq.storage import StorageError
from warrenmq.tools.dlq_args import add_subparser as add_dlq_parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warrenmq", description="WarrenMQ AMQP 0-9-1 broker")
    parser.add_argument("--version", action="version", version=f"warrenmq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", help="YAML config file (default: embedded defaults)")
    serve.add_argument("--host", help="listen address (replaces the configured listeners)")
    serve.add_argument("--port", type=int, help="listen port (replaces the configured listeners)")
    serve.add_argument("--data-dir", help="data directory")
    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    add_dlq_parser(sub)
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
    return config


def _load(path: str | None) -> BrokerConfig:
    return load_config(path) if path else BrokerConfig()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dlq":
        from warrenmq.tools.dlq import run as run_dlq  # the AMQP client: not in `serve`

        return run_dlq(args)
    try:
        if args.command == "check-config":
            _load(args.file)
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

        uvloop.run(_serve(config))
    except KeyboardInterrupt:
        pass
    except StorageError as exc:  # another broker holds the data dir, or it is unreadable
        print(f"warrenmq: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


async def _serve(config: BrokerConfig) -> None:
    from warrenmq.app import serve

    await serve(config)


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
