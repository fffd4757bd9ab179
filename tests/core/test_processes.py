"""Process supervision: groups are stopped whole, pid reuse is detected, ports are checked."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from loopstack.core.errors import ComponentNotReady, PortInUse, StalePidFile
from loopstack.core.processes import (
    ProcessSpec,
    RunningProcess,
    Supervisor,
    free_port,
    pid_alive,
    port_is_free,
)
from loopstack.core.watchdog import Watchdog

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


# Answers /live 200 and /ready 503 with what it waits for until the file argv[2] exists, then 200.
LOADING = """
import http.server, json, os, sys
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        done = self.path == "/live" or os.path.exists(sys.argv[2])
        body = json.dumps({"ready": done} if done else
                          {"ready": False, "error": "model 'm' revision 1 is loading: v1 (champion)"})
        self.send_response(200 if done else 503)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


def test_waiting_for_ready_says_what_it_waits_for_and_times_out_naming_it(tmp_path: Path) -> None:
    port, loaded = free_port(), tmp_path / "loaded"
    url = f"http://127.0.0.1:{port}"
    supervisor = Supervisor(tmp_path)
    spec = ProcessSpec(
        name="server",
        argv=[sys.executable, "-c", LOADING, str(port), str(loaded)],
        health_url=f"{url}/live",
        ready_url=f"{url}/ready",
    )
    running = supervisor.start(spec)
    try:
        supervisor.wait_healthy(running, timeout=30)  # alive and answering: healthy ...
        seen: list[str] = []
        with pytest.raises(ComponentNotReady) as refused:  # ... but not ready
            supervisor.wait_ready(
                running, f"{url}/ready", 1.5, "deploy another version", lambda _s, r: seen.append(r)
            )
        message = str(refused.value)
        assert "server did not become ready within 2s" in message
        assert "model 'm' revision 1 is loading: v1 (champion)" in message
        assert "deploy another version" in message and running.log in message
        assert seen and seen[-1] == "model 'm' revision 1 is loading: v1 (champion)"
        loaded.touch()
        supervisor.wait_ready(running, f"{url}/ready", 10, "unused")
    finally:
        supervisor.stop("server", grace=2)


def _killed(running: RunningProcess) -> None:
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_watchdog_restarts_a_dead_process_with_back_off(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    spec = ProcessSpec(name="sleeper", argv=["sleep", "60"])
    watchdog = Watchdog(supervisor, [spec], backoff_s=1.0, max_backoff_s=60.0, stable_s=30.0)
    first = supervisor.start(spec)
    try:
        assert watchdog.check(0.0) == []  # alive: nothing to do
        _killed(first)
        assert watchdog.check(1.0) == []  # died: first restart after 1 s
        assert watchdog.check(2.0) == ["sleeper"]
        second = supervisor.read("sleeper")
        assert second is not None and second.alive() and second.pid != first.pid
        assert second.restarts == 1 and second.restarted_at is not None
        _killed(second)
        assert watchdog.check(3.0) == []  # died again at once: 2 s now
        assert watchdog.check(4.5) == []
        assert watchdog.check(5.0) == ["sleeper"]
        third = supervisor.read("sleeper")
        assert third is not None and third.restarts == 2
        assert watchdog.check(40.0) == [] and watchdog.check(71.0) == []  # stayed up: reset
        _killed(third)
        assert watchdog.check(72.0) == [] and watchdog.check(73.0) == ["sleeper"]
    finally:
        supervisor.stop("sleeper", grace=2)


def test_the_watchdog_leaves_a_stopped_process_alone(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    spec = ProcessSpec(name="sleeper", argv=["sleep", "60"])
    watchdog = Watchdog(supervisor, [spec], backoff_s=0.0)
    supervisor.start(spec)
    assert supervisor.stop("sleeper", grace=2)  # what `loopstack down` does
    assert watchdog.check(10.0) == [] and supervisor.read("sleeper") is None
