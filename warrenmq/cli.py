"""Command line: ``warrenmq serve [--config FILE] [--host H] [--port N] [--data-dir D]
[--management-port N | --no-management]``, ``warrenmq check-config FILE``, and the tools
in ``warrenmq.tools``: ``dlq inspect|replay`` (AMQP), ``queues`` and ``list|purge|delete|
declare|add|set|close|publish|get|status|ping`` (the management HTTP API),
``definitions export|import``, ``data delete-queue|delete-exchange`` and
``hash-password`` (offline), ``migrate`` (topology and messages into RabbitMQ) and
``stream info|replay``.

The composition root: arguments → config → logging → uvloop → broker → listeners.
A bad config file exits with status 2 and every problem as file:line:column: key path;
so does a config entity that conflicts with a durable one the data directory holds. A
``.json`` config is RabbitMQ's definitions JSON. SIGHUP re-reads the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Callable, Sequence

from warrenmq import __version__
from warrenmq.config import (
    BrokerConfig,
    ConfigError,
    ConfigProblem,
    ListenerConfig,
    SslConfig,
    load_config,
)
from warrenmq.exchange.registry import PluginError, load_plugins
from warrenmq.logging import configure_logging
from warrenmq.startup import StartupError
from warrenmq.storage import StorageError
from warrenmq.tools.admin_args import add_subparsers as add_admin_parsers
from warrenmq.tools.definitions import add_subparser as add_definitions_parser
from warrenmq.tools.dlq_args import add_subparser as add_dlq_parser
from warrenmq.tools.offline import add_subparsers as add_offline_parsers
from warrenmq.tools.queues import add_subparser as add_queues_parser
from warrenmq.tools.stream_args import add_subparser as add_stream_parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warrenmq", description="WarrenMQ AMQP 0-9-1 broker")
    parser.add_argument("--version", action="version", version=f"warrenmq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", help="YAML config file, or RabbitMQ definitions JSON"
                       " (*.json); default: embedded defaults")
    serve.add_argument("--host", help="listen address (replaces the configured listeners)")
    serve.add_argument("--port", type=port_number, metavar="PORT",
                       help="AMQP listen port, 1..65535 or 0 for any free one (replaces the"
                       " configured listeners)")
    serve.add_argument("--data-dir", help="data directory")
    tls = serve.add_argument_group("TLS (an amqps listener beside the configured ones)")
    tls.add_argument("--tls-port", type=port_number, metavar="PORT",
                     help="amqps port (5671 is the usual one)")
    tls.add_argument("--tls-cert", help="server certificate (PEM; the chain after it)")
    tls.add_argument("--tls-key", help="private key of the certificate (PEM)")
    tls.add_argument("--tls-ca", help="CA certificates client certificates must chain to")
    tls.add_argument("--tls-verify-peer", action="store_true",
                     help="ask clients for a certificate (needs --tls-ca); enables EXTERNAL")
    tls.add_argument("--tls-fail-if-no-peer-cert", action="store_true",
                     help="refuse clients without a certificate (with --tls-verify-peer)")
    management = serve.add_mutually_exclusive_group()
    management.add_argument("--management-port", type=port_number, metavar="PORT",
                            help="management HTTP port (enables the listener; 0 = any free"
                            " one)")
    management.add_argument("--no-management", action="store_true",
                            help="no management HTTP listener (API, /metrics, dashboard)")
    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    add_dlq_parser(sub)
    add_queues_parser(sub)
    add_definitions_parser(sub)
    add_offline_parsers(sub)
    add_admin_parsers(sub)
    from warrenmq.tools.migrate import add_subparser as add_migrate_parser

    add_migrate_parser(sub)  # warrenmq migrate: topology and messages into RabbitMQ
    add_stream_parser(sub)  # issue 14: warrenmq stream info|replay
    return parser


def port_number(text: str) -> int:
    """A TCP port from the command line: 1..65535, or 0 for one the system picks."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is not a TCP port: give 1..65535, or 0 for any free port")
    return port


def _with_overrides(config: BrokerConfig, args: argparse.Namespace) -> BrokerConfig:
    if args.host is not None or args.port is not None:
        # replaces the plain listeners; configured TLS listeners stay
        first = next((lst for lst in config.listeners if lst.ssl is None), ListenerConfig())
        listener = ListenerConfig(
            host=args.host if args.host is not None else first.host,
            port=args.port if args.port is not None else first.port,
        )
        tls = tuple(lst for lst in config.listeners if lst.ssl is not None)
        config = dataclasses.replace(config, listeners=(listener, *tls))
    config = _with_tls(config, args)
    if args.data_dir is not None:
        config = dataclasses.replace(
            config, storage=dataclasses.replace(config.storage, data_dir=args.data_dir)
        )
    if args.management_port is not None:
        management = dataclasses.replace(config.management, enabled=True,
                                         port=args.management_port)
        config = dataclasses.replace(config, management=management)
    if args.no_management:
        config = dataclasses.replace(
            config, management=dataclasses.replace(config.management, enabled=False))
    return config


def _flag_error(message: str) -> ConfigError:
    return ConfigError([ConfigProblem("command line", 0, 0, "", message)])


def _with_tls(config: BrokerConfig, args: argparse.Namespace) -> BrokerConfig:
    if args.tls_port is None:
        if args.tls_cert or args.tls_key or args.tls_ca:
            raise _flag_error("--tls-cert/--tls-key/--tls-ca need --tls-port")
        return config
    if not args.tls_cert or not args.tls_key:
        raise _flag_error("--tls-port needs --tls-cert and --tls-key")
    if args.tls_verify_peer and not args.tls_ca:
        raise _flag_error("--tls-verify-peer needs --tls-ca")
    ssl = SslConfig(certfile=args.tls_cert, keyfile=args.tls_key, cafile=args.tls_ca,
                    verify="verify_peer" if args.tls_verify_peer else "verify_none",
                    fail_if_no_peer_cert=args.tls_fail_if_no_peer_cert)
    host = args.host if args.host is not None else config.listeners[0].host
    listener = ListenerConfig(host=host, port=args.tls_port, ssl=ssl)
    return dataclasses.replace(config, listeners=(*config.listeners, listener))


def _load(path: str | None) -> BrokerConfig:
    return load_config(path) if path else BrokerConfig()


def _tool(command: str) -> Callable[[argparse.Namespace], int] | None:
    """The client-side and offline tools: imported only when asked for, so that
    ``serve`` never loads the AMQP client library."""
    module = _TOOLS.get(command)
    if module is None:
        return None
    run: Callable[[argparse.Namespace], int] = importlib.import_module(module).run
    return run


_TOOLS = {
    "dlq": "warrenmq.tools.dlq",
    "queues": "warrenmq.tools.queues",
    "definitions": "warrenmq.tools.definitions",
    "data": "warrenmq.tools.offline",
    "hash-password": "warrenmq.tools.offline",
    "migrate": "warrenmq.tools.migrate",
    "stream": "warrenmq.tools.stream",  # issue 14
    **dict.fromkeys(("list", "purge", "delete", "declare", "add", "set", "close", "publish",
                     "get", "status", "ping"), "warrenmq.tools.admin"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tool = _tool(args.command)
    if tool is not None:
        return tool(args)
    try:
        load_plugins()  # exchange-type plugins first: the config may declare their types
    except PluginError as exc:
        print(f"warrenmq: cannot start: {exc}", file=sys.stderr)  # noqa: T201
        return 2
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
    except StartupError as exc:  # data dir or a listener: names which, why and the fix
        print(f"warrenmq: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(f"warrenmq: cannot start: {exc}", file=sys.stderr)  # noqa: T201
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
