"""amqps: TLS listeners with certificates the tests make, driven by pika, aio-pika and
aiormq over real TLS sockets, with and without client certificates (EXTERNAL).

Failures must be clean and harm nobody else: a client certificate from another CA, an
expired one, plain AMQP to the TLS port and TLS to the plain port each fail while a
bystander connection keeps publishing and consuming. Certificates are re-read on
SIGHUP (``Server.reload_tls``); the management listener speaks HTTPS with the same
options; TLS older than 1.2 is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import aiormq
import pika
import pytest
from pamqp import commands

from tests.conftest import make_config
from tests.helpers import aio_pika_round_trip
from tests.rawamqp import PROTOCOL_HEADER, RawClient
from tests.tlscerts import CertSet, make_certs
from warrenmq.app import start
from warrenmq.config import ListenerConfig, ManagementConfig, SslConfig
from warrenmq.server.listener import Server


@dataclasses.dataclass
class TlsBroker:
    server: Server
    certs: CertSet
    plain_port: int
    tls_port: int

    def context(self, client: str | None = None, ca: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca or self.certs.ca))
        if client is not None:
            issued = getattr(self.certs, client)
            context.load_cert_chain(str(issued.cert), str(issued.key))
        return context


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[TlsBroker]:
    certs = make_certs(tmp_path / "certs")
    ssl_config = SslConfig(certfile=str(certs.server.cert), keyfile=str(certs.server.key),
                           cafile=str(certs.ca), verify="verify_peer")
    config = dataclasses.replace(make_config(tmp_path), listeners=(
        ListenerConfig("127.0.0.1", 0), ListenerConfig("127.0.0.1", 0, ssl=ssl_config)),
        management=ManagementConfig(port=0, ssl=ssl_config))
    server = await start(config)
    (tls_port,) = server.tls_ports
    (plain_port,) = [p for p in server.ports if p != tls_port]
    yield TlsBroker(server, certs, plain_port, tls_port)
    await server.close(grace=2.0)


async def bystander_round_trip(broker: TlsBroker, name: str) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.plain_port}/")
    async with connection:
        await aio_pika_round_trip(connection, name, b"still fine")


# ----------------------------------------------------------------------------- clients


async def test_aio_pika_over_tls_with_password(tls_broker: TlsBroker) -> None:
    connection = await aio_pika.connect(
        f"amqps://guest:guest@localhost:{tls_broker.tls_port}/",
        ssl_context=tls_broker.context())
    async with connection:
        await aio_pika_round_trip(connection, "tls-aio-pika", b"over tls")
        (conn,) = [c for c in tls_broker.server.connections if c.tls is not None]
        assert conn.transport is not None
        assert conn.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")


async def test_aiormq_external_login_with_client_certificate(tls_broker: TlsBroker) -> None:
    """EXTERNAL: the user is the certificate's CN (auth.ssl_cert_login_from default)."""
    connection = await aiormq.connect(
        f"amqps://localhost:{tls_broker.tls_port}/?auth=external",
        context=tls_broker.context("client"))
    try:
        channel = await connection.channel()
        await channel.queue_declare("tls-external", auto_delete=True)
        await channel.basic_publish(b"via EXTERNAL", routing_key="tls-external")
        message = await channel.basic_get("tls-external", no_ack=True)
        assert message.body == b"via EXTERNAL"
        (conn,) = [c for c in tls_broker.server.connections if c.tls is not None]
        assert conn.user is not None and conn.user.name == "guest"
    finally:
        await connection.close()


def _pika_round_trip(port: int, context: ssl.SSLContext, credentials: object) -> bytes:
    params = pika.ConnectionParameters(
        "localhost", port, credentials=credentials,  # type: ignore[arg-type]
        ssl_options=pika.SSLOptions(context, "localhost"), connection_attempts=1,
        blocked_connection_timeout=5)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.queue_declare("tls-pika", auto_delete=True)
        channel.basic_publish("", "tls-pika", b"pika over tls")
        for _ in range(50):
            _, _, body = channel.basic_get("tls-pika", auto_ack=True)
            if body is not None:
                return bytes(body)
            connection.sleep(0.02)
        return b""
    finally:
        connection.close()


@pytest.mark.parametrize("login", ["plain", "external"])
async def test_pika_over_tls(tls_broker: TlsBroker, login: str) -> None:
    if login == "plain":
        context = tls_broker.context()
        credentials: object = pika.PlainCredentials("guest", "guest")
    else:
        context = tls_broker.context("client")
        credentials = pika.credentials.ExternalCredentials()
    body = await asyncio.to_thread(_pika_round_trip, tls_broker.tls_port, context,
                                   credentials)
    assert body == b"pika over tls"


async def test_external_is_offered_only_with_a_client_certificate(
        tls_broker: TlsBroker) -> None:
    async def mechanisms(context: ssl.SSLContext, port: int) -> str:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost")
        client = RawClient(reader, writer)
        client.send(PROTOCOL_HEADER)
        start_method = await client.expect(commands.Connection.Start)
        client.close()
        return str(start_method.mechanisms)

    assert (await mechanisms(tls_broker.context("client"), tls_broker.tls_port)).startswith(
        "EXTERNAL")
    assert "EXTERNAL" not in await mechanisms(tls_broker.context(), tls_broker.tls_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_broker.plain_port)
    plain = RawClient(reader, writer)
    plain.send(PROTOCOL_HEADER)
    start_method = await plain.expect(commands.Connection.Start)
    assert "EXTERNAL" not in start_method.mechanisms
    # EXTERNAL asked for where it is not offered: 403, not a login
    plain.send_method(0, commands.Connection.StartOk(
        client_properties={}, mechanism="EXTERNAL", response="", locale="en_US"))
    close = await plain.expect(commands.Connection.Close)
    assert close.reply_code == 403
    plain.close()


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize("client", ["expired", "foreign"])
async def test_bad_client_certificates_fail_cleanly(tls_broker: TlsBroker, client: str
                                                    ) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, aiormq.exceptions.AMQPError,
                        asyncio.IncompleteReadError, OSError)):
        connection = await asyncio.wait_for(aiormq.connect(
            f"amqps://localhost:{tls_broker.tls_port}/?auth=external",
            context=tls_broker.context(client)), 5)
        await connection.close()
    await bystander_round_trip(tls_broker, f"after-{client}")


async def test_wrong_server_ca_is_refused_by_the_client(tls_broker: TlsBroker) -> None:
    with pytest.raises(aiormq.exceptions.AMQPConnectionError, match="CERTIFICATE_VERIFY"):
        await aio_pika.connect(f"amqps://guest:guest@localhost:{tls_broker.tls_port}/",
                               ssl_context=tls_broker.context(ca=tls_broker.certs.foreign_ca))
    await bystander_round_trip(tls_broker, "after-wrong-ca")


async def test_plain_amqp_to_the_tls_port_is_closed(tls_broker: TlsBroker) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_broker.tls_port)
    writer.write(PROTOCOL_HEADER)
    data = await asyncio.wait_for(reader.read(4096), 5)  # an alert or nothing, then EOF
    while data:
        data = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    await bystander_round_trip(tls_broker, "after-plain-to-tls")


async def test_tls_to_the_plain_port_gets_the_protocol_header(tls_broker: TlsBroker) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", tls_broker.plain_port, ssl=tls_broker.context(),
            server_hostname="localhost"), 5)
    await bystander_round_trip(tls_broker, "after-tls-to-plain")


async def test_tls_1_1_is_refused(tls_broker: TlsBroker) -> None:
    assert all(c.context.minimum_version == ssl.TLSVersion.TLSv1_2
               for c in tls_broker.server.tls_contexts)
    context = tls_broker.context()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", tls_broker.tls_port, ssl=context, server_hostname="localhost"), 5)


# ----------------------------------------------------------------------------- reload, https


def served_serial(der: bytes) -> int:
    from cryptography import x509

    return int(x509.load_der_x509_certificate(der).serial_number)


async def handshake_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate the broker serves in a new handshake."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                              server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return served_serial(der)


async def test_certificates_reloaded_on_sighup(tls_broker: TlsBroker, tmp_path: Path) -> None:
    """New handshakes get the re-read certificate; a failed re-read keeps the one loaded."""
    before = await handshake_serial(tls_broker.tls_port, tls_broker.context())
    renewed = make_certs(tmp_path / "renewed")  # a new server certificate (and its CA)
    shutil.copy(renewed.server.cert, tls_broker.certs.server.cert)
    shutil.copy(renewed.server.key, tls_broker.certs.server.key)
    tls_broker.server.reload_tls()
    context = ssl.create_default_context(cafile=str(renewed.ca))
    after = await handshake_serial(tls_broker.tls_port, context)
    assert after != before
    tls_broker.certs.server.key.write_text("not a key")
    tls_broker.server.reload_tls()  # logged as tls_reload_failed; the loaded one stays
    assert await handshake_serial(tls_broker.tls_port, context) == after


async def test_management_over_https(tls_broker: TlsBroker) -> None:
    port = tls_broker.server.management_port
    auth = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}  # guest:guest
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(f"https://localhost:{port}/api/overview",
                               ssl=tls_broker.context()) as response:
            assert response.status == 200
            overview = await response.json()
        protocols = {(item["protocol"], item["port"]) for item in overview["listeners"]}
        assert {("amqp", tls_broker.plain_port), ("amqp/ssl", tls_broker.tls_port),
                ("https", port)} <= protocols
        # the test certificates expire in 30 days: both listeners are in a 5-week window
        async with session.get(f"https://localhost:{port}/api/health/checks/"
                               "certificate-expiration/5/weeks",
                               ssl=tls_broker.context()) as response:
            assert response.status == 503
            expired = (await response.json())["expired"]
        assert {(e["protocol"], e["port"]) for e in expired} == {
            ("amqp/ssl", tls_broker.tls_port), ("https", port)}
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://localhost:{port}/api/overview") as response:
                await response.read()


# ----------------------------------------------------------------------------- command line


def test_cli_tls_flags_are_checked(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "warrenmq", "serve", "--tls-port", "0",
                          "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "--tls-port needs --tls-cert and --tls-key" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "warrenmq", "serve", "--port", "0",
                          "--tls-port", "0", "--tls-cert", str(tmp_path / "nope.pem"),
                          "--tls-key", str(tmp_path / "nope.key"),
                          "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run.stderr
    assert "cannot load certfile" in run.stderr and "nope.pem" in run.stderr
    assert "Traceback" not in run.stderr
