"""A pre-started worker for the embedded runner: import the heavy libraries once, fork per step.

Each step still runs in its own child process (its own session and process group, its own
log), with exactly the arguments the Argo template gives its container; only the ~10 s of
importing pandas, scikit-learn, MLflow and Feast is paid once per pipeline run instead of once
per step.

Protocol on a Unix socket, one connection per step: the runner sends one JSON line
`{"argv": [...], "env": {...}, "cwd": "...", "log": "..."}`; the server answers `pid N`, and
the child itself answers `exit CODE` when the step ends (no line: it was killed).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

from loopstack.core.processes import LIBRARY_SET_VARIABLES

__all__ = ["serve", "PRELOAD"]

PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "mlflow",
    "mlflow.sklearn",
    # Loads MLflow's request-header plugins, among them Feast's (~10 s): once here, not per step.
    "mlflow.tracking.request_header.registry",
    "feast",
    "loopstack.pipelines.step",
    "loopstack.pipelines.training",
    "loopstack.pipelines.registration",
    "loopstack.features.training",
)
STEP_MODULE = "loopstack.pipelines.step"


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _child(conn: socket.socket, request: dict[str, object]) -> None:
    """Become the step's process: new session, its log, its environment, its arguments."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        # Feast's import put prometheus_client in multi-process mode with a directory of this
        # server's; metrics created in the child still need it.
        kept = {k: os.environ[k] for k in LIBRARY_SET_VARIABLES if k in os.environ}
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        os.environ.update(kept)
        os.chdir(str(request["cwd"]))
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        sys.argv = [STEP_MODULE, *argv[argv.index(STEP_MODULE) + 1 :]]
        from loopstack.pipelines import step

        code = step.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {code}\n".encode())
        os._exit(code)


def serve(socket_path: Path) -> None:
    """Preload, then fork one child per request until the runner stops this process."""
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    # Children are reaped automatically; their exit codes come back over their own sockets.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener.bind(str(socket_path))
    listener.listen(64)
    listener.settimeout(1.0)
    owner = os.getppid()
    print("ready", flush=True)
    while os.getppid() == owner:  # the owner died: nobody will stop this server but itself
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        request = json.loads(_read_line(conn))
        if request.get("ping"):
            conn.sendall(b"pong\n")
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            listener.close()
            _child(conn, request)
        conn.sendall(f"pid {pid}\n".encode())
        conn.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
