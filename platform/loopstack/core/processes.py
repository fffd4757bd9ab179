"""Supervised local processes: start in their own process group, pid files, health, stop.

The embedded stack and the tests both use this, so `loopstack down` and a test teardown stop
exactly the process groups they started and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loopstack.core.errors import ComponentNotReady, ConfigurationError, PortInUse, StalePidFile
from loopstack.core.tls import tls_failure

__all__ = [
    "stop_on_signals",
    "consumer_process",
    "ProcessSpec",
    "RunningProcess",
    "Supervisor",
    "free_port",
    "http_healthy",
    "pid_alive",
    "port_is_free",
    "ready_reason",
]


# Set by libraries on import (Feast points it at a temp dir that dies with the importing
# process); a child that inherits it crashes or silently switches prometheus_client to
# multi-process mode.
LIBRARY_SET_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def child_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, minus what libraries set here on import."""
    env = {k: v for k, v in os.environ.items() if k not in LIBRARY_SET_VARIABLES}
    env.update(extra or {})
    return env


def stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set: a long-running process's signal to finish and close."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def consumer_process(
    name: str, module: str, host: str, port: int, port_setting: str, env: Mapping[str, str]
) -> ProcessSpec:
    """`python -m MODULE` as a supervised process whose health is its `/metrics` on `port`."""
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-m", module],
        health_url=f"http://{host}:{port}/metrics",
        port=port,
        port_setting=port_setting,
        env=dict(env),
        url=f"http://{host}:{port}",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


Verify = ssl.SSLContext | bool
"""What an https health check trusts (httpx's `verify`); plain http ignores it."""


def http_healthy(
    url: str, timeout: float = 2.0, verify: Verify = True, raise_tls: bool = False
) -> bool:
    """Whether `url` answers 2xx; with `raise_tls`, a TLS failure (waiting will not fix it)
    raises a `ConfigurationError` naming the fix instead."""
    try:
        return httpx.get(url, timeout=timeout, verify=verify).is_success
    except httpx.HTTPError as exc:
        if raise_tls and (reason := tls_failure(exc, url)) is not None:
            raise ConfigurationError(reason) from exc
        return False


def ready_reason(url: str, timeout: float = 2.0, verify: Verify = True) -> str | None:
    """None when `url` answers 2xx, else why not: the answer's `error` (a readiness endpoint
    says what it waits for), its body, or why it did not answer."""
    try:
        answer = httpx.get(url, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        return f"no answer from {url} ({type(exc).__name__})"
    if answer.is_success:
        return None
    try:
        reason = answer.json().get("error")
    except (ValueError, AttributeError):
        reason = None
    return str(reason or answer.text.strip() or f"HTTP {answer.status_code}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _start_time(pid: int) -> str | None:
    """Kernel start time of a pid: tells a reused pid from the process we started."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class ProcessSpec:
    """A long-running process the supervisor starts."""

    name: str
    argv: Sequence[str]
    health_url: str | None = None
    port: int | None = None
    port_setting: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = None
    ready_url: str | None = None
    """Answers 2xx once the process can do its work (healthy is only alive and answering):
    `loopstack up` waits for it after health, with what it waits for."""

    @property
    def host(self) -> str:
        """The host its URL names (where its port is checked)."""
        return _host_of(self)


@dataclass(frozen=True)
class RunningProcess:
    """What a pid file records about a started process."""

    name: str
    pid: int
    start_time: str | None
    argv: list[str]
    url: str | None
    health_url: str | None
    log: str
    restarts: int = 0
    """How often the supervisor (or `loopstack up`) started it again after it died."""
    restarted_at: float | None = None
    """Wall-clock time of the last such restart."""

    def alive(self) -> bool:
        """Whether this exact process (not a reused pid) still runs."""
        return pid_alive(self.pid) and _start_time(self.pid) == self.start_time

    def healthy(self, verify: Verify = True) -> bool:
        """Alive and, if it has a health URL, answering it."""
        return self.alive() and (
            self.health_url is None or http_healthy(self.health_url, verify=verify)
        )


class Supervisor:
    """Starts, tracks and stops process groups under a state directory.

    `verify` is what https health checks trust (and present, for mutual TLS).
    """

    def __init__(self, state_dir: Path, verify: Verify = True) -> None:
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"
        self.verify = verify

    def pid_file(self, name: str) -> Path:
        """Path of a component's pid file."""
        return self.run_dir / f"{name}.pid"

    def read(self, name: str) -> RunningProcess | None:
        """The recorded process of a component, if a pid file exists."""
        path = self.pid_file(name)
        if not path.is_file():
            return None
        try:
            return RunningProcess(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)
            return None

    def recorded(self) -> list[RunningProcess]:
        """Every process with a pid file."""
        if not self.run_dir.is_dir():
            return []
        found = (self.read(p.stem) for p in sorted(self.run_dir.glob("*.pid")))
        return [p for p in found if p is not None]

    def check_can_start(self, spec: ProcessSpec) -> RunningProcess | None:
        """Return the running process if already up; raise if a stale pid file or port blocks it."""
        current = self.read(spec.name)
        if current is not None:
            if current.alive():
                return current
            raise StalePidFile(spec.name, str(self.pid_file(spec.name)), current.pid)
        if spec.port is not None:
            host = _host_of(spec)
            if not port_is_free(host, spec.port):
                raise PortInUse(spec.name, host, spec.port, spec.port_setting or "its port setting")
        return None

    def clear_dead(self, name: str) -> RunningProcess | None:
        """Forget a recorded process that died: stop what is left of its group (children that
        would hold its port) and remove its pid file. Returns the dead record, else None."""
        current = self.read(name)
        if current is None or current.alive():
            return None
        self.stop_leftovers(current)
        self.pid_file(name).unlink(missing_ok=True)
        return current

    @staticmethod
    def stop_leftovers(dead: RunningProcess) -> None:
        """Stop what is left of a dead process's group: children that would hold its port."""
        if not pid_alive(dead.pid):  # a group id is not reused while its leader's pid is free
            stop_group(dead.pid, grace=5)

    def restart(self, spec: ProcessSpec, dead: RunningProcess) -> RunningProcess:
        """Start a process again after it died, counting the restart in its pid file."""
        return self.start(spec, restarts=dead.restarts + 1, restarted_at=time.time())

    def start(
        self, spec: ProcessSpec, restarts: int = 0, restarted_at: float | None = None
    ) -> RunningProcess:
        """Start a process in a new session (its own process group) and record it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = child_environ(spec.env)
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(spec.argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=spec.cwd,
                    env=env,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ConfigurationError(
                    f"{spec.name}: cannot run {spec.argv[0]!r} ({exc.strerror}); run `make install`"
                ) from exc
        running = RunningProcess(
            name=spec.name,
            pid=proc.pid,
            start_time=_start_time(proc.pid),
            argv=list(spec.argv),
            url=spec.url,
            health_url=spec.health_url,
            log=str(log_path),
            restarts=restarts,
            restarted_at=restarted_at,
        )
        # Atomic: a reader (status, the supervisor) must never see half a file, which it drops.
        tmp = self.pid_file(spec.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(running.__dict__))
        tmp.replace(self.pid_file(spec.name))
        return running

    def wait_healthy(
        self,
        running: RunningProcess,
        timeout: float,
        tick: Callable[[float], None] | None = None,
    ) -> None:
        """Block until the process answers its health URL; raise with its log tail if it dies."""
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            if not running.alive():
                raise ConfigurationError(
                    f"{running.name} exited while starting; last log lines:\n{_tail(running.log)}"
                )
            if running.health_url is None or http_healthy(
                running.health_url, 1.0, self.verify, raise_tls=True
            ):
                return
            if tick is not None:
                tick(time.monotonic() - started)
            time.sleep(0.25)
        raise ConfigurationError(
            f"{running.name} did not become healthy within {timeout:.0f}s "
            f"(see {running.log}); last log lines:\n{_tail(running.log)}"
        )

    def wait_ready(
        self,
        running: RunningProcess,
        ready_url: str,
        timeout: float,
        fix: str,
        tick: Callable[[float, str], None] | None = None,
    ) -> None:
        """Block until `ready_url` answers 2xx; `tick` gets the seconds waited and why it is not
        ready yet; `fix` ends the timeout's message (what the operator can do).

        Raises:
            ConfigurationError: the process died meanwhile (with its log tail).
            ComponentNotReady: still not ready after `timeout`, naming the last reason.
        """
        started = time.monotonic()
        reason = "not asked yet"
        while time.monotonic() - started < timeout:
            if not running.alive():
                raise ConfigurationError(
                    f"{running.name} exited while loading; last log lines:\n{_tail(running.log)}"
                )
            reason = ready_reason(ready_url, 5.0, self.verify) or ""
            if not reason:
                return
            if tick is not None:
                tick(time.monotonic() - started, reason)
            time.sleep(0.5)
        raise ComponentNotReady(running.name, timeout, reason, f"{fix} (log: {running.log})")

    def stop(self, name: str, grace: float = 10.0) -> bool:
        """Stop a component's whole process group; remove its pid file. True if it was running."""
        running = self.read(name)
        if running is None:
            return False
        was_running = running.alive()
        if was_running:
            stop_group(running.pid, grace)
        self.pid_file(name).unlink(missing_ok=True)
        return was_running


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                _reap(pid)
                return
            time.sleep(0.1)
    _reap(pid)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _host_of(spec: ProcessSpec) -> str:
    url = spec.url or spec.health_url or ""
    return url.split("://", 1)[-1].split(":", 1)[0] or "127.0.0.1"


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
