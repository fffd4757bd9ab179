"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1 and localhost, a
client certificate of that CA, and a second CA nobody trusts (with a client of its own)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CLOSED_WITHOUT_ANSWER", "Pki", "make_pki"]

# A TLS server hangs up on a plaintext request or a refused client certificate; whether the
# client then reads an orderly close or a reset depends on timing, and both mean "no answer".
CLOSED_WITHOUT_ANSWER = (httpx.RemoteProtocolError, httpx.ReadError)


@dataclass(frozen=True)
class Pki:
    """PEM files of the test PKI."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    """A certificate: a CA when `issuer` is None (self-signed), else a leaf with `usage`."""
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        ).add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(signer, hashes.SHA256())


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(folder: Path) -> Pki:
    """Write the PKI's PEM files into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}
    plan = [
        ("ca", None, None),
        ("server", "ca", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", "ca", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("rogue-ca", None, None),
        ("rogue-client", "rogue-ca", ExtendedKeyUsageOID.CLIENT_AUTH),
    ]
    for name, issuer, usage in plan:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"loopstack-test-{name}", key, made[issuer] if issuer else None, usage)
        made[name] = (cert, key)
        _write(folder, name, cert, key)
    return Pki(
        ca=folder / "ca.crt",
        cert=folder / "server.crt",
        key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        rogue_ca=folder / "rogue-ca.crt",
        rogue_client_cert=folder / "rogue-client.crt",
        rogue_client_key=folder / "rogue-client.key",
    )
