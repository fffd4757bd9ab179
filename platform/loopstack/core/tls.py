"""TLS of the servers Loopstack implements (management API, inference REST and gRPC) and of
their clients (the SDK, the CLI, the stack's health checks).

`ServerTLS` is what a server presents and whom it admits (mutual TLS when `client_ca_file` is
set); `ClientTLS` is what a client trusts and presents. Both come from `Settings` with their
paths resolved; the transports (uvicorn, gRPC, httpx) only read them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ClientTLS", "ServerTLS", "check_files", "tls_failure"]


@dataclass(frozen=True)
class ServerTLS:
    """The certificate a server presents and, for mutual TLS, the CA client certificates need."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate the client CA signed."""
        return self.client_ca_file is not None

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of `uvicorn.Config` (or `uvicorn.run`) serving HTTPS only."""
        options: dict[str, Any] = {
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
        }
        if self.client_ca_file is not None:
            options["ssl_ca_certs"] = str(self.client_ca_file)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return options


@dataclass(frozen=True)
class ClientTLS:
    """What a client trusts (a CA bundle; default httpx's, certifi) and presents (mutual TLS)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context for httpx (`verify=`) that checks the server's certificate and name."""
        if self.ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
        else:
            context = httpx.create_ssl_context()
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file or self.cert_file))
        return context


def check_files(
    files: dict[str, Path | None], pairs: list[tuple[str, str]], cas: list[str]
) -> list[str]:
    """Problems of configured TLS files, each naming its setting and the fix; [] when usable.

    Args:
        files: setting variable -> resolved path (None: unset).
        pairs: (certificate variable, key variable) that must be set together and match.
        cas: variables of CA bundles.

    Returns:
        One message per problem: a half-set pair, a missing file, an unreadable PEM.
    """
    problems = []
    for cert, key in pairs:
        if (files[cert] is None) != (files[key] is None):
            given, missing = (cert, key) if files[cert] is not None else (key, cert)
            problems.append(
                f"{given} is set but {missing} is not: set both (certificate and its private "
                "key, PEM), or neither"
            )
    for name, path in files.items():
        if path is not None and not path.is_file():
            problems.append(
                f"{name}={path} is not a file: point it at a PEM file (relative paths resolve "
                "against LOOPSTACK_PROJECT_DIR)"
            )
    if problems:
        return problems
    for cert, key in pairs:
        if files[cert] is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    str(files[cert]), str(files[key])
                )
            except (ssl.SSLError, OSError) as exc:
                problems.append(
                    f"{cert} and {key} do not load as a certificate and its private key "
                    f"({exc}): give PEM files of one key pair (the key unencrypted)"
                )
    for name in cas:
        if files[name] is not None:
            try:
                ssl.create_default_context(cafile=str(files[name]))
            except (ssl.SSLError, OSError) as exc:
                problems.append(f"{name} does not load as a PEM CA bundle ({exc})")
    return problems


def tls_failure(exc: BaseException, url: str) -> str | None:
    """What a TLS failure behind an httpx error means and how to fix it; None if not TLS."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"{url} presented a certificate this client does not trust "
                f"({cause.verify_message}): set LOOPSTACK_TLS__CA_FILE to the CA bundle that "
                "signed it (the certificate must also name the host in the URL)"
            )
        if isinstance(cause, ssl.SSLError):
            if "WRONG_VERSION_NUMBER" in (cause.reason or ""):
                return f"{url} does not speak TLS: use an http:// URL, or turn TLS on there"
            return f"TLS with {url} failed ({cause}): check the LOOPSTACK_TLS__* settings"
        cause = cause.__cause__ or cause.__context__
    return None
