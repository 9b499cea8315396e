"""RabbitMQ's certificate-expiration health check over the broker's TLS listeners.

``GET /api/health/checks/certificate-expiration/{within}/{unit}`` (units ``days``,
``weeks``, ``months`` = 30 days, ``years`` = 365 days, any case; ``within`` an integer,
as RabbitMQ 3.10.8 reads them): 200 ``{"status": "ok"}`` when no certificate of any TLS
listener (amqps and the management's HTTPS) expires before now + the period, else 503
``{"status": "failed", "reason": "Certificates expiring", "expired": [...]}`` with one
object per such listener, its ``certfile_expires_on``/``cacertfile_expires_on`` listing
the expiry (UTC, RabbitMQ's ``2027-01-01 8:44:41`` format) of each certificate in those
files that expires in the window — the shape a 3.10.8 node answers. The files are read
on every request (as RabbitMQ does), so a renewed certificate shows without a reload.
A file that cannot be read or parsed fails the check with the file and the reason
(RabbitMQ answers 500 then). Dates come from a small DER walk to the validity field,
so no certificate library is needed at run time. Owns nothing; must not change state.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq.management.auth import bad_request
from warrenmq.management.edge import TlsListenerView

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

UNIT_DAYS = {"days": 1, "weeks": 7, "months": 30, "years": 365}
_NUMBER = re.compile(r"[+-]?[0-9]+")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class CertificateError(ValueError):
    """A certificate file that cannot be read or parsed."""


def deadline(within: str, unit: str, now: datetime) -> datetime:
    """Now plus the window asked for (clamped to the calendar for absurd numbers); 400
    with RabbitMQ's words for a bad number or unit."""
    if not _NUMBER.fullmatch(within):
        raise bad_request("Invalid expiration value.")
    days = UNIT_DAYS.get(unit.lower())
    if days is None:
        raise bad_request("Time unit not recognised. Supported units: days, weeks, months,"
                          " years.")
    try:
        return now + timedelta(days=int(within) * days)
    except OverflowError:
        edge = datetime.max if not within.startswith("-") else datetime.min
        return edge.replace(tzinfo=UTC)


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``pos``."""
    if pos + 2 > len(der):
        raise CertificateError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(der):
            raise CertificateError("bad DER length")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise CertificateError("truncated DER")
    return tag, pos, pos + length


def _time(tag: int, text: bytes) -> datetime:
    value = text.decode("ascii")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280)
        parsed = datetime.strptime(value, "%y%m%d%H%M%SZ")
        if parsed.year >= 2050:
            parsed = parsed.replace(year=parsed.year - 100)
    elif tag == 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        parsed = datetime.strptime(value, "%Y%m%d%H%M%SZ")
    else:
        raise CertificateError(f"unexpected time tag {tag:#x}")
    return parsed.replace(tzinfo=UTC)


def not_after(der: bytes) -> datetime:
    """The ``notAfter`` of one DER certificate (Certificate > TBSCertificate > Validity)."""
    try:
        _, pos, _ = _tlv(der, 0)  # Certificate
        _, pos, _ = _tlv(der, pos)  # TBSCertificate
        tag, start, end = _tlv(der, pos)
        if tag == 0xA0:  # [0] version: optional
            pos = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, pos = _tlv(der, pos)
        _, pos, _ = _tlv(der, pos)  # Validity
        _, _, pos = _tlv(der, pos)  # notBefore
        tag, start, end = _tlv(der, pos)  # notAfter
        return _time(tag, der[start:end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise CertificateError(f"not an X.509 certificate ({exc})") from None


def expiry_dates(path: str) -> list[datetime]:
    """Every certificate's ``notAfter`` in a PEM file, in file order."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise CertificateError(f"cannot read '{path}': {exc.strerror or exc}") from None
    blocks = _PEM.findall(text)
    if not blocks:
        raise CertificateError(f"no PEM certificate in '{path}'")
    try:
        return [not_after(ssl.PEM_cert_to_DER_cert(block)) for block in blocks]
    except (CertificateError, ValueError) as exc:
        raise CertificateError(f"'{path}': {exc}") from None


def rabbit_date(moment: datetime) -> str:
    """RabbitMQ's rendering: zero-padded date and minutes/seconds, the hour not."""
    m = moment.astimezone(UTC)
    return f"{m.year}-{m.month:02}-{m.day:02} {m.hour}:{m.minute:02}:{m.second:02}"


def expiring(listener: TlsListenerView, node: str, deadline: datetime) -> dict[str, Any] | None:
    """RabbitMQ's object for a listener with a certificate expiring before ``deadline``."""
    certfile, cafile = listener.options.certfile, listener.options.cafile
    certs = [rabbit_date(d) for d in expiry_dates(certfile) if d < deadline]
    cas = [rabbit_date(d) for d in expiry_dates(cafile) if d < deadline] if cafile else []
    if not certs and not cas:
        return None
    return {"cacertfile": cafile, "cacertfile_expires_on": cas, "certfile": certfile,
            "certfile_expires_on": certs, "interface": listener.host, "node": node,
            "port": listener.port, "protocol": listener.protocol}


def add_certificate_route(app: web.Application, mgmt: ManagementServer) -> None:
    async def check(request: web.Request) -> web.Response:
        mgmt.principal(request)
        until = deadline(request.match_info["within"], request.match_info["unit"],
                         datetime.now(UTC))
        node = mgmt.server.cluster_name
        found: list[dict[str, Any]] = []
        for listener in list(mgmt.server.tls_contexts):
            try:
                entry = expiring(listener, node, until)
            except CertificateError as exc:
                return web.json_response(
                    {"status": "failed", "reason": f"Certificate unreadable: {exc}",
                     "listener": {"interface": listener.host, "port": listener.port,
                                  "protocol": listener.protocol, "node": node}}, status=503)
            if entry is not None:
                found.append(entry)
        if found:
            return web.json_response({"status": "failed", "reason": "Certificates expiring",
                                      "expired": found}, status=503)
        return web.json_response({"status": "ok"})

    app.router.add_get("/api/health/checks/certificate-expiration/{within}/{unit}", check)
