"""Compile a pipeline with hera into an Argo WorkflowTemplate and a CronWorkflow.

Each step's container runs the same command the embedded runner gives its child process
(`Pipeline.step_command`), with Argo expressions in place of the run's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hera.workflows import (
    DAG,
    Container,
    CronWorkflow,
    Parameter,
    RetryStrategy,
    Task,
    WorkflowTemplate,
)
from hera.workflows import models as m

from loopstack.core.modelspec import ModelSpec
from loopstack.core.settings import Settings
from loopstack.pipelines.dsl import RUN_DIR_IN_CONTAINER, Param, Pipeline, Step
from loopstack.pipelines.errors import PERMANENT_FAILURE_EXIT

__all__ = [
    "compile_pipeline",
    "compile_cron",
    "write_manifests",
    "template_name",
    "argo_params",
    "RUN_DIR_ARG",
]

RUN_DIR_ARG = f"{RUN_DIR_IN_CONTAINER}/{{{{workflow.name}}}}"
BRANCH_ARG = "{{inputs.parameters.branch}}"
CONFIG_MAP = "loopstack-config"


def template_name(pipeline: Pipeline) -> str:
    """Name of the pipeline's WorkflowTemplate."""
    return f"loopstack-{pipeline.name}"


def argo_params(pipeline: Pipeline) -> dict[str, str]:
    """Each parameter as the Argo expression that fills it in a container's arguments."""
    return {name: f"{{{{workflow.parameters.{name}}}}}" for name in pipeline.param_names}


def _container(pipeline: Pipeline, step: Step, settings: Settings) -> Container:
    image = (
        settings.kubernetes.drift_image if step.runtime == "drift" else settings.kubernetes.image
    )
    args = pipeline.step_command(
        step,
        run_dir=RUN_DIR_ARG,
        params=argo_params(pipeline),
        branch=BRANCH_ARG if step.sweep else None,
    )
    return Container(
        name=step.name,
        image=image,
        command=["python"],
        args=args,
        inputs=[Parameter(name="branch")] if step.sweep else None,
        env_from=[m.EnvFromSource(config_map_ref=m.ConfigMapEnvSource(name=CONFIG_MAP))],
        volume_mounts=[m.VolumeMount(name="run", mount_path=RUN_DIR_IN_CONTAINER)],
        retry_strategy=RetryStrategy(
            limit=step.retries,
            backoff=m.Backoff(duration="10s", factor=2),
            retry_policy="Always",
            # A step that exits PERMANENT_FAILURE_EXIT said a retry cannot cure its error.
            expression=f"asInt(lastRetry.exitCode) != {PERMANENT_FAILURE_EXIT}",
        ),
        security_context=m.SecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=m.Capabilities(drop=["ALL"]),
        ),
        resources=m.ResourceRequirements(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"}
        ),
    )


def _argument(param: Param) -> Parameter:
    """A workflow argument; one without a default must be given at submission (no 'null')."""
    if param.default is None:
        return Parameter(name=param.name, description=param.help or None)
    return Parameter(name=param.name, value=param.default, description=param.help or None)


def compile_pipeline(pipeline: Pipeline, settings: Settings) -> WorkflowTemplate:
    """The pipeline as an Argo WorkflowTemplate (a DAG whose sweep steps fan out with withParam)."""
    volume = m.PersistentVolumeClaim(
        metadata=m.ObjectMeta(name="run"),
        spec=m.PersistentVolumeClaimSpec(
            access_modes=[settings.kubernetes.run_volume_access_mode],
            resources=m.VolumeResourceRequirements(
                requests={"storage": settings.kubernetes.run_volume_size}
            ),
        ),
    )
    with WorkflowTemplate(
        name=template_name(pipeline),
        namespace=settings.kubernetes.namespace,
        labels={"app.kubernetes.io/part-of": "loopstack", "loopstack.io/pipeline": pipeline.name},
        annotations={"workflows.argoproj.io/description": pipeline.description or pipeline.name},
        entrypoint="main",
        service_account_name="loopstack-pipeline",
        arguments=[_argument(p) for p in pipeline.params],
        volume_claim_templates=[volume],
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=10001, fs_group=10001
        ),
    ) as template:
        containers = {step.name: _container(pipeline, step, settings) for step in pipeline.steps}
        with DAG(name="main"):
            tasks: dict[str, Task] = {}
            for step in pipeline.steps:
                task = Task(
                    name=step.name,
                    template=containers[step.name],
                    with_param=f"{{{{workflow.parameters.{step.sweep}}}}}" if step.sweep else None,
                    arguments={"branch": "{{item}}"} if step.sweep else None,
                    dependencies=list(step.after) or None,
                )
                tasks[step.name] = task
    return template


def compile_cron(
    pipeline: Pipeline, spec: ModelSpec, settings: Settings, schedule: str
) -> CronWorkflow:
    """A CronWorkflow that runs the pipeline's template for one model on a schedule."""
    return CronWorkflow(
        name=f"{template_name(pipeline)}-{spec.name}",
        namespace=settings.kubernetes.namespace,
        labels={"app.kubernetes.io/part-of": "loopstack", "loopstack.io/model": spec.name},
        schedules=[schedule],
        timezone="UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        workflow_template_ref=m.WorkflowTemplateRef(name=template_name(pipeline)),
        # The window is the model's latest `trigger.training_window_days`, resolved at run time.
        arguments=[
            Parameter(name="model", value=spec.name),
            Parameter(name="start", value="auto"),
            Parameter(name="end", value="auto"),
        ],
    )


def write_manifests(objects: list[Any], out_dir: Path) -> list[Path]:
    """Write each compiled object as `<kind>-<name>.yaml`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for obj in objects:
        doc = obj.to_dict()
        path = out_dir / f"{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(path)
    return written
