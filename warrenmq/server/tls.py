"""TLS for listeners: server-side ``ssl.SSLContext``s built from a listener's ``ssl`` map,
re-read on SIGHUP, and the client-certificate identity for the EXTERNAL mechanism.

Owns the policy: TLS 1.2 is the minimum (stricter than RabbitMQ 3.10's default, which
still allows 1.0 and 1.1), Python's default cipher list (ECDHE with AES-GCM or ChaCha20
for 1.2, no RC4/3DES/CBC-SHA1 suites) unless the config names one, no compression,
no renegotiation. ``verify_peer`` asks for a client certificate and checks it against
``cafile``; ``fail_if_no_peer_cert`` refuses a handshake without one. A context is
reloaded in place (``TlsContext.reload``): the asyncio server keeps the same object and
new handshakes use the new certificate; established connections keep theirs.
Must not: know about AMQP or read the config file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("warrenmq.tls")


class TlsError(OSError):
    """A TLS listener cannot be set up (missing or unreadable certificate, bad key)."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """The plain values of a listener's ``ssl`` map (config.SslConfig)."""

    certfile: str
    keyfile: str
    cafile: str | None = None
    verify_peer: bool = False
    fail_if_no_peer_cert: bool = False
    ciphers: str = ""


class TlsContext:
    """One listener's server context, kept for reloads."""

    def __init__(self, options: TlsOptions, where: str) -> None:
        self.options = options
        self.where = where  # "127.0.0.1:5671", for messages
        # the listener as the management API shows it; port set once bound
        self.protocol = "amqp/ssl"
        self.host, _, port = where.rpartition(":")
        self.port = int(port) if port.isdigit() else 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if options.ciphers:
            self._step("set ciphers", self.context.set_ciphers, options.ciphers)
        if options.verify_peer:
            self.context.verify_mode = (ssl.CERT_REQUIRED if options.fail_if_no_peer_cert
                                        else ssl.CERT_OPTIONAL)
        self._load()

    @property
    def verify_peer(self) -> bool:
        return self.options.verify_peer

    def _step(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TlsError(f"TLS listener {self.where}: cannot {what}: {reason}") from None

    def _load(self) -> None:
        opts = self.options
        self._step(f"load certfile '{opts.certfile}' with keyfile '{opts.keyfile}'",
                   self.context.load_cert_chain, opts.certfile, opts.keyfile)
        if opts.cafile:
            self._step(f"load cafile '{opts.cafile}'", self.context.load_verify_locations,
                       opts.cafile)
        elif opts.verify_peer:
            raise TlsError(f"TLS listener {self.where}: verify_peer needs a cafile")

    def reload(self) -> bool:
        """Re-read the certificate, key and CAs (SIGHUP); on failure keep the old ones."""
        try:
            self._load()
        except TlsError as exc:
            log.error("tls_reload_failed", listener=self.where, error=str(exc))
            return False
        log.info("tls_certificates_reloaded", listener=self.where)
        return True


def peer_identity(transport: Any, login_from: str) -> str | None:
    """The EXTERNAL user name from the verified client certificate, or None.

    ``common_name``: the subject's CN. ``distinguished_name``: the whole subject as
    RabbitMQ writes it (RFC 4514 order, most significant last: "CN=c,O=o,C=GB")."""
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    subject: tuple[tuple[tuple[str, str], ...], ...] = cert.get("subject", ())
    pairs = [(key, value) for rdn in subject for key, value in rdn]
    if login_from == "common_name":
        names = [value for key, value in pairs if key == "commonName"]
        return names[-1] if names else None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
             "domainComponent": "DC", "emailAddress": "emailAddress"}
    return ",".join(f"{short.get(key, key)}={_escape(value)}" for key, value in reversed(pairs))


def _escape(value: str) -> str:
    out = "".join(f"\\{ch}" if ch in ',+"\\<>;=' else ch for ch in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    return out
