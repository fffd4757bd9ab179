"""The runner's side of the fork server: start it, run a step through it, stop it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loopstack.core.processes import stop_group

__all__ = ["ForkServer"]


class ForkServer:
    """A running fork server; `run` blocks until the step's child exits."""

    @classmethod
    def attach(cls, socket_path: Path) -> ForkServer | None:
        """A fork server another process owns (stopping it is the owner's job), if it answers."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(socket_path))
                probe.sendall(b'{"ping": true}\n')
                if probe.makefile("rb").readline().strip() != b"pong":
                    return None
        except OSError:
            return None
        server = cls.__new__(cls)
        server._dir = None
        server.socket_path = socket_path
        server._proc = None
        return server

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self._dir: str | None = tempfile.mkdtemp(prefix="loopstack-fork-")
        self.socket_path = Path(self._dir) / "fork.sock"
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "loopstack.pipelines.forkserver", str(self.socket_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the server has preloaded; False if it died."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if line.strip() == b"ready":
                return True
            if not line and self._proc.poll() is not None:
                return False
        return False

    def run(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        log: str,
        on_pid: Callable[[int], None],
    ) -> int:
        """Run one step in a forked child; return its exit code (-9 if it was killed)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(self.socket_path))
            request = {"argv": argv, "env": env, "cwd": str(cwd), "log": log}
            conn.sendall(json.dumps(request).encode() + b"\n")
            reader = conn.makefile("rb")
            first = reader.readline().split()
            if len(first) != 2 or first[0] != b"pid":
                return -1
            on_pid(int(first[1]))
            last = reader.readline().split()
            return int(last[1]) if len(last) == 2 and last[0] == b"exit" else -9

    def alive(self) -> bool:
        """Whether the server process (started here) still runs."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop a server started here (children run in their own sessions: the runner stops
        them); an attached one is left to its owner."""
        if self._proc is None or self._dir is None:
            return
        stop_group(self._proc.pid, grace=3)
        try:
            os.unlink(self.socket_path)
            os.rmdir(self._dir)
        except OSError:
            pass
