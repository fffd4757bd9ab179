"""The embedded stack: which local processes `loopstack up` starts, in order, and how."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopstack.core.errors import DependencyMissing
from loopstack.core.processes import ProcessSpec, RunningProcess, Supervisor, consumer_process
from loopstack.core.settings import Settings
from loopstack.serving.stack import SERVING_START_TIMEOUT_S, serving_process

__all__ = [
    "SUPERVISOR",
    "Component",
    "StackStatus",
    "embedded_components",
    "prepare_state",
    "stack_status",
    "stack_supervisor",
    "supervised",
]

PROCESS_START_TIMEOUT_S = 120.0
"""A Python process's imports alone can take a minute on a busy 2-core machine."""


@dataclass(frozen=True)
class Component:
    """One supervised process of the embedded stack and how long it may take to start."""

    spec: ProcessSpec
    start_timeout_s: float
    ready_timeout_s: float = 0.0
    """How long `up` waits for `spec.ready_url` once it is healthy (none: no wait)."""
    not_ready_fix: str = ""
    """What the operator can do when it is not ready in time."""


def _venv_bin(program: str) -> str:
    """A console script of Loopstack's environment: beside its python, else on PATH (a
    `pip install --user` puts scripts in ~/.local/bin)."""
    path = Path(sys.executable).parent / program
    found = str(path) if path.exists() else shutil.which(program)
    if found is None:
        raise DependencyMissing(program, "reinstall loopstack (in a checkout: `make install`)")
    return found


def stack_supervisor(settings: Settings) -> Supervisor:
    """The stack's supervisor; its https health checks trust and present what the CLI does."""
    verify = settings.client_tls.ssl_context() if settings.server_tls is not None else True
    return Supervisor(settings.state_path, verify)


def prepare_state(settings: Settings) -> None:
    """Create the state directory layout the embedded components write to."""
    for sub in ("run", "logs", "mlflow/artifacts", "events", "feast", "drift", "feedback", "loop"):
        (settings.state_path / sub).mkdir(parents=True, exist_ok=True)


def _mlflow(settings: Settings) -> Component:
    state = settings.state_path / "mlflow"
    url = f"http://{settings.host}:{settings.mlflow.port}"
    argv = [
        _venv_bin("mlflow"),
        "server",
        "--host", settings.host,
        "--port", str(settings.mlflow.port),
        "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination", str(state / "artifacts"),
        "--serve-artifacts",
        "--workers", "1",
    ]  # fmt: skip
    spec = ProcessSpec(
        name="mlflow",
        argv=argv,
        url=url,
        health_url=f"{url}/health",
        port=settings.mlflow.port,
        port_setting="LOOPSTACK_MLFLOW__PORT",
        # The job runner forks ~7 huey consumers we never use; keep the stack small.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    return Component(spec, settings.mlflow.start_timeout_s)


def _api(settings: Settings) -> Component:
    url = settings.server_url(settings.api.port)
    spec = ProcessSpec(
        name="api",
        argv=[sys.executable, "-m", "loopstack.api.server"],
        url=url,
        health_url=f"{url}/healthz",
        port=settings.api.port,
        port_setting="LOOPSTACK_API__PORT",
        env=settings.as_env(),
    )
    return Component(spec, PROCESS_START_TIMEOUT_S)


def _detector_server(settings: Settings) -> Component:
    from loopstack.monitoring.detector_runtime import detector_server_spec, drift_python
    from loopstack.monitoring.errors import DriftRuntimeMissing

    try:
        python = drift_python(settings.drift.python or None, settings.project_dir.resolve())
    except DriftRuntimeMissing as exc:  # `up` reports it; status and down still work
        python = Path(exc.path)
    spec = detector_server_spec(
        settings.drift.detector_port, settings.state_path / "drift", settings.host, python
    )
    return Component(spec, 120.0)


def _consumer(settings: Settings, name: str, module: str, port: int, setting: str) -> Component:
    """A `python -m MODULE` process whose health is its `/metrics` (named, not imported: the
    CLI stays a light client that starts in a second)."""
    spec = consumer_process(name, module, settings.host, port, setting, settings.as_env())
    return Component(spec, PROCESS_START_TIMEOUT_S)


def embedded_components(settings: Settings) -> list[Component]:
    """The processes of the embedded stack, in start order."""
    components = []
    if settings.mlflow.tracking_uri is None:
        components.append(_mlflow(settings))
    if settings.drift.detector_url is None:
        components.append(_detector_server(settings))
    components += [
        _consumer(
            settings,
            "drift-consumer",
            "loopstack.monitoring.drift.consumer",
            settings.drift.metrics_port,
            "LOOPSTACK_DRIFT__METRICS_PORT",
        ),
        _consumer(
            settings,
            "feedback",
            "loopstack.monitoring.feedback.consumer",
            settings.feedback.metrics_port,
            "LOOPSTACK_FEEDBACK__METRICS_PORT",
        ),
        _consumer(
            settings,
            "loop",
            "loopstack.loop.controller",
            settings.loop.metrics_port,
            "LOOPSTACK_LOOP__METRICS_PORT",
        ),
    ]
    components.append(_api(settings))
    components.append(
        Component(
            serving_process(settings),
            SERVING_START_TIMEOUT_S,
            settings.serving.ready_timeout_s,
            "the stack is running and the server keeps loading: `loopstack status` says why, "
            "`loopstack deploy MODEL --version V --force` serves another version; a large model "
            "may need a longer LOOPSTACK_SERVING__READY_TIMEOUT_S",
        )
    )
    components.append(_supervisor(settings))
    return components


SUPERVISOR = "supervisor"
"""The component that restarts the others when they die (`loopstack.cli.supervise`)."""


def _supervisor(settings: Settings) -> Component:
    """Started last (once the others are healthy) and stopped first, so it never races `up`
    or `down`; it has no port: alive is healthy."""
    spec = ProcessSpec(
        name=SUPERVISOR,
        argv=[sys.executable, "-m", "loopstack.cli.supervise"],
        env=settings.as_env(),
        cwd=settings.project_dir,
    )
    return Component(spec, PROCESS_START_TIMEOUT_S)


def supervised(settings: Settings) -> list[ProcessSpec]:
    """The components the supervisor restarts: every one but itself."""
    return [c.spec for c in embedded_components(settings) if c.spec.name != SUPERVISOR]


@dataclass(frozen=True)
class StackStatus:
    """What `loopstack status` shows for one component."""

    name: str
    state: str
    url: str | None
    pid: int | None
    restarts: int = 0
    restarted_at: float | None = None


def stack_status(
    settings: Settings, healthy: Callable[[RunningProcess], bool] | None = None
) -> list[StackStatus]:
    """State of every embedded component: healthy, unhealthy, restarting (died; the supervisor
    starts it again), stale (died, and no supervisor runs) or stopped."""
    supervisor = stack_supervisor(settings)
    watching = (found := supervisor.read(SUPERVISOR)) is not None and found.alive()
    rows = []
    for component in embedded_components(settings):
        spec = component.spec
        running = supervisor.read(spec.name)
        if running is None:
            rows.append(StackStatus(spec.name, "stopped", spec.url, None))
            continue
        if not running.alive():
            state = "restarting" if watching and spec.name != SUPERVISOR else "stale"
        else:
            ok = healthy(running) if healthy else running.healthy(supervisor.verify)
            state = "healthy" if ok else "unhealthy"
        rows.append(
            StackStatus(
                spec.name, state, spec.url, running.pid, running.restarts, running.restarted_at
            )
        )
    return rows
