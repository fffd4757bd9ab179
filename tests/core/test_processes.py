"""Process supervision: groups are stopped whole, pid reuse is detected, ports are checked."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from loopstack.core.errors import PortInUse, StalePidFile
from loopstack.core.processes import ProcessSpec, Supervisor, free_port, pid_alive, port_is_free

# A parent that forks a grandchild: stopping the group must take both.
FORKING = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    running = supervisor.start(ProcessSpec(name="forker", argv=[sys.executable, "-c", FORKING]))
    deadline = time.monotonic() + 10
    while not _children_of(running.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (grandchild,) = _children_of(running.pid)
    assert supervisor.stop("forker", grace=5)
    assert not pid_alive(running.pid) and not pid_alive(grandchild)
    assert supervisor.read("forker") is None


def test_a_reused_pid_is_not_taken_for_our_process(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    running = supervisor.start(ProcessSpec(name="sleeper", argv=["sleep", "30"]))
    try:
        record = (
            supervisor.pid_file("sleeper")
            .read_text()
            .replace(f'"start_time": "{running.start_time}"', '"start_time": "0"')
        )
        supervisor.pid_file("sleeper").write_text(record)
        with pytest.raises(StalePidFile, match="loopstack down"):
            supervisor.check_can_start(ProcessSpec(name="sleeper", argv=["sleep", "30"]))
    finally:
        from loopstack.core.processes import stop_group

        stop_group(running.pid, grace=2)


def test_port_in_use_is_detected_before_starting(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        assert not port_is_free("127.0.0.1", port)
        spec = ProcessSpec(
            name="x",
            argv=["true"],
            port=port,
            url=f"http://127.0.0.1:{port}",
            port_setting="X_PORT",
        )
        with pytest.raises(PortInUse, match="X_PORT"):
            Supervisor(tmp_path).check_can_start(spec)
    assert port_is_free("127.0.0.1", port)


def test_a_process_dying_at_start_reports_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    spec = ProcessSpec(
        name="crasher",
        argv=[sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        health_url="http://127.0.0.1:1/health",
    )
    running = supervisor.start(spec)
    with pytest.raises(Exception, match="boom: bad config"):
        supervisor.wait_healthy(running, timeout=20)
