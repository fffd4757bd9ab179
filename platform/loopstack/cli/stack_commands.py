"""`loopstack up`, `down` and `status`: the only commands that act on local processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from loopstack.cli.output import console
from loopstack.cli.stack import (
    SUPERVISOR,
    Component,
    StackStatus,
    embedded_components,
    prepare_state,
    stack_status,
    stack_supervisor,
)
from loopstack.core.errors import ConfigurationError, DependencyMissing, LoopstackError
from loopstack.core.modelspec import scan_model_specs
from loopstack.core.processes import RunningProcess, Supervisor
from loopstack.core.settings import Settings
from loopstack.monitoring.detector_runtime import DRIFT_PYTHON_ENV

__all__ = ["down", "status", "up"]

_FIRST = ("mlflow", "drift")
"""Components the others call: started (and awaited) before the rest."""
_STYLE = {
    "healthy": "green",
    "unhealthy": "yellow",
    "restarting": "yellow",
    "stale": "red",
    "stopped": "dim",
}


def up(settings: Settings) -> None:
    """Start every component not yet running; on failure stop what this call started."""
    if settings.backend != "embedded":
        raise ConfigurationError(
            "`loopstack up` runs the embedded stack; with backend=kubernetes install the Helm "
            "chart instead (see README), or set LOOPSTACK_BACKEND=embedded"
        )
    _check_tls(settings)
    _ensure_drift_runtime(settings)
    supervisor = stack_supervisor(settings)
    components = embedded_components(settings)
    prepare_state(settings)
    for component in components:
        program = component.spec.argv[0]
        if not Path(program).is_file():
            raise DependencyMissing(
                f"{component.spec.name} ({program})",
                "reinstall loopstack (in a checkout: `make install`)",
            )
    dead = _clear_dead(supervisor, components)
    for component in components:
        if (running := supervisor.check_can_start(component.spec)) is not None:
            console.print(
                f"{component.spec.name} already running (pid {running.pid}) at {running.url}"
            )
    started: list[str] = []
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            # Servers the others call (MLflow, the detector server) start first, and Feast is
            # applied while they boot; then the rest start together, and the supervisor once
            # they are healthy (it would otherwise restart one still starting). Each is awaited.
            pending = [c for c in components if supervisor.read(c.spec.name) is None]
            first = [c for c in pending if c.spec.name in _FIRST]
            last = [c for c in pending if c.spec.name == SUPERVISOR]
            rest = [c for c in pending if c not in first and c not in last]
            for group in (first, rest, last):
                launched = [(c, _start(supervisor, c, progress, dead)) for c in group]
                started.extend(c.spec.name for c in group)
                if group is first:
                    _apply_features(settings, progress)
                for component, (running, task) in launched:
                    _await(supervisor, component, running, task, progress)
    except BaseException:
        for name in reversed(started):
            supervisor.stop(name)
        raise
    # Not inside the rollback above: a version that does not load must leave the stack up, so
    # the operator can deploy another one through the API.
    not_ready = _await_ready(supervisor, components)
    status(settings)
    if not_ready is not None:
        raise not_ready


def _ensure_drift_runtime(settings: Settings) -> None:
    """The first `up` of a user installs the drift runtime (once, from the shipped lock); a
    configured interpreter that does not exist is an error naming the setting instead."""
    from loopstack.monitoring.detector_runtime import drift_python
    from loopstack.monitoring.drift_env import install_drift_runtime
    from loopstack.monitoring.errors import DriftRuntimeMissing

    if settings.drift.detector_url is not None:
        return
    try:
        drift_python(settings.drift.python, settings.project_dir.resolve())
    except DriftRuntimeMissing as exc:
        if settings.drift.python is not None or os.environ.get(DRIFT_PYTHON_ENV):
            raise
        console.print(f"{exc}: installing it now (once; `loopstack drift-runtime install`)")
        install_drift_runtime(say=console.print)


def _check_tls(settings: Settings) -> None:
    """Mutual TLS refuses the stack's own health checks unless they present a certificate."""
    if settings.tls.client_ca_file is not None and settings.tls.client_cert_file is None:
        raise ConfigurationError(
            "mutual TLS is on (LOOPSTACK_TLS__CLIENT_CA_FILE), so the stack's health checks and "
            "the CLI need a client certificate: set LOOPSTACK_TLS__CLIENT_CERT_FILE and "
            "LOOPSTACK_TLS__CLIENT_KEY_FILE to one that CA signed"
        )


def _apply_features(settings: Settings, progress: Progress) -> None:
    """Register the Feast repository's definitions (idempotent: Feast applies only the diff).

    The same validation and apply as `loopstack features apply`: a refused definition stops `up`
    with the same message (file, object, fix)."""
    from loopstack.features.store import apply_repo

    task = progress.add_task("applying the Feast repository", total=None)
    plan = apply_repo(settings)
    progress.update(
        task,
        description=f"[green]feature repository applied[/] ({settings.feature_repo_dir}: "
        f"{len(plan.changes)} change(s))",
    )


def _clear_dead(supervisor: Supervisor, components: list[Component]) -> dict[str, RunningProcess]:
    """Forget components that died (their restart is counted); with any to start, stop the
    supervisor first so it does not start them too (`up` starts it again last)."""
    dead = {}
    for component in components:
        if (record := supervisor.clear_dead(component.spec.name)) is not None:
            dead[component.spec.name] = record
            console.print(f"{record.name} had died (pid {record.pid}): starting it again")
    pending = [c for c in components if supervisor.read(c.spec.name) is None]
    if pending and SUPERVISOR not in {c.spec.name for c in pending}:
        supervisor.stop(SUPERVISOR)
    return dead


def _start(
    supervisor: Supervisor,
    component: Component,
    progress: Progress,
    dead: dict[str, RunningProcess],
) -> tuple[RunningProcess, TaskID]:
    spec = component.spec
    task = progress.add_task(f"starting {spec.name}", total=None)
    if spec.name in dead:
        return supervisor.restart(spec, dead[spec.name]), task
    return supervisor.start(spec), task


def _await(
    supervisor: Supervisor,
    component: Component,
    running: RunningProcess,
    task: TaskID,
    progress: Progress,
) -> None:
    spec = component.spec
    supervisor.wait_healthy(
        running,
        component.start_timeout_s,
        tick=lambda s: progress.update(task, description=f"waiting for {spec.name} ({s:.0f}s)"),
    )
    progress.update(task, description=f"[green]{spec.name} healthy[/] at {spec.url}")


def _await_ready(supervisor: Supervisor, components: list[Component]) -> LoopstackError | None:
    """Wait until every component with a readiness URL can serve (the inference server: every
    deployed version loaded), showing what it waits for; the first that is not, or None."""
    waiting = [c for c in components if c.spec.ready_url and c.ready_timeout_s > 0]
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        for component in waiting:
            spec, running = component.spec, supervisor.read(component.spec.name)
            if running is None or spec.ready_url is None:
                continue
            task = progress.add_task(f"waiting for {spec.name} to be ready", total=None)

            def tick(
                waited: float, reason: str, name: str = spec.name, task: TaskID = task
            ) -> None:
                progress.update(
                    task,
                    description=f"waiting for {name} to be ready ({waited:.0f}s): {escape(reason)}",
                )

            try:
                supervisor.wait_ready(
                    running,
                    spec.ready_url,
                    component.ready_timeout_s,
                    component.not_ready_fix,
                    tick,
                )
            except LoopstackError as exc:
                progress.update(task, description=f"[red]{spec.name} not ready[/]")
                return exc
            progress.update(task, description=f"[green]{spec.name} ready[/] at {spec.url}")
    return None


def down(settings: Settings) -> None:
    """Stop every recorded component, latest first, and clean stale pid files."""
    supervisor = Supervisor(settings.state_path)
    recorded = supervisor.recorded()
    if settings.backend == "embedded":
        _cancel_pipeline_runs(settings)
    if not recorded:
        console.print("nothing is running")
        return
    order = [c.spec.name for c in embedded_components(settings)]
    recorded.sort(
        key=lambda p: order.index(p.name) if p.name in order else len(order), reverse=True
    )
    for process in recorded:
        if supervisor.stop(process.name):
            console.print(f"stopped {process.name} (pid {process.pid})")
        else:
            console.print(f"removed stale pid file of {process.name} (pid {process.pid})")


def _cancel_pipeline_runs(settings: Settings) -> None:
    """Pipeline runs of this stack run in process groups of their own: stop them too."""
    from loopstack.serving.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(settings)
    for run in backend.pipeline_runs(limit=500):
        if run.status == "running":
            backend.cancel_pipeline_run(run.run_id)
            console.print(f"cancelled pipeline run {run.run_id}")


def status(settings: Settings) -> bool:
    """Print the component table, any model whose spec does not load, and why the inference
    server is not ready; True when every component is healthy and the server ready (a deployed
    version that fails to load is reported and counts; a broken spec is that model's only)."""
    rows = stack_status(settings)
    table = Table(title=f"Loopstack ({settings.backend}) — state in {settings.state_path}")
    for column in ("component", "state", "url", "pid", "restarts"):
        table.add_column(column)
    for row in rows:
        style = _STYLE.get(row.state, "")
        table.add_row(
            row.name,
            f"[{style}]{row.state}[/]",
            row.url or "",
            str(row.pid or ""),
            _restarts(row.restarts, row.restarted_at) if row.pid else "",
        )
    console.print(table)
    if all(r.state == "stopped" for r in rows):
        console.print("nothing is running: start the stack with `loopstack up`")
    elif any(r.state == "stale" for r in rows):
        console.print("a component died and no supervisor runs: `loopstack up` starts it again")
    _print_broken_models(settings)
    ready = _serving_ready(settings, rows)
    return all(r.state == "healthy" for r in rows) and ready


def _serving_ready(settings: Settings, rows: list[StackStatus]) -> bool:
    """Whether a running inference server serves every deployed version; prints why not."""
    serving = next((r for r in rows if r.name == "serving" and r.state == "healthy"), None)
    if serving is None or not serving.url:
        return True  # not running: the component table already says so
    try:
        answer = httpx.get(
            f"{serving.url}/v2/health/ready", timeout=5, verify=stack_supervisor(settings).verify
        )
    except httpx.HTTPError as exc:
        console.print(f"[yellow]serving readiness unknown[/]: {escape(str(exc))}", highlight=False)
        return False
    if answer.is_success:
        return True
    try:
        reason = str(answer.json().get("error") or answer.text)
    except ValueError:
        reason = answer.text
    console.print(
        f"[red]serving is not ready[/]: {escape(reason)}", highlight=False, soft_wrap=True
    )
    return False


def _restarts(count: int, at: float | None) -> str:
    if not count or at is None:
        return str(count)
    return f"{count} (last {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))})"


def _print_broken_models(settings: Settings) -> None:
    """Models whose spec does not load: they alone are out of service (not trained, served or
    decided on); the others are not affected."""
    _, broken = scan_model_specs(settings.models_dir)
    for name, reason in broken.items():
        console.print(
            f"[red]model {name} is broken[/]: {escape(reason)}", highlight=False, soft_wrap=True
        )
