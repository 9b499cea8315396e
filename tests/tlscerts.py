"""Certificates made by the tests (the ``cryptography`` package): a CA, a server
certificate for 127.0.0.1/localhost, client certificates (valid, expired, from another
CA), written as PEM files. Small EC keys keep generation fast."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass
class Issued:
    cert: Path
    key: Path


def _name(cn: str, org: str = "WarrenMQ tests") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(folder: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(cert_path, key_path)


class Authority:
    def __init__(self, folder: Path, name: str, days: float = 30) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - datetime.timedelta(days=1))
                     .not_valid_after(NOW + datetime.timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.path = _write(folder, name, self.cert, self.key).cert

    def issue(self, stem: str, cn: str, *, server: bool = False, expired: bool = False,
              days: float = 30) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start = NOW - datetime.timedelta(days=10 if expired else 1)
        end = NOW - datetime.timedelta(days=1) if expired else NOW + datetime.timedelta(days=days)
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                     False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        return _write(self.folder, stem, builder.sign(self.key, hashes.SHA256()), key)


@dataclasses.dataclass
class CertSet:
    ca: Path
    server: Issued
    client: Issued  # CN=guest
    expired: Issued
    foreign: Issued  # signed by another CA
    foreign_ca: Path


def make_certs(folder: Path) -> CertSet:
    folder.mkdir(parents=True, exist_ok=True)
    ca = Authority(folder, "ca")
    other = Authority(folder, "other-ca")
    return CertSet(ca=ca.path, server=ca.issue("server", "localhost", server=True),
                   client=ca.issue("client", "guest"),
                   expired=ca.issue("expired", "guest", expired=True),
                   foreign=other.issue("foreign", "guest"), foreign_ca=other.path)
