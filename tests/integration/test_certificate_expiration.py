"""RabbitMQ's certificate-expiration health check against real TLS listeners.

Two amqps listeners with certificates made here: one valid for 400 days, one expiring in
10 days; ``/api/health/checks/certificate-expiration/{within}/{unit}`` must answer as a
RabbitMQ 3.10.8 node with a TLS listener did (shapes, units, date format and 400 texts
checked on such a node): ok inside 1 week, the 10-day listener (only) within 2 weeks,
both and the CA within 2 years. A certificate file removed under a running broker fails
the check with the file named, not a 500. The DER reader is checked against the
``cryptography`` package for UTCTime and GeneralizedTime dates.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import make_config
from tests.mgmthttp import Http
from tests.tlscerts import Authority, Issued
from warrenmq.app import start
from warrenmq.config import ListenerConfig, ManagementConfig, SslConfig
from warrenmq.management.certificates import expiry_dates, rabbit_date
from warrenmq.server.listener import Server

CHECK = "/api/health/checks/certificate-expiration"


@dataclasses.dataclass
class Setup:
    server: Server
    http: Http
    ca: Path
    lasting: Issued
    soon: Issued
    lasting_port: int
    soon_port: int


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    folder = tmp_path / "certs"
    folder.mkdir()
    ca = Authority(folder, "ca", days=500)
    lasting = ca.issue("lasting", "localhost", server=True, days=400)
    soon = ca.issue("soon", "localhost", server=True, days=10)

    def ssl_map(issued: Issued) -> SslConfig:
        return SslConfig(certfile=str(issued.cert), keyfile=str(issued.key), cafile=str(ca.path))

    config = dataclasses.replace(make_config(tmp_path), listeners=(
        ListenerConfig("127.0.0.1", 0), ListenerConfig("127.0.0.1", 0, ssl=ssl_map(lasting)),
        ListenerConfig("127.0.0.1", 0, ssl=ssl_map(soon))),
        management=ManagementConfig(port=0))
    server = await start(config)
    ports = {Path(c.options.certfile).stem: c.port for c in server.tls_contexts}
    assert server.management_port
    yield Setup(server, Http(server.management_port), ca.path, lasting, soon,
                ports["lasting"], ports["soon"])
    await server.close(grace=2.0)


def expires_on(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return rabbit_date(cert.not_valid_after_utc)


async def test_inside_and_outside_the_window(setup: Setup) -> None:
    http = setup.http
    for ok in ("1/weeks", "9/days", "-3/days", "1/DAYS", "0/years"):
        reply = await http.get(f"{CHECK}/{ok}")
        assert (reply.status, reply.json) == (200, {"status": "ok"}), (ok, reply)
    reply = await http.get(f"{CHECK}/2/weeks")
    assert reply.status == 503, reply
    assert reply.json == {"status": "failed", "reason": "Certificates expiring", "expired": [{
        "cacertfile": str(setup.ca), "cacertfile_expires_on": [],
        "certfile": str(setup.soon.cert), "certfile_expires_on": [expires_on(setup.soon.cert)],
        "interface": "127.0.0.1", "node": setup.server.cluster_name, "port": setup.soon_port,
        "protocol": "amqp/ssl"}]}
    # 2 years: both listeners, and the CA (500 days) of each
    reply = await http.get(f"{CHECK}/2/years")
    assert reply.status == 503
    expired = {e["port"]: e for e in reply.json["expired"]}
    assert set(expired) == {setup.soon_port, setup.lasting_port}
    lasting = expired[setup.lasting_port]
    assert lasting["certfile_expires_on"] == [expires_on(setup.lasting.cert)]
    assert lasting["cacertfile_expires_on"] == [expires_on(setup.ca)]
    # months are 30 days and years 365, as RabbitMQ counts them
    async def ports(within: str) -> set[int]:
        return {e["port"] for e in (await http.get(f"{CHECK}/{within}")).json["expired"]}

    assert await ports("13/months") == {setup.soon_port}  # 390 days < 400
    assert await ports("14/months") == {setup.soon_port, setup.lasting_port}  # 420 days
    assert await ports("1/years") == {setup.soon_port}  # 365 days
    assert len(await ports("99999999999999999999/years")) == 2  # no overflow, as RabbitMQ
    assert (await http.get(f"{CHECK}/-99999999999999999999/days")).status == 200


async def test_bad_number_or_unit_is_400_as_rabbitmq(setup: Setup) -> None:
    cases = {
        "x/days": "Invalid expiration value.",
        "1.5/days": "Invalid expiration value.",
        "x/hours": "Invalid expiration value.",
        "1/hours": "Time unit not recognised. Supported units: days, weeks, months, years.",
        "1/day": "Time unit not recognised. Supported units: days, weeks, months, years.",
    }
    for path, reason in cases.items():
        reply = await setup.http.get(f"{CHECK}/{path}")
        assert (reply.status, reply.json) == (400, {"error": "bad_request",
                                                    "reason": reason}), path
    unauthenticated = await setup.http.as_user("guest", "wrong").get(f"{CHECK}/1/days")
    assert unauthenticated.status == 401


async def test_unreadable_certificate_fails_with_the_file_named(setup: Setup) -> None:
    setup.soon.cert.unlink()  # the listener keeps its loaded certificate; the file is gone
    reply = await setup.http.get(f"{CHECK}/1/days")
    assert reply.status == 503
    body: dict[str, Any] = reply.json
    assert body["status"] == "failed"
    assert str(setup.soon.cert) in body["reason"] and "Traceback" not in reply.text
    assert body["listener"]["port"] == setup.soon_port


def test_der_dates_match_cryptography(tmp_path: Path) -> None:
    """UTCTime (before 2050) and GeneralizedTime (2050 on), several certificates a file."""
    ca = Authority(tmp_path, "ca", days=40 * 365)  # GeneralizedTime: after 2049
    near = ca.issue("near", "a", days=3)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(near.cert.read_bytes() + ca.path.read_bytes())
    wanted = [x509.load_pem_x509_certificate(p.read_bytes()).not_valid_after_utc
              for p in (near.cert, ca.path)]
    assert wanted[1].year >= 2050
    assert expiry_dates(str(chain)) == [w.replace(microsecond=0) for w in wanted]
    assert rabbit_date(datetime.datetime(2027, 1, 1, 8, 4, 5, tzinfo=datetime.UTC)) \
        == "2027-01-01 8:04:05"  # RabbitMQ 3.10.8's rendering
